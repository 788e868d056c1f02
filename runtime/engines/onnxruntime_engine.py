"""ONNX Runtime engine: CPU by default, CUDA / TensorRT execution providers when available.

Which providers a session gets, and their options (the TensorRT EP's engine and timing caches
beside the model, its precision flags, the GPU index), come from `ort_providers`; the engine
records what the session actually used in `providers`, `provider_options` and `cache_dir`.
On load it checks the graph against its mvrt metadata (input names, shapes and element types
of the model's tensor contract, the `logits` output) and reads a fixed batch size from it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mvrt.artifacts import OUTPUT_NAME
from mvrt.errors import BackendError, ModelError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.engines.ort_providers import (
    AUTO_ORDER, PROVIDER_ALIASES, TENSORRT, ProviderPlan, announce, ensure_cache, plan_providers, resolve_providers,
    tensorrt_cache, with_cache,
)
from mvrt.runtime.model_meta import model_precision, read_onnx_config

__all__ = ["AUTO_ORDER", "ORT_TYPES", "PROVIDER_ALIASES", "OnnxRuntimeEngine", "describe_providers", "fixed_batch_size",
           "physical_cores", "resolve_providers"]  # the provider names and resolve_providers: public here as before

log = logging.getLogger(__name__)

# onnxruntime's element type names of the numpy dtypes a tensor contract uses.
ORT_TYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)", "float16": "tensor(float16)"}


class OnnxRuntimeEngine(Engine):
    """Runs an mvrt `.onnx` model; `providers` None/"auto" picks TensorRT > CUDA > CPU.

    `providers` may name a GPU (`"cuda:1"`), or `device_id` gives it (default 0). After
    loading: `providers` (what the session uses, most preferred first), `provider_options`
    (name -> the options mvrt set for it), `cache_dir` (the TensorRT EP's cache folder, or
    None), `cache_existed`, and for a graph whose batch axis is a fixed N, `fixed_batch` and
    `max_batch` = N.
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] | None = None,
                 threads: int | None = None, device_id: int | None = None):
        super().__init__(path, read_onnx_config(path))
        self.requested_providers = providers
        self.threads = threads
        self.device_id = device_id
        self.providers: list[str] = []  # what the session actually uses, set on load
        self.provider_options: dict[str, dict] = {}
        self.cache_dir: Path | None = None
        self.cache_existed: bool | None = None
        self._session = None

    def plan(self, available: Sequence[str]) -> ProviderPlan:
        """The providers and options a session would get with `available` providers (creates nothing)."""
        return plan_providers(self.path, self.requested_providers, available,
                              precision=model_precision(self.path), device_id=self.device_id)

    def _load(self) -> None:
        import onnxruntime as ort

        plan = self.plan(ort.get_available_providers())
        if plan.uses_tensorrt:
            plan = with_cache(plan, ensure_cache(plan.cache, self.path))
            announce(plan, self.path.name)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads or physical_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=list(plan.providers),
                                           provider_options=list(plan.provider_options))
        except _ort_errors(ort) as exc:
            raise BackendError(f"{self.path}: onnxruntime cannot load the model: {_one_line(exc)}") from None
        self._check_signature(session)
        self._session = session
        self._record(plan, list(session.get_providers()))
        log.info("onnxruntime: %s with %s (%d threads)%s", self.path.name, self.providers[0],
                 options.intra_op_num_threads, f"; TensorRT caches in {self.cache_dir}" if self.cache_dir else "")

    def _record(self, plan: ProviderPlan, used: list[str]) -> None:
        self.providers = used
        self.provider_options = {n: dict(o) for n, o in zip(plan.providers, plan.provider_options) if n in used}
        tensorrt = TENSORRT in used
        self.cache_dir = plan.cache.root if tensorrt else None
        self.cache_existed = plan.cache.cached_engines > 0 if tensorrt else None

    def _check_signature(self, session) -> None:
        """ModelError (one line) where the graph and its mvrt metadata disagree; sets a fixed batch size."""
        found = {i.name: i for i in session.get_inputs()}
        expected, dtypes = self.input_shapes, self.config.input_dtypes()
        contract = f"tensor contract {self.config.contract}"
        if set(found) != set(expected):
            raise ModelError(f"{self.path}: graph inputs {sorted(found)} do not match its mvrt metadata "
                             f"({contract}: {', '.join(self.config.input_names)}); re-export it")
        for name in self.config.input_names:
            shape = tuple(found[name].shape[1:])
            if shape != expected[name]:
                raise ModelError(f"{self.path}: graph input {name!r} has shape {shape} (without batch), its mvrt "
                                 f"metadata says {expected[name]}; re-export it")
            if found[name].type != ORT_TYPES.get(dtypes[name]):
                raise ModelError(f"{self.path}: graph input {name!r} is {found[name].type} but its mvrt metadata "
                                 f"({contract}) says {dtypes[name]}: the graph and its metadata disagree; re-export it")
        outputs = {o.name: o for o in session.get_outputs()}
        if OUTPUT_NAME not in outputs:
            raise ModelError(f"{self.path}: graph has no {OUTPUT_NAME!r} output; re-export it")
        batch = fixed_batch_size([i.shape for i in found.values()] + [outputs[OUTPUT_NAME].shape], self.path)
        if batch is not None:
            self.fixed_batch = batch
            self.max_batch = batch
            log.info("onnxruntime: %s has a fixed batch size of %d", self.path.name, batch)

    def _release(self) -> None:
        self._session = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        try:
            return self._session.run([OUTPUT_NAME], feeds)[0]
        except _ort_errors(ort) as exc:
            raise BackendError(f"{self.path}: onnxruntime inference failed: {_one_line(exc)}") from None


def fixed_batch_size(shapes: Sequence[Sequence], path: str | os.PathLike = "model") -> int | None:
    """The batch size a graph fixes (an integer first dimension), or None when its batch axis is dynamic."""
    fixed = {s[0] for s in shapes if s and isinstance(s[0], int) and not isinstance(s[0], bool)}
    if len(fixed) > 1:
        raise ModelError(f"{path}: the graph's inputs and output fix different batch sizes {sorted(fixed)}; re-export it")
    if fixed and min(fixed) < 1:
        raise ModelError(f"{path}: the graph fixes a batch size of {min(fixed)}; re-export it")
    return fixed.pop() if fixed else None


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


def describe_providers(model_path: str | os.PathLike, requested: str | Sequence[str] | None = None) -> dict:
    """What `mvrt info` shows for an .onnx model: onnxruntime's providers, which a session would use, with
    what options, and the TensorRT EP's cache folders (whether they exist). Creates no session, writes nothing."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"installed": False}
    available = list(ort.get_available_providers())
    plan = plan_providers(model_path, requested, available, precision=model_precision(model_path))
    shown = {"version": ort.__version__, "available": available, "chosen": list(plan.providers),
             "options": {n: o for n, o in zip(plan.providers, plan.provider_options) if o}}
    cache = plan.cache or tensorrt_cache(model_path)
    shown["tensorrt_cache"] = {**cache.to_dict(), "exists": cache.engines.is_dir()}
    if plan.cache is None:
        shown["tensorrt_cache"]["note"] = "used only with the TensorRT execution provider (onnxruntime-gpu)"
    return shown


def _ort_errors(ort) -> tuple[type[BaseException], ...]:
    state = ort.capi.onnxruntime_pybind11_state
    found = [v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)]
    return (RuntimeError, *found)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
