"""Plain FP32 ONNX export of a checkpoint or a module (DESIGN §5).

One self-contained file: opset >= 18, dynamic batch axis "batch" on every input and on
`logits`, the config JSON in `metadata_props["mvrt_config"]` and the checkpoint's sha256 in
`metadata_props[CHECKPOINT_SHA_KEY]`. Uses torch's TorchScript-based exporter
(`dynamo=False`): it needs no onnxscript, folds BatchNorm into the convolutions and yields a
single protobuf; the dynamo exporter would need the extra `onnxscript` package.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mvrt.artifacts import CHECKPOINT_SHA_KEY, CONFIG_KEY, OUTPUT_NAME
from mvrt.config import CONTRACTS, ModelConfig
from mvrt.errors import MissingDependencyError, ModelError, UsageError
from mvrt.runtime.model_meta import sha256_file

if TYPE_CHECKING:
    import onnx
    import torch

BATCH_AXIS = "batch"
MIN_OPSET = 18
_EXPORT_BATCH = 2  # the traced batch; any batch works afterwards
_MAX_PROTO_BYTES = 2**31 - 1


def export_onnx(checkpoint_or_model: "str | os.PathLike | torch.nn.Module", config: ModelConfig | None,
                out_path: str | os.PathLike, *, opset: int = MIN_OPSET,
                checkpoint_sha256: str | None = None, contract: int = 2) -> Path:
    """Export to `out_path`; returns it.

    `checkpoint_or_model` is a `.safetensors` checkpoint (then `config` may be None and the
    sha256 is computed from the file) or a module built from `config`. `contract` is the tensor
    contract of the graph's inputs (DESIGN §3): 2 (default) takes uint8 `video` and normalises
    it in the graph, 1 takes the float32 pathways; the written config records it.
    """
    if opset < MIN_OPSET:
        raise UsageError(f"opset {opset} is too old; mvrt models need opset {MIN_OPSET} or newer", setting="opset")
    if isinstance(contract, bool) or contract not in CONTRACTS:
        raise UsageError(f"contract {contract!r}: choose one of {', '.join(map(str, CONTRACTS))}", setting="contract")
    model, config, checkpoint_sha256 = _resolve(checkpoint_or_model, config, checkpoint_sha256)
    from mvrt.models.contract import with_contract

    config = config.replace(contract=contract)
    proto = _trace(with_contract(model, config), config, opset)
    if contract == 2:
        _network_node_names(proto)
    add_metadata(proto, {CONFIG_KEY: config.to_json(), CHECKPOINT_SHA_KEY: checkpoint_sha256 or ""})
    return save_single_file(proto, out_path)


def _resolve(source, config: ModelConfig | None, sha: str | None):
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch", "ONNX export") from None
    if isinstance(source, torch.nn.Module):
        if config is None:
            raise UsageError("exporting a module needs its ModelConfig")
        _check_module_matches(source, config)
        return source, config.replace(contract=1), sha
    from mvrt.checkpoint import load_checkpoint

    model, stored = load_checkpoint(source)
    if config is not None and config.replace(contract=1) != stored:
        raise UsageError(f"{source}: the given config differs from the one stored in the checkpoint")
    return model, stored, sha or sha256_file(source)


def _check_module_matches(model: "torch.nn.Module", config: ModelConfig) -> None:
    """The module's state dict must be that of `build_model(config)` (built on the meta device)."""
    import torch

    from mvrt.models import build_model

    with torch.device("meta"):
        reference = build_model(config)
    want = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != got:
        raise UsageError(f"the module is not the {config.arch} network of the given config (width {config.width}, mmtm {config.mmtm})")


def _trace(model: "torch.nn.Module", config: ModelConfig, opset: int) -> "onnx.ModelProto":
    import onnx
    import torch

    device = next(model.parameters()).device
    dtypes = config.input_dtypes()
    dummy = tuple(torch.zeros(_EXPORT_BATCH, *shape, device=device, dtype=getattr(torch, dtypes[name]))
                  for name, shape in config.input_shapes().items())
    names = list(config.input_names)
    axes = {name: {0: BATCH_AXIS} for name in [*names, OUTPUT_NAME]}
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(model, dummy, buffer, input_names=names, output_names=[OUTPUT_NAME],
                              dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    finally:
        model.train(was_training)
    return onnx.load_from_string(buffer.getvalue())


_WRAPPED = "/network/"  # how torch may scope the nodes of the network behind `Uint8VideoInputs`
INPUT_FRONT_SCOPE = "/input_front/"  # contract 2's own nodes: the frames' normalisation and slow subset
_FRONT_OPS = ("Cast", "Mul", "Sub", "Gather")


def _network_node_names(proto: "onnx.ModelProto") -> None:
    """Give the network's nodes the names they have under contract 1 (`/network/stem/...` -> `/stem/...`), so
    that layer names (`--exclude`, the sensitivity report) do not depend on the contract; the contract's own
    nodes (found by structure: what reads the uint8 input before the network does) move under `/input_front/`."""
    front = _input_front_nodes(proto.graph)
    for i, node in enumerate(proto.graph.node):
        if i in front:
            node.name = INPUT_FRONT_SCOPE + node.name.rsplit("/", 1)[-1]
        elif node.name.startswith(_WRAPPED):
            node.name = "/" + node.name[len(_WRAPPED):]


def _input_front_nodes(graph) -> set[int]:
    """Indices of the nodes that turn the uint8 `video` input into the network's float pathways, with their Constants."""
    constants = {n.output[0]: i for i, n in enumerate(graph.node) if n.op_type == "Constant"}
    values = {v.name for v in graph.input if v.type.tensor_type.elem_type == 2}  # TensorProto.UINT8
    front: set[int] = set()
    for i, node in enumerate(graph.node):
        reads = [x for x in node.input if x]
        if node.op_type in _FRONT_OPS and any(x in values for x in reads) and all(x in values or x in constants for x in reads):
            front.add(i)
            front.update(constants[x] for x in reads if x in constants)
            values.update(node.output)
    return front


def add_metadata(proto: "onnx.ModelProto", entries: dict[str, str]) -> None:
    """Set `metadata_props` entries, replacing existing keys."""
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def save_single_file(proto: "onnx.ModelProto", out_path: str | os.PathLike) -> Path:
    """Check `proto` and write it as one file (no external data)."""
    import onnx

    if proto.ByteSize() > _MAX_PROTO_BYTES:
        raise ModelError(f"{out_path}: model is over 2 GiB and cannot be stored as a single ONNX file")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{out_path}: exported graph fails the ONNX checker: {' '.join(str(exc).split())}") from None
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(proto.SerializeToString())
    return out_path
