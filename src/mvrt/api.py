"""The Python API for embedding mvrt: load a model once, classify many videos.

    import mvrt.api
    with mvrt.api.load_model("model.onnx") as model:
        result = model.classify("clip.mp4")          # VideoResult
        for window in model.iter_windows("long.mp4"):  # WindowResults as they complete
            print(window.start_seconds, window.label)
        with model.stream("udp://127.0.0.1:5000") as live:  # a live source, window by window
            for event in live:                            # WindowResult or SourceEvent
                print(event)
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Iterator, Sequence

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import MediaError, MvrtError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.events import SourceEvent
from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
from mvrt.runtime.results import VideoResult, WindowResult
from mvrt.runtime.sources import SourceOptions

PathLike = str | os.PathLike


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
        **engine_options,
    ):
        self.path = str(path)
        self.pipeline = PipelineConfig(batch_size=batch_size, hop_seconds=hop_seconds,
                                       read_timeout_seconds=read_timeout_seconds, isolate=isolate)
        self._engine = open_engine(path, backend=backend, **engine_options)
        self._engine.__enter__()

    @property
    def config(self) -> ModelConfig:
        return self._engine.config

    @property
    def backend(self) -> str:
        return self._engine.name

    def run(self, paths: Sequence[PathLike], pipeline: PipelineConfig | None = None, *, metrics=None,
            stop=None) -> Iterator[object]:
        """Every event of a run: `WindowResult`s as they complete, `SourceEvent`s of live sources,
        a `VideoResult` per input. Inputs are files, `-`, pipes, URLs or devices."""
        return run_pipeline(self._engine, paths, pipeline or self.pipeline, metrics=metrics, stop=stop)

    def iter_windows(self, path: PathLike) -> Iterator[WindowResult]:
        """The windows of one video as they complete; raises the file's error, if any."""
        for event in self.run([path]):
            if isinstance(event, WindowResult):
                yield event
            elif isinstance(event, VideoResult) and not event.ok:
                raise _error_of(event)

    def classify(self, path: PathLike) -> VideoResult:
        """The whole-video reading of one file; raises the file's error, if any."""
        for event in self.run([path]):
            if isinstance(event, VideoResult):
                if not event.ok:
                    raise _error_of(event)
                return event
        raise MvrtError(f"{path}: the pipeline ended without a result")

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


def load_model(path: PathLike, *, backend: str = "auto", **options) -> Model:
    """Load a checkpoint (.safetensors), ONNX model or TensorRT plan for inference.

    Options: `batch_size`, `hop_seconds`, `read_timeout_seconds` (give up on an input that
    delivers no data for this long; None waits for ever), `isolate` (decode each input in a
    worker process, so that a decoder crash fails that input only), and the engine's own
    (`providers`, `threads`, `device`, ...). Errors keep their class: `MediaError` for a bad
    input, `UsageError` for a bad setting, and so on.
    """
    return Model(path, backend=backend, **options)


def _error_of(result: VideoResult) -> MvrtError:
    """The file's own error (MediaError, ModelError, ...), re-raised with its class."""
    if isinstance(result.exception, MvrtError):
        return result.exception
    return MediaError(result.error)
