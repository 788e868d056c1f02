"""Minimal CUDA runtime helpers over cuda-python (for the TensorRT engine and builder): device info,
buffers, a stream, async copies.

cuda-python is imported lazily: `cuda.bindings.runtime` (cuda-python >= 12.6), else the older
`cuda.cudart`. Every call's status is checked and turned into a one-line BackendError; a
missing or too old driver says "no CUDA driver found".
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

from mvrt.errors import BackendError, MissingDependencyError

_NO_DRIVER = ("cudaErrorInsufficientDriver", "cudaErrorNoDevice", "cudaErrorInitializationError",
              "cudaErrorStubLibrary", "cudaErrorCallRequiresNewerDriver", "cudaErrorSystemDriverMismatch")
_cudart = None


def cudart() -> Any:
    """The cuda-python runtime module (MissingDependencyError when cuda-python is absent)."""
    global _cudart
    if _cudart is None:
        try:
            from cuda.bindings import runtime as module
        except ImportError:
            try:
                from cuda import cudart as module
            except ImportError:
                raise MissingDependencyError("cuda-python", "tensorrt", "the TensorRT backend (device memory and streams)") from None
        _cudart = module
    return _cudart


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python `(status, *values)` result; BackendError unless the status is success."""
    rt = cudart()
    status, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if status != rt.cudaError_t.cudaSuccess:
        name = _error_name(status)
        if name in _NO_DRIVER:
            raise BackendError(f"no CUDA driver found: {what} failed with {name}; the TensorRT backend needs an NVIDIA GPU "
                               "and its driver (use backend='onnxruntime' on this machine)", setting="backend")
        raise BackendError(f"CUDA error during {what}: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _error_name(status: Any) -> str:
    try:
        err, name = cudart().cudaGetErrorName(status)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - the name is only for the message
        return str(status)


def _call(what: str, fn, *args) -> Any:
    """Call a cudart function; loader failures (no libcudart/libcuda) become BackendError too."""
    try:
        result = fn(*args)
    except (RuntimeError, OSError) as exc:
        raise BackendError(f"no CUDA driver found: {what} failed: {' '.join(str(exc).split())}") from None
    return check(result, what)


def device_count() -> int:
    return int(_call("cudaGetDeviceCount", cudart().cudaGetDeviceCount))


def use_device(device: int) -> None:
    """Make `device` current for this thread (BackendError naming the valid range if it does not exist)."""
    count = device_count()
    if not 0 <= device < count:
        raise BackendError(f"CUDA device {device} does not exist (this machine has {count}: 0..{count - 1})")
    set_device(device)


def set_device(device: int) -> None:
    """cudaSetDevice without the range check (per thread: call it on every thread that runs work)."""
    _call(f"cudaSetDevice({device})", cudart().cudaSetDevice, device)


def device_name_and_capability(device: int) -> tuple[str, str]:
    """('NVIDIA H100 80GB HBM3', '9.0') for a device index."""
    rt = cudart()
    props = _call(f"cudaGetDeviceProperties({device})", rt.cudaGetDeviceProperties, device)
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(name).strip(), f"{props.major}.{props.minor}"


class DeviceBuffer:
    """`nbytes` of device memory (cudaMalloc)."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self.ptr = int(_call(f"cudaMalloc({self.nbytes} bytes)", cudart().cudaMalloc, self.nbytes))

    def __repr__(self) -> str:
        return f"DeviceBuffer(nbytes={self.nbytes}, freed={self.ptr == 0})"

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            _call("cudaFree", cudart().cudaFree, ptr)


class PinnedBuffer:
    """Page-locked host memory viewed as a numpy array of `shape` and `dtype` (cudaMallocHost)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any):
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self.ptr = int(_call(f"cudaMallocHost({self.nbytes} bytes)", cudart().cudaMallocHost, self.nbytes))
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8).view(self.dtype).reshape(self.shape)  # (*shape)

    def __repr__(self) -> str:
        return f"PinnedBuffer(shape={self.shape}, dtype={self.dtype}, freed={self.ptr == 0})"

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.array = None  # no view may outlive the memory
            _call("cudaFreeHost", cudart().cudaFreeHost, ptr)


class Stream:
    """A non-default CUDA stream; `handle` is the integer TensorRT's execute_async_v3 takes."""

    def __init__(self):
        self._stream = _call("cudaStreamCreate", cudart().cudaStreamCreate)
        self.handle = int(self._stream)

    def __repr__(self) -> str:
        return f"Stream(handle={self.handle:#x})"

    def synchronize(self) -> None:
        _call("cudaStreamSynchronize", cudart().cudaStreamSynchronize, self._stream)

    def destroy(self) -> None:
        if self._stream is not None:
            stream, self._stream, self.handle = self._stream, None, 0
            _call("cudaStreamDestroy", cudart().cudaStreamDestroy, stream)


def copy_to_device(dst_ptr: int, src: PinnedBuffer, nbytes: int, stream: Stream) -> None:
    """Queue a copy of the first `nbytes` of a pinned buffer to device memory."""
    rt = cudart()
    _call("cudaMemcpyAsync (host to device)", rt.cudaMemcpyAsync, dst_ptr, src.ptr, nbytes,
          rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream._stream)


def copy_to_host(dst: PinnedBuffer, src_ptr: int, nbytes: int, stream: Stream) -> None:
    """Queue a copy of `nbytes` of device memory into the start of a pinned buffer."""
    rt = cudart()
    _call("cudaMemcpyAsync (device to host)", rt.cudaMemcpyAsync, dst.ptr, src_ptr, nbytes,
          rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream._stream)
