"""Stand-in MVED data: synthetic, class-dependent music-video clips (DESIGN §8).

The real MVED set is not redistributable, so training, calibration and tests run on clips
generated here: six class folders whose sound (tempo, mode, loudness, timbre) and picture
(brightness, colour, motion, cuts) depend on the class, with per-clip random variation,
deterministic per seed. `write_clip` is the small PyAV muxer used for them and for tests.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mvrt.config import CLASSES
from mvrt.errors import MediaError, UsageError

LAYOUTS = ("flat", "authors")
_CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Fast, quiet settings per encoder; callers' options override them.
_VIDEO_DEFAULTS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "veryfast"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=error"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"preset": "12"},
    "libaom-av1": {"cpu-used": "8", "usage": "realtime"},
}
_AUDIO_DEFAULTS: dict[str, dict[str, str]] = {"aac": {"aac_coder": "fast"}}
_AUDIO_LEAD_SECONDS = 0.25  # audio is encoded this far ahead of video (interleaving)


@dataclass(frozen=True)
class StandinClip:
    """One generated clip: its split, class and file(s) (the same file twice in `flat`)."""

    split: str
    label: str
    audio_path: Path
    video_path: Path


@dataclass(frozen=True)
class StandinSummary:
    """What `generate_standin` wrote."""

    root: Path
    layout: str
    seed: int
    seconds: float
    counts: tuple[tuple[str, str, int], ...]  # (split, class, clips)
    elapsed_seconds: float
    clips: tuple[StandinClip, ...] = field(repr=False)

    @property
    def total_clips(self) -> int:
        return sum(n for _, _, n in self.counts)


def _audio_rate(codec, sample_rate: int) -> int:
    rates = codec.audio_rates
    if not rates or sample_rate in rates:
        return sample_rate
    return 48000 if 48000 in rates else max(rates)


def _add_audio(out, audio: np.ndarray, sample_rate: int, codec_name: str):
    import av

    channels = audio.shape[0]
    if channels not in _CHANNEL_LAYOUTS:
        raise UsageError(f"audio must have 1 to 8 channels, got {channels}")
    rate = _audio_rate(av.Codec(codec_name, "w"), sample_rate)
    stream = out.add_stream(codec_name, rate=rate, options=_AUDIO_DEFAULTS.get(codec_name, {}))
    stream.layout = _CHANNEL_LAYOUTS[channels]
    return stream


def _add_video(out, frames: np.ndarray, fps: float, codec_name: str, bframes: bool, gop, time_base, options):
    stream = out.add_stream(codec_name, rate=Fraction(fps).limit_denominator(1001))
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    if gop is not None:
        stream.codec_context.gop_size = int(gop)
    stream.codec_context.max_b_frames = 3 if bframes else 0
    if time_base is not None:
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
    stream.options = {**_VIDEO_DEFAULTS.get(codec_name, {}), **(options or {})}
    return stream


class _AudioFeeder:
    """Encodes (channels, n) float32 audio in chunks, on demand up to a given time."""

    def __init__(self, out, stream, audio: np.ndarray, sample_rate: int):
        self.out, self.stream, self.rate = out, stream, sample_rate
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.layout = _CHANNEL_LAYOUTS[audio.shape[0]]
        self.done = 0

    def until(self, seconds: float) -> None:
        import av

        stop = (
            self.audio.shape[1]
            if seconds == np.inf
            else min(self.audio.shape[1], int(round(seconds * self.rate)))
        )
        while self.done < stop:
            chunk = np.ascontiguousarray(self.audio[:, self.done : min(stop, self.done + 8192)])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate, frame.pts = self.rate, self.done
            frame.time_base = Fraction(1, self.rate)
            self.out.mux(self.stream.encode(frame))
            self.done += chunk.shape[1]

    def finish(self) -> None:
        self.until(np.inf)
        self.out.mux(self.stream.encode(None))


def write_clip(
    path: str | os.PathLike,
    audio: np.ndarray | None,
    sample_rate: int,
    frames: np.ndarray | None,
    fps: float,
    *,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    container: str | None = None,
    bframes: bool = True,
    gop: int | None = None,
    frame_times: Sequence[float] | None = None,
    time_base: Fraction | None = None,
    options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
) -> Path:
    """Mux `audio` (channels, n) float32 and `frames` (T, H, W, 3) uint8 RGB into `path`.

    Either stream may be None (audio-only or video-only file). `frame_times` (seconds) give
    frames explicit presentation times for variable frame rate, in `time_base` (default
    1/1000 s). `container` names the FFmpeg muxer (default: from the extension).
    """
    import av

    _check_clip(audio, frames, frame_times)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frame_times is not None and time_base is None:
        time_base = Fraction(1, 1000)
    try:
        with av.open(str(path), mode="w", format=container, options=dict(container_options or {})) as out:
            vstream = feeder = None
            if frames is not None:
                vstream = _add_video(out, frames, fps, video_codec, bframes, gop, time_base, options)
            if audio is not None:
                feeder = _AudioFeeder(out, _add_audio(out, audio, sample_rate, audio_codec), audio, sample_rate)
            if vstream is not None:
                _encode_video(out, vstream, frames, fps, frame_times, feeder)
            if feeder is not None:
                feeder.finish()
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: cannot write clip ({getattr(exc, 'strerror', None) or exc})") from None
    return path


def _check_clip(audio: np.ndarray | None, frames: np.ndarray | None, frame_times) -> None:
    if audio is None and frames is None:
        raise UsageError("write_clip needs audio, frames, or both")
    if frames is not None and (frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8):
        raise UsageError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if audio is not None and audio.ndim != 2:
        raise UsageError(f"audio must be (channels, samples), got shape {audio.shape}")
    if frame_times is not None and frames is not None and len(frame_times) != len(frames):
        raise UsageError(f"{len(frame_times)} frame times for {len(frames)} frames")


def _encode_video(
    out, stream, frames: np.ndarray, fps: float, frame_times, feeder: _AudioFeeder | None
) -> None:
    import av

    base = stream.codec_context.time_base or 1 / Fraction(fps).limit_denominator(1001)
    for i, image in enumerate(frames):
        seconds = float(frame_times[i]) if frame_times is not None else i / float(fps)
        if feeder is not None:
            feeder.until(seconds + _AUDIO_LEAD_SECONDS)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = int(round(seconds / base))
        frame.time_base = base
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _clip_counts(clips_per_class: int | Mapping[str, int], splits: Sequence[str]) -> dict[str, int]:
    if isinstance(clips_per_class, Mapping):
        unknown = sorted(set(clips_per_class) - set(splits))
        if unknown:
            raise UsageError(f"clips_per_class names unknown split(s) {unknown}; splits are {list(splits)}")
        counts = {s: int(clips_per_class.get(s, 0)) for s in splits}
    else:
        counts = {s: int(clips_per_class) for s in splits}
    if any(n < 0 for n in counts.values()):
        raise UsageError(f"clips_per_class must not be negative, got {counts}")
    return counts


def clip_seed(seed: int, split: str, label_index: int, clip_index: int) -> np.random.SeedSequence:
    """Seed of one clip: stable across runs, platforms and the order of generation."""
    return np.random.SeedSequence([seed, zlib.crc32(split.encode()), label_index, clip_index])


def generate_standin(
    root: str | os.PathLike,
    *,
    clips_per_class: int | Mapping[str, int],
    seconds: float = 8.0,
    width: int = 160,
    height: int = 120,
    fps: int = 15,
    sample_rate: int = 44100,
    seed: int = 0,
    splits: Sequence[str] = ("train", "validation", "test"),
    layout: str = "flat",
    progress: bool = True,
) -> StandinSummary:
    """Write MVED-shaped stand-in clips under `root` (H.264 + AAC).

    layout="flat": `<root>/<split>/<Class>/<clip>.mp4` with both streams.
    layout="authors": `<root>/<split>/<Class>/audio/<clip>.flac` (16-bit FLAC, written with soundfile)
    + `.../video/<clip>.mp4` (H.264 only).
    """
    from tqdm import tqdm

    from mvrt._synth import synth_clip

    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not seconds > 0 or width < 16 or height < 16 or fps <= 0:
        raise UsageError(f"bad clip shape: {seconds} s, {width}x{height}, {fps} fps")
    counts = _clip_counts(clips_per_class, splits)
    root = Path(root)
    jobs = [(s, ci, i) for s in splits for ci in range(len(CLASSES)) for i in range(counts[s])]
    started = time.perf_counter()
    clips = []
    for split, ci, i in tqdm(jobs, desc="stand-in clips", unit="clip", disable=not progress, file=sys.stderr):
        label = CLASSES[ci]
        rng = np.random.default_rng(clip_seed(seed, split, ci, i))
        shape = dict(seconds=seconds, width=width, height=height, fps=fps, rate=sample_rate)
        audio, frames = synth_clip(label, rng, **shape)
        folder, stem = root / split / label, f"{label.lower()}_{i:04d}"
        audio_path, video_path = _write_standin_clip(folder, stem, audio, frames, fps, sample_rate, layout)
        clips.append(StandinClip(split, label, audio_path, video_path))
    table = tuple((s, c, counts[s]) for s in splits for c in CLASSES)
    _write_marker(root, dict(generator="mvrt.standin", seed=seed, layout=layout, seconds=seconds, width=width,
                             height=height, fps=fps, sample_rate=sample_rate, counts=counts))
    elapsed = time.perf_counter() - started
    return StandinSummary(root, layout, seed, float(seconds), table, elapsed, tuple(clips))


def write_labelled_clip(
    path: str | os.PathLike,
    label: str,
    *,
    seconds: float,
    width: int = 160,
    height: int = 120,
    fps: int = 15,
    sample_rate: int = 44100,
    seed: int | np.random.SeedSequence = 0,
    options: Mapping[str, str] | None = None,
) -> Path:
    """One stand-in clip of class `label`, both streams in one file (H.264 + AAC), as `generate_standin` makes them.

    `options` are the video encoder's (`write_clip`'s).
    """
    from mvrt._synth import synth_clip

    if label not in CLASSES:
        raise UsageError(f"label must be one of {', '.join(CLASSES)}, got {label!r}", setting="label")
    audio, frames = synth_clip(label, np.random.default_rng(seed), seconds=seconds, width=width, height=height,
                               fps=fps, rate=sample_rate)
    return write_clip(path, audio, sample_rate, frames, fps, options=options)


MARKER_NAME = "mvrt-standin.json"


def _write_marker(root: Path, settings: dict) -> None:
    """`<root>/mvrt-standin.json`: says the folder is generated stand-in data, not MVED."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    note = "generated stand-in data, not MVED: tempo, mode, loudness, colour and motion depend on the class"
    (root / MARKER_NAME).write_text(json.dumps({"note": note, **settings}, indent=2) + "\n")


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write `audio` (channels, n) float32 as a .wav or .flac file (soundfile, written whole or not at all)."""
    from mvrt.files import write_audio as write_audio_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_audio_file(path, np.ascontiguousarray(np.asarray(audio, np.float32).T), sample_rate, subtype)


def _write_standin_clip(folder: Path, stem: str, audio, frames, fps, sample_rate, layout) -> tuple[Path, Path]:
    """(audio path, video path): one file with both streams, or the authors' pair."""
    if layout == "flat":
        path = write_clip(folder / f"{stem}.mp4", audio, sample_rate, frames, fps)
        return path, path
    audio_path = write_audio(folder / "audio" / f"{stem}.flac", audio, sample_rate)
    video_path = write_clip(folder / "video" / f"{stem}.mp4", None, sample_rate, frames, fps)
    return audio_path, video_path
