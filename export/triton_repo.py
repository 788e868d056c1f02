"""A Triton Inference Server model repository entry for an mvrt model (issue 16, item 1).

`write_triton_repository(model, repo_dir)` writes `repo_dir/<name>/config.pbtxt` and `1/model.onnx`
(FP32, FP16 or calibrated INT8 Q/DQ ONNX: platform onnxruntime_onnx) or `1/model.plan` with its sidecar
`1/model.plan.json` (a plan from `mvrt export --engine`: tensorrt_plan). The config comes from the model:
inputs and outputs from the ONNX graph (a plan: its sidecar's model config, I/O as DESIGN §3 says for its
tensor contract: TYPE_FP32, TYPE_UINT8 for contract 2's `video`; or the ONNX it was built from), `max_batch_size` and preferred batch sizes from the plan's batch profile
(configs that ask a plan for more than its profile are what Triton users keep tripping over) or the graph's
batch axis, and the mvrt config JSON and precision as `parameters`, so a KServe V2 client can rebuild the
front-end. The text format is written here (no tritonclient needed); the tests parse it with tritonclient's
`model_config_pb2`. The folder is built in a hidden staging folder in `repo_dir` and renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mvrt.artifacts import CONFIG_KEY, PRECISION_KEY
from mvrt.errors import OutputError, UsageError
from mvrt.export.triton_model import TritonModel, TritonTensor, describe_model

__all__ = ["TritonRepository", "TritonTensor", "write_triton_repository"]

DEFAULT_MAX_BATCH_SIZE = 8  # ONNX with a dynamic batch axis: the same maximum as mvrt's default plan profile 1:4:8
DEFAULT_QUEUE_DELAY_MICROSECONDS = 5000  # 5 ms: nothing next to a window's decode, enough to group concurrent clients
MAX_QUEUE_DELAY_MICROSECONDS = 10_000_000
MAX_BATCH_SIZE = 1 << 16  # as for plan profiles (runtime/engines/sidecar.py)
MAX_INSTANCE_COUNT = 64
INSTANCE_KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU")
VERSION = "1"
MODEL_SHA_KEY = "mvrt_model_sha256"  # parameter: sha256 of the served model file
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_STAGING_PREFIX = ".mvrt-staging-"
_PLATFORMS = {"onnx": ("onnxruntime_onnx", "onnxruntime", "model.onnx"), "plan": ("tensorrt_plan", "tensorrt", "model.plan")}


@dataclass(frozen=True)
class TritonRepository:
    """What `write_triton_repository` wrote."""

    repo_dir: Path
    name: str
    model_dir: Path  # repo_dir/name
    config_path: Path  # repo_dir/name/config.pbtxt
    model_file: Path  # repo_dir/name/1/model.onnx or model.plan
    platform: str  # onnxruntime_onnx or tensorrt_plan
    precision: str  # fp32, fp16 or int8
    max_batch_size: int  # 0: the model has a fixed batch (> 1) and Triton does not batch it
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_microseconds: int
    instance_kind: str
    instance_count: int
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    notes: tuple[str, ...] = ()  # what the server needs beyond `tritonserver --model-repository DIR`


def write_triton_repository(model_path: str | os.PathLike, repo_dir: str | os.PathLike, *, name: str | None = None,
                            max_batch_size: int | None = None, preferred_batch_sizes: tuple[int, ...] | None = None,
                            max_queue_delay_microseconds: int = DEFAULT_QUEUE_DELAY_MICROSECONDS,
                            instance_count: int = 1, instance_kind: str | None = None, overwrite: bool = False,
                            source_onnx: str | os.PathLike | None = None) -> TritonRepository:
    """Write `repo_dir/<name>/` (config.pbtxt and version 1) for an mvrt ONNX model or TensorRT plan.

    - `name`: the model's folder and Triton name; default: the file's stem with other characters
      than letters, digits, `_`, `-`, `.` replaced by `_`.
    - `max_batch_size`: plans: at most the profile's max (default: that max); ONNX with a dynamic
      batch axis: default `DEFAULT_MAX_BATCH_SIZE`; ONNX with a fixed batch: that batch, not settable.
    - `preferred_batch_sizes`: default: the plan profile's opt and max; for ONNX the powers of two
      from 2 below `max_batch_size`, and `max_batch_size` itself (at most three, the largest).
    - `max_queue_delay_microseconds`: how long Triton waits to fill a preferred batch.
    - `instance_kind`: KIND_AUTO, KIND_GPU or KIND_CPU; default KIND_GPU for plans, KIND_AUTO for ONNX.
    - `overwrite`: replace an existing `repo_dir/<name>` (else that is an error).
    - `source_onnx`: for a plan, the ONNX it was built from (its sha256 must be the sidecar's): the
      inputs and outputs are then read from its graph instead of the model config.
    """
    path = Path(model_path)
    model = describe_model(path, source_onnx)
    name = _model_name(path, name)
    kind = _instance_kind(instance_kind, model.kind)
    _check_count("instance_count", instance_count, 1, MAX_INSTANCE_COUNT)
    _check_count("max_queue_delay_microseconds", max_queue_delay_microseconds, 0, MAX_QUEUE_DELAY_MICROSECONDS)
    batch, preferred = _batching(path, model, max_batch_size, preferred_batch_sizes)
    platform, backend, filename = _PLATFORMS[model.kind]
    model_dir = Path(repo_dir) / name
    repo = TritonRepository(
        repo_dir=Path(repo_dir), name=name, model_dir=model_dir, config_path=model_dir / "config.pbtxt",
        model_file=model_dir / VERSION / filename, platform=platform, precision=model.precision, max_batch_size=batch,
        preferred_batch_sizes=preferred, max_queue_delay_microseconds=max_queue_delay_microseconds,
        instance_kind=kind, instance_count=instance_count, inputs=_config_tensors(model.inputs, batch),
        outputs=_config_tensors(model.outputs, batch), notes=model.notes)
    from mvrt.runtime.model_meta import sha256_file

    parameters = {CONFIG_KEY: model.config.to_json(), PRECISION_KEY: model.precision, MODEL_SHA_KEY: sha256_file(path)}
    files = {filename: path}
    if model.kind == "plan":
        from mvrt.runtime.engines.sidecar import sidecar_path

        files[sidecar_path(filename).name] = sidecar_path(path)
    _write_atomically(model_dir, _render_config(repo, backend, parameters, _header(path, model)), files, overwrite)
    return repo


# --- options -----------------------------------------------------------------------------------

def _model_name(path: Path, name: str | None) -> str:
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip(".-") or "model"
        return name[:128]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"name {name!r} is not a safe folder name: use up to 128 letters, digits, '_', '-' or '.', "
                         "starting with a letter, digit or '_'", setting="name")
    return name


def _instance_kind(kind: str | None, model_kind: str) -> str:
    if kind is None:
        return "KIND_GPU" if model_kind == "plan" else "KIND_AUTO"
    if kind not in INSTANCE_KINDS:
        raise UsageError(f"instance_kind must be one of {', '.join(INSTANCE_KINDS)}, got {kind!r}", setting="instance_kind")
    if model_kind == "plan" and kind == "KIND_CPU":
        raise UsageError("instance_kind KIND_CPU cannot serve a TensorRT plan (plans run on GPUs only)",
                         setting="instance_kind")
    return kind


def _check_count(setting: str, value, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UsageError(f"{setting} must be a whole number from {low} to {high}, got {value!r}", setting=setting)


def _batching(path: Path, model: TritonModel, max_batch_size, preferred) -> tuple[int, tuple[int, ...]]:
    """(max_batch_size, preferred batch sizes) for the config, checked against what the model can run."""
    if model.profile is not None:
        top = model.profile.max
        if max_batch_size is not None:
            _check_count("max_batch_size", max_batch_size, 1, MAX_BATCH_SIZE)
            if max_batch_size > top:
                raise UsageError(f"max_batch_size {max_batch_size} is more than {path} can run: its batch profile "
                                 f"is {model.profile} (at most {top})", setting="max_batch_size")
            top = max_batch_size
        default = tuple(sorted({b for b in (model.profile.opt, model.profile.max) if b <= top} | {top}))
    elif model.fixed_batch is not None:
        fixed = 1 if model.fixed_batch == 1 else 0
        if max_batch_size not in (None, fixed):
            raise UsageError(f"max_batch_size {max_batch_size!r} does not fit {path}: its batch axis is fixed at "
                             f"{model.fixed_batch}", setting="max_batch_size")
        if preferred:
            raise UsageError(f"preferred_batch_sizes cannot be set for {path}: its batch axis is fixed at "
                             f"{model.fixed_batch}", setting="preferred_batch_sizes")
        return fixed, ()
    else:
        top = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else max_batch_size
        _check_count("max_batch_size", top, 1, MAX_BATCH_SIZE)
        default = _powers_of_two(top)
    return top, default if preferred is None else _preferred(preferred, top)


def _powers_of_two(top: int) -> tuple[int, ...]:
    sizes = {1 << k for k in range(1, top.bit_length())} | {top} if top > 1 else set()
    return tuple(sorted(sizes))[-3:]


def _preferred(sizes, top: int) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise UsageError(f"preferred_batch_sizes must be a list of batch sizes, got {sizes!r}", setting="preferred_batch_sizes")
    sizes = tuple(sizes)
    for size in sizes:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= top:
            raise UsageError(f"preferred_batch_sizes: each must be a whole number from 1 to max_batch_size ({top}), "
                             f"got {size!r}", setting="preferred_batch_sizes")
    return tuple(sorted(set(sizes)))


def _config_tensors(tensors, batch: int) -> tuple[TritonTensor, ...]:
    """Dims as the config lists them: without the batch axis when Triton batches (max_batch_size > 0)."""
    return tuple(TritonTensor(t.name, t.data_type, t.dims[1:] if batch else t.dims) for t in tensors)


# --- the text format ---------------------------------------------------------------------------

def _render_config(repo: TritonRepository, backend: str, parameters: dict[str, str], header: str) -> str:
    """config.pbtxt in protobuf text format (Triton's `ModelConfig` message)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"name: {_quote(repo.name)}", f"platform: {_quote(repo.platform)}", f"backend: {_quote(backend)}",
              f"max_batch_size: {repo.max_batch_size}"]
    for field, tensors in (("input", repo.inputs), ("output", repo.outputs)):
        entries = [[f"name: {_quote(t.name)}", f"data_type: {t.data_type}", f"dims: [ {', '.join(map(str, t.dims))} ]"]
                   for t in tensors]
        lines += _list(field, entries)
    if repo.max_batch_size > 0:
        lines.append("dynamic_batching {")
        if repo.preferred_batch_sizes:
            lines.append(f"  preferred_batch_size: [ {', '.join(map(str, repo.preferred_batch_sizes))} ]")
        lines += [f"  max_queue_delay_microseconds: {repo.max_queue_delay_microseconds}", "}"]
    lines += _list("instance_group", [[f"count: {repo.instance_count}", f"kind: {repo.instance_kind}"]])
    lines += _list("parameters", [[f"key: {_quote(k)}", f"value: {{ string_value: {_quote(v)} }}"]
                                  for k, v in parameters.items()])
    return "\n".join(lines) + "\n"


def _list(field: str, entries: list[list[str]]) -> list[str]:
    out = [f"{field} ["]
    for i, entry in enumerate(entries):
        out += ["  {", *(f"    {line}" for line in entry), "  }," if i < len(entries) - 1 else "  }"]
    return out + ["]"]


def _quote(text: str) -> str:
    """A protobuf text-format string literal: UTF-8 bytes, printable ASCII as is, the rest octal-escaped."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in "\"\\":
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _header(path: Path, model: TritonModel) -> str:
    from mvrt import __version__

    lines = [f"Written by mvrt {__version__} from {path.name} ({model.config.arch}, {model.precision}).",
             "Inputs, outputs and batching come from the model; parameters.mvrt_config is its front-end."]
    if model.profile is not None:
        lines.append(f"The plan's batch profile is {model.profile}: max_batch_size must not exceed {model.profile.max}.")
    return "\n".join(lines)


# --- writing -----------------------------------------------------------------------------------

def _write_atomically(target: Path, text: str, files: dict[str, Path], overwrite: bool) -> None:
    """Build `target` (repo_dir/name) in a staging folder beside it, then rename it into place."""
    repo_dir = target.parent
    if not isinstance(overwrite, bool):
        raise UsageError(f"overwrite must be True or False, got {overwrite!r}", setting="overwrite")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputError(f"{target}: already exists; pass overwrite=True to replace it", setting="overwrite")
    try:
        repo_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{target.name}-", dir=repo_dir))
    except OSError as exc:
        raise OutputError(f"{repo_dir}: cannot create the model repository folder ({exc.strerror or exc})") from None
    try:
        (staging / VERSION).mkdir()
        for filename, source in files.items():
            shutil.copyfile(source, staging / VERSION / filename)
        (staging / "config.pbtxt").write_text(text, encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the server may run as another user
        _swap_in(staging, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the model folder ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an existing target is moved aside first and restored on failure."""
    if not (target.exists() or target.is_symlink()):
        os.rename(staging, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}old-", dir=target.parent))
    old = aside / target.name
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)  # put the previous model back before reporting the failure
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)
