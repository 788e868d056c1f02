"""The JSON sidecar beside a TensorRT plan (DESIGN §5): write, read, validate. No TensorRT here.

A plan `x.plan` is the plain serialized engine; `x.plan.json` says what built it and for what:
TensorRT version, GPU and compute capability, precision, batch profile, hashes of the ONNX,
the calibration set and the plan, the mvrt model config (so the runtime knows its inputs
without parsing the plan), and for DLA builds how many layers were placed on the DLA and the GPU.

Compatibility policy (checked before the plan is deserialised):
- GPU: the name and the compute capability must equal the ones the plan was built on (plans
  are tuned for one GPU; mvrt builds no hardware-compatible plans).
- TensorRT, plain plan: the running major.minor.patch must equal the building one (the build
  number is ignored, as TensorRT itself does).
- TensorRT, version-compatible plan (the lean runtime is embedded): the running version must be
  the building one or newer, within the same major or across a major step TensorRT supports
  (8 -> 10, 10 -> 11). With the lean runtime excluded, the version must match exactly.
- DLA plans need a DLA core with that index on the running device.
Any mismatch is a one-line ModelError that says which `mvrt export` command rebuilds the plan.

Trust: a version-compatible plan embeds TensorRT's lean runtime, host code that runs inside the
loading process. The sidecar travels with the plan, so it cannot vouch for it: such a plan loads
only when the caller opts in (`trust_plan_code=True`, see `check_plan_trust`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from mvrt.artifacts import PRECISIONS
from mvrt.config import ModelConfig, load_json_bounded
from mvrt.errors import ModelError
from mvrt.runtime.model_meta import sha256_file

SIDECAR_FORMAT = "mvrt-tensorrt-engine"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".json"
# (built major, running major) pairs TensorRT supports for version-compatible plans.
_CROSS_MAJOR = {(8, 10), (10, 11)}
_MAX_SIDECAR_BYTES = 1 << 20  # a real sidecar is a few KiB; its model config at most 64 KiB
_MAX_BATCH = 1 << 16  # the runtime allocates buffers for the profile's maximum batch
TRUST_OPTION = "trust_plan_code"
# Sidecar fields and the JSON types they must have (batch and model_config are checked by their classes).
_FIELD_TYPES = {"plan_sha256": str, "plan_bytes": int, "tensorrt_version": str, "gpu_name": str,
                "compute_capability": str, "precision": str, "onnx_sha256": str, "calibration_sha256": (str, type(None)),
                "version_compatible": bool, "exclude_lean_runtime": bool, "dla_core": (int, type(None)),
                "workspace_bytes": int, "timing_cache": (str, type(None)), "timing_cache_loaded": bool,
                "layer_devices": (dict, type(None)), "source": str, "created_utc": str}
GIB = 1 << 30
DEFAULT_EXPORT_CONTRACT = 2  # the tensor contract `mvrt export` writes without --contract


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile's batch sizes (every input shares them)."""

    min: int
    opt: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max


@dataclass(frozen=True)
class Machine:
    """What a plan must match: the running TensorRT and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.7"
    dla_cores: int = 0


@dataclass(frozen=True)
class EngineSidecar:
    """Everything recorded beside a plan. `to_dict()` is the JSON file's content."""

    plan_sha256: str
    plan_bytes: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    batch: BatchProfile
    onnx_sha256: str
    model_config: ModelConfig
    calibration_sha256: str | None = None
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    dla_core: int | None = None
    workspace_bytes: int = 1 << 30
    timing_cache: str | None = None
    timing_cache_loaded: bool = False  # the build started from an existing cache file
    # DLA builds: layer counts by device ({"dla": N, "gpu": N, "audio_on_gpu": N}); None on the GPU alone.
    layer_devices: dict[str, int] | None = None
    source: str = ""  # what the plan was built from (checkpoint or .onnx); used in the rebuild command
    created_utc: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["batch"] = asdict(self.batch)
        data["model_config"] = self.model_config.to_dict()
        return {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sidecar") -> "EngineSidecar":
        if data.get("format") != SIDECAR_FORMAT:
            raise ModelError(f"{where}: not an mvrt TensorRT sidecar (format={data.get('format')!r})")
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelError(f"{where}: malformed sidecar (version {version!r} is not an integer); rebuild the engine with `mvrt export`")
        if version > SIDECAR_VERSION:
            raise ModelError(f"{where}: sidecar version {version} is newer than this mvrt reads ({SIDECAR_VERSION}); upgrade mvrt")
        try:
            body = {f.name: data[f.name] for f in fields(cls) if f.name in data}  # unknown keys: newer, ignored
            _check_field_types(body)
            _check_layer_devices(body.get("layer_devices"))
            body["batch"] = BatchProfile(**{k: _batch_size(data["batch"][k]) for k in ("min", "opt", "max")})
            if not body["batch"].min <= body["batch"].opt <= body["batch"].max:
                raise ValueError(f"batch profile {body['batch']} is not min <= opt <= max")
            body["model_config"] = ModelConfig.from_dict(data["model_config"])
            sidecar = cls(**body)
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{where}: malformed sidecar ({type(exc).__name__}: {exc}); rebuild the engine with `mvrt export`") from None
        return sidecar


def _check_field_types(body: Mapping[str, Any]) -> None:
    """TypeError naming the first field whose JSON type is wrong (bool is no int here)."""
    for name, kind in _FIELD_TYPES.items():
        value = body.get(name)
        if name in body and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            raise TypeError(f"field {name!r} has the wrong type ({type(value).__name__})")


def _check_layer_devices(value: Any) -> None:
    if value is not None and not all(isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                     for k, n in value.items()):
        raise TypeError("field 'layer_devices' must map device names to layer counts")


def _batch_size(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_BATCH:
        raise ValueError(f"batch sizes must be integers from 1 to {_MAX_BATCH}, got {value!r}")
    return value


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """`x.plan` -> `x.plan.json`."""
    path = Path(engine_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(engine_path: str | os.PathLike, sidecar: EngineSidecar) -> Path:
    """Write the sidecar beside `engine_path`; returns its path."""
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    """The sidecar of `engine_path` (ModelError naming the expected path when it is missing)."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ModelError(f"{engine_path}: its sidecar {path} is missing; rebuild the engine with `mvrt export "
                         f"CHECKPOINT.safetensors --onnx {shlex.quote(_onnx_beside(engine_path, 'fp32'))} "
                         f"--engine {shlex.quote(str(engine_path))}` "
                         "(mvrt runs only plans it built)")
    size = path.stat().st_size
    if size > _MAX_SIDECAR_BYTES:
        raise ModelError(f"{path}: sidecar is {size} bytes; at most {_MAX_SIDECAR_BYTES} are read (mvrt writes a few KiB)")
    data = load_json_bounded(path.read_bytes(), f"{path}: sidecar", _MAX_SIDECAR_BYTES)
    if not isinstance(data, dict):
        raise ModelError(f"{path}: sidecar is not a JSON object")
    return EngineSidecar.from_dict(data, where=str(path))


def check_plan_trust(sidecar: EngineSidecar, engine_path: str | os.PathLike, trusted: bool,
                     how: str = f"with {TRUST_OPTION}=True") -> None:
    """ModelError when the plan is version-compatible (it carries host code) and `trusted` is not True.

    `how` says how to opt in; the CLI passes its flag. Checked before TensorRT is imported.
    """
    if sidecar.version_compatible and trusted is not True:
        raise ModelError(f"{engine_path}: is a version-compatible plan: it carries TensorRT host code that would run "
                         f"inside this process; load it only from a source you trust, {how}")


def rebuild_command(sidecar: EngineSidecar, engine_path: str | os.PathLike) -> str:
    """The `mvrt export` command that rebuilds this plan on the running machine, with its build settings.

    A plan built from an `.onnx` graph (`mvrt calibrate --engine`, or `mvrt export MODEL.onnx --engine`)
    is rebuilt from that graph alone (its precision is the graph's); one built from a checkpoint
    re-exports the ONNX beside the plan, at the plan's precision.
    """
    source = sidecar.source or "MODEL.safetensors"
    from_graph = source.lower().endswith(".onnx")
    words = ["mvrt", "export", source]
    if not from_graph:
        words += ["--onnx", _onnx_beside(engine_path, sidecar.precision)]
    words += ["--engine", str(engine_path), "--batch", str(sidecar.batch)]
    if not from_graph:
        words += ["--precision", sidecar.precision]
        if sidecar.model_config.contract != DEFAULT_EXPORT_CONTRACT:  # the plan's inputs, not export's default
            words += ["--contract", str(sidecar.model_config.contract)]
    words += ["--workspace-gib", f"{sidecar.workspace_bytes / GIB:g}"]
    if sidecar.timing_cache:
        words += ["--timing-cache", sidecar.timing_cache]
    if sidecar.version_compatible:
        words.append("--version-compatible")
    if sidecar.dla_core is not None:
        words += ["--dla-core", str(sidecar.dla_core)]
    return " ".join(shlex.quote(w) for w in words)


def _onnx_beside(engine_path: str | os.PathLike, precision: str) -> str:
    """Where a rebuild writes its ONNX: beside the plan (never over a bundled or installed model)."""
    path = Path(engine_path)
    return str(path.with_name(path.stem + (".fp16.onnx" if precision == "fp16" else ".onnx")))


def mismatch(sidecar: EngineSidecar, machine: Machine) -> str | None:
    """Why the plan cannot run on `machine`, or None when it can."""
    if sidecar.compute_capability != machine.compute_capability:
        return (f"it was built for compute capability {sidecar.compute_capability} ({sidecar.gpu_name}), "
                f"this GPU is {machine.compute_capability} ({machine.gpu_name})")
    if sidecar.gpu_name != machine.gpu_name:
        return f"it was built on a {sidecar.gpu_name}, this GPU is a {machine.gpu_name}"
    reason = _version_mismatch(sidecar, machine.tensorrt_version)
    if reason:
        return reason
    if sidecar.dla_core is not None and sidecar.dla_core >= machine.dla_cores:
        return f"it runs on DLA core {sidecar.dla_core}, this device has {machine.dla_cores} DLA core(s)"
    return None


def validate_sidecar(sidecar: EngineSidecar, machine: Machine, engine_path: str | os.PathLike) -> None:
    """ModelError (with the rebuild command) when the plan was not built for `machine`."""
    reason = mismatch(sidecar, machine)
    if reason:
        raise ModelError(f"{engine_path}: this TensorRT plan does not match this machine: {reason}; "
                         f"rebuild it with `{rebuild_command(sidecar, engine_path)}`")


def check_plan_hash(sidecar: EngineSidecar, engine_path: str | os.PathLike, data: bytes | None = None) -> None:
    """ModelError when the plan's bytes (`data`, else read from the file) are not the ones the sidecar describes."""
    actual = sha256_file(engine_path) if data is None else hashlib.sha256(data).hexdigest()
    if actual != sidecar.plan_sha256:
        raise ModelError(f"{engine_path}: plan sha256 {actual[:12]}… differs from its sidecar's {sidecar.plan_sha256[:12]}… "
                         f"(plan replaced or damaged); rebuild it with `{rebuild_command(sidecar, engine_path)}`")


def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); non-numeric parts end the version."""
    parts = []
    for part in str(text).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    if not parts:
        raise ModelError(f"cannot read TensorRT version {text!r}")
    return tuple(parts)


def _version_mismatch(sidecar: EngineSidecar, running_text: str) -> str | None:
    built, running = parse_version(sidecar.tensorrt_version)[:3], parse_version(running_text)[:3]
    said = f"it was built with TensorRT {sidecar.tensorrt_version}, this is TensorRT {running_text}"
    if built == running:
        return None
    if not sidecar.version_compatible:
        return said
    if sidecar.exclude_lean_runtime:
        return said + " (the plan was built without its lean runtime, so only that version runs it)"
    if running < built:
        return said + " (a version-compatible plan runs on its TensorRT version or newer)"
    if running[0] != built[0] and (built[0], running[0]) not in _CROSS_MAJOR:
        return said + f" (TensorRT {running[0]} does not run version-compatible plans of TensorRT {built[0]})"
    return None
