"""Generate small real media files with PyAV for tests (no binaries are committed).

Frames encode their own index as a colour (16 levels per RGB channel, robust to lossy
coding), so a test can read back which source frame a decoder picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np
import pytest

from mvrt.standin import write_clip

_LEVELS = 16
_STEP = 256 // _LEVELS


def has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:  # PyAV raises UnknownCodecError (or ValueError) for missing encoders
        return False
    return True


def require_encoder(name: str) -> None:
    if not has_encoder(name):
        pytest.skip(f"the bundled FFmpeg has no {name} encoder")


def index_colour(index: int) -> tuple[int, int, int]:
    """RGB levels that encode `index` (0 <= index < 4096)."""
    digits = (index % _LEVELS, index // _LEVELS % _LEVELS, index // _LEVELS**2 % _LEVELS)
    return tuple(d * _STEP + _STEP // 2 for d in digits)


def index_frames(count: int, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 (count, H, W, 3): frame i is a solid colour encoding i."""
    colours = np.array([index_colour(i) for i in range(count)], np.uint8)  # (count, 3)
    return np.broadcast_to(colours[:, None, None, :], (count, height, width, 3)).copy()


def read_index(image: np.ndarray) -> int:
    """Inverse of `index_colour` for a decoded (possibly resized) RGB frame."""
    h, w = image.shape[:2]
    centre = image[h // 4 : h - h // 4 or None, w // 4 : w - w // 4 or None].reshape(-1, 3).mean(axis=0)
    digits = np.clip(np.round((centre - _STEP // 2) / _STEP), 0, _LEVELS - 1).astype(int)
    return int(digits[0] + digits[1] * _LEVELS + digits[2] * _LEVELS**2)


def read_indices(frames: np.ndarray) -> list[int]:
    return [read_index(f) for f in frames]


def expected_indices(frame_seconds: Sequence[float], targets: np.ndarray) -> list[int]:
    """Index of the frame displayed at each target: last with time <= t, else the first."""
    times = np.asarray(frame_seconds, np.float64)
    order = np.argsort(times, kind="stable")
    pos = np.searchsorted(times[order], targets + 1e-9, side="right") - 1
    return [int(order[max(p, 0)]) for p in pos]


def sine(seconds: float, sample_rate: int, amplitudes: Sequence[float], freq: float = 440.0) -> np.ndarray:
    """float32 (channels, n): channel c is amplitudes[c] * sin(2 pi freq t)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = np.sin(2 * np.pi * freq * t)
    return (np.asarray(amplitudes, np.float64)[:, None] * wave[None, :]).astype(np.float32)


def chirp(seconds: float, sample_rate: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Band-limited noise-like test signal (channels, n), different per channel."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = np.zeros((channels, n))
    for c in range(channels):
        for f in rng.uniform(100, min(8000, sample_rate / 2.5), size=6):
            out[c] += 0.08 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def write_indexed(
    path: Path,
    *,
    count: int,
    fps: float = 20,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
    frame_times: Sequence[float] | None = None,
    size: tuple[int, int] = (64, 64),
    **kwargs,
) -> Path:
    """A clip of `count` index-coded frames (plus optional audio) via `write_clip`."""
    frames = index_frames(count, *size)
    return write_clip(path, audio, sample_rate, frames, fps, frame_times=frame_times, **kwargs)


def cut_file(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """Copy the first `fraction` of `src`'s bytes to `dst` (a truncated download)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def packet_reorders(path: Path) -> bool:
    """True when the video stream has frames whose decode order differs from display order."""
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.pts is not None]
    return any(b < a for a, b in zip(pts, pts[1:]))


def remux_damaged(src, dst, damage: dict, container: str | None = None):
    """Copy `src`'s packets to `dst`, damaging some: {(kind, index): how} per stream kind.

    how: "garbage" (random payload), "zero" (zeroed payload), "empty" (an empty packet after it).
    """
    rng = np.random.default_rng(0)
    counts = {"audio": 0, "video": 0}
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=container) as out:
        streams = [s for s in inp.streams if s.type in counts]
        outs = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(streams):
            if not packet.size:
                continue  # the flush packets
            kind, index = packet.stream.type, packet.stream.index
            how = damage.get((kind, counts[kind]))
            counts[kind] += 1
            if how in ("garbage", "zero"):
                size = packet.size
                data = rng.integers(0, 256, size, dtype=np.uint8).tobytes() if how == "garbage" else bytes(size)
                copy = av.Packet(data)
                copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
                copy.time_base, copy.is_keyframe = packet.time_base, packet.is_keyframe
                packet = copy
            packet.stream = outs[index]
            out.mux(packet)
            if how == "empty":
                empty = av.Packet(0)
                empty.pts = empty.dts = packet.dts + 1
                empty.time_base, empty.stream = packet.time_base, outs[index]
                out.mux(empty)
    return dst


def window_batch(path, config, count: int = 2) -> dict[str, np.ndarray]:
    """The first `count` windows of `path` decoded for real (numpy front-end) and stacked under
    `config`'s tensor contract: uint8 `video` for contract 2, float32 pathways for contract 1."""
    from mvrt.runtime.decode import iter_window_audio, iter_window_frames
    from mvrt.runtime.network_inputs import window_features
    from mvrt.runtime.window_reader import file_windows

    fe = config.frontend
    windows = file_windows(str(path), config)[:count]
    audio = iter_window_audio(str(path), windows, sorted(set(config.audio_inputs.values())), fe.window_seconds)
    frames = iter_window_frames(str(path), windows, frames=fe.frames, size=fe.image_size)
    feeds = [window_features(a, f, config, implementation="numpy") for a, f in zip(audio, frames)]
    return {name: np.stack([f[name] for f in feeds]) for name in config.input_names}  # (B, ...) each
