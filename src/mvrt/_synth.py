"""Vectorised synthesis of one stand-in clip: class-dependent music and moving pictures.

Each class has ranges for its musical and visual traits; a clip draws its own values from
them, so classes overlap a little but stay learnable:

| class      | tempo  | harmony     | loudness         | timbre | picture                               |
|------------|--------|-------------|------------------|--------|---------------------------------------|
| Excited    | fast   | major       | loud, drums      | bright | bright warm, fast motion, beat pulses |
| Fear       | slow   | dissonant   | quiet + stingers | dark   | dark violet, slow, flicker            |
| Neutral    | medium | open fifths | medium           | medium | grey, medium motion                   |
| Relaxation | slow   | major       | soft             | mellow | green, slow pans                      |
| Sad        | slow   | minor       | quiet            | dark   | dark blue, slow drift                 |
| Tension    | fast   | dissonant   | loud, drums      | bright | red, fast motion, cuts every 0.6 s    |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHORDS = {  # semitones above the root
    "major": (0, 4, 7, 12),
    "minor": (0, 3, 7, 12),
    "dissonant": (0, 1, 6, 11),
    "fifths": (0, 7, 12, 19),
}


@dataclass(frozen=True)
class _Recipe:
    bpm: tuple[float, float]
    chord: str
    rms: tuple[float, float]  # target RMS of the mix
    bright: tuple[float, float]  # 0 mellow .. 1 rich in harmonics
    drums: float  # percussion level relative to the music
    colour: tuple[float, float, float]
    level: tuple[float, float]  # picture brightness
    speed: tuple[float, float]  # motion, frame widths per second
    cut_seconds: float | None = None  # scene cuts
    flicker: float = 0.0
    stingers: bool = False


# fmt: off
RECIPES: dict[str, _Recipe] = {
    "Excited": _Recipe(bpm=(140, 170), chord="major", rms=(0.16, 0.24), bright=(0.75, 1.0), drums=0.8,
                       colour=(1.0, 0.6, 0.2), level=(0.7, 0.9), speed=(0.5, 0.8)),
    "Fear": _Recipe(bpm=(55, 85), chord="dissonant", rms=(0.04, 0.08), bright=(0.05, 0.3), drums=0.0,
                    colour=(0.45, 0.15, 0.6), level=(0.12, 0.25), speed=(0.05, 0.1),
                    flicker=0.35, stingers=True),
    "Neutral": _Recipe(bpm=(100, 120), chord="fifths", rms=(0.08, 0.12), bright=(0.4, 0.6), drums=0.3,
                       colour=(0.5, 0.5, 0.5), level=(0.45, 0.6), speed=(0.15, 0.25)),
    "Relaxation": _Recipe(bpm=(60, 80), chord="major", rms=(0.04, 0.08), bright=(0.15, 0.35), drums=0.0,
                          colour=(0.3, 0.75, 0.4), level=(0.5, 0.65), speed=(0.03, 0.07)),
    "Sad": _Recipe(bpm=(50, 70), chord="minor", rms=(0.03, 0.06), bright=(0.05, 0.25), drums=0.0,
                   colour=(0.15, 0.25, 0.6), level=(0.15, 0.3), speed=(0.02, 0.05)),
    "Tension": _Recipe(bpm=(140, 175), chord="dissonant", rms=(0.15, 0.22), bright=(0.6, 0.9), drums=0.9,
                       colour=(0.85, 0.15, 0.1), level=(0.35, 0.55), speed=(0.4, 0.7), cut_seconds=0.6),
}
# fmt: on


def _draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _wavetable(bright: float, size: int = 2048) -> np.ndarray:
    """One period of a tone whose harmonic h has amplitude h^-p (p small = bright)."""
    power = 2.6 - 2.2 * bright
    phase = np.arange(size) / size
    harmonics = np.arange(1, 13)
    partials = harmonics[:, None] ** -power * np.sin(2 * np.pi * harmonics[:, None] * phase)  # (12, size)
    table = partials.sum(axis=0)  # (size,)
    return (table / np.abs(table).max()).astype(np.float32)


def _tone(table: np.ndarray, freq: np.ndarray | float, n: int, rate: int) -> np.ndarray:
    """Wavetable oscillator; `freq` is a constant or per-sample Hz (continuous phase)."""
    if np.ndim(freq) == 0:
        cycles = np.arange(n) * (float(freq) / rate)
    else:
        cycles = np.cumsum(np.asarray(freq, np.float64) / rate)
    index = (cycles * table.size).astype(np.int64) & (table.size - 1)  # table size is a power of 2
    return table[index]


def _beats(n: int, rate: int, bpm: float, subdivide: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample beat index and phase in [0, 1) within the beat."""
    position = np.arange(n) * (bpm * subdivide / 60.0 / rate)
    return position.astype(np.int64), position % 1.0


def synth_audio(recipe: _Recipe, rng: np.random.Generator, bpm: float, n: int, rate: int) -> np.ndarray:
    """Stereo float32 (2, n): chord pad + arpeggio on the beat + drums, scaled to an RMS."""
    table = _wavetable(_draw(rng, recipe.bright))
    root = 110.0 * 2 ** rng.uniform(0, 1)
    chord = root * 2 ** (np.array(_CHORDS[recipe.chord]) / 12)
    pad = sum(_tone(table, f * (1 + rng.normal(0, 0.002)), n, rate) for f in chord) / len(chord)
    fast = bpm > 130
    beat, phase = _beats(n, rate, bpm, 2 if fast else 1)
    notes = rng.choice(chord * 2, size=beat[-1] + 1)  # one note per (half) beat
    arpeggio = _tone(table, notes[beat], n, rate) * np.exp(-phase * (6.0 if fast else 2.5))
    music = 0.5 * pad + 0.6 * arpeggio
    since_beat = _beats(n, rate, bpm)[1] * 60.0 / bpm  # seconds since the last beat
    kick = np.sin(2 * np.pi * 60 * since_beat) * np.exp(-since_beat * 25)
    hats = rng.standard_normal(n) * np.exp(-phase * 30) * 0.3
    mix = music + recipe.drums * (kick + hats)
    if recipe.stingers:  # sudden loud dissonant hits
        for start in rng.uniform(0, n / rate, size=max(1, int(n / rate / 3))):
            s = int(start * rate)
            length = min(n - s, rate // 2)
            decay = np.exp(-np.arange(length) / (0.15 * rate))
            mix[s : s + length] += 3.0 * _tone(table, root * 2 ** (13 / 12), length, rate) * decay
    mix = mix / max(float(np.sqrt(np.mean(mix**2))), 1e-9) * _draw(rng, recipe.rms)
    pan = rng.uniform(0.35, 0.65)
    stereo = np.stack([mix * (1 - pan) * 2, mix * pan * 2])  # (2, n)
    return np.clip(stereo, -1.0, 1.0).astype(np.float32)


def _bounce(start: np.ndarray, velocity: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Positions in [0, 1] bouncing off the edges: (T, objects)."""
    travel = (start[None, :] + velocity[None, :] * t[:, None]) % 2.0
    return 1.0 - np.abs(1.0 - travel)


def synth_frames(
    recipe: _Recipe, rng: np.random.Generator, bpm: float, frame_count: int, fps: float, width: int, height: int
) -> np.ndarray:
    """uint8 (T, H, W, 3): gradient + moving stripes + bouncing blobs, class-coloured."""
    t = np.arange(frame_count) / fps
    colour = np.clip(np.array(recipe.colour) + rng.normal(0, 0.08, 3), 0, 1)
    level = _draw(rng, recipe.level)
    speed = _draw(rng, recipe.speed)
    cuts = recipe.cut_seconds
    segment = (t // cuts).astype(np.int64) if cuts else np.zeros(frame_count, np.int64)  # scene per frame
    jitter = rng.uniform(0, 1, size=(segment[-1] + 1, 4))  # per scene: stripe phase, blob offsets, tint
    y = np.linspace(0, 1, height, dtype=np.float32)[None, :, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, None, :]
    shift = (speed * 0.5 * t + jitter[segment, 0]).astype(np.float32)[:, None, None]
    stripes = 0.15 * np.sin(2 * np.pi * (x * 3 - shift))  # (T, 1, W)
    light = level * (0.75 + 0.5 * (1 - y)) + stripes  # (T, H, W)
    blobs = np.zeros((frame_count, height, width), np.float32)
    for _ in range(3):  # separable Gaussian blobs: exp(-dx^2) * exp(-dy^2)
        cx = (_bounce(rng.uniform(0, 1, 1), rng.uniform(0.5, 1.5, 1) * speed, t)[:, 0] + jitter[segment, 1]) % 1
        cy = (_bounce(rng.uniform(0, 1, 1), rng.uniform(0.5, 1.5, 1) * speed, t)[:, 0] + jitter[segment, 2]) % 1
        gx = np.exp(-((x - cx[:, None, None].astype(np.float32)) ** 2) / (2 * 0.08**2))  # (T, 1, W)
        gy = np.exp(-((y - cy[:, None, None].astype(np.float32)) ** 2) / (2 * 0.08**2))  # (T, H, 1)
        blobs += gy * gx
    light = light + 0.35 * np.minimum(blobs, 1.0) * (1 if level < 0.5 else -0.6)
    pulse = 1.0 + (0.12 if recipe.drums > 0.5 else 0.0) * np.exp(-(t * bpm / 60 % 1) * 5)  # (T,)
    if recipe.flicker:
        pulse = pulse * (1 - recipe.flicker * (rng.uniform(0, 1, frame_count) < 0.15))
    tint = 1.0 + 0.25 * (jitter[segment, 3][:, None] - 0.5) * np.array([1, -1, 0])  # (T, 3) per scene
    gain = (pulse[:, None] * colour * tint).astype(np.float32)[:, None, None, :]  # (T, 1, 1, 3)
    grain = rng.normal(0, 0.01, size=(1, height, width, 1)).astype(np.float32)  # fixed grain
    image = light[..., None] * gain + grain  # (T, H, W, 3)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def synth_clip(
    label: str, rng: np.random.Generator, *, seconds: float, width: int, height: int, fps: float, rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """(audio (2, n) float32 at `rate`, frames (T, H, W, 3) uint8) for one clip of class `label`."""
    recipe = RECIPES[label]
    bpm = _draw(rng, recipe.bpm)
    audio = synth_audio(recipe, rng, bpm, int(round(seconds * rate)), rate)
    frames = synth_frames(recipe, rng, bpm, max(1, int(round(seconds * fps))), fps, width, height)
    return audio, frames
