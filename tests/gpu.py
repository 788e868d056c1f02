"""Skip-or-fail guards for GPU tests: a missing TensorRT, CUDA or NVDEC skips, unless MVRT_REQUIRE_GPU=1."""

from __future__ import annotations

import os

import pytest


def _missing(reason: str) -> None:
    if os.environ.get("MVRT_REQUIRE_GPU") == "1":
        pytest.fail(f"MVRT_REQUIRE_GPU=1 but {reason}")
    pytest.skip(reason)


def require_cuda() -> int:
    """The number of CUDA devices seen through cuda-python; skips (or fails) when there are none."""
    from mvrt.errors import BackendError
    from mvrt.runtime.engines import cuda_runtime

    try:
        count = cuda_runtime.device_count()
    except BackendError as exc:  # MissingDependencyError (no cuda-python) is a BackendError too
        _missing(str(exc))
    if count < 1:
        _missing("cuda-python sees no CUDA device")
    return count


def require_tensorrt():
    """The `tensorrt` module (full, with the builder) on a machine with a CUDA device."""
    try:
        import tensorrt
    except ImportError:
        _missing("the 'tensorrt' package is not installed")
    require_cuda()
    return tensorrt


def require_tensorrt_runtime():
    """`tensorrt`, else the lean runtime `tensorrt_lean`, on a machine with a CUDA device."""
    for name in ("tensorrt", "tensorrt_lean"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        require_cuda()
        return module
    _missing("neither 'tensorrt' nor 'tensorrt_lean' is installed")


def require_nvdec(codec: str = "h264") -> None:
    """A CUDA device FFmpeg can decode `codec` on with NVDEC (PyAV's cuda hwaccel); skips (or fails) otherwise.

    Asks FFmpeg itself (`mvrt.runtime.hw_decode`), not cuda-python: NVDEC needs only the driver.
    """
    from mvrt.runtime import hw_decode

    found, why = hw_decode.cuda_device()
    if not found:
        _missing(f"NVDEC is not available: {why}")
    if not hw_decode.nvdec_supports(codec):
        _missing(f"this FFmpeg has no NVDEC decoder for {codec}")
