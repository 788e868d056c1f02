"""The audio front-end: log-mel power and mel phase of a centred STFT (DESIGN §4, steps 4-6).

`log_mel_phase` is the one function training, calibration, export checks and inference call.
For a mono float32 signal x at rate sr, with S the STFT (n_fft, hop, periodic Hann, centred
with zero padding, as ``librosa.stft(x, center=True, pad_mode="constant")``) and M the Slaney
mel bank (`mel_filterbank`), it returns float32 of shape (2, n_mels, 1 + len(x) // hop):

- channel 0: ``10 * log10(max(M @ |S|**2, 1e-10))`` (dB, floor -100 dB);
- channel 1: ``angle(M @ S)`` in radians, in [-pi, pi]; exactly 0 where M @ S is 0.

Two implementations compute it: the C++ kernel `mvrt._native` (double-precision FFT written
for mvrt, threaded over frames) and `log_mel_phase_reference` in numpy (float64).
"""

from __future__ import annotations

import functools
import logging
import numbers

import numpy as np

from mvrt.errors import BackendError, UsageError
from mvrt.runtime.melbank import mel_filterbank

__all__ = ["IMPLEMENTATIONS", "log_mel_phase", "log_mel_phase_reference", "native_available"]

IMPLEMENTATIONS: tuple[str, ...] = ("auto", "native", "numpy")
POWER_FLOOR = 1e-10

_log = logging.getLogger(__name__)
_fallback_warned = False


def native_available() -> bool:
    """True when the compiled kernel `mvrt._native` can be imported."""
    return _native_module() is not None


def log_mel_phase(
    samples: np.ndarray,
    sample_rate: int,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    implementation: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Log-mel power (dB) and mel phase, float32 (2, n_mels, 1 + len(samples) // hop_length).

    `implementation`: "native" (C++ kernel), "numpy" (the reference) or "auto" (native when
    built, else numpy with a one-time warning). `threads`: native worker threads, None or 0
    for every core. Raises UsageError for bad input, BackendError when "native" is not built.
    """
    x = _validated_samples(samples)
    _check_params(sample_rate, n_fft, hop_length, n_mels, implementation, threads)
    native = _pick_native(implementation)
    melbank = mel_filterbank(sample_rate, n_fft, n_mels)
    if native is None:
        return _reference(x, melbank, n_fft, hop_length)
    return native.log_mel_phase(x, melbank, n_fft, hop_length, threads or 0)


def log_mel_phase_reference(
    samples: np.ndarray, sample_rate: int, *, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128
) -> np.ndarray:
    """The numpy reference of `log_mel_phase` (float64 `np.fft.rfft` inside, float32 out)."""
    x = _validated_samples(samples)
    _check_params(sample_rate, n_fft, hop_length, n_mels, "numpy", None)
    return _reference(x, mel_filterbank(sample_rate, n_fft, n_mels), n_fft, hop_length)


def _reference(x: np.ndarray, melbank: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    frames = 1 + x.size // hop_length
    padded = np.pad(x.astype(np.float64), n_fft // 2)  # centred frames, zero padding
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length][:frames]  # (frames, n_fft)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    spectrum = np.fft.rfft(windows * hann, axis=-1)  # (frames, n_bins)
    # One matmul for power, real and imaginary parts: (n_mels, n_bins) @ (n_bins, 3 * frames).
    stacked = np.concatenate([np.abs(spectrum) ** 2, spectrum.real, spectrum.imag], axis=0).T
    power, real, imag = np.split(melbank.astype(np.float64) @ stacked, 3, axis=1)  # 3 x (n_mels, frames)
    out = np.empty((2, melbank.shape[0], frames), dtype=np.float32)
    out[0] = 10.0 * np.log10(np.maximum(power, POWER_FLOOR))
    out[1] = np.arctan2(imag + 0.0, real + 0.0)  # "+ 0.0": -0 -> +0, so silent bands get phase 0
    return out


def _validated_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise UsageError(f"audio front-end: samples must be a 1-D mono signal, got shape {x.shape}; down-mix first")
    if x.size == 0:
        raise UsageError("audio front-end: samples are empty; the audio stream decoded to no samples")
    if not np.issubdtype(x.dtype, np.floating):
        raise UsageError(f"audio front-end: samples must be floating point in [-1, 1], got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise UsageError(f"audio front-end: samples contain NaN or infinity (first at index {bad})")
    return x


def _check_params(sample_rate, n_fft, hop_length, n_mels, implementation, threads) -> None:
    for name, value in (("sample_rate", sample_rate), ("hop_length", hop_length), ("n_mels", n_mels)):
        if not _is_int(value) or value < 1:
            raise UsageError(f"audio front-end: {name} must be a positive integer, got {value!r}")
    if not _is_int(n_fft) or n_fft < 2 or n_fft & (n_fft - 1):
        raise UsageError(f"audio front-end: n_fft must be a power of two >= 2, got {n_fft!r}")
    if implementation not in IMPLEMENTATIONS:
        choices = ", ".join(IMPLEMENTATIONS)
        raise UsageError(f"audio front-end: implementation must be one of {choices}, got {implementation!r}")
    if threads is not None and (not _is_int(threads) or threads < 0):
        raise UsageError(f"audio front-end: threads must be None or an integer >= 0, got {threads!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pick_native(implementation: str):
    """The native module to use, or None for the numpy reference."""
    global _fallback_warned
    if implementation == "numpy":
        return None
    native = _native_module()
    if native is None and implementation == "native":
        raise BackendError(
            "audio front-end: the native kernel mvrt._native is not built; reinstall mvrt "
            "(`pip install .`) or build it in place (README, Development), or use implementation='numpy'"
        )
    if native is None and not _fallback_warned:
        _fallback_warned = True
        _log.warning("mvrt._native is not built; the audio front-end uses the slower numpy reference")
    return native


@functools.lru_cache(maxsize=1)
def _native_module():
    try:
        from mvrt import _native
    except ImportError:
        return None
    return _native
