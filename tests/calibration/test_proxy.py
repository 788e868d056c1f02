"""The sensitivity proxy: a masked graph's batch items are the model with one layer quantised alone."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mvrt.calibration.proxy import MASK_INPUT, layer_shifts, masked_graph, proxy_clips, proxy_ranking
from mvrt.calibration.quantize import OP_TYPES, quantize_qdq, quantized_nodes
from mvrt.calibration.ranges import collect_ranges
from mvrt.calibration.sensitivity import graft_layer, layer_sensitivity
from mvrt.errors import BackendError
from mvrt.export.parity import check_batch
from mvrt.runtime.model_meta import read_onnx_config


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def quantised(tiny_models):
    model = tiny_models["slowfast"]
    feeds = check_batch(read_onnx_config(model.onnx), 2, seed=3)  # contract 2: uint8 video
    ranges = collect_ranges(model.onnx, lambda: iter([feeds]), ("minmax",), OP_TYPES, total_samples=2, progress=False)
    fp32 = onnx.load(str(model.onnx))
    int8 = quantize_qdq(model.onnx, ranges.tensors_data("minmax"))
    return fp32, int8, feeds, _session(fp32).run(["logits"], feeds)[0]


def test_each_batch_item_is_the_model_with_only_its_layer_quantised(quantised):
    fp32, int8, feeds, reference = quantised
    nodes = quantized_nodes(int8)
    group = [nodes[0], nodes[len(nodes) // 2], nodes[-1]]  # a stem conv, a middle one, the head's Gemm (the logits)
    graph = masked_graph(fp32, int8, group)
    onnx.checker.check_model(graph)
    session = _session(graph)
    off = session.run(["logits"], {**feeds, MASK_INPUT: np.zeros((2, 3), dtype=bool)})[0]
    np.testing.assert_array_equal(off, reference)  # nothing selected: exactly FP32
    items = [(0, 0), (2, 1), (1, 0), (1, 1)]  # (layer, clip): different layers side by side in one batch
    batch = {name: values[[clip for _, clip in items]] for name, values in feeds.items()}
    mask = np.zeros((len(items), 3), dtype=bool)
    mask[np.arange(len(items)), [layer for layer, _ in items]] = True
    mixed = session.run(["logits"], {**batch, MASK_INPUT: mask})[0]
    for row, (layer, clip) in zip(mixed, items):
        one_clip = {name: values[clip : clip + 1] for name, values in feeds.items()}
        alone = _session(graft_layer(fp32, int8, group[layer])).run(["logits"], one_clip)[0]
        np.testing.assert_allclose(row, alone[0], rtol=1e-5, atol=1e-6)
        assert not np.allclose(row, reference[clip], rtol=0, atol=1e-9)  # the layer's quantisation did change it


def test_layer_shifts_are_the_exact_measurement_per_clip(quantised):
    fp32, int8, feeds, reference = quantised
    nodes = quantized_nodes(int8)[::20]
    shifts = layer_shifts(fp32, int8, nodes, feeds, reference, batch_size=4, threads=1, progress=False)
    assert shifts.shape == (len(nodes), 2, 2)
    exact = {s.node: s for s in layer_sensitivity(fp32, int8, nodes, feeds, reference, threads=1, progress=False)}
    for i, name in enumerate(nodes):
        assert shifts[i, :, 1].mean() == pytest.approx(exact[name].mean_abs_dp, rel=1e-4, abs=1e-9)
        assert shifts[i, :, 1].max() == pytest.approx(exact[name].max_abs_dp, rel=1e-4, abs=1e-9)


def test_the_proxy_clip_is_the_least_confident():
    logits = np.array([[9.0, 0, 0], [1.0, 0.9, 0], [5.0, 0, 0], [0.2, 0.1, 0.15]])
    assert proxy_clips(logits, 1).tolist() == [3]
    assert proxy_clips(logits, 2).tolist() == [1, 3]
    assert proxy_clips(logits, 9).tolist() == [0, 1, 2, 3]


def test_proxy_ranking_uses_that_clip_and_ranks_by_logit_shift(quantised):
    fp32, int8, feeds, reference = quantised
    nodes = quantized_nodes(int8)[:12]
    ranking = proxy_ranking(fp32, int8, nodes, feeds, reference, threads=1, progress=False)
    assert sorted(p.node for p in ranking) == sorted(nodes)
    shifts = [p.logit_shift for p in ranking]
    assert shifts == sorted(shifts, reverse=True) and shifts[0] > 0
    clip = int(proxy_clips(reference, 1)[0])
    top = ranking[0]
    alone = _session(graft_layer(fp32, int8, top.node)).run(["logits"], feeds)[0][clip]
    expected = np.linalg.norm(alone - reference[clip]) / np.linalg.norm(reference[clip])
    assert top.logit_shift == pytest.approx(expected, rel=1e-4)
    assert set(top.to_dict()) == {"node", "op_type", "proxy_logit_shift", "proxy_abs_dp"}


def test_a_node_the_int8_graph_lacks_is_a_one_line_error(quantised):
    fp32, int8, _, _ = quantised
    with pytest.raises(BackendError, match="INT8 graph has no node '/nope'; quantise this FP32 model again"):
        masked_graph(fp32, int8, ["/nope"])
