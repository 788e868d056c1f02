"""The hand-written radix-2 real FFT of mvrt._native against numpy.fft, and the kernel's own
argument checks (the Python wrapper validates first; these guard direct callers)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mvrt.runtime.spectrogram import native_available
from mvrt.runtime.melbank import mel_filterbank

if not native_available() and os.environ.get("MVRT_REQUIRE_NATIVE") != "1":
    pytest.skip(
        "mvrt._native is not built (MVRT_REQUIRE_NATIVE=1 turns this skip into a failure)", allow_module_level=True
    )

from mvrt import _native  # noqa: E402

FFT_RTOL = 1e-13  # max error relative to the largest bin; double precision gives ~1e-15


@pytest.mark.parametrize("n", [2**k for k in range(1, 17)])
def test_rfft_matches_numpy(n):
    rng = np.random.default_rng(n)
    for x in (rng.standard_normal(n), np.sin(2 * np.pi * 3.3 * np.arange(n) / n) + 0.5):
        ours, ref = _native.rfft(x), np.fft.rfft(x)
        assert ours.dtype == np.complex128 and ours.shape == (n // 2 + 1,)
        assert np.abs(ours - ref).max() <= FFT_RTOL * np.abs(ref).max()
        assert ours[0].imag == 0.0 and ours[-1].imag == 0.0  # DC and Nyquist are real


def test_rfft_of_impulses_is_exact_twiddle():
    n = 1024
    for shift in (0, 1, 37, n - 1):
        x = np.zeros(n)
        x[shift] = 1.0
        turns = (shift * np.arange(n // 2 + 1)) % n  # reduce before exp so the reference stays exact
        expected = np.exp(-2j * np.pi * turns / n)
        assert np.abs(_native.rfft(x) - expected).max() <= 1e-14


@pytest.mark.parametrize("n", [0, 1, 3, 6, 1000, 2047])
def test_rfft_rejects_non_power_of_two(n):
    with pytest.raises(ValueError, match=f"power of two >= 2, got {n}"):
        _native.rfft(np.zeros(n))


def test_kernel_rejects_bad_arguments():
    x = np.zeros(4096, np.float32)
    bank = np.asarray(mel_filterbank(8000))
    with pytest.raises(ValueError, match="n_fft must be a power of two"):
        _native.log_mel_phase(x, bank, 1000, 512, 1)
    with pytest.raises(ValueError, match="columns, expected n_fft / 2 \\+ 1 = 513"):
        _native.log_mel_phase(x, bank, 1024, 256, 1)
    with pytest.raises(ValueError, match="hop must be >= 1"):
        _native.log_mel_phase(x, bank, 2048, 0, 1)
    with pytest.raises(ValueError, match="empty"):
        _native.log_mel_phase(np.zeros(0, np.float32), bank, 2048, 512, 1)
