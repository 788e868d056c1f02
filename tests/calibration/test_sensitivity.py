"""Per-layer sensitivity: a grafted layer behaves exactly like quantising that layer alone."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mvrt.calibration.quantize import OP_TYPES, quantize_qdq, quantized_nodes
from mvrt.calibration.ranges import collect_ranges
from mvrt.calibration.sensitivity import graft_layer, layer_sensitivity, measure_sensitivity
from mvrt.export.parity import check_batch
from mvrt.runtime.model_meta import read_onnx_config


def _run(proto, feeds):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]


@pytest.fixture(scope="module")
def quantised(tiny_models):
    model = tiny_models["slowfast"]
    feeds = check_batch(read_onnx_config(model.onnx), 2, seed=3)  # contract 2: uint8 video
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


OUTLIER_LAYER = "/stages.1/stages.1.1/stages.1.1.0_2/Conv"  # a stage transition conv on the main path of one pathway
OUTLIER_FACTOR = 1e4


def _with_outlier_channel(fp32, name: str, feeds):
    """`fp32` with its loudest input channel of `name` scaled up by 1e4 and that weight column down by 1e4.

    The FP32 output is unchanged, but the per-tensor INT8 range of the conv's input now spans the
    outlier, so every other channel quantises to zero: INT8 destroys that layer.
    """
    from onnx import helper, numpy_helper

    node = next(n for n in fp32.graph.node if n.name == name)
    probe = onnx.ModelProto()
    probe.CopyFrom(fp32)
    probe.graph.output.append(helper.make_empty_tensor_value_info(node.input[0]))
    x = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run([node.input[0]], feeds)[0]
    channel = int(np.abs(x).mean(axis=tuple(a for a in range(x.ndim) if a != 1)).argmax())
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    node = next(n for n in model.graph.node if n.name == name)
    weights = next(t for t in model.graph.initializer if t.name == node.input[1])
    w = numpy_helper.to_array(weights).copy()
    w[:, channel] /= OUTLIER_FACTOR
    weights.CopyFrom(numpy_helper.from_array(w, weights.name))
    scale = np.ones((1, w.shape[1]) + (1,) * (w.ndim - 2), dtype=np.float32)
    scale[0, channel] = OUTLIER_FACTOR
    model.graph.initializer.append(numpy_helper.from_array(scale, name + "/outlier_scale"))
    index = list(model.graph.node).index(node)
    model.graph.node.insert(index, helper.make_node("Mul", [node.input[0], name + "/outlier_scale"],
                                                    [name + "/outlier_input"], name=name + "/outlier"))
    node.input[0] = name + "/outlier_input"
    return model


def test_an_outlier_layer_tops_the_proxy_and_the_exact_measurement(tiny_models, tmp_path):
    model = tiny_models["slowfast"]
    feeds = check_batch(read_onnx_config(model.onnx), 2, seed=3)  # contract 2: uint8 video
    fp32 = onnx.load(str(model.onnx))
    broken = _with_outlier_channel(fp32, OUTLIER_LAYER, feeds)
    path = tmp_path / "outlier.onnx"
    onnx.save(broken, str(path))
    reference = _run(broken, feeds)
    np.testing.assert_allclose(reference, _run(fp32, feeds), rtol=1e-4, atol=1e-5)  # FP32 does not notice
    ranges = collect_ranges(path, lambda: iter([feeds]), ("minmax",), OP_TYPES, total_samples=2, progress=False)
    int8 = quantize_qdq(path, ranges.tensors_data("minmax"))
    nodes = quantized_nodes(int8)
    found = measure_sensitivity(broken, int8, nodes, feeds, reference, mode="fast", top=8, threads=1, progress=False)
    assert found.mode == "fast" and len(found.proxy) == len(nodes) > 200 and len(found.measured) == 8
    assert [p.node for p in found.proxy].index(OUTLIER_LAYER) < 8
    assert found.measured[0].node == OUTLIER_LAYER
    assert found.measured[0].mean_abs_dp > 10 * found.measured[1].mean_abs_dp  # by far the worst


def test_fast_and_full_agree_on_the_worst_layers(quantised):
    model, feeds, _, int8 = quantised
    fp32 = onnx.load(str(model.onnx))
    reference = _run(fp32, feeds)
    nodes = quantized_nodes(int8)[:48]  # the stems and the first stage of every pathway
    full = measure_sensitivity(fp32, int8, nodes, feeds, reference, mode="full", threads=1, progress=False)
    fast = measure_sensitivity(fp32, int8, nodes, feeds, reference, mode="fast", top=8, threads=1, progress=False)
    assert full.mode == "full" and len(full.measured) == 48 and not full.proxy and full.unmeasured == 0
    assert fast.mode == "fast" and len(fast.measured) == 8 and fast.unmeasured == 40 and fast.proxy_clips == 1
    full_order = [s.node for s in full.measured]
    fast_order = [s.node for s in fast.measured]
    assert fast_order[:3] == full_order[:3]
    assert len(set(fast_order) & set(full_order[:8])) >= 7
    exact = {s.node: s for s in full.measured}
    for s in fast.measured:  # the measured layers' numbers are the exact ones, not the proxy's
        assert s.mean_abs_dp == pytest.approx(exact[s.node].mean_abs_dp, rel=1e-6)
    report = fast.to_dict()
    assert [layer["node"] for layer in report["layers"]] == fast_order and len(report["proxy_ranking"]) == 48
    assert "mean_abs_dp" not in report["proxy_ranking"][0] and report["proxy_clips"] == 1


def test_fast_with_top_covering_every_layer_measures_them_all(quantised):
    model, feeds, _, int8 = quantised
    fp32 = onnx.load(str(model.onnx))
    nodes = quantized_nodes(int8)[:3]
    found = measure_sensitivity(fp32, int8, nodes, feeds, _run(fp32, feeds), mode="fast", top=16, threads=1,
                                progress=False)
    assert found.mode == "full" and sorted(s.node for s in found.measured) == sorted(nodes) and not found.proxy
