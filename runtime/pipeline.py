"""Batched inference over many inputs: decoding overlaps inference, memory stays bounded.

Producer threads decode inputs (files one after another on each of `jobs` threads; every
live source on a thread of its own) and compute each window's inputs; the consumer (the
caller's thread) gathers windows from any input into batches of up to `batch_size`, runs the
engine, and yields a `WindowResult` per window, `SourceEvent`s of live sources, and a
`VideoResult` when an input is complete. A slow or stalled input holds up no other's results;
one that fails yields a `VideoResult` with its error and the others carry on. An input is a
path or URL, or a `MediaPair` of separate audio and video files (read as the file that would
mux them; its results carry the video file as `path` and the audio file as `audio_path`). With
`isolate=True` decoding and the front-end of files run in a worker process
(`mvrt.runtime.isolate`), so that a decoder crash fails one input, not the run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import BackendError, MvrtError, UnexpectedError, UsageError
from mvrt.runtime._input_events import input_events
from mvrt.runtime._threads import put_unless_stopped
from mvrt.runtime.events import FileDone, FileStarted, SourceEvent, WindowItem, input_key, utc_now
from mvrt.runtime.hw_decode import check_decode, check_decode_available
from mvrt.runtime.inputs import InputItem, MediaPair, as_input, audio_of, input_name
from mvrt.runtime.probe import check_read_timeout, one_line
from mvrt.runtime.results import VideoResult, WindowResult, sigmoid, softmax
from mvrt.runtime.sources import SourceOptions, can_reconnect, is_live_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """How inputs are read, windows cut and batched. `window_seconds=None` takes the model's window."""

    batch_size: int = 4
    window_seconds: float | None = None
    hop_seconds: float | None = None
    queue_windows: int = 8
    frontend: str = "auto"
    # Give up on an input that delivers no data for this long; None waits for ever.
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS
    # Decode and compute the front-end of each input in a worker process.
    isolate: bool = False
    # Input format and options, live windows, reconnection, limits (mvrt.runtime.sources).
    source: SourceOptions = field(default_factory=SourceOptions)
    # Files decoded at the same time (live sources always each have their own decoder).
    jobs: int = 1
    # The video decoder: "auto" (NVDEC where a CUDA GPU can, else the CPU), "cpu", "nvdec", "v4l2" (Jetson).
    decode: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {self.batch_size}", setting="batch_size")
        if self.queue_windows < 1:
            raise UsageError(f"queue_windows must be at least 1, got {self.queue_windows}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise UsageError(f"jobs must be a positive integer, got {self.jobs!r}", setting="jobs")
        check_read_timeout(self.read_timeout_seconds)
        check_decode(self.decode)


_END = object()


@dataclass(frozen=True)
class _Finished:
    """A producer thread has no more inputs."""


def check_window(config: ModelConfig, window_seconds: float | None) -> None:
    """Refuse a `window_seconds` the model was not built for (never silently rewritten)."""
    model_window = config.frontend.window_seconds
    if window_seconds is not None and abs(window_seconds - model_window) > 1e-9:
        raise UsageError(
            f"window_seconds {window_seconds:g} does not match the model's {model_window:g} s windows "
            f"(its input shapes are fixed); omit window_seconds, or use hop_seconds to change the spacing",
            setting=("window_seconds", "hop_seconds"),
        )


def check_engine_fits(engine, config: "PipelineConfig") -> None:
    """Refuse settings the engine cannot run: another window length, a batch over its maximum."""
    check_window(engine.config, config.window_seconds)
    if engine.max_batch is not None and config.batch_size > engine.max_batch:
        raise UsageError(f"batch_size {config.batch_size} exceeds the engine's maximum batch {engine.max_batch}",
                         setting="batch_size")


def run_pipeline(
    engine, paths: Sequence[str | os.PathLike | MediaPair], config: PipelineConfig, *, metrics=None,
    stop: threading.Event | None = None,
) -> Iterator[object]:
    """Yield `WindowResult`s and `SourceEvent`s as they happen and a `VideoResult` per input.

    `stop`, set from any thread, ends the run after the windows already complete; `metrics`
    (`mvrt.runtime.live_metrics.Metrics`) is told about every window, error and source event.
    """
    model = engine.config
    check_engine_fits(engine, config)
    names = [as_input(p) for p in paths]
    _check_pairs(names, config)
    if names:
        check_decode_available(config.decode, input_name(names[0]))
    live = [p for p in names if not isinstance(p, MediaPair) and is_live_path(p, config.source)]
    if config.source.reconnect and not any(can_reconnect(p) for p in names if not isinstance(p, MediaPair)):
        raise UsageError("reconnect=True reopens network sources (tcp://, udp://, rtsp://, http://, ...); "
                         "none of the inputs is one", setting="reconnect")
    if config.isolate and live:
        raise UsageError(f"isolate=True reads files only; {live[0]} is a live source (drop isolate=True or the source)",
                         setting="isolate")
    if live:
        warm_up(engine, config.frontend)  # a live source's first window is not kept waiting for it
    q: queue.Queue = queue.Queue(maxsize=config.queue_windows)
    stop = stop or threading.Event()
    source = _file_source(model, config, stop)
    depth = _Depth(metrics)
    threads = _start_producers(names, live, source, _Queue(q, depth), stop, config.jobs)
    state = _State(engine, metrics, len(threads), depth)
    try:
        while state.producers:
            events = _gather(q, config.batch_size, stop)
            yield from state.process(events)
    finally:
        stop.set()
        source.close()  # a worker process is ended, which also unblocks a producer waiting on it
        for thread in threads:
            thread.join(timeout=5)


def _check_pairs(names: list[InputItem], config: PipelineConfig) -> None:
    """A pair is two files: neither may be a live source (stdin, a pipe, a URL, a device)."""
    for item in names:
        if isinstance(item, MediaPair):
            live = next((p for p in (item.audio, item.video) if is_live_path(p, config.source)), None)
            if live is not None:
                why = "live windows (live=True) are" if config.source.live else f"{live} is a live source, which is"
                raise UsageError(f"{item}: separate audio and video are read from files only; {why} not supported "
                                 "for a pair (mux the two into one stream instead)",
                                 setting="live" if config.source.live else None)


def warm_up(engine, frontend: str = "auto") -> None:
    """One front-end and one engine call on silence: first calls pay for plans, arenas, threads
    (the first live window measured 1.46 s instead of 0.32 s without it)."""
    from mvrt.runtime.network_inputs import window_features

    model = engine.config
    fe = model.frontend
    audio = {sr: np.zeros(fe.window_samples(sr), np.float32) for sr in set(model.audio_inputs.values())}
    frames = np.zeros((fe.frames, fe.image_size, fe.image_size, 3), np.uint8)  # (T, H, W, 3)
    feeds = window_features(audio, frames, model, implementation=frontend)
    engine.infer({name: value[None] for name, value in feeds.items()})  # (1, ...) each


class LocalSource:
    """Decoding and front-end in this process (the producer threads)."""

    def __init__(self, model: ModelConfig, config: PipelineConfig, stop: threading.Event | None = None):
        self.model, self.config, self.stop = model, config, stop

    def file_events(self, item: InputItem) -> Iterator[object]:
        config = self.config
        if isinstance(item, MediaPair):
            return pair_events(item, self.model, config, self.stop)
        return input_events(item, self.model, hop_seconds=config.hop_seconds, options=config.source,
                            implementation=config.frontend, read_timeout_seconds=config.read_timeout_seconds,
                            stop=self.stop, decode=config.decode)

    def close(self) -> None:
        pass


def pair_events(pair: MediaPair, model: ModelConfig, config: PipelineConfig,
                stop: threading.Event | None = None) -> Iterator[object]:
    """FileStarted, a WindowItem per window and FileDone of a pair of files (`iter_pair_features`)."""
    from mvrt.runtime.window_reader import DecodeCounts, InputOpened, iter_pair_features

    counts = DecodeCounts()
    for event in iter_pair_features(pair, model, hop_seconds=config.hop_seconds, options=config.source,
                                    implementation=config.frontend, read_timeout_seconds=config.read_timeout_seconds,
                                    counts=counts, stop=stop, decode=config.decode):
        if isinstance(event, InputOpened):
            yield FileStarted(pair.video, event.windows, pair.audio)
        else:
            yield WindowItem(pair.video, event.window, event.feeds, event.ready_monotonic, event.gap_seconds,
                             pair.audio)
    yield FileDone(pair.video, None, counts.undecodable_packets, pair.audio)


def _file_source(model: ModelConfig, config: PipelineConfig, stop: threading.Event):
    if not config.isolate:
        return LocalSource(model, config, stop)
    from mvrt.runtime.isolate import IsolatedSource

    return IsolatedSource(model, config)


def _start_producers(names, live, source, q, stop, jobs: int) -> list[threading.Thread]:
    files = queue.SimpleQueue()
    for name in names:
        if name not in live:
            files.put(name)
    threads = [threading.Thread(target=_produce_live, args=(name, source, q, stop), name=f"mvrt-live-{i}", daemon=True)
               for i, name in enumerate(live)]
    count = min(jobs, len(names) - len(live))
    threads += [threading.Thread(target=_produce_files, args=(files, source, q, stop), name=f"mvrt-decode-{i}",
                                 daemon=True) for i in range(count)]
    if not threads:
        threads = [threading.Thread(target=_produce_files, args=(files, source, q, stop), daemon=True)]
    for thread in threads:
        thread.start()
    return threads


def _produce_files(files: queue.SimpleQueue, source, q: queue.Queue, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            path = files.get_nowait()
        except queue.Empty:
            break
        if not _forward(guarded_events(source.file_events(path), path), q, stop):
            return
    put_unless_stopped(q, _Finished(), stop)


def _produce_live(path: str, source, q: queue.Queue, stop: threading.Event) -> None:
    if _forward(guarded_events(source.file_events(path), path), q, stop):
        put_unless_stopped(q, _Finished(), stop)


def _forward(events: Iterator[object], q: queue.Queue, stop: threading.Event) -> bool:
    for event in events:
        if not put_unless_stopped(q, event, stop):
            events.close()
            return False
    return True


def guarded_events(events: Iterator[object], item: InputItem) -> Iterator[object]:
    """The input's events; an error ends them with a FileDone carrying it (the others go on)."""
    path, audio = input_name(item), audio_of(item)
    try:
        yield from events
    except MvrtError as exc:
        yield FileDone(path, exc.with_traceback(None), audio_path=audio)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        log.debug("unexpected error on %s", item, exc_info=True)
        error = UnexpectedError(f"{item}: unexpected {type(exc).__name__}: {one_line(str(exc))}")
        yield FileDone(path, error, audio_path=audio)


_POLL_SECONDS = 0.1


class _Depth:
    """Windows of each source waiting for the engine (the queue-depth metric)."""

    def __init__(self, metrics):
        self.metrics = metrics
        self._lock = threading.Lock()
        self._waiting: dict[str, int] = {}

    def add(self, path: str, change: int) -> None:
        if self.metrics is None:
            return
        with self._lock:
            value = self._waiting[path] = self._waiting.get(path, 0) + change
        self.metrics.queue_depth(path, value)


class _Queue:
    """The event queue as the producers see it: puts that count each source's waiting windows."""

    def __init__(self, q: queue.Queue, depth: _Depth):
        self.q, self.depth = q, depth

    def put(self, item, timeout=None) -> None:
        self.q.put(item, timeout=timeout)
        if isinstance(item, WindowItem):
            self.depth.add(item.path, 1)


def _gather(q: queue.Queue, batch_size: int, stop: threading.Event) -> list[object]:
    """Wait for one event (or a stop), then take what is ready, up to `batch_size` windows."""
    while True:
        try:
            events = [q.get(timeout=_POLL_SECONDS)]
            break
        except queue.Empty:
            if stop.is_set():
                return [_END]
    count = isinstance(events[0], WindowItem)
    while count < batch_size:
        try:
            event = q.get_nowait()
        except queue.Empty:
            break
        events.append(event)
        count += isinstance(event, WindowItem)
    return events


class _State:
    """The consumer's side: batches to the engine, results per input, metrics."""

    def __init__(self, engine, metrics, producers: int, depth: _Depth):
        self.engine, self.metrics, self.producers, self.depth = engine, metrics, producers, depth
        self.collected: dict[tuple, list[WindowResult]] = {}  # by `input_key`
        self.live: dict[tuple, list] = {}  # live sources: [window count, sum of probabilities]
        self.failed: dict[tuple, BackendError] = {}  # inputs a batch of which the engine failed on

    def process(self, events: list[object]) -> Iterator[object]:
        items = [e for e in events if isinstance(e, WindowItem)]
        results = iter(self._infer(items)) if items else iter(())
        for event in events:
            if event is _END:
                self.producers = 0
            elif isinstance(event, _Finished):
                self.producers -= 1
            elif isinstance(event, WindowItem):
                result = next(results)
                self.depth.add(event.path, -1)
                if result is None:  # its batch failed: the input's VideoResult says so
                    continue
                self._keep(result)
                if self.metrics is not None:
                    self.metrics.window_emitted(event.path, result.latency_seconds, result.gap_seconds)
                yield result
            elif isinstance(event, FileStarted):
                if event.windows is None:
                    self.live[input_key(event)] = [0, 0.0]
                else:
                    self.collected[input_key(event)] = []
                yield event
            elif isinstance(event, SourceEvent):
                self._source_metrics(event)
                yield event
            elif isinstance(event, FileDone):
                yield self._done(event)

    def _infer(self, items: list[WindowItem]) -> list[WindowResult | None]:
        """The batch's results; if the engine fails on it (a lost server), its inputs fail and the run goes on."""
        try:
            return infer_windows(self.engine, items)
        except BackendError as exc:
            keys = {input_key(item) for item in items}
            for key in keys:
                self.failed.setdefault(key, exc)
            log.warning("%s: %d window(s) of %s failed: %s", self.engine.name, len(items),
                        ", ".join(sorted(path for path, _ in keys)), exc)
            return [None] * len(items)

    def _source_metrics(self, event: SourceEvent) -> None:
        if self.metrics is not None:
            self.metrics.source_state(event.path, event.state)
            if event.state == "reconnecting":
                self.metrics.reconnect(event.path)

    def _keep(self, result: WindowResult) -> None:
        running = self.live.get(input_key(result))
        if running is None:
            self.collected.setdefault(input_key(result), []).append(result)
        else:
            running[0] += 1
            running[1] = running[1] + result.probabilities

    def _done(self, event: FileDone) -> VideoResult:
        windows = tuple(self.collected.pop(input_key(event), []))
        running = self.live.pop(input_key(event), None)
        error = event.error or self.failed.pop(input_key(event), None)
        if self.metrics is not None and event.undecodable_packets:
            self.metrics.decode_errors(event.path, event.undecodable_packets)
        summary = {}
        if running is not None and error is None:
            count, total = running
            summary = {"window_count": count, "mean_probabilities": total / count if count else None}
        return VideoResult(event.path, windows if error is None else (), self.engine.config.classes,
                           None if error is None else str(error), exception=error,
                           undecodable_packets=event.undecodable_packets, audio_path=event.audio_path, **summary)


def infer_windows(engine, items: list[WindowItem]) -> list[WindowResult]:
    """One engine call on the windows stacked into a batch: a WindowResult per window, in order.
    Each input keeps its dtype when stacked (contract 2's `video` stays uint8, 1 byte a pixel)."""
    names = engine.config.input_names
    feeds = {name: np.stack([item.feeds[name] for item in items]) for name in names}  # (B, ...) each
    logits = np.asarray(engine.infer(feeds), dtype=np.float32)  # (B, C)
    probs, sigs = softmax(logits), sigmoid(logits)
    classes = engine.config.classes
    emitted, wall = time.monotonic(), utc_now()
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
            wall_time=wall,
            latency_seconds=None if item.ready_monotonic is None else max(0.0, emitted - item.ready_monotonic),
            gap_seconds=item.gap_seconds,
            audio_path=item.audio_path,
        )
        for i, item in enumerate(items)
    ]
