"""Batched inference over many files: decoding overlaps inference, memory stays bounded.

A producer thread decodes files one after another and computes each window's inputs; the
consumer (the caller's thread) gathers windows from any file into batches of up to
`batch_size`, runs the engine, and yields a `WindowResult` per window and a `VideoResult`
when a file is complete. A file that fails yields a `VideoResult` with its error and the
other files carry on. With `isolate=True` decoding and the front-end run in a worker process
(`mvrt.runtime.isolate`), so that a decoder crash fails one input, not the run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import MvrtError, UnexpectedError, UsageError
from mvrt.runtime._threads import put_unless_stopped
from mvrt.runtime.media_features import DecodeCounts, file_windows, iter_file_features
from mvrt.runtime.probe import check_read_timeout, one_line
from mvrt.runtime.results import VideoResult, WindowResult, sigmoid, softmax
from mvrt.runtime.windows import Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """How windows are cut and batched. `window_seconds=None` takes the model's window."""

    batch_size: int = 4
    window_seconds: float | None = None
    hop_seconds: float | None = None
    queue_windows: int = 8
    frontend: str = "auto"
    # Give up on an input that delivers no data for this long; None waits for ever.
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS
    # Decode and compute the front-end of each input in a worker process.
    isolate: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.queue_windows < 1:
            raise UsageError(f"queue_windows must be at least 1, got {self.queue_windows}")
        check_read_timeout(self.read_timeout_seconds)


@dataclass(frozen=True)
class _Item:
    path: str
    window: Window
    feeds: dict[str, np.ndarray]


@dataclass(frozen=True)
class FileStarted:
    """Emitted when a file has been probed: how many windows it will yield."""

    path: str
    windows: int


@dataclass(frozen=True)
class FileDone:
    """The end of one input: its error (None when it succeeded) and what its decoders skipped."""

    path: str
    error: MvrtError | None = None
    undecodable_packets: int = 0


_END = object()


def check_window(config: ModelConfig, window_seconds: float | None) -> None:
    """Refuse a --window the model was not built for (never silently rewritten)."""
    model_window = config.frontend.window_seconds
    if window_seconds is not None and abs(window_seconds - model_window) > 1e-9:
        raise UsageError(
            f"--window {window_seconds:g} does not match the model's {model_window:g} s windows "
            f"(its input shapes are fixed); omit --window, or use --hop to change the spacing"
        )


def run_pipeline(engine, paths: Sequence[str | os.PathLike], config: PipelineConfig) -> Iterator[object]:
    """Yield `WindowResult`s as they complete and a `VideoResult` per file, in file order."""
    model = engine.config
    check_window(model, config.window_seconds)
    if engine.max_batch is not None and config.batch_size > engine.max_batch:
        raise UsageError(f"--batch-size {config.batch_size} exceeds the engine's maximum batch {engine.max_batch}")
    q: queue.Queue = queue.Queue(maxsize=config.queue_windows)
    stop = threading.Event()
    source = _file_source(model, config)
    producer = threading.Thread(
        target=_produce, args=([str(p) for p in paths], source, q, stop), name="mvrt-decode", daemon=True
    )
    producer.start()
    collected: dict[str, list[WindowResult]] = {}
    try:
        while True:
            events = _gather(q, config.batch_size)
            yield from _process(engine, events, collected)
            if events and events[-1] is _END:
                return
    finally:
        stop.set()
        source.close()  # a worker process is ended, which also unblocks a producer waiting on it
        producer.join(timeout=5)


class _LocalSource:
    """Decoding and front-end in this process (the producer thread)."""

    def __init__(self, model: ModelConfig, config: PipelineConfig):
        self.model, self.config = model, config

    def file_events(self, path: str) -> Iterator[object]:
        config, counts = self.config, DecodeCounts()
        windows = file_windows(path, self.model, config.hop_seconds, read_timeout_seconds=config.read_timeout_seconds)
        yield FileStarted(path, len(windows))
        features = iter_file_features(path, self.model, windows, implementation=config.frontend,
                                      read_timeout_seconds=config.read_timeout_seconds, counts=counts)
        for window, feeds in features:
            yield _Item(path, window, feeds)
        yield FileDone(path, None, counts.undecodable_packets)

    def close(self) -> None:
        pass


def _file_source(model: ModelConfig, config: PipelineConfig):
    if not config.isolate:
        return _LocalSource(model, config)
    from mvrt.runtime.isolate import IsolatedSource

    return IsolatedSource(model, config)


def _produce(paths: list[str], source, q: queue.Queue, stop: threading.Event) -> None:
    for path in paths:
        if stop.is_set():
            return
        for event in _guarded(source.file_events(path), path):
            if not put_unless_stopped(q, event, stop):
                return
    put_unless_stopped(q, _END, stop)


def _guarded(events: Iterator[object], path: str) -> Iterator[object]:
    """The input's events; an error ends them with a FileDone carrying it (the others go on)."""
    try:
        yield from events
    except MvrtError as exc:
        yield FileDone(path, exc.with_traceback(None))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        log.debug("unexpected error on %s", path, exc_info=True)
        yield FileDone(path, UnexpectedError(f"{path}: unexpected {type(exc).__name__}: {one_line(str(exc))}"))


def _gather(q: queue.Queue, batch_size: int) -> list[object]:
    """Block for one event, then take what is ready, up to `batch_size` windows."""
    events = [q.get()]
    count = isinstance(events[0], _Item)
    while count < batch_size and events[-1] is not _END:
        try:
            event = q.get_nowait()
        except queue.Empty:
            break
        events.append(event)
        count += isinstance(event, _Item)
    return events


def _process(engine, events: list[object], collected: dict[str, list[WindowResult]]) -> Iterator[object]:
    items = [e for e in events if isinstance(e, _Item)]
    results = iter(_infer(engine, items)) if items else iter(())
    for event in events:
        if isinstance(event, _Item):
            result = next(results)
            collected.setdefault(event.path, []).append(result)
            yield result
        elif isinstance(event, FileStarted):
            collected[event.path] = []
            yield event
        elif isinstance(event, FileDone):
            windows = tuple(collected.pop(event.path, []))
            error = event.error
            yield VideoResult(event.path, windows if error is None else (), engine.config.classes,
                              None if error is None else str(error), exception=error,
                              undecodable_packets=event.undecodable_packets)


def _infer(engine, items: list[_Item]) -> list[WindowResult]:
    names = engine.config.input_names
    feeds = {name: np.stack([item.feeds[name] for item in items]) for name in names}  # (B, ...) each
    logits = np.asarray(engine.infer(feeds), dtype=np.float32)  # (B, C)
    probs, sigs = softmax(logits), sigmoid(logits)
    classes = engine.config.classes
    return [
        WindowResult(
            path=item.path,
            index=item.window.index,
            start_seconds=item.window.start_seconds,
            end_seconds=item.window.start_seconds + item.window.span_seconds,
            logits=logits[i],
            probabilities=probs[i],
            sigmoids=sigs[i],
            label=classes[int(np.argmax(probs[i]))],
            classes=classes,
        )
        for i, item in enumerate(items)
    ]


