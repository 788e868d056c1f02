"""Inference engines behind one interface (DESIGN §7); `open_engine` picks one for a file."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

__all__ = ["BACKENDS", "Engine", "OnnxRuntimeEngine", "open_engine"]

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
_PLAN_SUFFIXES = (".plan", ".engine", ".trt")
_OPTIONS = {"onnxruntime": ("providers", "threads"), "torch": ("device", "threads", "precision", "cuda_graphs")}


def open_engine(model_path: str | os.PathLike, backend: str = "auto", **kwargs) -> Engine:
    """An engine for `model_path` (not yet loaded; use it as a context manager).

    `.onnx` runs on onnxruntime (kwargs: providers, threads); `.safetensors` checkpoints run
    on torch (kwargs: device, threads). Other keyword arguments are a UsageError.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if backend == "tensorrt" or suffix in _PLAN_SUFFIXES:
        raise BackendError(f"{path}: TensorRT plans are not supported yet; run the .onnx model with --backend onnxruntime")
    if suffix == ".onnx":
        if backend == "torch":
            raise UsageError(f"{path}: the torch backend runs .safetensors checkpoints; use --backend onnxruntime")
        return OnnxRuntimeEngine(path, **_options("onnxruntime", kwargs))
    if suffix == ".safetensors":
        if backend == "onnxruntime":
            raise UsageError(f"{path}: onnxruntime needs an ONNX model; export the checkpoint with `mvrt export` or use --backend torch")
        if importlib.util.find_spec("torch") is None:
            raise MissingDependencyError("torch", "torch", f"running the checkpoint {path.name} (or export it to ONNX)")
        from mvrt.runtime.engines.torch_engine import TorchEngine

        return TorchEngine(path, **_options("torch", kwargs))
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected .onnx or .safetensors")


def _options(backend: str, kwargs: dict) -> dict:
    unknown = sorted(set(kwargs) - set(_OPTIONS[backend]))
    if unknown:
        raise UsageError(f"the {backend} backend takes no option(s) {', '.join(unknown)} (it takes {', '.join(_OPTIONS[backend])})")
    return kwargs
