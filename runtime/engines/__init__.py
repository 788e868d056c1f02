"""Inference engines behind one interface (DESIGN §7); `open_engine` picks one for a file."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from mvrt.artifacts import PLAN_SUFFIXES as _PLAN_SUFFIXES
from mvrt.errors import MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

__all__ = ["BACKENDS", "Engine", "OnnxRuntimeEngine", "open_engine"]

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt", "kserve")
_OPTIONS = {"onnxruntime": ("providers", "threads", "device_id"),
            "torch": ("device", "threads", "precision", "cuda_graphs", "contract"),
            "tensorrt": ("device", "trust_plan_code"),
            "kserve": ("url", "remote_model", "protocol", "timeout_seconds", "max_batch", "model_version")}


def open_engine(model_path: str | os.PathLike, backend: str = "auto", **kwargs) -> Engine:
    """An engine for `model_path` (not yet loaded; use it as a context manager).

    `.onnx` runs on onnxruntime (kwargs: providers, threads, device_id); `.safetensors` checkpoints run
    on torch (kwargs: device, threads, precision, cuda_graphs, contract: the tensor contract the
    engine takes, 1 (default: the checkpoint's float inputs) or 2 (uint8 `video`, normalised on the
    device)); `.plan`/`.engine` TensorRT plans run on tensorrt (kwargs: device, trust_plan_code:
    allow a version-compatible plan, whose embedded TensorRT host code runs in this process;
    default False refuses one with a ModelError). `backend="kserve"` sends the batches of an `.onnx` model (its metadata gives the
    front-end) to a KServe V2 server (kwargs: url HOST:PORT, remote_model, protocol grpc|http,
    timeout_seconds). Other keyword arguments are a UsageError.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if backend == "kserve":
        return _kserve_engine(path, suffix, kwargs)
    if backend == "tensorrt" or suffix in _PLAN_SUFFIXES:
        return _tensorrt_engine(path, suffix, backend, kwargs)
    if suffix == ".onnx":
        if backend == "torch":
            raise UsageError(f"{path}: the torch backend runs .safetensors checkpoints; use backend='onnxruntime'",
                             setting="backend")
        return OnnxRuntimeEngine(path, **_options("onnxruntime", kwargs))
    if suffix == ".safetensors":
        if backend == "onnxruntime":
            raise UsageError(f"{path}: onnxruntime needs an ONNX model; export the checkpoint with "
                             f"`mvrt export {_quote(path)} --onnx {_quote(path.stem + '.onnx')}` or use backend='torch'",
                             setting="backend")
        if importlib.util.find_spec("torch") is None:
            raise MissingDependencyError("torch", "torch", f"running the checkpoint {path.name} (or export it to ONNX)")
        from mvrt.runtime.engines.torch_engine import TorchEngine

        return TorchEngine(path, **_options("torch", kwargs))
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected .onnx or .safetensors")


def _kserve_engine(path: Path, suffix: str, kwargs: dict) -> Engine:
    """A KServeEngine for an mvrt `.onnx` file (kwargs: url, required; remote_model, protocol, timeout_seconds)."""
    if suffix != ".onnx":
        raise UsageError(f"{path}: backend='kserve' needs the model's .onnx file (its metadata gives the "
                         f"front-end and the inputs the server is sent)", setting="backend")
    if not kwargs.get("url"):
        raise UsageError("backend='kserve' needs url, the server's HOST:PORT", setting="url")
    from mvrt.runtime.engines.kserve_engine import KServeEngine

    return KServeEngine(path, **_options("kserve", kwargs))


def _tensorrt_engine(path: Path, suffix: str, backend: str, kwargs: dict) -> Engine:
    """A TensorRTEngine for a serialized plan (kwargs: device, a GPU index; trust_plan_code).

    The engine reads its sidecar (and refuses an untrusted version-compatible plan) before
    TensorRT is looked for, so those errors come first and need no TensorRT.
    """
    if suffix not in _PLAN_SUFFIXES:
        raise UsageError(f"{path}: the tensorrt backend runs serialized plans ({', '.join(_PLAN_SUFFIXES)}); "
                         f"{_plan_hint(path)}, or use backend='onnxruntime'", setting="backend")
    if backend not in ("auto", "tensorrt"):
        raise UsageError(f"{path}: a TensorRT plan runs on the tensorrt backend only, not {backend}")
    from mvrt.runtime.engines.tensorrt_engine import TensorRTEngine

    engine = TensorRTEngine(path, **_options("tensorrt", kwargs))
    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_lean") is None:
        raise MissingDependencyError("tensorrt", "tensorrt", f"running the TensorRT plan {path.name}")
    return engine


def _plan_hint(path: Path) -> str:
    """How to build a TensorRT plan for `path`: `mvrt export` takes the checkpoint, not its ONNX."""
    if path.suffix.lower() == ".safetensors":
        return f"build one with `{_export_command(path)}`"
    from mvrt.bundled import default_checkpoint_path, default_model_path

    bundled = default_checkpoint_path()
    if _same_file(path, default_model_path()):
        return f"build one from its checkpoint with `{_export_command(bundled)}`"
    return (f"build one from the checkpoint it was exported from with `mvrt export CHECKPOINT.safetensors --onnx "
            f"model.onnx --engine model.plan` (for the bundled demo model: `{_export_command(bundled)}`)")


def _export_command(checkpoint: Path) -> str:
    """`mvrt export` of `checkpoint` writing the ONNX and the plan into the current folder (never beside it)."""
    stem = checkpoint.stem
    return f"mvrt export {_quote(checkpoint)} --onnx {_quote(stem + '.onnx')} --engine {_quote(stem + '.plan')}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _quote(path: str | os.PathLike) -> str:
    import shlex

    return shlex.quote(str(path))


def _options(backend: str, kwargs: dict) -> dict:
    unknown = sorted(set(kwargs) - set(_OPTIONS[backend]))
    if unknown:
        raise UsageError(f"the {backend} backend takes no option(s) {', '.join(unknown)} (it takes {', '.join(_OPTIONS[backend])})")
    return kwargs
