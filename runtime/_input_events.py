"""The events of one input in this process: windows, and for live sources their connections.

`input_events` wraps `window_reader.iter_input_features` with what a live source needs:
source events (connected, reconnecting, ended, lost), and with `reconnect` a new connection
after an end or an error, after a capped exponential backoff; window numbers and the media
clock continue across connections, and no window mixes media from two of them.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator

from mvrt.config import ModelConfig
from mvrt.errors import MediaError
from mvrt.runtime.events import FileDone, FileStarted, SourceEvent, WindowItem
from mvrt.runtime.window_reader import DecodeCounts, InputOpened, WindowFeatures, iter_input_features
from mvrt.runtime.probe import one_line
from mvrt.runtime.sources import SourceOptions, can_reconnect, is_live_path

log = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


def backoff_seconds(attempt: int) -> float:
    """0.5, 1, 2, 4, ... seconds, at most MAX_BACKOFF_SECONDS (attempt counts from 1)."""
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** min(attempt - 1, 16))


class _Progress:
    """Where a live source stands across connections."""

    def __init__(self) -> None:
        self.next_index = 0
        self.offset_seconds = 0.0
        self.started = False
        self.attempt = 0


def input_events(
    path: str,
    model: ModelConfig,
    *,
    hop_seconds: float | None,
    options: SourceOptions,
    implementation: str,
    read_timeout_seconds: float | None,
    stop: threading.Event | None = None,
    decode: str = "auto",
) -> Iterator[object]:
    """FileStarted, SourceEvents, WindowItems and a final FileDone; a failure raises its MediaError.

    `decode` picks the video decoder ("auto", "cpu", "nvdec", "v4l2"; `hw_decode`)."""
    stop = stop or threading.Event()
    counts, progress = DecodeCounts(), _Progress()
    hop = model.frontend.window_seconds if hop_seconds is None else hop_seconds
    while True:
        error, live = None, None
        try:
            for event in iter_input_features(
                path, model, hop_seconds=hop_seconds, options=options, implementation=implementation,
                read_timeout_seconds=read_timeout_seconds, counts=counts, first_index=progress.next_index,
                offset_seconds=progress.offset_seconds, stop=stop, decode=decode,
            ):
                if isinstance(event, InputOpened):
                    live = event.live
                    yield from _opened(event, progress)
                elif isinstance(event, WindowFeatures):
                    progress.next_index, progress.attempt = event.window.index + 1, 0
                    yield WindowItem(path, event.window, event.feeds, event.ready_monotonic, event.gap_seconds)
                if stop.is_set():
                    break
        except MediaError as exc:
            error = exc.with_traceback(None)
        finished = stop.is_set() or _limit_reached(options, progress, hop, model)
        if options.reconnect and can_reconnect(path) and not finished:
            progress.attempt += 1
            delay = backoff_seconds(progress.attempt)
            reason = "the stream ended" if error is None else one_line(str(error))
            yield SourceEvent(path, "reconnecting", detail={"attempt": progress.attempt, "delay_seconds": delay,
                                                            "reason": reason})
            progress.offset_seconds = progress.next_index * hop
            if stop.wait(delay):
                yield FileDone(path, None, counts.undecodable_packets)
                return
            continue
        if live or (live is None and is_live_path(path, options)):
            detail = {} if error is None else {"error": str(error)}
            yield SourceEvent(path, "ended" if error is None else "lost", detail=detail, exception=error)
        if error is not None:
            raise error
        yield FileDone(path, None, counts.undecodable_packets)
        return


def _opened(event: InputOpened, progress: _Progress) -> Iterator[object]:
    if not progress.started:
        progress.started = True
        yield FileStarted(event.path, event.windows)
    if event.live:
        yield SourceEvent(event.path, "connected")


def _limit_reached(options: SourceOptions, progress: _Progress, hop: float, model: ModelConfig) -> bool:
    if options.max_windows is not None and progress.next_index >= options.max_windows:
        return True
    if options.duration_seconds is not None:
        next_end = progress.next_index * hop + model.frontend.window_seconds
        return next_end > options.duration_seconds + 1e-9
    return False
