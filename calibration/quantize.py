"""Symmetric INT8 Q/DQ with ONNX Runtime's quantiser (DESIGN §6).

What the graph gets, for TensorRT 10/11 and ONNX Runtime alike:
- the inputs of every Conv / Gemm / MatMul are quantised (activations per tensor, weights per
  output channel), all with zero point 0 and scale = range / 127 (activations) or max|w| / 127;
  their outputs are not (TensorRT's recommended placement; ONNX Runtime's default would also
  quantise every output, the logits included, which cost the bundled model 20 points of agreement);
- weights are stored as int8 initialisers behind a DequantizeLinear (TensorRT reads these
  pre-quantised weights directly); biases stay float32 (TensorRT has no INT32 DequantizeLinear);
- everything else (ReLU, pooling, MMTM's sigmoid gating, ReduceMean, softmax-free logits)
  stays float32, and any node named by `--exclude` keeps its inputs in float32;
- a non-float graph input (tensor contract 2's uint8 `video`) and its Cast to float32 are never
  quantised: the graph's own normalisation reads them, and the first Conv's input after it is
  quantised like any other activation (`check_raw_inputs` refuses a graph that does otherwise).

Activation ranges come from `mvrt.calibration.ranges`; this module only places Q/DQ nodes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import re
from pathlib import Path
from typing import Sequence

from mvrt.errors import MissingDependencyError, ModelError, UsageError

__all__ = ["OP_TYPES", "check_raw_inputs", "collapsed_bias_warnings", "quantizable_nodes", "quantize_qdq", "quantized_nodes",
           "resolve_excludes"]

OP_TYPES = ("Conv", "Gemm", "MatMul")
log = logging.getLogger(__name__)
# ONNX Runtime's QDQ quantizer warns once per Conv/Gemm whose bias is not an initializer
_BIAS_WARNINGS = re.compile(r"Expected bias '(?P<name>[^']*)' to be an initializer|Bias of Gemm node '(?P<gemm>[^']*)' "
                            r"is not constant")


def ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise MissingDependencyError("onnxruntime", "dev", "INT8 calibration") from None
    return quantization


def require_onnx():
    """The onnx module; calibration edits graphs (onnx comes with the torch or dev extra)."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "onnx", "INT8 calibration") from None
    return onnx


def quantizable_nodes(model, op_types: Sequence[str] = OP_TYPES) -> list[str]:
    """Names of the nodes the quantiser may quantise, in graph order."""
    return [node.name for node in model.graph.node if node.op_type in op_types]


def quantized_nodes(model) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes of a Q/DQ graph that read a DequantizeLinear output."""
    dequantized = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return [node.name for node in model.graph.node
            if node.op_type in OP_TYPES and any(value in dequantized for value in node.input)]


def resolve_excludes(model, patterns: Sequence[str], where: str) -> tuple[str, ...]:
    """Node names matching `exclude` patterns (exact names or shell globs such as '/stem/*')."""
    names = quantizable_nodes(model)
    chosen: dict[str, None] = {}
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            example = names[0] if names else "none"
            raise UsageError(f"exclude {pattern!r} matches no quantisable layer of {where} (names look like "
                             f"{example!r}; the report's sensitivity list shows them)", setting="exclude")
        chosen.update(dict.fromkeys(hits))
    return tuple(chosen)


def quantize_qdq(onnx_path: str | os.PathLike, ranges, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None):
    """The Q/DQ INT8 model (an `onnx.ModelProto`) of an FP32 model for `ranges` (ORT `TensorsData`)."""
    quantization = ort_quantization()
    require_onnx()
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    try:
        model = load_model_with_shape_infer(Path(onnx_path))
    except Exception as exc:  # noqa: BLE001 - onnx/ORT raise many types for a bad file
        raise ModelError(f"{onnx_path}: cannot be loaded for quantisation: {' '.join(str(exc).split())}") from None
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
               "OpTypesToExcludeOutputQuantization": list(OP_TYPES),  # inputs only: TensorRT's placement
               "DedicatedQDQPair": True}  # a pair per reader: pooling and other float readers keep float inputs
    quantizer = QDQQuantizer(model, True, False, quantization.QuantType.QInt8, quantization.QuantType.QInt8,
                             ranges, list(only or []), list(exclude), list(OP_TYPES), options)
    with collapsed_bias_warnings():
        quantizer.quantize_model()
    quantizer.model.topological_sort()  # Q/DQ nodes are appended at the end; ONNX wants producers first
    proto = quantizer.model.model
    _float_readers_read_floats(proto)
    _drop_shape_info(proto)
    check_raw_inputs(proto, str(onnx_path))
    return proto


def _float_readers_read_floats(proto) -> None:
    """Nodes other than the quantised ops read an activation's float tensor, not its DequantizeLinear output.

    ONNX Runtime's quantiser shares one Q/DQ pair between a quantised Conv and a data-movement reader of
    the same tensor (contract 2: the fast pathway's Conv and the Gather taking the slow frames); the slow
    pathway would then be quantised twice. Rerouted, the Gather reads the float frames and its own output
    is quantised once for the slow Conv, as the `video_slow` input is under contract 1.
    """
    producers = {out: node for node in proto.graph.node for out in node.output}
    original = {}
    for node in proto.graph.node:
        q = producers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            original[node.output[0]] = q.input[0]
    for node in proto.graph.node:
        if node.op_type not in (*OP_TYPES, "QuantizeLinear", "DequantizeLinear"):
            node.input[:] = [original.get(name, name) for name in node.input]


def check_raw_inputs(proto, where: str) -> None:
    """ModelError if a QuantizeLinear reads a non-float graph input or its Cast (contract 2's uint8 frames)."""
    onnx = require_onnx()
    raw = {v.name for v in proto.graph.input
           if v.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    casts = {out for node in proto.graph.node if node.op_type == "Cast" and node.input[0] in raw for out in node.output}
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in raw | casts:
            raise ModelError(f"{where}: the quantiser put QuantizeLinear {node.name!r} on the raw input "
                             f"{node.input[0]!r}; the uint8 frames must reach the graph's normalisation unquantised")


class _BiasWarningFilter(logging.Filter):
    """Swallows ONNX Runtime's per-bias warnings, keeping the names they name."""

    def __init__(self):
        super().__init__()
        self.names: dict[str, None] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        match = _BIAS_WARNINGS.search(record.getMessage())
        if match is None:
            return True
        self.names[match.group("name") or match.group("gemm")] = None
        return False


@contextlib.contextmanager
def collapsed_bias_warnings():
    """ONNX Runtime's "Expected bias ... to be an initializer" warnings, collapsed into one line.

    The quantiser logs one per Conv/Gemm whose bias is computed by a node (a Constant, or
    arithmetic such as an unfolded BatchNorm) instead of stored as an initializer. mvrt never
    quantises biases (QuantizeBias off: TensorRT has no INT32 DequantizeLinear), so those biases
    stay FP32 exactly like the others; the warning has no consequence and one summary says so.
    It logs through the root logger (`logging.warning`), which would also install a stderr
    handler if none exists; a NullHandler stands in meanwhile so that it does not.
    """
    root = logging.getLogger()
    found = _BiasWarningFilter()
    stand_in = logging.NullHandler() if not root.handlers else None
    if stand_in is not None:
        root.addHandler(stand_in)
    root.addFilter(found)
    try:
        yield found.names
    finally:
        root.removeFilter(found)
        if stand_in is not None:
            root.removeHandler(stand_in)
    if found.names:
        example = next(iter(found.names))
        count = len(found.names)
        subject = "1 Conv/Gemm bias is" if count == 1 else f"{count} Conv/Gemm biases are"
        log.warning("%s computed in the graph, not stored as an initializer (e.g. %r); the quantiser cannot "
                    "quantise such a bias, and it stays FP32 like every bias in mvrt's INT8 graphs", subject, example)


def _drop_shape_info(proto) -> None:
    """Shape inference's value_info is not needed at run time and bloats the file."""
    del proto.graph.value_info[:]
    props = [p for p in proto.metadata_props if p.key != "onnx.infer"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
