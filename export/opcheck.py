"""Check an ONNX graph against what TensorRT's ONNX parser (onnx-tensorrt) accepts.

The tables transcribe onnx-tensorrt's `docs/operators.md`: `SUPPORTED` is the 10.1 release's
matrix (opset 9-20), which every TensorRT we target parses (JetPack 6 ships 10.3; desktop
10.x and 11.x are newer); `ADDED_LATER` holds the ops that the 10.15 matrix (opset 9-24) adds.
Types are checked on each op's first input (its main tensor type), or on its output for ops
whose first input is a size or shape. Restrictions checked are those that can matter for mvrt
graphs: constant `axes`, pooling rank and dilations, Dropout in inference mode, zero Q/DQ
zero points, and Constant value kinds. TensorRT 11's matrix is not published in that file
yet; 11.x is assumed to accept what 10.15 does.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mvrt.errors import ModelError

if TYPE_CHECKING:
    import onnx

_F = "FP32 FP16 BF16"
_FI = f"{_F} INT32 INT64"
_FIB = f"{_FI} BOOL"
_TABLE_10_1: dict[str, str] = {
    "BOOL": "And Not Or Xor",
    f"{_F} FP8 INT32 INT64": "Mean",
    f"{_FIB}": "Concat Constant ConstantOfShape Expand EyeLike Flatten Gather GatherElements GatherND Identity If "
               "Loop OneHot Reshape ReverseSequence Shape Size Slice Split Squeeze Tile Transpose Trilu Unsqueeze Where",
    f"{_FI} UINT8 BOOL": "Cast CastLike",
    _FI: "Abs Add ArgMax ArgMin DepthToSpace Div Equal Greater GreaterOrEqual IsNaN Less LessOrEqual Max Min Mod "
         "Mul Neg Pad Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin "
         "ReduceProd ReduceSum ReduceSumSquare Relu Scatter ScatterElements ScatterND Shrink Sign SpaceToDepth "
         "Sub Sum TopK",
    f"{_FI} INT8": "Gelu",
    _F: "Acos Acosh Asin Asinh Atan Atanh AveragePool BatchNormalization Ceil Celu Clip Conv ConvTranspose Cos "
        "Cosh CumSum Dropout Einsum Elu Erf Exp Floor GRU Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool "
        "GroupNormalization HardSigmoid HardSwish Hardmax ImageScaler InstanceNormalization IsInf LRN LSTM "
        "LayerNormalization LeakyRelu Log LogSoftmax LpNormalization LpPool MatMul MaxPool "
        "MeanVarianceNormalization PRelu ParametricSoftplus Pow QuantizeLinear RNN RandomNormal "
        "RandomNormalLike RandomUniform RandomUniformLike Reciprocal Resize Round ScaledTanh Scan Selu Sigmoid "
        "Sin Sinh Softmax Softplus Softsign Sqrt Tan Tanh ThresholdedRelu Upsample",
    "FP32 FP16": "DeformConv GridSample Mish NonMaxSuppression NonZero RoiAlign",
    "INT8 FP8 INT4": "DequantizeLinear",
}
_TABLE_10_15_ADDED: dict[str, str] = {
    f"{_F} INT8 FP8": "Attention",
    "FP32 FP16": "BlackmanWindow HammingWindow HannWindow",
    "FP32": "STFT",
    _F: "RMSNormalization RotaryEmbedding",
    f"{_F} INT32": "TensorScatter",
}
BASELINE_TENSORRT = "10.3"  # the oldest TensorRT mvrt builds on (Jetson JetPack 6)
OPSET_RANGE = {"10.1": (9, 20), "10.15": (9, 24)}


def _expand(table: dict[str, str]) -> dict[str, frozenset[str]]:
    return {op: frozenset(types.split()) for types, ops in table.items() for op in ops.split()}


SUPPORTED: dict[str, frozenset[str]] = _expand(_TABLE_10_1)
ADDED_LATER: dict[str, tuple[str, frozenset[str]]] = {op: ("10.15", t) for op, t in _expand(_TABLE_10_15_ADDED).items()}
# Ops whose `axes` (input index) must be a build-time constant.
_CONSTANT_INPUTS = {**{op: 1 for op in SUPPORTED if op.startswith("Reduce")}, "Squeeze": 1, "Unsqueeze": 1,
                    "Slice": 3, "Pad": 3, "CumSum": 1, "OneHot": 1}
_ONNX_DOMAINS = ("", "ai.onnx")
# Ops whose listed types are those of the output (their first input is a size or shape).
_TYPED_BY_OUTPUT = {"BlackmanWindow", "HammingWindow", "HannWindow", "ConstantOfShape", "RandomNormalLike",
                    "RandomUniformLike", "EyeLike"}


@dataclass(frozen=True)
class OpIssue:
    node: str
    op_type: str
    problem: str

    def __str__(self) -> str:
        return f"node {self.node!r} ({self.op_type}): {self.problem}"


@dataclass(frozen=True)
class OpCheckReport:
    """Outcome of a passing check: op types and counts, the TensorRT version checked against."""

    op_counts: tuple[tuple[str, int], ...]
    nodes: int
    opset: int
    tensorrt: str

    def summary(self) -> str:
        return (f"TensorRT op check (ONNX parser of TensorRT >= {self.tensorrt}): all {self.nodes} nodes of "
                f"{len(self.op_counts)} op types supported (opset {self.opset})")


def check_tensorrt_ops(model: "onnx.ModelProto | str | os.PathLike", tensorrt: str = BASELINE_TENSORRT,
                       where: str | None = None) -> OpCheckReport:
    """Raise a one-line ModelError naming every node TensorRT >= `tensorrt` cannot parse."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        where = where or str(model)
        model = onnx.load(str(model), load_external_data=False)
    where = where or model.graph.name or "model"
    opset = _default_opset(model)
    low, high = OPSET_RANGE["10.15" if _at_least(tensorrt, "10.15") else "10.1"]
    if not low <= opset <= high:
        raise ModelError(f"{where}: opset {opset} is outside the range TensorRT {tensorrt}'s ONNX parser supports ({low}-{high}); re-export with opset=18",
                         setting="opset")
    issues = find_unsupported(model, tensorrt)
    if issues:
        shown = "; ".join(str(i) for i in issues[:5]) + (f"; and {len(issues) - 5} more" if len(issues) > 5 else "")
        raise ModelError(f"{where}: TensorRT {tensorrt}'s ONNX parser cannot take {len(issues)} node(s): {shown}")
    counts = Counter(n.op_type for n in model.graph.node)
    return OpCheckReport(op_counts=tuple(sorted(counts.items())), nodes=len(model.graph.node), opset=opset, tensorrt=tensorrt)


def find_unsupported(model: "onnx.ModelProto", tensorrt: str = BASELINE_TENSORRT) -> list[OpIssue]:
    """Every node TensorRT >= `tensorrt` cannot parse, with the reason (empty when all are fine)."""
    types = _tensor_types(model)
    constants = {t.name: t for t in model.graph.initializer}
    constants.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value"})
    issues = []
    for i, node in enumerate(model.graph.node):
        problem = _node_problem(node, types, constants, tensorrt)
        if problem:
            issues.append(OpIssue(node.name or f"#{i}", _qualified(node), problem))
    return issues


def _node_problem(node, types: dict[str, str], constants: dict, tensorrt: str) -> str | None:
    if node.domain not in _ONNX_DOMAINS:
        return f"custom-domain op {node.domain!r} is not an ONNX operator (TensorRT would need a plugin)"
    allowed = SUPPORTED.get(node.op_type)
    if allowed is None and node.op_type in ADDED_LATER:
        since, later_types = ADDED_LATER[node.op_type]
        if not _at_least(tensorrt, since):
            return f"supported only from TensorRT {since} (checked against {tensorrt})"
        allowed = later_types
    if allowed is None:
        return "not supported by TensorRT's ONNX parser"
    by_output = node.op_type in _TYPED_BY_OUTPUT or not (node.input and node.input[0])
    main = (node.output[0] if node.output else "") if by_output else node.input[0]
    dtype = types.get(main)
    if dtype is not None and dtype not in allowed:
        return f"input type {dtype} not supported (TensorRT takes {', '.join(sorted(allowed))})"
    return _restriction(node, constants)


def _restriction(node, constants: dict) -> str | None:
    """The per-op restrictions of the support matrix that our graphs could hit."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    index = _CONSTANT_INPUTS.get(op)
    if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in constants:
        return f"input {index} ({node.input[index]!r}) must be a build-time constant (initializer or Constant)"
    if op in ("MaxPool", "AveragePool", "LpPool"):
        if op != "LpPool" and len(attrs.get("kernel_shape", ())) not in (2, 3):
            return "only 2-D or 3-D pooling is supported"
        if any(d != 1 for d in attrs.get("dilations", ())):
            return "dilations must be empty or all ones"
        if op == "MaxPool" and len([o for o in node.output if o]) > 1:
            return "the Indices output is not supported"
    if op == "Dropout" and len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
        return "training_mode must be a constant False"
    if op in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
        zero = constants.get(node.input[2])
        if zero is None or numpy_helper.to_array(zero).any():
            return "the zero point must be a constant zero (symmetric quantisation)"
    if op == "Constant" and attrs.keys() & {"sparse_value", "value_string", "value_strings"}:
        return "sparse and string Constant values are not supported"
    return None


_DTYPES = {"FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "DOUBLE": "FP32", "INT32": "INT32",
           "INT64": "INT64", "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "INT4": "INT4",
           "FLOAT8E4M3FN": "FP8", "FLOAT4E2M1": "FP4"}


def _tensor_types(model: "onnx.ModelProto") -> dict[str, str]:
    """Tensor name -> TensorRT type name, from the graph and ONNX shape inference."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except onnx.shape_inference.InferenceError:
        graph = model.graph
    name = onnx.TensorProto.DataType.Name
    types = {t.name: name(t.data_type) for t in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type:
            types[value.name] = name(value.type.tensor_type.elem_type)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                types[node.output[0]] = name(attr.t.data_type)
    return {k: _DTYPES.get(v, v) for k, v in types.items()}


def _qualified(node) -> str:
    return node.op_type if node.domain in _ONNX_DOMAINS else f"{node.domain}.{node.op_type}"


def _default_opset(model: "onnx.ModelProto") -> int:
    versions = [o.version for o in model.opset_import if o.domain in _ONNX_DOMAINS]
    return max(versions) if versions else 1


def _at_least(version: str, minimum: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in v.split("."))
        except ValueError:
            raise ModelError(f"not a TensorRT version: {v!r} (expected e.g. 10.3)") from None
    return key(version) >= key(minimum)
