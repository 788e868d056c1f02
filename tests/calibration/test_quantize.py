"""Q/DQ placement: symmetric int8, per-channel weights, float biases, inputs only, exclusions."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mvrt.calibration.quantize import OP_TYPES, quantizable_nodes, quantize_qdq, quantized_nodes, resolve_excludes
from mvrt.calibration.ranges import collect_ranges
from mvrt.errors import UsageError
from mvrt.runtime.benchmark import synthetic_feeds


@pytest.fixture(scope="module")
def ranges(tiny_models):
    model = tiny_models["slowfast"]
    batches = [synthetic_feeds(model.config.input_shapes(), 2, seed=s) for s in range(2)]
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
    feeds = synthetic_feeds(model.config.input_shapes(), 2, seed=0)
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
    with pytest.raises(UsageError, match="--exclude '/nope/\\*' matches no quantisable layer of tiny"):
        resolve_excludes(fp32, ["/nope/*"], "tiny")
    assert resolve_excludes(fp32, [quantizable_nodes(fp32)[0]] * 2, "tiny") == (quantizable_nodes(fp32)[0],)
