"""TensorRT engine: runs a serialized plan built by `mvrt export --engine` (TensorRT 10.x and 11.x).

Construct: read the sidecar; a version-compatible plan (it carries TensorRT host code that runs
in this process) is refused unless `trust_plan_code=True`, before TensorRT is imported.
Batches: within the profile as they are; one below the profile's MIN (every batch, for a
fixed-batch plan with MIN == MAX, as DLA builds are) is padded with zero rows up to MIN and the
padding's logits dropped (runtime/engines/base.py); over MAX is a UsageError with the rebuild command.
Load: check the sidecar against the running TensorRT and GPU, check the plan's
sha256, deserialise it (with `tensorrt`, or `tensorrt_lean` for version-compatible plans),
then allocate device memory for the profile's maximum batch, pinned host buffers of the same
size, and one stream. Infer: copy the batch into the pinned buffers, queue host-to-device
copies, set the input shapes, `execute_async_v3`, queue the device-to-host copy of `logits`,
synchronise. Close releases everything in reverse order.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Mapping

import numpy as np

from mvrt.artifacts import OUTPUT_NAME
from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines import cuda_runtime
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.engines.sidecar import (
    EngineSidecar,
    Machine,
    check_plan_hash,
    check_plan_trust,
    read_sidecar,
    rebuild_command,
    validate_sidecar,
)

log = logging.getLogger(__name__)
# Host dtypes of plan I/O tensors: float32 / float16, and uint8 for tensor contract 2's `video`
# (a strongly typed network keeps the ONNX input's type).
_HOST_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "UINT8": np.uint8}


def import_tensorrt(version_compatible: bool, purpose: str) -> Any:
    """`tensorrt`, or `tensorrt_lean` when only the lean runtime is installed and the plan allows it."""
    try:
        import tensorrt as trt

        return trt
    except ImportError:
        pass
    try:
        import tensorrt_lean as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt", purpose) from None
    if not version_compatible:
        raise MissingDependencyError("tensorrt", "tensorrt", f"{purpose}, which is not version-compatible (the installed "
                                     "tensorrt_lean runs only version-compatible plans),")
    return trt


def capturing_logger(trt: Any) -> Any:
    """A trt.ILogger that forwards to `logging` and keeps the last errors for one-line messages."""

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            text = " ".join(str(msg).split())
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors = (self.errors + [text])[-5:]
                log.info("TensorRT error: %s", text)  # the raised error quotes it; no second copy on stderr
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", text)
            else:
                log.debug("TensorRT: %s", text)

        def last_errors(self) -> str:
            return "; ".join(self.errors) or "no error reported by TensorRT"

    return _Logger()


def current_machine(trt: Any, device: int, dla_cores: int = 0) -> Machine:
    """The running TensorRT version and GPU, as the sidecar records them."""
    name, capability = cuda_runtime.device_name_and_capability(device)
    return Machine(tensorrt_version=str(trt.__version__), gpu_name=name, compute_capability=capability,
                   dla_cores=dla_cores)


def parse_device(device: int | str) -> int:
    """0, '0', 'cuda' or 'cuda:1' -> a device index."""
    text = str(device).strip().lower()
    text = "0" if text == "cuda" else text.removeprefix("cuda:")
    if not text.isdigit():
        raise UsageError(f"TensorRT device must be a GPU index such as 0 or 'cuda:1', got {device!r}")
    return int(text)


class TensorRTEngine(Engine):
    """Runs a `.plan` with its `.plan.json` sidecar on one GPU; batch sizes within the build profile.

    `trust_plan_code`: allow a version-compatible plan, whose embedded TensorRT host code runs inside
    this process; give it only for plans from a source you trust (without it such a plan is a ModelError).
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, device: int | str = 0, trust_plan_code: bool = False):
        if not isinstance(trust_plan_code, bool):
            raise UsageError(f"trust_plan_code must be True or False, got {trust_plan_code!r}")
        sidecar = read_sidecar(path)
        check_plan_trust(sidecar, path, trust_plan_code)
        super().__init__(path, sidecar.model_config, max_batch=sidecar.batch.max)
        self.sidecar: EngineSidecar = sidecar
        self.profile = sidecar.batch
        self.min_batch = sidecar.batch.min  # smaller batches are padded up to it (Engine.infer)
        self.fixed_batch = sidecar.batch.min if sidecar.batch.min == sidecar.batch.max else None
        self.device = parse_device(device)
        self.trust_plan_code = trust_plan_code
        self._state: _Loaded | None = None

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        batch = _leading_batch(feeds)
        if batch is not None and batch > self.profile.max:  # below MIN is padded (Engine.infer)
            raise UsageError(f"{self.path.name}: batch size {batch} is over this engine's profile "
                             f"{self.profile} (min:opt:max); use at most {self.profile.max} or rebuild with "
                             f"`{rebuild_command(self.sidecar, self.path)}` and another --batch")
        return super().check_feeds(feeds)

    def _load(self) -> None:
        trt = import_tensorrt(self.sidecar.version_compatible, f"running the TensorRT plan {self.path.name}")
        cuda_runtime.use_device(self.device)
        logger = capturing_logger(trt)
        runtime = trt.Runtime(logger)
        validate_sidecar(self.sidecar, current_machine(trt, self.device, _dla_cores(runtime)), self.path)
        data = self.path.read_bytes()
        check_plan_hash(self.sidecar, self.path, data)
        check_plan_trust(self.sidecar, self.path, self.trust_plan_code)  # again, in case either was changed since
        if self.sidecar.version_compatible:
            runtime.engine_host_code_allowed = True  # the plan carries its lean runtime; the caller trusts it
        if self.sidecar.dla_core is not None:
            runtime.DLA_core = self.sidecar.dla_core
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelError(f"{self.path}: TensorRT {trt.__version__} cannot deserialise the plan: {logger.last_errors()}; "
                             f"rebuild it with `{rebuild_command(self.sidecar, self.path)}`")
        self._state = _Loaded(trt, logger, runtime, engine, self)
        log.info("tensorrt: %s on GPU %d, profile %s, TensorRT %s%s", self.path.name, self.device, self.profile,
                 trt.__version__, " (version-compatible)" if self.sidecar.version_compatible else "")

    def _release(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            state.release()

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._state.run(feeds)


class _Loaded:
    """Deserialised engine, execution context and the buffers bound to it."""

    def __init__(self, trt: Any, logger: Any, runtime: Any, engine: Any, owner: TensorRTEngine):
        self.trt, self.logger, self.runtime, self.engine = trt, logger, runtime, engine
        self.path, self.config, self.max_batch, self.gpu = owner.path, owner.config, owner.profile.max, owner.device
        self.context = None
        self.stream: cuda_runtime.Stream | None = None
        self.device_buffers: dict[str, cuda_runtime.DeviceBuffer] = {}
        self.host_buffers: dict[str, cuda_runtime.PinnedBuffer] = {}
        try:
            self.shapes = self._check_io(owner)
            self._allocate()
        except BaseException:
            self.release()
            raise

    def _check_io(self, owner: TensorRTEngine) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes of every I/O tensor, checked against the config and the sidecar."""
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        expected = {**owner.input_shapes, OUTPUT_NAME: (len(self.config.classes),)}
        found = {n: tuple(engine.get_tensor_shape(n))[1:] for n in names}
        if set(inputs) != set(owner.input_shapes) or found != expected:
            raise ModelError(f"{self.path}: plan tensors {found} do not match its sidecar's model config {expected}; "
                             f"rebuild it with `{rebuild_command(owner.sidecar, self.path)}`")
        for name in inputs:
            lo, _, hi = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
            if (lo[0], hi[0]) != (owner.profile.min, owner.profile.max):
                raise ModelError(f"{self.path}: plan profile for {name!r} is batch {lo[0]}..{hi[0]}, its sidecar says "
                                 f"{owner.profile}; rebuild it with `{rebuild_command(owner.sidecar, self.path)}`")
        self.dtypes = {n: _host_dtype(self.path, n, engine.get_tensor_dtype(n)) for n in names}
        for name in inputs:
            if (np.dtype(self.dtypes[name]) == np.uint8) != (owner.input_dtypes[name] == np.uint8):
                raise ModelError(f"{self.path}: plan input {name!r} is {np.dtype(self.dtypes[name]).name}, its sidecar's "
                                 f"model config says {owner.input_dtypes[name].name}; rebuild it with "
                                 f"`{rebuild_command(owner.sidecar, self.path)}`")
        self.inputs = inputs
        return found

    def _allocate(self) -> None:
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{self.path}: TensorRT cannot create an execution context: {self.logger.last_errors()}")
        self.stream = cuda_runtime.Stream()
        for name, shape in self.shapes.items():
            full = (self.max_batch, *shape)  # (max batch, *per-sample shape)
            self.host_buffers[name] = cuda_runtime.PinnedBuffer(full, self.dtypes[name])
            self.device_buffers[name] = cuda_runtime.DeviceBuffer(self.host_buffers[name].nbytes)
            if not self.context.set_tensor_address(name, self.device_buffers[name].ptr):
                raise BackendError(f"{self.path}: TensorRT refused the address of tensor {name!r}: {self.logger.last_errors()}")

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        batch = next(iter(feeds.values())).shape[0]
        cuda_runtime.set_device(self.gpu)  # the calling thread may not be the one that loaded the engine
        for name in self.inputs:
            host = self.host_buffers[name]
            np.copyto(host.array[:batch], feeds[name], casting="same_kind")
            cuda_runtime.copy_to_device(self.device_buffers[name].ptr, host, self._nbytes(name, batch), self.stream)
            if not self.context.set_input_shape(name, (batch, *self.shapes[name])):
                raise BackendError(f"{self.path}: TensorRT refused input {name!r} at batch {batch}: {self.logger.last_errors()}")
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendError(f"{self.path}: TensorRT inference failed: {self.logger.last_errors()}")
        out = self.host_buffers[OUTPUT_NAME]
        cuda_runtime.copy_to_host(out, self.device_buffers[OUTPUT_NAME].ptr, self._nbytes(OUTPUT_NAME, batch), self.stream)
        self.stream.synchronize()
        return out.array[:batch].astype(np.float32, copy=True)

    def _nbytes(self, name: str, batch: int) -> int:
        return batch * math.prod(self.shapes[name]) * np.dtype(self.dtypes[name]).itemsize

    def release(self) -> None:
        """Free buffers, the stream, then the TensorRT objects (context before engine before runtime)."""
        errors = []
        if self.stream is not None:
            for action in (self.stream.synchronize, self.stream.destroy):
                errors += _attempt(action)
            self.stream = None
        for buffer in [*self.device_buffers.values(), *self.host_buffers.values()]:
            errors += _attempt(buffer.free)
        self.device_buffers.clear()
        self.host_buffers.clear()
        self.context = self.engine = self.runtime = None
        if errors:
            log.warning("tensorrt: releasing %s: %s", self.path.name, errors[0])


def _attempt(action) -> list[str]:
    try:
        action()
    except BackendError as exc:
        return [str(exc)]
    return []


def _host_dtype(path, name: str, trt_dtype: Any) -> Any:
    key = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if key not in _HOST_DTYPES:
        raise ModelError(f"{path}: tensor {name!r} has type {key}; mvrt plans take float32, float16 or uint8 "
                         "(contract-2 video) tensors")
    return _HOST_DTYPES[key]


def _dla_cores(runtime: Any) -> int:
    return int(getattr(runtime, "num_DLA_cores", 0) or 0)


def _leading_batch(feeds: Any) -> int | None:
    """The common leading dimension of array feeds, or None when the feeds are malformed."""
    if not isinstance(feeds, Mapping) or not feeds:
        return None
    sizes = {v.shape[0] for v in feeds.values() if isinstance(v, np.ndarray) and v.ndim >= 1}
    return sizes.pop() if len(sizes) == 1 else None
