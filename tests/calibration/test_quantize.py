"""Q/DQ placement: symmetric int8, per-channel weights, float biases, inputs only, exclusions."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mvrt.calibration.quantize import OP_TYPES, quantizable_nodes, quantize_qdq, quantized_nodes, resolve_excludes
from mvrt.calibration.ranges import collect_ranges
from mvrt.errors import UsageError
from mvrt.export.parity import check_batch
from mvrt.runtime.model_meta import read_onnx_config


@pytest.fixture(scope="module")
def ranges(tiny_models):
    model = tiny_models["slowfast"]
    batches = [check_batch(read_onnx_config(model.onnx), 2, seed=s) for s in range(2)]
    return collect_ranges(model.onnx, lambda: iter(batches), ("minmax",), OP_TYPES, total_samples=4, progress=False)


def _consumers(proto):
    found = {}
    for node in proto.graph.node:
        for value in node.input:
            found.setdefault(value, []).append(node)
    return found


def test_every_weighted_layer_gets_symmetric_int8_inputs_and_only_inputs(tiny_models, ranges):
    model = tiny_models["slowfast"]
    proto = quantize_qdq(model.onnx, ranges.tensors_data("minmax"))
    onnx.checker.check_model(proto, full_check=True)  # topologically sorted, valid
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert quantized_nodes(proto) == quantizable_nodes(proto)
    consumers = _consumers(proto)
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any()
        if node.op_type == "QuantizeLinear":  # activations: per tensor, scale = |x|max / 127
            scale = inits[node.input[1]]
            top = ranges.absmax[node.input[0]]
            assert scale.size == 1 and (top == 0 or float(scale) == pytest.approx(top / 127, rel=1e-6))
            readers = [r for dq in consumers[node.output[0]] for r in consumers.get(dq.output[0], [])]
            assert readers and all(r.op_type in OP_TYPES for r in readers)  # Q/DQ only feeds weighted layers
    assert "logits" in {o for n in proto.graph.node if n.op_type in OP_TYPES for o in n.output}  # logits not quantised
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    weight_dq = next(n for n in proto.graph.node if n.output[0] == conv.input[1])
    weights, scales = inits[weight_dq.input[0]], inits[weight_dq.input[1]]
    assert weights.dtype == np.int8 and scales.shape == (weights.shape[0],)  # per output channel
    assert np.abs(weights).max() <= 127
    if len(conv.input) > 2:
        assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # bias stays float


def test_int8_model_runs_and_stays_close_on_onnxruntime(tiny_models, ranges):
    import onnxruntime as ort

    model = tiny_models["slowfast"]
    proto = quantize_qdq(model.onnx, ranges.tensors_data("minmax"))
    feeds = check_batch(read_onnx_config(model.onnx), 2, seed=0)  # contract 2: uint8 video
    fp32 = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    int8 = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    assert int8.shape == fp32.shape and not np.array_equal(int8, fp32)
    assert np.abs(int8 - fp32).max() <= 0.1 * np.abs(fp32).max() + 1e-3


def test_excluded_layers_keep_float_inputs(tiny_models, ranges):
    model = tiny_models["slowfast"]
    fp32 = onnx.load(str(model.onnx))
    stem = resolve_excludes(fp32, ["/stem/*"], "tiny")
    assert stem and all(name.startswith("/stem/") for name in stem)
    proto = quantize_qdq(model.onnx, ranges.tensors_data("minmax"), exclude=stem)
    assert set(quantized_nodes(proto)) == set(quantizable_nodes(fp32)) - set(stem)


def test_exclude_patterns_that_match_nothing_are_an_error(tiny_models):
    fp32 = onnx.load(str(tiny_models["slowfast"].onnx))
    with pytest.raises(UsageError, match="^exclude '/nope/\\*' matches no quantisable layer of tiny"):
        resolve_excludes(fp32, ["/nope/*"], "tiny")
    assert resolve_excludes(fp32, [quantizable_nodes(fp32)[0]] * 2, "tiny") == (quantizable_nodes(fp32)[0],)


def _computed_bias_model(path):
    """Conv -> Relu -> Conv -> Gemm whose three biases are computed by nodes (an Add, a Constant, an Identity)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    init = lambda name, shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)  # noqa: E731
    nodes = [
        helper.make_node("Add", ["b1a", "b1b"], ["b1"], name="bias1"),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Constant", [], ["b2"], name="bias2", value=init("b2v", (4,))),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
        helper.make_node("Identity", ["b3i"], ["b3"], name="bias3"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "computed-bias", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
                              [init("w1", (4, 3, 3, 3)), init("b1a", (4,)), init("b1b", (4,)), init("w2", (4, 4, 1, 1)),
                               init("w3", (5, 144)), init("b3i", (5,))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_per_bias_warnings_become_one_line(tmp_path, caplog, capfd):
    import logging
    import sys

    path = _computed_bias_model(tmp_path / "computed-bias.onnx")
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)}
    ranges = collect_ranges(path, lambda: iter([feeds]), ("minmax",), OP_TYPES, total_samples=1, progress=False)
    stderr = logging.StreamHandler(sys.stderr)  # as the CLI's logging.basicConfig does
    stderr.setFormatter(logging.Formatter("mvrt: %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(stderr)
    try:
        with caplog.at_level(logging.WARNING):
            proto = quantize_qdq(path, ranges.tensors_data("minmax"))
    finally:
        logging.getLogger().removeHandler(stderr)
    assert set(quantized_nodes(proto)) == {"conv1", "conv2", "fc"}
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["3 Conv/Gemm biases are computed in the graph, not stored as an initializer (e.g. 'b1'); the "
                        "quantiser cannot quantise such a bias, and it stays FP32 like every bias in mvrt's INT8 graphs"]
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"mvrt: WARNING: {messages[0]}"]


def test_other_warnings_pass_through_the_collapse(caplog):
    import logging

    from mvrt.calibration.quantize import collapsed_bias_warnings

    with caplog.at_level(logging.WARNING), collapsed_bias_warnings() as names:
        logging.warning("Expected bias 'b7' to be an initializer")
        logging.warning("Expected bias 'b7' to be an initializer")
        logging.warning("something else")
    assert list(names) == ["b7"]
    assert [r.getMessage() for r in caplog.records][0] == "something else"
    assert caplog.records[-1].getMessage().startswith("1 Conv/Gemm bias is computed in the graph")


def test_contract_2_int8_keeps_the_uint8_input_and_quantises_what_follows(tiny_models, ranges):
    from mvrt.calibration.quantize import check_raw_inputs
    from mvrt.errors import ModelError
    from mvrt.export.opcheck import check_tensorrt_ops

    model = tiny_models["slowfast"]
    proto = quantize_qdq(model.onnx, ranges.tensors_data("minmax"))
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.input}
    assert types["video"] == onnx.TensorProto.UINT8 and types["audio_fast"] == onnx.TensorProto.FLOAT
    cast = next(n for n in proto.graph.node if n.op_type == "Cast" and n.input[0] == "video")
    quantised = [n.input[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert "video" not in quantised and cast.output[0] not in quantised
    gather = next(n for n in proto.graph.node if n.op_type == "Gather" and n.name.startswith("/input_front/"))
    producers = {o: n for n in proto.graph.node for o in n.output}
    assert producers[gather.input[0]].op_type == "Sub"  # the slow subset reads the float frames...
    assert gather.input[0] in quantised and gather.output[0] in quantised  # ...each pathway's Conv input quantised once
    check_tensorrt_ops(proto, where="int8")  # Cast from UINT8 is in TensorRT's parser matrix
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    broken.graph.node.append(onnx.helper.make_node("QuantizeLinear", [cast.output[0], "s", "z"], ["q"], name="bad"))
    with pytest.raises(ModelError, match=r"^m\.onnx: the quantiser put QuantizeLinear 'bad' on the raw input"):
        check_raw_inputs(broken, "m.onnx")
