"""The benchmark's generated media: a seeded H.264 (B-frames) + AAC music video, cached by spec."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 0


@dataclass(frozen=True)
class VideoSpec:
    """The benchmark video: H.264 with B-frames + stereo AAC, 16:9."""

    seconds: float
    height: int
    fps: int
    preset: str = "veryfast"
    crf: int = 23
    bframes: int = 3
    gop: int = 250
    audio_rate: int = 44100
    audio_channels: int = 2

    @property
    def width(self) -> int:
        return int(round(self.height * 16 / 9 / 2)) * 2

    def file_name(self) -> str:
        return (f"clip_{self.seconds:g}s_{self.width}x{self.height}_{self.fps}fps_{self.preset}_crf{self.crf}"
                f"_bf{self.bframes}_g{self.gop}_aac{self.audio_rate}.mp4")


def check_height(parser, height: int) -> None:
    """The generated video's height: even (H.264 4:2:0) and at least 16; else a usage error."""
    if height < 16 or height % 2:
        parser.error(f"--height must be an even number >= 16, got {height}")


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent in each stage of one run over the benchmark video."""

    decode_seconds: float
    audio_decode_seconds: float
    video_decode_seconds: float
    frontend_seconds: float
    engine_seconds: float
    end_to_end_seconds: float


def ensure_video(cache_dir: Path, spec: VideoSpec) -> tuple[Path, float]:
    """The cached video for `spec`, generated first if missing; (path, generation seconds or 0)."""
    path = cache_dir / spec.file_name()
    if path.exists():
        return path, 0.0
    cache_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    partial = path.with_suffix(".partial.mp4")
    write_video(partial, spec)
    partial.replace(path)
    return path, time.perf_counter() - start


def write_video(path: Path, spec: VideoSpec) -> None:
    """Panning textures with a scene cut every 8 s and a bouncing block; chords, beat and hats."""
    import av

    rng = np.random.default_rng(SEED)
    w, h, margin = spec.width, spec.height, max(16, spec.height // 6) // 2 * 2
    scenes = [_texture(rng, h + 2 * margin, w + 2 * margin) for _ in range(2)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=spec.fps, options={
            "preset": spec.preset, "crf": str(spec.crf), "bf": str(spec.bframes), "g": str(spec.gop)})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=spec.audio_rate, layout="stereo" if spec.audio_channels == 2 else "mono")
        audio_pos, total_samples, chunk = 0, int(round(spec.seconds * spec.audio_rate)), 1024
        for i in range(int(round(spec.seconds * spec.fps))):
            t = i / spec.fps
            frame = av.VideoFrame.from_ndarray(_frame_yuv(scenes[int(t // 8) % 2], t, w, h, margin), format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
            while audio_pos < min(total_samples, (t + 1 / spec.fps) * spec.audio_rate):
                n = min(chunk, total_samples - audio_pos)
                samples = _music(np.arange(audio_pos, audio_pos + n), spec.audio_rate, spec.audio_channels)
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout=aus.layout.name)
                af.sample_rate, af.pts = spec.audio_rate, audio_pos
                out.mux(aus.encode(af))
                audio_pos += n
        out.mux(vs.encode(None))
        out.mux(aus.encode(None))


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(3, H, W) uint8 Y/U/V canvases: smooth blobs plus fine noise."""
    coarse = rng.integers(30, 225, (3, height // 32 + 2, width // 32 + 2)).astype(np.float32)
    smooth = np.kron(coarse, np.ones((32, 32), np.float32))[:, :height, :width]  # (3, H, W)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = 40 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    canvas = 0.6 * smooth + 0.4 * (128 + waves) + rng.normal(0, 6, (3, height, width))
    canvas[1:] = 128 + 0.4 * (canvas[1:] - 128)  # moderate chroma: colours stay inside the RGB gamut
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _frame_yuv(canvas: np.ndarray, t: float, w: int, h: int, margin: int) -> np.ndarray:
    """(H * 3 / 2, W) yuv420p: the canvas panned with time, plus a bright moving block."""
    dy = int(margin * (1 + np.sin(2 * np.pi * t / 5.0)))
    dx = int(margin * (1 + np.cos(2 * np.pi * t / 7.0)))
    y = canvas[0, dy:dy + h, dx:dx + w].copy()
    size = h // 6
    by = int((h - size) * abs(np.sin(2 * np.pi * t / 3.0)))
    bx = int((w - size) * abs(np.sin(2 * np.pi * t / 4.3)))
    u = canvas[1, dy:dy + h:2, dx:dx + w:2].copy()
    v = canvas[2, dy:dy + h:2, dx:dx + w:2].copy()
    y[by:by + size, bx:bx + size] = 235  # white block: neutral chroma
    u[by // 2:(by + size) // 2, bx // 2:(bx + size) // 2] = 128
    v[by // 2:(by + size) // 2, bx // 2:(bx + size) // 2] = 128
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)  # planes stacked: (H * 3 / 2, W)


def _music(n: np.ndarray, rate: int, channels: int) -> np.ndarray:
    """(channels, len(n)) float32 at 120 bpm: a 4-chord progression, kick and hi-hats."""
    t = n / rate
    chords = np.array([[220.0, 277.18, 329.63], [196.0, 246.94, 293.66], [174.61, 220.0, 261.63], [164.81, 207.65, 246.94]])
    notes = chords[(t // 2).astype(np.int64) % 4]  # (n, 3)
    beat = t % 0.5
    tone = (np.sin(2 * np.pi * notes * t[:, None]).sum(axis=1) / 3) * (0.3 + 0.7 * np.exp(-4 * beat))
    kick = np.sin(2 * np.pi * 55 * t * (1 + np.exp(-30 * beat))) * np.exp(-12 * beat)
    noise = np.random.default_rng(int(n[0]) if n.size else 0).uniform(-1, 1, n.size)
    hats = noise * np.exp(-60 * ((t + 0.25) % 0.5))
    left = 0.25 * tone + 0.35 * kick + 0.08 * hats
    right = 0.25 * tone + 0.30 * kick + 0.12 * hats
    return np.stack([left, right][:channels] if channels == 2 else [(left + right) / 2]).astype(np.float32)

