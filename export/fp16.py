"""FP16 conversion of an ONNX graph, keeping numerically sensitive ops in FP32 (DESIGN §6).

TensorRT 11 builds strongly typed networks only, so precision must live in the graph. The
pass gives every node a precision: ops in `keep_fp32` run in float32, every other op in
float16. Float initializers and Constant values are stored in the precision of their
consumers (a value feeding both kinds is stored twice); a Cast is inserted wherever a tensor
crosses from one precision to the other (one Cast per tensor and direction). Graph inputs and
outputs keep their types (float32, or contract 2's uint8 `video`), with Casts at the boundary.
Initializer names are kept where possible, so a weight keeps its name in the FP16 graph.

A non-float graph input (tensor contract 2's uint8 frames) is normalised by the graph itself:
its Cast to float32 and the elementwise arithmetic right after it (`x * scale - offset`) stay
float32 (the "input front"), and the result is cast to float16 once. So the FP16 graph sees
exactly the float16 values a contract-1 FP16 graph gets from the runtime's float32
normalisation: the two contracts give the same FP16 logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from mvrt.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import onnx

# Ops computed in float32. Reductions and normalisations accumulate many terms: the global
# average pools (ReduceMean) of the full-size slowfast sum up to 65536 values whose sum reached
# 1.04e5 on the check batch, beyond float16's 65504, so a float16 accumulator would overflow.
# Sigmoid / Softmax / Exp / Log / Pow / Div / Sqrt lose relative accuracy or overflow in float16.
KEEP_FP32: tuple[str, ...] = (
    "BatchNormalization", "Div", "Exp", "GlobalAveragePool", "GroupNormalization",
    "InstanceNormalization", "LayerNormalization", "Log", "LogSoftmax", "Pow", "Reciprocal",
    "ReduceL2", "ReduceLogSumExp", "ReduceMean", "ReduceProd", "ReduceSum", "ReduceSumSquare",
    "Sigmoid", "Softmax", "Sqrt",
)
FP16_MAX = 65504.0
_ONNX_DOMAINS = ("", "ai.onnx")
# Inputs that stay float32 whatever the op's precision (type constraint other than T).
_FIXED_FLOAT_INPUTS = {"Resize": {2}, "Upsample": {1}}
_CAST_SUFFIX = {True: "__to_fp32", False: "__to_fp16"}
# Elementwise ops that stay float32 while they only read a non-float input's Cast and constants.
_INPUT_FRONT_OPS = ("Add", "Div", "Mul", "Sub")


@dataclass(frozen=True)
class Fp16Conversion:
    """Result of `convert_to_fp16`: the new model and what the pass did."""

    model: "onnx.ModelProto" = field(repr=False)
    kept_ops: tuple[str, ...]  # op types present in the graph that run in float32
    kept_nodes: int
    fp16_nodes: int
    casts_inserted: int
    clamped_values: int  # initializer values beyond +-65504 clipped to the float16 range
    input_front_nodes: int = 0  # float32 nodes normalising non-float (uint8) graph inputs, not in kept_*


def convert_to_fp16(model: "onnx.ModelProto", keep_fp32: Iterable[str] = KEEP_FP32) -> Fp16Conversion:
    """A float16 copy of `model` (same I/O types); ops whose type is in `keep_fp32` stay float32."""
    import onnx

    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    return _Converter(model_copy, frozenset(keep_fp32)).run()


class _Converter:
    def __init__(self, model: "onnx.ModelProto", keep: frozenset[str]):
        self.model, self.graph, self.keep = model, model.graph, keep
        self.floats = _float_tensor_names(model)
        self.constants = _constant_tensors(self.graph)  # name -> TensorProto (float only)
        self.nodes = list(self.graph.node)  # held, so that id() of each node stays valid
        self.front = _input_front(self.graph, self.nodes, self.floats, self.constants)  # ids of input-front nodes
        self.is_fp32 = {id(n): id(n) in self.front or self._keeps(n) for n in self.nodes}
        self.dtype: dict[str, bool] = {}  # tensor -> True if float32 at this point of the walk
        self.casts: dict[tuple[str, bool], str] = {}
        self.constant_uses: dict[str, set[bool]] = {}  # constant -> precisions its consumers need
        self.new_nodes: list = []
        self.clamped = 0

    def _keeps(self, node) -> bool:
        return node.domain in _ONNX_DOMAINS and node.op_type in self.keep

    def run(self) -> Fp16Conversion:
        _reject_subgraphs(self.graph)
        for value in self.graph.input:
            if value.name in self.floats:
                self.dtype[value.name] = True
        self._rename_fp16_outputs()
        for node in self.nodes:
            if node.op_type == "Constant" and node.output[0] in self.constants:
                continue  # float Constant values are materialised per consumer precision
            self._convert_node(node)
        self._cast_outputs()
        self._store_constants()
        kept = [n.op_type for n in self.new_nodes if self.is_fp32.get(id(n)) and id(n) not in self.front]
        fp16 = [n for n in self.new_nodes if self.is_fp32.get(id(n)) is False and _makes_float(n, self.floats)]
        nodes = [_copy(n) for n in self.new_nodes]
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        del self.graph.value_info[:]  # stale types; the checker re-infers them
        return Fp16Conversion(model=self.model, kept_ops=tuple(sorted(set(kept))), kept_nodes=len(kept),
                              fp16_nodes=len(fp16), casts_inserted=len(self.casts), clamped_values=self.clamped,
                              input_front_nodes=len(self.front))

    # --- nodes ------------------------------------------------------------------------------

    def _convert_node(self, node) -> None:
        fp32 = self.is_fp32[id(node)]
        fixed = _FIXED_FLOAT_INPUTS.get(node.op_type, set())
        for i, name in enumerate(node.input):
            if name and name in self.floats:
                node.input[i] = self._as(name, fp32 or i in fixed)
        if not fp32:
            _retarget_dtype_attributes(node, self)
        for name in node.output:
            if name in self.floats:
                self.dtype[name] = fp32
        self.new_nodes.append(node)

    def _as(self, name: str, fp32: bool) -> str:
        """The name of `name` in the wanted precision, inserting a Cast or a constant copy."""
        if name in self.constants:
            return self._constant_as(name, fp32)
        if self.dtype.get(name, True) == fp32:
            return name
        key = (name, fp32)
        if key not in self.casts:
            import onnx

            cast_name = f"{name}{_CAST_SUFFIX[fp32]}"
            to = onnx.TensorProto.FLOAT if fp32 else onnx.TensorProto.FLOAT16
            self.new_nodes.append(onnx.helper.make_node("Cast", [name], [cast_name], name=cast_name, to=to))
            self.casts[key] = cast_name
        return self.casts[key]

    # --- constants ----------------------------------------------------------------------------

    def _constant_as(self, name: str, fp32: bool) -> str:
        self.constant_uses.setdefault(name, set()).add(fp32)
        return name if fp32 else f"{name}\0fp16"  # placeholder, resolved in _store_constants

    def _store_constants(self) -> None:
        """Write each used float constant as initializers of the precisions its consumers need."""
        from onnx import numpy_helper

        old = {t.name: t for t in self.graph.initializer}
        keep_inits = [t for t in self.graph.initializer if t.name not in self.constants]
        rename: dict[str, str] = {}
        for name, uses in self.constant_uses.items():
            array = numpy_helper.to_array(self.constants[name])
            if True in uses:
                keep_inits.append(old.get(name) or numpy_helper.from_array(array, name))
            fp16_name = name if uses == {False} else f"{name}__fp16"
            if False in uses:
                keep_inits.append(numpy_helper.from_array(self._to_half(array), fp16_name))
            rename[f"{name}\0fp16"] = fp16_name
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep_inits)
        for node in self.new_nodes:
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]

    def _to_half(self, array: "np.ndarray") -> "np.ndarray":
        import numpy as np

        over = np.abs(array) > FP16_MAX
        self.clamped += int(np.count_nonzero(over))
        return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)

    # --- graph boundary -------------------------------------------------------------------------

    def _rename_fp16_outputs(self) -> None:
        """Float graph outputs made by float16 nodes get a new internal name (cast back at the end)."""
        outputs = {v.name for v in self.graph.output if v.name in self.floats}
        for node in self.nodes:
            if self.is_fp32[id(node)]:
                continue
            for i, name in enumerate(node.output):
                if name in outputs:
                    node.output[i] = f"{name}__fp16"
                    self.floats.add(node.output[i])
                    for consumer in self.nodes:
                        consumer.input[:] = [f"{name}__fp16" if x == name else x for x in consumer.input]

    def _cast_outputs(self) -> None:
        import onnx

        for value in self.graph.output:
            internal = f"{value.name}__fp16"
            if value.name in self.floats and self.dtype.get(internal) is False:
                self.new_nodes.append(onnx.helper.make_node(
                    "Cast", [internal], [value.name], name=f"{value.name}__to_fp32", to=onnx.TensorProto.FLOAT))
                self.casts[(internal, True)] = value.name


def _input_front(graph, nodes: list, floats: set[str], constants: dict) -> set[int]:
    """ids of the nodes that turn a non-float graph input into float32 values: its Cast to float32,
    then each elementwise op (`_INPUT_FRONT_OPS`) reading only such values and constants."""
    import onnx

    raw_inputs = {v.name for v in graph.input if v.name not in floats}
    values: set[str] = set()
    front: set[int] = set()
    for node in nodes:
        if node.domain not in _ONNX_DOMAINS:
            continue
        is_cast = (node.op_type == "Cast" and node.input[0] in raw_inputs
                   and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in node.attribute))
        reads = [x for x in node.input if x]
        is_arith = (node.op_type in _INPUT_FRONT_OPS and any(x in values for x in reads)
                    and all(x in values or x in constants for x in reads))
        if is_cast or is_arith:
            front.add(id(node))
            values.update(node.output)
    return front


def _makes_float(node, floats: set[str]) -> bool:
    return any(o in floats for o in node.output)


def _copy(node: "onnx.NodeProto") -> "onnx.NodeProto":
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _retarget_dtype_attributes(node, converter: _Converter) -> None:
    """Attributes that fix a float32 output type become float16 (Cast `to`, ConstantOfShape `value`)."""
    import onnx
    from onnx import numpy_helper

    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
            attr.i = onnx.TensorProto.FLOAT16
        elif node.op_type == "ConstantOfShape" and attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
            attr.t.CopyFrom(numpy_helper.from_array(converter._to_half(numpy_helper.to_array(attr.t)), attr.t.name))


def _float_tensor_names(model: "onnx.ModelProto") -> set[str]:
    """Names of every float32 tensor (inputs, initializers, Constant outputs, inferred values)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ModelError(f"FP16 conversion: shape inference failed on the FP32 graph: {' '.join(str(exc).split())}") from None
    graph = inferred.graph
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            floats.add(value.name)
    floats.update(_constant_tensors(graph))
    typed = {v.name for v in [*graph.value_info, *graph.output] if v.type.tensor_type.elem_type}
    untyped = [o for n in graph.node for o in n.output if o and o not in floats and o not in typed]
    if untyped:
        raise ModelError(f"FP16 conversion: the type of tensor {untyped[0]!r} cannot be inferred; re-export the model")
    return floats


def _constant_tensors(graph) -> dict[str, "onnx.TensorProto"]:
    """Float32 initializers and float32 Constant-node values, by tensor name."""
    import onnx

    found = {t.name: t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    outputs = {v.name for v in graph.output}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _ONNX_DOMAINS and node.output[0] not in outputs:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                    found[node.output[0]] = attr.t
    return found


def _reject_subgraphs(graph) -> None:
    import onnx

    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ModelError(f"FP16 conversion does not handle control flow: node {node.name!r} ({node.op_type}) has a subgraph")
