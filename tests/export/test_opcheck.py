"""TensorRT ONNX-parser op check: our graphs pass; unsupported ops and restrictions are named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mvrt.errors import ModelError
from mvrt.export.fp16 import convert_to_fp16
from mvrt.export.opcheck import ADDED_LATER, SUPPORTED, check_tensorrt_ops, find_unsupported


def _model(nodes, inputs, outputs, initializers=(), opset=18, extra_opsets=()):
    graph = helper.make_graph(nodes, "handmade", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets)


def _vi(name, elem=TensorProto.FLOAT, shape=(1, 4, 8, 8)):
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def test_table_has_the_ops_of_our_graphs_and_no_overlap():
    for op in ("Conv", "MaxPool", "Relu", "Add", "Mul", "Concat", "Gemm", "ReduceMean", "Sigmoid", "Unsqueeze",
               "Constant", "Cast", "QuantizeLinear", "DequantizeLinear"):
        assert op in SUPPORTED
    assert not set(SUPPORTED) & set(ADDED_LATER)
    assert "FP16" in SUPPORTED["Conv"] and "INT8" in SUPPORTED["DequantizeLinear"]


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_exported_tiny_models_pass_in_fp32_and_fp16(tiny_models, arch):
    proto = onnx.load(str(tiny_models[arch].onnx))
    report = check_tensorrt_ops(proto)
    assert report.nodes == len(proto.graph.node) and report.opset == 18
    assert dict(report.op_counts)["Conv"] > 0 and "all" in report.summary()
    fp16 = convert_to_fp16(proto).model
    assert dict(check_tensorrt_ops(fp16).op_counts)["Cast"] > 0
    assert find_unsupported(fp16) == []


def test_custom_domain_op_is_named_with_its_node():
    node = helper.make_node("FancyOp", ["x"], ["y"], name="my_custom_node", domain="com.example")
    model = _model([node], [_vi("x")], [_vi("y")], extra_opsets=[helper.make_opsetid("com.example", 1)])
    with pytest.raises(ModelError, match=r"m\.onnx: .*1 node\(s\): node 'my_custom_node' \(com\.example\.FancyOp\): custom-domain op"):
        check_tensorrt_ops(model, where="m.onnx")


def test_unsupported_standard_op_and_later_op_are_named(tmp_path):
    unique = helper.make_node("Unique", ["v"], ["u"], name="uniq")
    hann = helper.make_node("HannWindow", ["n"], ["w"], name="window")
    model = _model([unique, hann], [_vi("v", shape=(8,)), _vi("n", TensorProto.INT64, ())],
                   [_vi("u", shape=None), _vi("w", shape=None)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"bad\.onnx: .*2 node\(s\): node 'uniq' \(Unique\): not supported.*"
                                         r"node 'window' \(HannWindow\): supported only from TensorRT 10\.15"):
        check_tensorrt_ops(path)
    issues = find_unsupported(model, tensorrt="10.15")  # HannWindow is fine there
    assert [(i.node, i.op_type) for i in issues] == [("uniq", "Unique")]


def test_restrictions_axes_pooling_and_zero_points():
    axes_in = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    reduce = helper.make_node("ReduceMean", ["x", "axes"], ["r"], name="mean_dynamic_axes")
    pool = helper.make_node("MaxPool", ["x"], ["p"], name="dilated_pool", kernel_shape=[2, 2], dilations=[2, 2])
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(3, np.int8), "zero")
    quant = helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="asymmetric_q")
    model = _model([reduce, pool, quant], [_vi("x"), axes_in],
                   [_vi("r", shape=None), _vi("p", shape=None), _vi("q", TensorProto.INT8)], [scale, zero])
    problems = {i.node: i.problem for i in find_unsupported(model)}
    assert set(problems) == {"mean_dynamic_axes", "dilated_pool", "asymmetric_q"}
    assert "build-time constant" in problems["mean_dynamic_axes"]
    assert "dilations" in problems["dilated_pool"]
    assert "zero point" in problems["asymmetric_q"]


def test_unsupported_type_and_opset_out_of_range():
    node = helper.make_node("Relu", ["x"], ["y"], name="double_relu")
    ok = _model([node], [_vi("x", TensorProto.UINT8)], [_vi("y", TensorProto.UINT8)])
    assert "input type UINT8" in find_unsupported(ok)[0].problem
    new = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x")], [_vi("y")], opset=22)
    with pytest.raises(ModelError, match=r"opset 22 is outside the range .*\(9-20\)"):
        check_tensorrt_ops(new)
    assert check_tensorrt_ops(new, tensorrt="10.15").opset == 22
