"""The Python API for embedding mvrt: load a model once, classify many videos.

    import mvrt

    with mvrt.load_model() as model:                     # the bundled demo model (or a path)
        video = model.classify("clip.mp4")               # VideoResult: the whole-video reading
        print(video.label, video.by_class)               # e.g. Sad {'Excited': 0.01, ..., 'Sad': 0.93, ...}
        for window in model.iter_windows("long.mp4"):    # WindowResults as they complete
            print(window.start_seconds, window.label, window.by_class["Sad"])
        pair = model.classify("video/x.mp4", audio="audio/x.wav")  # sound and picture in two files
        for event in model.run(["a.mp4", mvrt.MediaPair("x.wav", "x.mp4")]):  # many inputs, batched
            print(event)                                 # WindowResult, SourceEvent or VideoResult
        with model.stream("udp://127.0.0.1:5000") as live:  # a live source, window by window
            for event in live:                           # WindowResult or SourceEvent
                print(event)

`load_model(path=None, *, backend="auto", **options) -> Model` (also `mvrt.load_model`);
`Model.classify(path, *, audio=None) -> VideoResult`, `Model.iter_windows(path, *, audio=None)
-> Iterator[WindowResult]`, `Model.run(inputs, pipeline=None, *, metrics=None, stop=None)`,
`Model.stream(source, ...) -> Stream`. Results give probabilities as arrays in class order
(`.probabilities`, `.classes`) and by class name (`.by_class`); `VideoResult.window_weights`
says how many seconds each window counts for in the whole-video reading.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Iterator, Sequence

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import MediaError, MvrtError, UsageError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.events import SourceEvent
from mvrt.runtime.inputs import MediaPair
from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
from mvrt.runtime.results import VideoResult, WindowResult
from mvrt.runtime.sources import SourceOptions

__all__ = ["MediaPair", "Model", "Stream", "VideoResult", "WindowResult", "load_model"]

PathLike = str | os.PathLike
log = logging.getLogger(__name__)


class Model:
    """A model loaded on one backend, ready to classify videos. Use as a context manager."""

    def __init__(
        self,
        path: PathLike,
        *,
        backend: str = "auto",
        batch_size: int = 4,
        hop_seconds: float | None = None,
        read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
        isolate: bool = False,
        decode: str = "auto",
        **engine_options,
    ):
        self.path = str(path)
        self.pipeline = PipelineConfig(batch_size=batch_size, hop_seconds=hop_seconds,
                                       read_timeout_seconds=read_timeout_seconds, isolate=isolate, decode=decode)
        self._engine = open_engine(path, backend=backend, **engine_options)
        self._engine.__enter__()

    @property
    def config(self) -> ModelConfig:
        return self._engine.config

    @property
    def backend(self) -> str:
        return self._engine.name

    def run(self, paths: Sequence[PathLike | MediaPair], pipeline: PipelineConfig | None = None, *,
            metrics=None, stop=None) -> Iterator[object]:
        """Every event of a run: `WindowResult`s as they complete, `SourceEvent`s of live sources,
        a `VideoResult` per input. Inputs are files, `-`, pipes, URLs or devices, and
        `MediaPair(audio, video)`s of separate files."""
        return run_pipeline(self._engine, paths, pipeline or self.pipeline, metrics=metrics, stop=stop)

    def iter_windows(self, path: PathLike | MediaPair, *, audio: PathLike | None = None) -> Iterator[WindowResult]:
        """The windows of one video as they complete; raises the input's error, if any.

        `audio` names a separate audio file for the video file `path` (the two read as one input).
        """
        for event in self.run([_input(path, audio)]):
            if isinstance(event, WindowResult):
                yield event
            elif isinstance(event, VideoResult) and not event.ok:
                raise _error_of(event)

    def classify(self, path: PathLike | MediaPair, *, audio: PathLike | None = None) -> VideoResult:
        """The whole-video reading of one input; raises its error, if any.

        `audio` names a separate audio file for the video file `path` (the two read as one input).
        """
        item = _input(path, audio)
        for event in self.run([item]):
            if isinstance(event, VideoResult):
                if not event.ok:
                    raise _error_of(event)
                return event
        raise MvrtError(f"{item}: the pipeline ended without a result")

    def stream(
        self,
        source: PathLike,
        *,
        hop_seconds: float | None = None,
        max_windows: int | None = None,
        duration_seconds: float | None = None,
        reconnect: bool = False,
        input_format: str | None = None,
        input_options: dict[str, str] | None = None,
        live: bool = True,
    ) -> "Stream":
        """Readings of one live source as they complete: `WindowResult`s and `SourceEvent`s.

        `source` is `-`, a pipe, a URL (udp://, tcp://, rtsp://, srt://, http(s):// and HLS, ...),
        a device (with `input_format`, e.g. "v4l2") or a file (read live: windows of W every
        `hop_seconds` from time 0, no end-aligned last one). Use as a context manager; `stop()`
        from any thread ends it after the windows already complete.

            with model.stream("udp://127.0.0.1:5000", max_windows=10) as readings:
                for event in readings:
                    print(event)
        """
        if isinstance(source, MediaPair):
            raise UsageError(f"{source}: a pair of files is not a live source; use classify() or iter_windows()")
        options = SourceOptions(input_format=input_format, input_options=input_options or (), live=live,
                                reconnect=reconnect, max_windows=max_windows, duration_seconds=duration_seconds)
        config = dataclasses.replace(self.pipeline, hop_seconds=hop_seconds if hop_seconds is not None
                                     else self.pipeline.hop_seconds, source=options, isolate=False)
        return Stream(self._engine, os.fspath(source), config)

    def close(self) -> None:
        self._engine.__exit__(None, None, None)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model(path={self.path!r}, arch={self.config.arch!r}, backend={self.backend!r})"


class Stream:
    """An iterator over one source's `WindowResult`s and `SourceEvent`s; a context manager."""

    def __init__(self, engine, source: str, config: PipelineConfig):
        self.source = source
        self._stop = threading.Event()
        self._events = run_pipeline(engine, [source], config, stop=self._stop)
        self.result: VideoResult | None = None  # the source's summary, once it has ended

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> WindowResult | SourceEvent:
        while True:
            event = next(self._events)
            if isinstance(event, (WindowResult, SourceEvent)):
                return event
            if isinstance(event, VideoResult):
                self.result = event
                if not event.ok and not self._stop.is_set():
                    raise _error_of(event)

    def stop(self) -> None:
        """End the stream (thread-safe): iteration stops after the windows already complete."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._events.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Stream(source={self.source!r}, stopped={self._stop.is_set()})"


def load_model(path: PathLike | None = None, *, backend: str = "auto", **options) -> Model:
    """Load a checkpoint (.safetensors), ONNX model or TensorRT plan for inference.

    With no `path`, the bundled demo model (`mvrt.bundled.default_model_path()`): a small
    `slowfast` trained on generated stand-in data, not MVED (a warning says so, once).

    Options: `batch_size`, `hop_seconds`, `read_timeout_seconds` (give up on an input that
    delivers no data for this long; None waits for ever), `isolate` (decode each input in a
    worker process, so that a decoder crash fails that input only), `decode` (the video decoder:
    "auto" NVDEC where a CUDA GPU can, else the CPU; "cpu"; "nvdec"; "v4l2", Jetson), and the engine's own
    (`providers`, `threads`, `device`, ...). Errors keep their class: `MediaError` for a bad
    input, `UsageError` for a bad setting, and so on.
    """
    if path is None:
        path = _bundled_model()
    return Model(path, backend=backend, **options)


_warned_demo = False


def _bundled_model() -> str:
    """The bundled demo model's path; the first time, a warning of what it was trained on."""
    global _warned_demo
    from mvrt.bundled import default_model_path

    path = str(default_model_path())
    if not _warned_demo:
        _warned_demo = True
        log.warning("using the bundled demo model (%s): trained on generated stand-in data, not MVED, so its "
                    "readings are a demonstration, not real emotions; pass a model path to use your own", path)
    return path


def _input(path: PathLike | MediaPair, audio: PathLike | None) -> PathLike | MediaPair:
    """`path`, or the pair of `audio` and the video file `path`."""
    if audio is None:
        return path
    if isinstance(path, MediaPair):
        raise UsageError(f"{path}: already a pair of files; do not pass audio= as well")
    return MediaPair(audio, path)


def _error_of(result: VideoResult) -> MvrtError:
    """The file's own error (MediaError, ModelError, ...), re-raised with its class."""
    if isinstance(result.exception, MvrtError):
        return result.exception
    return MediaError(result.error)
