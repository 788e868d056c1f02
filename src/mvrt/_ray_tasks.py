"""What runs in Ray's workers for `mvrt.ray_runner`, and how its results and errors come back.

`decode_input` is the body of the per-input task (1 CPU, a streaming generator): the local
run's own reading code (`runtime.pipeline.LocalSource` under `guarded_events`, so a bad input
ends with the same one-line error as in a local run), its windows' network inputs packed
into `Chunk`s of at most `chunk_windows` windows, then one `InputDone`. `EngineWorker` is the
engine actor: it opens the engine once and turns each chunk into the local run's
`WindowResult`s (`infer_windows`). The rest turns what Ray hands back (a `RayTaskError`, a
`RayActorError`, an error sent by class name) into mvrt's own errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import BackendError, MvrtError, UnexpectedError, rebuilt_error
from mvrt.runtime.events import FileDone, WindowItem
from mvrt.runtime.inputs import InputItem
from mvrt.runtime.pipeline import LocalSource, PipelineConfig, guarded_events, infer_windows
from mvrt.runtime.probe import one_line

__all__ = ["Chunk", "EngineWorker", "InputDone", "decode_input", "start_error", "task_error"]


@dataclass(frozen=True)
class Chunk:
    """Up to batch_size windows of one input: their network inputs stacked (N, ...) and what each is."""

    path: str
    audio_path: str | None
    windows: tuple = field(repr=False)  # Window per row
    gaps_seconds: tuple[float, ...] = field(repr=False)
    ready_wall: tuple[float | None, ...] = field(repr=False)  # time.time() of each window's last packet
    feeds: dict[str, np.ndarray] = field(repr=False)

    def items(self) -> list[WindowItem]:
        """The rows as the local run's WindowItems (views of the stored arrays)."""
        now_wall, now_mono = time.time(), time.monotonic()
        return [WindowItem(self.path, window, {name: a[i] for name, a in self.feeds.items()},
                           None if ready is None else now_mono - (now_wall - ready), gap, self.audio_path)
                for i, (window, gap, ready) in enumerate(zip(self.windows, self.gaps_seconds, self.ready_wall))]


@dataclass(frozen=True)
class InputDone:
    """The end of one input: its error by class name and message (None when it succeeded)."""

    error_class: str | None
    error_message: str | None
    undecodable_packets: int
    error_setting: str | tuple[str, ...] | None = None

    def error(self) -> MvrtError | None:
        """The input's error as its own mvrt class (`errors.rebuilt_error`)."""
        if self.error_class is None:
            return None
        return rebuilt_error(self.error_class, str(self.error_message), setting=self.error_setting)


def _pack(items: list[WindowItem]) -> Chunk:
    first = items[0]
    now_wall, now_mono = time.time(), time.monotonic()
    ready = tuple(None if i.ready_monotonic is None else now_wall - (now_mono - i.ready_monotonic) for i in items)
    feeds = {name: np.stack([i.feeds[name] for i in items]) for name in first.feeds}  # (N, ...) each
    return Chunk(first.path, first.audio_path, tuple(i.window for i in items), tuple(i.gap_seconds for i in items),
                 ready, feeds)


def decode_input(item: InputItem, model: ModelConfig, pipeline: PipelineConfig, chunk_windows: int):
    """The Ray task's body: `Chunk`s of the input's windows, then its `InputDone` (the local reader)."""
    chunk: list[WindowItem] = []
    for event in guarded_events(LocalSource(model, pipeline).file_events(item), item):
        if isinstance(event, WindowItem):
            chunk.append(event)
            if len(chunk) == chunk_windows:
                yield _pack(chunk)
                chunk = []
        elif isinstance(event, FileDone):
            if chunk and event.error is None:
                yield _pack(chunk)
            error = event.error
            yield InputDone(None if error is None else type(error).__name__, None if error is None else str(error),
                            event.undecodable_packets, getattr(error, "setting", None))
            return


class EngineWorker:
    """The engine actor: opens the engine once, turns chunks into WindowResults."""

    def __init__(self, model_path: str, engine_options: dict):
        from mvrt.runtime.engines import open_engine

        self.engine = open_engine(model_path, **engine_options)
        self.engine.load()

    def ready(self) -> bool:
        return True

    def run(self, item):
        """A `Chunk`'s WindowResults (the local run's `infer_windows`); an `InputDone` comes back as it is."""
        if isinstance(item, InputDone):
            return item
        return infer_windows(self.engine, item.items())


def _cause(exc: BaseException) -> BaseException | None:
    """The original exception a RayTaskError / RayActorError carries, if Ray kept one."""
    for attr in ("cause", "_cause"):
        cause = getattr(exc, attr, None)
        if isinstance(cause, BaseException):
            return _cause(cause) or cause
    return None


def _describe(exc: BaseException) -> str:
    cause = _cause(exc)
    text = str(cause) if cause is not None else str(exc)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f"{type(cause or exc).__name__}: {one_line(lines[-1] if lines else '')}"


def task_error(item: InputItem, exc: BaseException) -> MvrtError:
    """The error of an input whose task or actor call failed: the mvrt error Ray kept, or an UnexpectedError."""
    cause = _cause(exc)
    if isinstance(cause, MvrtError):
        return cause.with_traceback(None)
    return UnexpectedError(f"{item}: the Ray worker reading it failed ({_describe(exc)})")


def start_error(model_path: str, exc: BaseException) -> MvrtError:
    """Why the engine actors did not start: the engine's own mvrt error where Ray kept it, else a BackendError."""
    cause = _cause(exc)
    if isinstance(cause, MvrtError):
        return cause.with_traceback(None)
    return BackendError(f"{model_path}: the engine actor did not start on Ray: {_describe(exc)}")
