"""Per-layer sensitivity: a grafted layer behaves exactly like quantising that layer alone."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mvrt.calibration.quantize import OP_TYPES, quantize_qdq, quantized_nodes
from mvrt.calibration.ranges import collect_ranges
from mvrt.calibration.sensitivity import graft_layer, layer_sensitivity
from mvrt.runtime.benchmark import synthetic_feeds


def _run(proto, feeds):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]


@pytest.fixture(scope="module")
def quantised(tiny_models):
    model = tiny_models["slowfast"]
    feeds = synthetic_feeds(model.config.input_shapes(), 2, seed=3)
    ranges = collect_ranges(model.onnx, lambda: iter([feeds]), ("minmax",), OP_TYPES, total_samples=2, progress=False)
    data = ranges.tensors_data("minmax")
    return model, feeds, data, quantize_qdq(model.onnx, data)


def test_graft_equals_quantising_only_that_layer(quantised):
    model, feeds, data, int8 = quantised
    fp32 = onnx.load(str(model.onnx))
    for name in quantized_nodes(int8)[:3]:
        grafted = graft_layer(fp32, int8, name)
        onnx.checker.check_model(grafted)
        assert quantized_nodes(grafted) == [name]
        alone = quantize_qdq(model.onnx, data, only=[name])
        np.testing.assert_allclose(_run(grafted, feeds), _run(alone, feeds), rtol=1e-5, atol=1e-6)


def test_sensitivity_ranks_layers_by_output_shift(quantised):
    model, feeds, _, int8 = quantised
    fp32 = onnx.load(str(model.onnx))
    reference = _run(fp32, feeds)
    nodes = quantized_nodes(int8)[:6]
    found = layer_sensitivity(fp32, int8, nodes, feeds, reference, threads=1, progress=False)
    assert sorted(s.node for s in found) == sorted(nodes)
    shifts = [s.mean_abs_dp for s in found]
    assert shifts == sorted(shifts, reverse=True) and shifts[0] > 0
    top = found[0]
    logits = _run(graft_layer(fp32, int8, top.node), feeds)
    p = np.exp(logits - logits.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    q = np.exp(reference - reference.max(1, keepdims=True)); q /= q.sum(1, keepdims=True)
    assert top.mean_abs_dp == pytest.approx(float(np.abs(p - q).max(axis=1).mean()), rel=1e-3)
