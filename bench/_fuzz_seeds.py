"""Seed media for the fuzz harness: short, small clips in the containers and codecs FFmpeg has here.

Generated once with `mvrt.standin.write_clip` (single-threaded encoders, so the bytes are the same on every
run with the same FFmpeg) and cached with a manifest; the manifest names the PyAV and FFmpeg versions, so a
different build regenerates them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SEEDS_VERSION = 1
MANIFEST = "manifest.json"
SIZE = (128, 72)  # width, height (a width of 96 makes the rgb24 conversion non-deterministic)
FPS = 15


@dataclass(frozen=True)
class SeedSpec:
    """How to write one seed clip; `family` picks the structural mutators (mp4, ebml, ts, other)."""

    name: str
    suffix: str
    family: str
    seconds: float
    video_codec: str
    audio_codec: str
    channels: int = 2
    sample_rate: int = 44100
    container: str | None = None
    container_options: dict[str, str] = field(default_factory=dict)
    gop: int | None = None


@dataclass(frozen=True)
class SeedClip:
    """A generated seed: its spec name (the 'container' column of the reports) and file."""

    name: str
    family: str
    path: Path
    sha256: str
    size_bytes: int

    @property
    def suffix(self) -> str:
        return self.path.suffix


SPECS = (
    SeedSpec("mp4", ".mp4", "mp4", 3.0, "libx264", "aac"),
    SeedSpec("mp4-faststart", ".mp4", "mp4", 2.5, "libx264", "aac", container_options={"movflags": "+faststart"}),
    SeedSpec("mp4-fragmented", ".mp4", "mp4", 3.0, "libx264", "aac", gop=15,
             container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
    SeedSpec("mkv", ".mkv", "ebml", 4.0, "libx264", "aac", channels=1, sample_rate=22050),
    SeedSpec("webm", ".webm", "ebml", 3.0, "libvpx-vp9", "libopus", sample_rate=48000),
    SeedSpec("mpegts", ".ts", "ts", 3.0, "libx264", "aac", container="mpegts"),
    SeedSpec("ogg", ".ogv", "other", 2.0, "libtheora", "libvorbis"),
)
# Encoder settings that make the output deterministic and small.
_VIDEO_OPTIONS = {"libx264": {"threads": "1"}, "libvpx-vp9": {"threads": "1", "row-mt": "0"}, "libtheora": {}}


def has_encoder(name: str) -> bool:
    import av

    try:
        av.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError (or ValueError) for a missing encoder
        return False
    return True


def available_specs() -> tuple[SeedSpec, ...]:
    return tuple(s for s in SPECS if has_encoder(s.video_codec) and has_encoder(s.audio_codec))


def _frames(seconds: float, seed: int) -> np.ndarray:
    """uint8 (T, H, W, 3): a moving colour gradient with a bouncing block (motion for inter coding)."""
    count = int(round(seconds * FPS))
    w, h = SIZE
    x = np.linspace(0, 1, w)[None, None, :, None]
    y = np.linspace(0, 1, h)[None, :, None, None]
    phase = np.linspace(0, 4 * np.pi, count)[:, None, None, None] + seed
    frames = 127 + 110 * np.sin(phase + 5 * x + 3 * y + np.array([0, 2, 4])[None, None, None, :])
    frames = frames.astype(np.uint8)
    for t in range(count):
        left = int((w - 16) * (0.5 + 0.5 * np.sin(0.4 * t + seed)))
        frames[t, 20:36, left : left + 16] = (250, 30, 30)
    return frames


def _audio(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """float32 (channels, n): a chord with a slow tremolo and a little noise."""
    t = np.arange(int(round(seconds * rate))) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    noise = np.random.default_rng(seed).standard_normal((channels, t.size))
    return (0.08 * tone[None, :] + 0.005 * noise).astype(np.float32)


def write_seed(spec: SeedSpec, path: Path, seed: int = 0) -> Path:
    from mvrt.standin import write_clip

    return write_clip(
        path, _audio(spec.seconds, spec.sample_rate, spec.channels, seed), spec.sample_rate,
        _frames(spec.seconds, seed), FPS, video_codec=spec.video_codec, audio_codec=spec.audio_codec,
        container=spec.container, gop=spec.gop, options=_VIDEO_OPTIONS.get(spec.video_codec),
        container_options={"fflags": "+bitexact", **spec.container_options},
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_key() -> dict:
    import av

    return {"version": SEEDS_VERSION, "pyav": av.__version__, "libavformat": list(av.library_versions["libavformat"])}


def _cached(cache_dir: Path, key: dict) -> list[SeedClip] | None:
    manifest = cache_dir / MANIFEST
    try:
        stored = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if stored.get("key") != key:
        return None
    seeds = [SeedClip(s["name"], s["family"], cache_dir / s["file"], s["sha256"], s["size_bytes"]) for s in stored["seeds"]]
    if all(s.path.is_file() and _sha256(s.path) == s.sha256 for s in seeds):
        return seeds
    return None


def seed_clips(cache_dir: str | Path) -> list[SeedClip]:
    """The seed clips under `cache_dir`, generated there first when missing or stale."""
    cache_dir = Path(cache_dir)
    key = _build_key()
    cached = _cached(cache_dir, key)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    seeds = []
    for i, spec in enumerate(available_specs()):
        path = write_seed(spec, cache_dir / f"seed-{spec.name}{spec.suffix}", seed=i)
        seeds.append(SeedClip(spec.name, spec.family, path, _sha256(path), path.stat().st_size))
    record = [{**asdict(s), "file": s.path.name, "path": None} for s in seeds]
    for entry in record:
        del entry["path"]
    (cache_dir / MANIFEST).write_text(json.dumps({"key": key, "seeds": record}, indent=2) + "\n")
    return seeds
