"""ONNX Runtime engine: CPU by default, CUDA / TensorRT execution providers when available."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from mvrt.artifacts import OUTPUT_NAME
from mvrt.errors import BackendError, MissingDependencyError, ModelError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.model_meta import read_onnx_config

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeEngine(Engine):
    """Runs an mvrt `.onnx` model; `providers` None/"auto" picks TensorRT > CUDA > CPU."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] | None = None,
                 threads: int | None = None):
        super().__init__(path, read_onnx_config(path))
        self.requested_providers = providers
        self.threads = threads
        self.providers: list[str] = []  # what the session actually uses, set on load
        self._session = None

    def _load(self) -> None:
        import onnxruntime as ort

        providers = resolve_providers(self.requested_providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads or physical_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except _ort_errors(ort) as exc:
            raise BackendError(f"{self.path}: onnxruntime cannot load the model: {_one_line(exc)}") from None
        self._check_signature(session)
        self._session = session
        self.providers = list(session.get_providers())
        log.info("onnxruntime: %s with %s (%d threads)", self.path.name, self.providers[0], options.intra_op_num_threads)

    def _check_signature(self, session) -> None:
        found = {i.name: tuple(i.shape[1:]) for i in session.get_inputs()}
        expected = self.input_shapes
        if set(found) != set(expected) or any(found[n] != expected[n] for n in expected):
            raise ModelError(f"{self.path}: graph inputs {found} do not match its mvrt config {expected}; re-export it")
        if OUTPUT_NAME not in [o.name for o in session.get_outputs()]:
            raise ModelError(f"{self.path}: graph has no {OUTPUT_NAME!r} output; re-export it")

    def _release(self) -> None:
        self._session = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        try:
            return self._session.run([OUTPUT_NAME], feeds)[0]
        except _ort_errors(ort) as exc:
            raise BackendError(f"{self.path}: onnxruntime inference failed: {_one_line(exc)}") from None


def resolve_providers(requested: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Execution provider names to try, most preferred first, CPU always last."""
    if requested is None or requested == "auto":
        return [p for p in AUTO_ORDER if p in available]
    names = [requested] if isinstance(requested, str) else list(requested)
    chosen = []
    for name in names:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            if full in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
                raise MissingDependencyError("onnxruntime-gpu", "gpu", f"the onnxruntime provider {name!r}")
            raise BackendError(f"onnxruntime provider {name!r} is not available (available: {', '.join(available)})")
        chosen.append(full)
    return chosen + ([] if "CPUExecutionProvider" in chosen else ["CPUExecutionProvider"])


def physical_cores() -> int:
    """Physical cores this process may use (logical CPUs over threads per core)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("siblings", "cpu cores") and value.strip().isdigit():
                    info.setdefault(key.strip(), int(value))
    except OSError:
        return logical
    per_core = info.get("siblings", 1) // max(1, info.get("cpu cores", 1))
    return max(1, logical // max(1, per_core))


def _ort_errors(ort) -> tuple[type[BaseException], ...]:
    state = ort.capi.onnxruntime_pybind11_state
    found = [v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)]
    return (RuntimeError, *found)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
