"""Slaney mel filterbank in pure numpy (DESIGN §4 step 5).

Matches ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)`` (Slaney scale, Slaney
area normalisation, 0 Hz to sr/2) without depending on librosa at run time.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mvrt.errors import UsageError

# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(frequencies_hz: np.ndarray) -> np.ndarray:
    """Slaney mel value of each frequency (float64)."""
    hz = np.asarray(frequencies_hz, dtype=np.float64)
    mels = hz / _F_SP
    log_part = hz >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel` (float64)."""
    mel = np.asarray(mels, dtype=np.float64)
    hz = _F_SP * mel
    log_part = mel >= _MIN_LOG_MEL
    return np.where(log_part, _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL)), hz)


def mel_filterbank(sample_rate: int, n_fft: int = 2048, n_mels: int = 128) -> np.ndarray:
    """Mel weights of shape (n_mels, 1 + n_fft // 2), float32, read-only, cached per arguments."""
    return _mel_filterbank(
        _positive_int("sample_rate", sample_rate), _positive_int("n_fft", n_fft), _positive_int("n_mels", n_mels)
    )


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and value > 0:
        return int(value)
    raise UsageError(f"mel filterbank: {name} must be a positive integer, got {value!r}")


@functools.lru_cache(maxsize=32)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_bins,)
    band_hz = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2.0), n_mels + 2))  # (n_mels + 2,)
    band_width_hz = np.diff(band_hz)
    ramps = band_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, n_bins)
    lower = -ramps[:-2] / band_width_hz[:-1, None]
    upper = ramps[2:] / band_width_hz[1:, None]
    # Round like librosa: triangles stored as float32, then scaled in float64 and rounded again.
    triangles = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    area_norm = 2.0 / (band_hz[2:] - band_hz[:-2])
    weights = (triangles * area_norm[:, None]).astype(np.float32)
    weights.flags.writeable = False
    return weights
