"""Decoding in a worker process (`isolate=True`, `mvrt infer --isolate`).

Native decoders can still crash on hostile media. With isolation, the decoding and the
front-end of each input run in a worker process (`python -m mvrt.runtime._isolate_worker`);
the pipeline keeps the engine. A worker that dies (a segfault, the OOM killer) or stops making
progress fails its input with a one-line error; a fresh worker takes the next input.

The worker sends JSON headers and raw arrays over a pipe (`_wire`): nothing is ever unpickled,
and every array must have exactly the shape and dtype the model takes (its config's contract:
float32, or uint8 `video` for contract 2, 1 byte a pixel on the pipe too).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from typing import Iterator

import numpy as np

from mvrt import errors
from mvrt.config import ModelConfig
from mvrt.errors import MediaError, MvrtError
from mvrt.runtime._wire import FrameReader, WireError, send_json
from mvrt.runtime.events import FileDone, FileStarted, WindowItem
from mvrt.runtime.inputs import InputItem, audio_of, input_name
from mvrt.runtime.windows import Window

WORKER_MODULE = "mvrt.runtime._isolate_worker"
# A worker that sends nothing for this long (beyond its own read timeout) is stuck: it is killed.
_STALL_GRACE_SECONDS = 60.0


class IsolatedSource:
    """File events (as `pipeline.LocalSource` makes them) from a worker process."""

    def __init__(self, model: ModelConfig, config):
        self.model, self.config = model, config
        self._shapes = model.input_shapes()
        self._dtypes = {name: np.dtype(dtype) for name, dtype in model.input_dtypes().items()}
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._closed = False
        timeout = config.read_timeout_seconds
        self.stall_seconds = None if timeout is None else 2 * timeout + _STALL_GRACE_SECONDS

    def file_events(self, item: InputItem) -> Iterator[object]:
        """The events of one input (a path, or a `MediaPair` of files) decoded by the worker."""
        proc = self._worker()
        finished = False
        try:
            send_json(proc.stdin, self._request(item))
            reader = FrameReader(proc.stdout.fileno(), self.stall_seconds)
            for event in self._events(reader, input_name(item), audio_of(item)):
                yield event
            finished = True
        except (WireError, OSError, ValueError, KeyError, TypeError) as exc:
            finished = True
            raise MediaError(f"{item}: {self._end_worker(proc, exc)}; the input is probably damaged or hostile "
                             "(isolate=True kept the run going)") from None
        finally:
            if not finished:
                self._end_worker(proc, None)  # abandoned mid-input: its stream is out of step

    def _request(self, item: InputItem) -> dict:
        config = self.config
        return {"path": input_name(item), "audio": audio_of(item), "model": self.model.to_dict(),
                "hop_seconds": config.hop_seconds,
                "frontend": config.frontend, "read_timeout_seconds": config.read_timeout_seconds,
                "decode": config.decode,  # the worker decodes: it takes the video decoder setting too
                "log_level": logging.getLogger("mvrt").getEffectiveLevel()}

    def _events(self, reader: FrameReader, path: str, audio: str | None) -> Iterator[object]:
        while True:
            message = reader.json()
            kind = message.get("event")
            if kind == "started":
                yield FileStarted(path, _count(message["windows"]), audio)
            elif kind == "window":
                window = Window(_count(message["index"]), float(message["start_seconds"]),
                                float(message["window_seconds"]), float(message["span_seconds"]))
                feeds = {name: reader.array(self._dtypes[name], self._shapes[name]) for name in self.model.input_names}
                yield WindowItem(path, window, feeds, _seconds(message.get("ready_monotonic")),
                                 _seconds(message.get("gap_seconds", 0.0)) or 0.0, audio)
            elif kind == "done":
                yield FileDone(path, _rebuild_error(message, path), _count(message.get("undecodable_packets", 0)),
                               audio)
                return
            else:
                raise WireError(f"unknown event {kind!r}")

    def _worker(self) -> subprocess.Popen:
        with self._lock:
            if self._closed:
                raise MediaError("the pipeline was closed")
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    close_fds=True,
                )
            return self._proc

    def _end_worker(self, proc: subprocess.Popen, cause: BaseException | None) -> str:
        """Stop `proc` (if still running) and say how it ended."""
        with self._lock:
            if self._proc is proc:
                self._proc = None
        stalled = isinstance(cause, WireError) and "no progress" in str(cause)
        code = proc.poll()
        if code is None and cause is not None and not stalled:
            try:  # its output ended or broke: it is dying, give the kernel a moment to report how
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        if code is None:
            proc.kill()
            proc.wait()
            return f"the decoder process was stopped ({cause})" if cause is not None else "the decoder process was stopped"
        return f"the decoder process died ({_describe_exit(code)})"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # the worker exits when its input ends
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError(f"expected a count, got {value!r}")
    return value


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise WireError(f"expected seconds, got {value!r}")
    return float(value)


def _rebuild_error(message: dict, path: str) -> MvrtError | None:
    """The worker's error as an instance of the same mvrt error class (never a foreign class)."""
    text = message.get("error")
    if text is None:
        return None
    name = message.get("error_class")
    name = None if name == "MissingDependencyError" else name  # the worker's environment, not this input
    return errors.rebuilt_error(name, str(text), setting=_wire_setting(message.get("setting")), fallback=MediaError)


def _wire_setting(value: object) -> str | tuple[str, ...] | None:
    """The settings a worker's error names (a name or a list of names; anything else: none)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
