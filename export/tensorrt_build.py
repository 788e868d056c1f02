"""Build a TensorRT plan from an mvrt ONNX model (TensorRT 10.x and 11.x), with its sidecar.

Every network is strongly typed (TensorRT 11 knows no other kind; 10.x gets the same flag so
both behave alike): precision comes from the ONNX graph (FP32, FP16-converted, or Q/DQ INT8),
never from builder flags. For FP32 graphs TF32 is switched off so the plan computes in real
FP32. One optimization profile covers batch min/opt/max for every input over the model's
fixed per-sample shapes. The timing cache persists in a file when one is named (loaded if it
exists, saved after the build). Inputs keep their ONNX types: contract 2's `video` is uint8 and
the graph's own Cast normalises it (checked against the model config before the build). With
a DLA core the 2-D audio pathways go on the DLA and the rest on the GPU (export/dla_layers.py).
The plan is written plain (exactly the serialized bytes, as
`trtexec --loadEngine` reads them) and `<plan>.json` beside it (runtime/engines/sidecar.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvrt.artifacts import CALIBRATION_KEY, PRECISION_KEY, PRECISIONS
from mvrt.config import ModelConfig
from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines import cuda_runtime
from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, write_sidecar
from mvrt.runtime.engines.tensorrt_engine import capturing_logger
from mvrt.runtime.model_meta import read_model_config, read_onnx_metadata, sha256_file

log = logging.getLogger(__name__)
MIN_TENSORRT_MAJOR = 10
GIB = 1 << 30


@dataclass(frozen=True)
class BuildPlan:
    """Checked build inputs: what the builder is asked to do."""

    onnx_path: Path
    engine_path: Path
    config: ModelConfig
    precision: str
    batch: BatchProfile
    workspace_bytes: int
    timing_cache: Path | None
    version_compatible: bool
    exclude_lean_runtime: bool
    dla_core: int | None
    source: str


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, settings: Any, *,
                 source: str | os.PathLike | None = None, device: int = 0) -> dict:
    """Build `engine_path` (+ sidecar) from `onnx_path`; returns the sidecar dict, also logged.

    `settings` is an `mvrt.export.build_settings.TensorRTSettings` (precision, batch_min/opt/max,
    workspace_gib, timing_cache, version_compatible, dla_core). `source` is what the user
    exported from (the rebuild command names it; default: the ONNX file).
    """
    plan = prepare(onnx_path, engine_path, settings, source)
    try:
        import tensorrt as trt
    except ImportError:  # tensorrt_lean cannot build
        raise MissingDependencyError("tensorrt", "tensorrt", "building a TensorRT engine") from None
    _check_version(trt)
    cuda_runtime.use_device(device)
    gpu_name, capability = cuda_runtime.device_name_and_capability(device)
    serialized, cache_loaded, placement = _build(trt, plan)
    sidecar = EngineSidecar(
        plan_sha256="", plan_bytes=len(serialized), tensorrt_version=str(trt.__version__), gpu_name=gpu_name,
        compute_capability=capability, precision=plan.precision, batch=plan.batch,
        onnx_sha256=sha256_file(plan.onnx_path), model_config=plan.config,
        calibration_sha256=read_onnx_metadata(plan.onnx_path).get(CALIBRATION_KEY) or None,
        version_compatible=plan.version_compatible, exclude_lean_runtime=plan.exclude_lean_runtime,
        dla_core=plan.dla_core, workspace_bytes=plan.workspace_bytes,
        timing_cache=str(plan.timing_cache) if plan.timing_cache else None, timing_cache_loaded=cache_loaded,
        layer_devices=placement.as_dict() if placement is not None else None,
        source=plan.source, created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    return write_engine(serialized, plan.engine_path, sidecar)


def prepare(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, settings: Any,
            source: str | os.PathLike | None = None) -> BuildPlan:
    """Check settings against the ONNX model's metadata (no TensorRT needed)."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise UsageError(f"{onnx_path}: a TensorRT engine is built from an .onnx model")
    config = read_model_config(onnx_path)
    meta = read_onnx_metadata(onnx_path)
    precision = meta.get(PRECISION_KEY, "fp32")
    if precision not in PRECISIONS:
        raise ModelError(f"{onnx_path}: unknown {PRECISION_KEY} {precision!r} in its metadata (expected {', '.join(PRECISIONS)})")
    asked = getattr(settings, "precision", None)
    if asked not in (None, precision):
        raise UsageError(f"{onnx_path}: the graph is {precision} (metadata {PRECISION_KEY}), but precision {asked} was "
                         "asked; TensorRT takes its precision from the graph, so convert the ONNX first")
    batch = _batch_profile(settings)
    workspace_gib = float(getattr(settings, "workspace_gib", 1.0))
    if not workspace_gib > 0:
        raise UsageError(f"the TensorRT workspace must be positive, got {workspace_gib} GiB")
    dla_core = getattr(settings, "dla_core", None)
    if dla_core is not None and (not isinstance(dla_core, int) or dla_core < 0):
        raise UsageError(f"dla_core must be a core index (0, 1, ...), got {dla_core!r}", setting="dla_core")
    cache = getattr(settings, "timing_cache", None)
    version_compatible = bool(getattr(settings, "version_compatible", False))
    exclude_lean = bool(getattr(settings, "exclude_lean_runtime", False))
    if exclude_lean and not version_compatible:
        raise UsageError("excluding the lean runtime only applies to version-compatible plans")
    if engine_path.resolve() == onnx_path.resolve():
        raise UsageError(f"{engine_path}: the engine would overwrite its own ONNX model")
    return BuildPlan(onnx_path, engine_path, config, precision, batch, int(workspace_gib * GIB),
                     Path(cache) if cache else None, version_compatible, exclude_lean, dla_core,
                     str(source) if source is not None else str(onnx_path))


def write_engine(serialized: bytes, engine_path: str | os.PathLike, sidecar: EngineSidecar) -> dict:
    """Write the plain plan and its sidecar (each replaced atomically); returns the sidecar dict."""
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(engine_path, serialized)
    sidecar = dataclasses.replace(sidecar, plan_sha256=sha256_file(engine_path), plan_bytes=len(serialized))
    write_sidecar(engine_path, sidecar)
    record = sidecar.to_dict()
    shown = {k: v for k, v in record.items() if k != "model_config"}
    log.info("tensorrt build: wrote %s (%d bytes); settings used: %s", engine_path, len(serialized), shown)
    return record


def _batch_profile(settings: Any) -> BatchProfile:
    try:
        values = [int(getattr(settings, f"batch_{k}")) for k in ("min", "opt", "max")]
    except (AttributeError, TypeError, ValueError):
        raise UsageError("TensorRT settings need integer batch_min, batch_opt and batch_max") from None
    if not 1 <= values[0] <= values[1] <= values[2]:
        raise UsageError(f"batch {':'.join(map(str, values))} (batch_min:batch_opt:batch_max) must satisfy "
                         "1 <= min <= opt <= max", setting="batch")
    return BatchProfile(*values)


def _check_version(trt: Any) -> None:
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR or not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise BackendError(f"TensorRT {trt.__version__} is too old; mvrt builds with TensorRT {MIN_TENSORRT_MAJOR}.x or 11.x")


def _build(trt: Any, plan: BuildPlan) -> tuple[bytes, bool, Any]:
    """Parse, configure, build; returns the serialized plan, whether a cache file was loaded, and the
    DLA layer placement (None without a DLA core)."""
    logger = capturing_logger(trt)
    builder = trt.Builder(logger)
    if builder is None:
        raise BackendError(f"TensorRT cannot create a builder: {logger.last_errors()}")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_path)):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors)) or logger.last_errors()
        raise ModelError(f"{plan.onnx_path}: TensorRT {trt.__version__} cannot parse the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    config.add_optimization_profile(_profile(builder, network, plan))
    cache_loaded = _attach_timing_cache(config, plan.timing_cache)
    if plan.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plan.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    placement = _use_dla(trt, builder, config, network, plan) if plan.dla_core is not None else None
    _log_start(trt, plan)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{plan.onnx_path}: TensorRT could not build the engine: {logger.last_errors()}")
    if plan.timing_cache:
        _atomic_write(plan.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized)), cache_loaded, placement


def _profile(builder: Any, network: Any, plan: BuildPlan) -> Any:
    """One profile: (batch, *per-sample shape) for every input, checked against the config (shapes and types)."""
    shapes = plan.config.input_shapes()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    found = {t.name: tuple(t.shape) for t in inputs}
    expected = {name: (-1, *shape) for name, shape in shapes.items()}
    if found != expected:
        raise ModelError(f"{plan.onnx_path}: graph inputs {found} do not match its mvrt config {expected}; re-export it")
    types = {t.name: _type_name(t.dtype) for t in inputs}
    wanted = {name: _TRT_TYPES[dtype] for name, dtype in plan.config.input_dtypes().items()}
    if types != wanted:
        raise ModelError(f"{plan.onnx_path}: graph input types {types} do not match its mvrt config (tensor contract "
                         f"{plan.config.contract}: {wanted}); re-export it")
    profile = builder.create_optimization_profile()
    b = plan.batch
    for name, shape in shapes.items():
        profile.set_shape(name, (b.min, *shape), (b.opt, *shape), (b.max, *shape))
    return profile


def _attach_timing_cache(config: Any, path: Path | None) -> bool:
    """Use the cache file if there is one (a cache from another GPU/version is replaced); True if loaded."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if data and (cache is None or not config.set_timing_cache(cache, False)):
        log.warning("tensorrt build: timing cache %s does not fit this GPU or TensorRT; starting a new one", path)
        data, cache = b"", config.create_timing_cache(b"")
    if not data:
        config.set_timing_cache(cache, False)
    return bool(data)


def _use_dla(trt: Any, builder: Any, config: Any, network: Any, plan: BuildPlan) -> Any:
    """The audio pathways on the DLA core, the rest on the GPU; returns the LayerPlacement."""
    from mvrt.export.dla_layers import use_dla_for_audio

    cores = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if plan.dla_core >= cores:
        raise UsageError(f"dla_core {plan.dla_core}: this device has {cores} DLA core(s)", setting="dla_core")
    return use_dla_for_audio(trt, config, network, plan.config, plan.dla_core)


_TRT_TYPES = {"float32": "FLOAT", "uint8": "UINT8"}  # numpy dtype name -> trt.DataType name


def _type_name(dtype: Any) -> str:
    return getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])


def _log_start(trt: Any, plan: BuildPlan) -> None:
    log.info("tensorrt build: %s -> %s with TensorRT %s: precision %s (from the graph), batch %s, workspace %.2f GiB, "
             "timing cache %s, version-compatible %s, DLA core %s", plan.onnx_path.name, plan.engine_path.name,
             trt.__version__, plan.precision, plan.batch, plan.workspace_bytes / GIB, plan.timing_cache or "none",
             plan.version_compatible, "none" if plan.dla_core is None else plan.dla_core)


def _parser_error(error: Any) -> str:
    """'node NAME (OP): description'; node details exist on TensorRT 10+ parsers."""
    name, op = (_call_or_empty(error, attr) for attr in ("node_name", "node_operator"))
    where = f"node {name!r}{f' ({op})' if op else ''}: " if name else (f"{op}: " if op else "")
    return " ".join(f"{where}{error.desc()}".split())


def _call_or_empty(obj: Any, attr: str) -> str:
    method = getattr(obj, attr, None)
    return str(method() or "") if callable(method) else ""


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
