"""FP16 graph conversion under both tensor contracts: types, kept ops, casts, the uint8 input's float32
front, ONNX Runtime CPU parity with torch FP32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mvrt.errors import ModelError
from mvrt.export.fp16 import FP16_MAX, KEEP_FP32, convert_to_fp16
from mvrt.export.onnx_export import export_onnx
from mvrt.export.parity import FP16_TOLERANCE, onnx_parity

F32, F16, U8 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.UINT8


@pytest.fixture(scope="module")
def converted(tiny_models, tmp_path_factory):
    """(arch, contract) -> (fp32 proto, Fp16Conversion, fp16 path); tiny_models' ONNX is contract 2."""
    folder = tmp_path_factory.mktemp("fp16")
    out = {}
    for arch, tiny in tiny_models.items():
        sources = {2: tiny.onnx, 1: export_onnx(tiny.checkpoint, None, folder / f"{arch}.c1.onnx", contract=1)}
        for contract, source in sources.items():
            proto = onnx.load(str(source))
            conversion = convert_to_fp16(proto)
            path = folder / f"{arch}.c{contract}.fp16.onnx"
            onnx.save(conversion.model, str(path))
            out[arch, contract] = (proto, conversion, path)
    return out


def _types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {t.name: t.data_type for t in graph.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]})
    return types


@pytest.mark.parametrize("contract", [2, 1])
@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_types_kept_ops_and_boundary_casts(converted, arch, contract):
    proto, conversion, _ = converted[arch, contract]
    model = conversion.model
    onnx.checker.check_model(model, full_check=True)
    assert conversion.kept_ops == ("ReduceMean", "Sigmoid") and conversion.clamped_values == 0
    graph = model.graph
    video = "video" if contract == 2 else None
    assert [(v.name, v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output]] == \
        [(v.name, v.type.tensor_type.elem_type) for v in [*proto.graph.input, *proto.graph.output]]  # types kept
    assert all(v.type.tensor_type.elem_type == (U8 if v.name == video else F32) for v in [*graph.input, *graph.output])
    front = _front(graph, video)
    assert conversion.input_front_nodes == len(front) == (3 if contract == 2 else 0)  # Cast, Mul, Sub
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    float_inits = [t for t in graph.initializer if t.data_type in (F32, F16)]
    assert {t.name for t in float_inits} >= {"head.fc.weight", "head.fc.bias"}  # names survive
    for init in float_inits:  # fp16 unless every consumer is a kept op
        kept = [n.op_type in KEEP_FP32 or n.name in front for n in consumers[init.name]]
        assert init.data_type == (F32 if all(kept) else F16), init.name
    assert sum(t.data_type == F16 for t in float_inits) > 0.9 * len(float_inits)
    types = _types(model)
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        floats = [x for x in [*node.input, *node.output] if x and types.get(x) in (F32, F16)]
        if node.name in front:  # the uint8 frames' normalisation: float32 throughout
            assert all(types[x] == F32 for x in floats) and floats, node.name
        elif node.op_type in KEEP_FP32:  # kept ops: fp32 in and out, inputs cast up from fp16
            assert all(types[x] == F32 for x in floats), node.name
            assert producer[node.input[0]].op_type == "Cast"
            assert all(c.op_type == "Cast" and c.attribute[0].i == F16 for c in consumers[node.output[0]])
        elif node.op_type != "Cast":
            assert all(types[x] == F16 for x in floats), node.name
    for value in graph.input:  # one boundary cast per input, the only consumer: to fp16, or fp32 for the frames
        assert [(c.op_type, c.attribute[0].i) for c in consumers[value.name]] == [("Cast", F32 if value.name == video else F16)]
    if video:  # the normalised frames cross into float16 once, by one Cast
        last = next(n for n in reversed(graph.node) if n.name in front)
        assert [(c.op_type, c.attribute[0].i) for c in consumers[last.output[0]]] == [("Cast", F16)]
    assert producer["logits"].op_type == "Cast" and producer["logits"].attribute[0].i == F32
    assert len(graph.node) == len(proto.graph.node) - _float_constants(proto) + conversion.casts_inserted


def _front(graph, video: str | None) -> set[str]:
    """Names of the nodes from the uint8 input's Cast through the elementwise ops that read it alone."""
    if video is None:
        return set()
    names, values = set(), {video}
    for node in graph.node:
        if node.op_type in ("Cast", "Mul", "Sub", "Add", "Div") and any(x in values for x in node.input) \
                and not (node.op_type == "Cast" and node.attribute[0].i == F16):
            names.add(node.name)
            values.update(node.output)
    return names


def _float_constants(proto: onnx.ModelProto) -> int:
    return sum(1 for n in proto.graph.node if n.op_type == "Constant" and n.attribute[0].t.data_type == F32)


@pytest.mark.parametrize("arch, batch, contract", [("slowfast", 1, 2), ("slowfast", 3, 2), ("musicvideo", 1, 2),
                                                   ("musicvideo", 3, 2), ("slowfast", 3, 1), ("musicvideo", 1, 1)])
def test_onnxruntime_cpu_parity_with_torch(tiny_models, converted, arch, batch, contract):
    report = onnx_parity(converted[arch, contract][2], tiny_models[arch].checkpoint, "fp16", batch=batch, seed=batch)
    print(report.summary())
    assert report.tolerance == FP16_TOLERANCE and report.batch == batch
    assert report.passed, report.summary()
    assert report.max_abs_diff > 0  # really computed in reduced precision
    assert report.real_windows == 1 and report.real.passed and report.real.max_abs_diff > 0  # a generated clip's


def test_parity_check_catches_a_broken_conversion(tiny_models, converted, tmp_path):
    """Flip the sign of the first convolution's weights: the FP16 parity check must fail."""
    _, conversion, _ = converted["slowfast", 2]
    broken = onnx.ModelProto()
    broken.CopyFrom(conversion.model)
    first_conv = next(n for n in broken.graph.node if n.op_type == "Conv")
    weight = next(t for t in broken.graph.initializer if t.name == first_conv.input[1])
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
    path = tmp_path / "broken.onnx"
    onnx.save(broken, str(path))
    report = onnx_parity(path, tiny_models["slowfast"].checkpoint, "fp16", batch=3)
    print(report.summary())
    assert not report.passed and report.relative_diff > 5 * FP16_TOLERANCE.max_relative
    assert not report.real.passed and report.real.relative_diff > 5 * FP16_TOLERANCE.max_relative
    with pytest.raises(ModelError, match=r"broken\.onnx: parity fp16 .*FAILED"):
        report.raise_if_failed(str(path))


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_both_contracts_in_fp16_agree_on_the_same_media(converted, tmp_path, arch):
    """The same generated clip read per contract: the network gets the same float16 frames, the logits agree."""
    from mvrt.export.parity import compare_logits, onnxruntime_logits, read_windows, write_media_clip
    from mvrt.runtime.model_meta import read_onnx_config

    paths = {c: converted[arch, c][2] for c in (1, 2)}
    configs = {c: read_onnx_config(p) for c, p in paths.items()}
    clip = write_media_clip(tmp_path / "clip.mp4", configs[2], seed=5)
    feeds = {c: read_windows(clip, configs[c]) for c in (1, 2)}
    fast = max(configs[1].video_inputs, key=configs[1].video_inputs.get)  # video_fast / video
    model = onnx.load(str(paths[2]))
    front = next(n for n in model.graph.node if n.op_type == "Cast" and n.attribute[0].i == F16 and n.input[0].startswith("/Sub"))
    model.graph.output.append(helper.make_empty_tensor_value_info(front.output[0]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    half_frames = session.run([front.output[0]], feeds[2])[0]
    np.testing.assert_array_equal(half_frames, feeds[1][fast].astype(np.float16))  # the same float16 values
    logits = {c: onnxruntime_logits(paths[c], feeds[c]) for c in (1, 2)}
    report = compare_logits(logits[1], logits[2], "fp16")
    print(f"{arch}: fp16 contract 2 vs contract 1 on a generated window: max |Δlogits| {report.max_abs_diff:.2e} "
          f"({report.relative_diff:.2e} of the logit scale)")
    assert report.passed and report.relative_diff <= 1e-3


def test_shared_constant_is_stored_in_both_precisions_and_overflow_is_clipped():
    """W feeds a float16 Mul and a float32 Div: one copy each; 1e6 is clipped to 65504."""
    w = np.array([[0.5, -2.0, 3.0, 1e6]], np.float32)
    nodes = [helper.make_node("Mul", ["x", "w"], ["m"], name="mul"),
             helper.make_node("Div", ["m", "w"], ["d"], name="div"),
             helper.make_node("Add", ["d", "x"], ["y"], name="add")]
    io = [helper.make_tensor_value_info(n, F32, [2, 4]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "g", io[:1], io[1:], initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    conversion = convert_to_fp16(model)
    onnx.checker.check_model(conversion.model, full_check=True)
    inits = {t.name: t for t in conversion.model.graph.initializer}
    assert (inits["w"].data_type, inits["w__fp16"].data_type) == (F32, F16)
    assert numpy_helper.to_array(inits["w__fp16"]).max() == np.float16(FP16_MAX)
    assert conversion.clamped_values == 1 and conversion.kept_ops == ("Div",)
    x = np.array([[1.0, 0.25, -1.5, 1e-3], [2.0, -4.0, 0.1, -2e-3]], np.float32)
    got = ort.InferenceSession(conversion.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = x * np.minimum(w, FP16_MAX) / w + x  # the clipped weight, then the fp32 Div by the exact one
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-6)


def test_control_flow_is_refused():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F32, [1])])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=then)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                            helper.make_tensor_value_info("x", F32, [1])],
                              [helper.make_tensor_value_info("y", F32, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ModelError, match="control flow: node 'branch' \\(If\\)"):
        convert_to_fp16(model)
