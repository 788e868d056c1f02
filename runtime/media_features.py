"""From a media file to per-window network inputs: decode once, front-end per window."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import MediaError, UsageError
from mvrt.runtime._threads import prefetch
from mvrt.runtime.decode import (
    AudioDecodeStats,
    VideoDecodeStats,
    iter_window_audio,
    iter_window_frames,
    probe,
)
from mvrt.runtime.features import window_features
from mvrt.runtime.windows import Window, plan_windows


@dataclass
class DecodeCounts:
    """What the decoders of one input skipped: undecodable and empty packets, both streams."""

    audio: AudioDecodeStats = field(default_factory=AudioDecodeStats)
    video: VideoDecodeStats = field(default_factory=VideoDecodeStats)

    @property
    def undecodable_packets(self) -> int:
        return self.audio.undecodable_packets + self.video.undecodable_packets


def file_windows(
    path: str | os.PathLike,
    config: ModelConfig,
    hop_seconds: float | None = None,
    *,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
) -> list[Window]:
    """Probe `path` (both streams required) and plan its windows."""
    info = probe(path, require_streams=True, read_timeout_seconds=read_timeout_seconds)
    return plan_windows(info.duration_seconds, config.frontend.window_seconds, hop_seconds)


def window_at(path: str | os.PathLike, config: ModelConfig, start_seconds: float) -> Window:
    """The single window that starts at `start_seconds` (for `mvrt features`)."""
    info = probe(path, require_streams=True)
    window_seconds = config.frontend.window_seconds
    if start_seconds < 0:
        raise UsageError(f"--start must be >= 0, got {start_seconds}")
    if info.duration_seconds > 0 and start_seconds >= info.duration_seconds:
        raise MediaError(f"{path}: --start {start_seconds:g} s lies beyond the end ({info.duration_seconds:.2f} s)")
    span = window_seconds
    if info.duration_seconds > 0:
        span = min(window_seconds, info.duration_seconds - start_seconds)
    return Window(0, float(start_seconds), window_seconds, float(span))


def iter_file_features(
    path: str | os.PathLike,
    config: ModelConfig,
    windows: list[Window],
    *,
    implementation: str = "auto",
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
    counts: DecodeCounts | None = None,
) -> Iterator[tuple[Window, dict[str, np.ndarray]]]:
    """Yield (window, inputs) for each window, decoding audio and video in one pass each.

    Audio is decoded in a background thread while video is decoded here, both bounded,
    so memory does not grow with the length of the file. `counts`, when given, is filled
    with the packets the decoders skipped.
    """
    fe = config.frontend
    counts = counts if counts is not None else DecodeCounts()
    rates = sorted(set(config.audio_inputs.values()))
    audio = prefetch(
        iter_window_audio(path, windows, rates, fe.window_seconds, read_timeout_seconds=read_timeout_seconds,
                          stats=counts.audio),
        depth=2, name="mvrt-audio",
    )
    video = iter_window_frames(path, windows, frames=fe.frames, size=fe.image_size,
                               read_timeout_seconds=read_timeout_seconds, stats=counts.video)
    try:
        for window in windows:
            try:
                samples, frames = next(audio), next(video)
            except StopIteration:
                raise MediaError(f"{path}: decoding ended before window {window.index}") from None
            yield window, window_features(samples, frames, config, implementation=implementation)
    finally:
        audio.close()
        video.close()

