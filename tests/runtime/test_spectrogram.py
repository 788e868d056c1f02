"""The audio front-end (log-mel power + mel phase) against librosa, for both implementations.

Tolerances (DESIGN §4): with P = M @ |S|^2 and C = M @ S from librosa in float64,
- power: |P_ours / P - 1| <= 1e-4 on bins with P >= 1e-8 * max(P) (within 80 dB of the peak);
- phase: |angle(exp(i (phase_ours - angle(C))))| <= 1e-3 rad on bins with
  |C|^2 >= 1e-8 * max(P) (the same 80 dB range; below it the phase is ill-conditioned).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from mvrt.errors import BackendError, UsageError
from mvrt.runtime import spectrogram
from mvrt.runtime.spectrogram import log_mel_phase, log_mel_phase_reference, native_available
from mvrt.runtime.melbank import mel_filterbank

librosa = pytest.importorskip("librosa")

RANGE = 1e-8  # 80 dB
POWER_RTOL = 1e-4
PHASE_ATOL = 1e-3
RATES = (8000, 22050, 32000)

needs_native = pytest.mark.skipif(
    not native_available() and os.environ.get("MVRT_REQUIRE_NATIVE") != "1",
    reason="mvrt._native is not built (MVRT_REQUIRE_NATIVE=1 turns this skip into a failure)",
)
IMPLEMENTATIONS = [pytest.param("native", marks=needs_native), "numpy"]


def music_like(sample_rate: int, seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Two alternating triads with harmonics, a tremolo and a little noise, in float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chord_a, chord_b = (220.0, 277.18, 329.63), (196.0, 246.94, 293.66)
    use_a = (t % 1.0) < 0.5
    x = np.zeros_like(t)
    for fa, fb in zip(chord_a, chord_b):
        f = np.where(use_a, fa, fb)
        for harmonic, gain in ((1, 0.2), (2, 0.08), (3, 0.04)):
            x += gain * np.sin(2 * np.pi * harmonic * f * t)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t)
    x += 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def clipped_sine(sample_rate: int, length: int = 20011) -> np.ndarray:
    """A 440 Hz sine scaled to 1.5 and hard-clipped to [-1, 1]."""
    t = np.arange(length) / sample_rate
    return np.clip(1.5 * np.sin(2 * np.pi * 440.0 * t), -1.0, 1.0).astype(np.float32)


def noise(length: int, seed: int = 1) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(length)).astype(np.float32)


def librosa_reference(x: np.ndarray, sample_rate: int, n_fft=2048, hop_length=512, n_mels=128):
    """P = M @ |S|^2 and C = M @ S in float64, S from librosa.stft of the same float32 samples."""
    stft = librosa.stft(x.astype(np.float64), n_fft=n_fft, hop_length=hop_length, center=True, pad_mode="constant")
    bank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float64)
    return bank @ np.abs(stft) ** 2, bank @ stft


def assert_matches_reference(out: np.ndarray, power: np.ndarray, mel_complex: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.shape == (2, *power.shape)
    assert np.isfinite(out).all() and out[0].min() >= -100.0
    assert np.abs(out[1]).max() <= np.pi + 1e-6
    peak = power.max()
    in_range = power >= RANGE * peak
    rel = np.abs(10.0 ** (out[0].astype(np.float64) / 10.0) / np.where(in_range, power, 1.0) - 1.0)
    assert rel[in_range].max() <= POWER_RTOL
    phase_ok = np.abs(mel_complex) ** 2 >= RANGE * peak
    assert phase_ok.mean() >= 0.01  # the phase check is not vacuous
    err = np.abs(np.angle(np.exp(1j * (out[1].astype(np.float64) - np.angle(mel_complex)))))
    assert err[phase_ok].max() <= PHASE_ATOL


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("signal", ["music", "clipped", "noise_odd"])
def test_matches_librosa(implementation, sample_rate, signal):
    x = {
        "music": lambda: music_like(sample_rate),
        "clipped": lambda: clipped_sine(sample_rate),
        "noise_odd": lambda: noise(12345),
    }[signal]()
    out = log_mel_phase(x, sample_rate, implementation=implementation)
    assert out.shape == (2, 128, 1 + x.size // 512)
    assert_matches_reference(out, *librosa_reference(x, sample_rate))


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("length", [1, 777, 1023, 1024, 2049])
def test_short_inputs_match_librosa(implementation, length):
    # Shorter than n_fft: librosa zero-pads by n_fft // 2 on both sides and still frames it.
    x = noise(length, seed=length)
    out = log_mel_phase(x, 22050, implementation=implementation)
    assert out.shape == (2, 128, 1 + length // 512)
    assert_matches_reference(out, *librosa_reference(x, 22050))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_other_parameters_match_librosa(implementation):
    x = music_like(16000, seconds=1.0)
    out = log_mel_phase(x, 16000, n_fft=512, hop_length=160, n_mels=40, implementation=implementation)
    assert out.shape == (2, 40, 1 + x.size // 160)
    assert_matches_reference(out, *librosa_reference(x, 16000, n_fft=512, hop_length=160, n_mels=40))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("sample_rate", RATES)
def test_silence_is_floor_with_zero_phase(implementation, sample_rate):
    x = np.zeros(sample_rate, dtype=np.float32)
    power, mel_complex = librosa_reference(x, sample_rate)
    assert power.max() == 0.0 and np.abs(mel_complex).max() == 0.0  # librosa agrees it is silent
    out = log_mel_phase(x, sample_rate, implementation=implementation)
    assert out.shape == (2, 128, 1 + sample_rate // 512)
    np.testing.assert_array_equal(out[0], np.full_like(out[0], -100.0))
    np.testing.assert_array_equal(out[1], np.zeros_like(out[1]))  # not +-pi from signed zeros


@needs_native
@pytest.mark.parametrize("sample_rate", RATES)
def test_native_matches_numpy_reference(sample_rate):
    x = np.concatenate([music_like(sample_rate, seconds=2.0), clipped_sine(sample_rate, 9999)])
    native = log_mel_phase(x, sample_rate, implementation="native")
    reference = log_mel_phase_reference(x, sample_rate)
    power = 10.0 ** (reference[0].astype(np.float64) / 10.0)
    in_range = power >= RANGE * power.max()
    np.testing.assert_allclose(10.0 ** (native[0][in_range] / 10.0), power[in_range], rtol=1e-5)
    phase_err = np.abs(np.angle(np.exp(1j * (native[1].astype(np.float64) - reference[1]))))
    assert phase_err[in_range].max() <= 1e-4


@needs_native
def test_native_threads_give_identical_results():
    x = music_like(32000, seconds=2.0)
    one = log_mel_phase(x, 32000, implementation="native", threads=1)
    for threads in (2, 0, None, 500):  # 500 > frames: capped by the frame count
        np.testing.assert_array_equal(log_mel_phase(x, 32000, implementation="native", threads=threads), one)


def test_accepts_float64_and_strided_input():
    x = music_like(8000, seconds=1.0)
    wide = np.repeat(x.astype(np.float64), 2)[::2]  # non-contiguous float64 view of the same samples
    np.testing.assert_array_equal(log_mel_phase(wide, 8000), log_mel_phase(x, 8000))


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        (np.zeros((2, 4000), np.float32), "1-D mono"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN or infinity .*index 1"),
        (np.array([0.0, 0.0, np.inf]), "NaN or infinity .*index 2"),
        (np.zeros(4000, np.int16), "floating point"),
    ],
)
def test_bad_samples_raise(samples, match):
    with pytest.raises(UsageError, match=match):
        log_mel_phase(samples, 22050)
    with pytest.raises(UsageError, match=match):
        log_mel_phase_reference(samples, 22050)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_fft": 1000}, "n_fft must be a power of two"),
        ({"hop_length": 0}, "hop_length must be a positive integer"),
        ({"n_mels": 0}, "n_mels must be a positive integer"),
        ({"implementation": "cuda"}, "implementation must be one of auto, native, numpy"),
        ({"threads": -1}, "threads must be None or an integer >= 0"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(UsageError, match=match):
        log_mel_phase(np.zeros(4000, np.float32), 22050, **kwargs)


def test_bad_sample_rate_raises():
    with pytest.raises(UsageError, match="sample_rate must be a positive integer"):
        log_mel_phase(np.zeros(4000, np.float32), 0)


def test_auto_falls_back_to_numpy_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(spectrogram, "_native_module", lambda: None)
    monkeypatch.setattr(spectrogram, "_fallback_warned", False)
    x = music_like(8000, seconds=1.0)
    with caplog.at_level(logging.WARNING, logger=spectrogram.__name__):
        first = log_mel_phase(x, 8000)
        log_mel_phase(x, 8000)
    messages = [r.getMessage() for r in caplog.records if r.name == spectrogram.__name__]
    assert len(messages) == 1 and "numpy reference" in messages[0]
    np.testing.assert_array_equal(first, log_mel_phase_reference(x, 8000))
    with pytest.raises(BackendError, match="native kernel mvrt._native is not built"):
        log_mel_phase(x, 8000, implementation="native")


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels"), [(8000, 2048, 128), (22050, 2048, 128), (32000, 2048, 128), (16000, 512, 40)]
)
def test_mel_filterbank_matches_librosa(sample_rate, n_fft, n_mels):
    ours = mel_filterbank(sample_rate, n_fft, n_mels)
    theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (n_mels, 1 + n_fft // 2)
    assert np.abs(ours.astype(np.float64) - theirs).max() <= 1e-9


def test_mel_filterbank_is_cached_and_read_only():
    bank = mel_filterbank(22050)
    assert mel_filterbank(22050, 2048, 128) is bank
    with pytest.raises(ValueError, match="read-only"):
        bank[0, 0] = 1.0
    with pytest.raises(UsageError, match="n_mels must be a positive integer"):
        mel_filterbank(22050, 2048, -3)
