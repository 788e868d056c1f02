"""The Python API for embedding mvrt: load a model once, classify many videos.

    import mvrt.api
    with mvrt.api.load_model("model.onnx") as model:
        result = model.classify("clip.mp4")          # VideoResult
        for window in model.iter_windows("long.mp4"):  # WindowResults as they complete
            print(window.start_seconds, window.label)
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import MediaError, MvrtError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
from mvrt.runtime.results import VideoResult, WindowResult

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

    def run(self, paths: Sequence[PathLike], pipeline: PipelineConfig | None = None) -> Iterator[object]:
        """Every event of a batch run: `WindowResult`s as they complete, a `VideoResult` per file."""
        return run_pipeline(self._engine, paths, pipeline or self.pipeline)

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

    def close(self) -> None:
        self._engine.__exit__(None, None, None)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model(path={self.path!r}, arch={self.config.arch!r}, backend={self.backend!r})"


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
