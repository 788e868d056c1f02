"""What an mvrt model file says to Triton: kind, precision, inputs and outputs with the batch axis first.

`describe_model(path, source_onnx)` reads an ONNX graph (its inputs and outputs, checked against the mvrt
config it carries) or a TensorRT plan's sidecar (I/O as DESIGN §3 says for its tensor contract, or the
graph of the ONNX it was built from). `triton_repo.write_triton_repository` turns that into a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mvrt.artifacts import ONNX_SUFFIX, OUTPUT_NAME, PLAN_SUFFIXES, model_suffix
from mvrt.config import ModelConfig
from mvrt.errors import MissingDependencyError, ModelError, UsageError

_VARIABLE = "variable"
# ONNX TensorProto element type -> Triton data type (model_config.proto DataType).
_ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
                   7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                   12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}
_NUMPY_TO_TRITON = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}  # ModelConfig.input_dtypes() values


@dataclass(frozen=True)
class TritonTensor:
    """One input or output as the config lists it: dims exclude the batch axis when batching."""

    name: str
    data_type: str  # e.g. "TYPE_FP32"
    dims: tuple[int, ...]  # -1 for a variable dimension


@dataclass(frozen=True)
class TritonModel:
    """What the model file says: kind, I/O with the batch axis first, batch (None: dynamic), profile."""

    kind: str  # "onnx" or "plan"
    config: ModelConfig
    precision: str
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    fixed_batch: int | None = None
    profile: object | None = None  # a plan's BatchProfile
    notes: tuple[str, ...] = ()


def describe_model(path: Path, source_onnx) -> TritonModel:
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    suffix = model_suffix(path)
    if suffix == ONNX_SUFFIX:
        if source_onnx is not None:
            raise UsageError(f"{path}: source_onnx is only for TensorRT plans; an ONNX model is read directly",
                             setting="source_onnx")
        return _describe_onnx(path)
    if suffix in PLAN_SUFFIXES:
        return _describe_plan(path, source_onnx)
    raise ModelError(f"{path}: a Triton repository takes an ONNX model (.onnx) or a TensorRT plan "
                     f"({', '.join(PLAN_SUFFIXES)}), not a {suffix or 'suffix-less'} file; export a checkpoint to ONNX first")


def _describe_onnx(path: Path) -> TritonModel:
    from mvrt.runtime.model_meta import model_precision, read_onnx_config

    config = read_onnx_config(path)  # ModelError when it is not an mvrt model
    inputs, outputs = _graph_tensors(path)
    _check_against_config(path, config, inputs, outputs)
    return TritonModel("onnx", config, model_precision(path), inputs, outputs, fixed_batch=_fixed_batch(path, inputs + outputs))


def _describe_plan(path: Path, source_onnx) -> TritonModel:
    from mvrt.runtime.engines.sidecar import check_plan_hash, read_sidecar

    sidecar = read_sidecar(path)  # ModelError naming the missing sidecar
    check_plan_hash(sidecar, path)
    if sidecar.batch.min > 1:
        raise ModelError(f"{path}: its batch profile {sidecar.batch} starts at {sidecar.batch.min}, but Triton sends "
                         f"batches from 1 up; rebuild the plan with a profile 1:{sidecar.batch.opt}:{sidecar.batch.max}")
    config = sidecar.model_config
    if source_onnx is None:
        dtypes = config.input_dtypes()  # contract 2: uint8 `video`
        inputs = tuple(TritonTensor(n, _NUMPY_TO_TRITON[dtypes[n]], (-1, *s)) for n, s in config.input_shapes().items())
        outputs = (TritonTensor(OUTPUT_NAME, "TYPE_FP32", (-1, len(config.classes))),)
    else:
        inputs, outputs = _plan_tensors_from_onnx(path, Path(source_onnx), sidecar)
    notes = ()
    if sidecar.version_compatible:
        notes = ("this plan is version-compatible (it carries TensorRT host code): Triton loads it only when started "
                 "with --backend-config=tensorrt,version-compatible=true; do so only for plans you trust",)
    notes += (f"the plan runs only on the kind of GPU it was built on ({sidecar.gpu_name}, compute capability "
              f"{sidecar.compute_capability}) with TensorRT {sidecar.tensorrt_version}",)
    return TritonModel("plan", config, sidecar.precision, inputs, outputs, profile=sidecar.batch, notes=notes)


def _plan_tensors_from_onnx(path: Path, onnx_path: Path, sidecar):
    from mvrt.runtime.model_meta import sha256_file

    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such model file (source_onnx of {path})")
    if sha256_file(onnx_path) != sidecar.onnx_sha256:
        raise ModelError(f"{onnx_path}: is not the ONNX model {path} was built from (its sha256 differs from the "
                         "sidecar's onnx_sha256)")
    inputs, outputs = _graph_tensors(onnx_path)
    _check_against_config(onnx_path, sidecar.model_config, inputs, outputs)
    return inputs, outputs


def _graph_tensors(path: Path) -> tuple[tuple[TritonTensor, ...], tuple[TritonTensor, ...]]:
    """Every graph input (initializers excluded) and output: name, Triton dtype, full dims (-1: variable)."""
    try:
        import onnx
    except ModuleNotFoundError:
        raise MissingDependencyError("onnx", "onnx", "writing a Triton repository for an ONNX model") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others for a bad file
        raise ModelError(f"{path}: not an ONNX model ({' '.join(str(exc).split())})") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise ModelError(f"{path}: keeps its weights in external data files; Triton gets only model.onnx, so "
                         "export a single-file model")
    weights = {t.name for t in proto.graph.initializer}
    inputs = tuple(_tensor(path, v) for v in proto.graph.input if v.name not in weights)
    return inputs, tuple(_tensor(path, v) for v in proto.graph.output)


def _tensor(path: Path, value) -> TritonTensor:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ModelError(f"{path}: graph input/output {value.name!r} is a {kind}, not a tensor; Triton serves tensors only")
    tensor = value.type.tensor_type
    data_type = _ONNX_TO_TRITON.get(tensor.elem_type)
    if data_type is None:
        raise ModelError(f"{path}: tensor {value.name!r} has ONNX element type {tensor.elem_type}, which Triton has no type for")
    if not tensor.HasField("shape"):
        raise ModelError(f"{path}: tensor {value.name!r} has no shape in the graph")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    if len(dims) < 2:
        raise ModelError(f"{path}: tensor {value.name!r} has shape {list(dims)}; mvrt models have a batch axis "
                         "and at least one more")
    return TritonTensor(value.name, data_type, dims)


def _check_against_config(path: Path, config: ModelConfig, inputs, outputs) -> None:
    """ModelError when the graph's inputs/outputs are not the ones its own mvrt config describes."""
    shapes = config.input_shapes()
    if {t.name for t in inputs} != set(shapes):
        raise ModelError(f"{path}: graph inputs {sorted(t.name for t in inputs)} differ from its config's "
                         f"{sorted(shapes)}; re-export the model")
    if OUTPUT_NAME not in {t.name for t in outputs}:
        raise ModelError(f"{path}: the graph has no {OUTPUT_NAME!r} output; re-export the model")
    expected = {**shapes, OUTPUT_NAME: (len(config.classes),)}
    for tensor in (*inputs, *outputs):
        want = expected.get(tensor.name)
        if want is not None and not _dims_fit(tensor.dims[1:], want):
            raise ModelError(f"{path}: tensor {tensor.name!r} has shape {list(tensor.dims)} but its config says "
                             f"[batch, {', '.join(map(str, want))}]; re-export the model")


def _dims_fit(dims: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return len(dims) == len(want) and all(d in (-1, w) for d, w in zip(dims, want))


def _fixed_batch(path: Path, tensors) -> int | None:
    """None when every tensor's batch axis is variable, else the one fixed batch they share."""
    batches = {t.dims[0] for t in tensors}
    if len(batches) > 1:
        raise ModelError(f"{path}: its inputs and outputs disagree on the batch axis "
                         f"({', '.join(f'{t.name}: {t.dims[0] if t.dims[0] > 0 else _VARIABLE}' for t in tensors)})")
    (batch,) = batches
    return None if batch == -1 else batch
