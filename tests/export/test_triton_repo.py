"""Triton model repository: config.pbtxt checked with tritonclient's model_config schema against the graph.

The schema tests need `tritonclient[grpc]` (its `model_config_pb2`), which wants protobuf < 7; they skip
without it unless MVRT_REQUIRE_TRITON=1 (CI's Triton venv), where a missing schema fails. No TensorRT
here: plan tests use a fake plan whose sidecar alone determines the config; no real plan is loaded.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil

import numpy as np
import onnx
import pytest
from model_factory import random_feeds
from onnx import TensorProto, helper, numpy_helper

from mvrt.artifacts import CONFIG_KEY, PRECISION_KEY
from mvrt.config import ModelConfig
from mvrt.errors import ModelError, OutputError, UsageError
from mvrt.export.onnx_export import add_metadata
from mvrt.export.triton_repo import DEFAULT_MAX_BATCH_SIZE, DEFAULT_QUEUE_DELAY_MICROSECONDS, write_triton_repository
from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, read_sidecar, write_sidecar
from mvrt.runtime.model_meta import read_onnx_config, sha256_file

NP_TO_TRITON = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float16): "TYPE_FP16", np.dtype(np.uint8): "TYPE_UINT8"}


@pytest.fixture(scope="module")
def schema():
    """(model_config_pb2, text_format) from tritonclient."""
    if os.environ.get("MVRT_REQUIRE_TRITON") == "1":
        from tritonclient.grpc import model_config_pb2
    else:
        model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return model_config_pb2, text_format


def parse(schema, repo):
    model_config_pb2, text_format = schema
    return text_format.Parse(repo.config_path.read_text(), model_config_pb2.ModelConfig())


def type_name(schema, value: int) -> str:
    return schema[0].DataType.Name(value)


def graph_io(path):
    """name -> (Triton type, full dims with -1 for symbolic) for every graph input and output."""
    proto = onnx.load(str(path))
    out = {}
    for value in [*proto.graph.input, *proto.graph.output]:
        tensor = value.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        out[value.name] = (NP_TO_TRITON[dtype], [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim])
    return out


def assert_matches_graph(schema, config, onnx_path, batching=True):
    """Every graph input and output is in the config with its name, dtype and dims (batch axis dropped)."""
    graph = graph_io(onnx_path)
    listed = {t.name: (type_name(schema, t.data_type), list(t.dims)) for t in [*config.input, *config.output]}
    expected = {name: (dtype, dims[1:] if batching else dims) for name, (dtype, dims) in graph.items()}
    assert listed == expected
    assert [t.name for t in config.input] == [v.name for v in onnx.load(str(onnx_path)).graph.input]


def toy_onnx(path, config: ModelConfig, *, audio=TensorProto.FLOAT16, video=TensorProto.UINT8, batch="batch",
             video_batch=None, names=("audio", "video"), metadata=True):
    """A real little musicvideo-shaped graph (ORT runs it): logits = mean(audio) + mean(video) times a row."""
    shapes = config.input_shapes()
    vb = batch if video_batch is None else video_batch
    inputs = [helper.make_tensor_value_info(names[0], audio, [batch, *shapes["audio"]]),
              helper.make_tensor_value_info(names[1], video, [vb, *shapes["video"]])]
    nodes = [helper.make_node("Cast", [names[0]], ["a"], to=TensorProto.FLOAT),
             helper.make_node("Cast", [names[1]], ["v"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["a", "axes3"], ["am"], keepdims=0),
             helper.make_node("ReduceMean", ["v", "axes4"], ["vm"], keepdims=0),
             helper.make_node("Add", ["am", "vm"], ["s"]),
             helper.make_node("Unsqueeze", ["s", "axis1"], ["s1"]),
             helper.make_node("MatMul", ["s1", "row"], ["logits"])]
    inits = [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes3"),
             numpy_helper.from_array(np.array([1, 2, 3, 4], np.int64), "axes4"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.arange(1, 7, dtype=np.float32)[None, :], "row")]
    graph = helper.make_graph(nodes, "toy", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 6])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if metadata:
        add_metadata(proto, {CONFIG_KEY: config.to_json()})
    onnx.save(proto, str(path))
    return path


TENSORRT_VERSION = "10.3.0"  # the sidecar's TensorRT version (JetPack 6's 10.3)


def fake_plan(folder, config, batch=BatchProfile(1, 4, 16), **changes):
    """A plan file with opaque bytes (no TensorRT here) and a sidecar describing it."""
    plan = folder / "m.plan"
    plan.write_bytes(bytes(range(256)) * 4)
    fields = dict(plan_sha256=sha256_file(plan), plan_bytes=1024, tensorrt_version=TENSORRT_VERSION, gpu_name="Orin (nvgpu)",
                  compute_capability="8.7", precision="fp16", batch=batch, onnx_sha256="ab" * 32, model_config=config,
                  source="m.safetensors")
    sidecar = EngineSidecar(**{**fields, **changes})
    write_sidecar(plan, sidecar)
    return plan, sidecar


@pytest.fixture(scope="module")
def musicvideo_config(tiny_models):
    return tiny_models["musicvideo"].config


# --- ONNX: FP32, FP16, INT8 --------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_fp32_onnx_config_matches_the_graph_and_carries_the_model_config(schema, tiny_models, tmp_path, arch):
    tiny = tiny_models[arch]
    repo = write_triton_repository(tiny.onnx, tmp_path / "repo", name="mvrt")
    config = parse(schema, repo)
    assert repo.model_dir == tmp_path / "repo" / "mvrt"
    assert sorted(p.relative_to(repo.model_dir).as_posix() for p in repo.model_dir.rglob("*")) == [
        "1", "1/model.onnx", "config.pbtxt"]
    assert config.name == "mvrt" and config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size == DEFAULT_MAX_BATCH_SIZE == 8
    assert_matches_graph(schema, config, tiny.onnx)
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == DEFAULT_QUEUE_DELAY_MICROSECONDS
    (group,) = config.instance_group
    assert group.count == 1 and schema[0].ModelInstanceGroup.Kind.Name(group.kind) == "KIND_AUTO"
    exported = tiny.config.replace(contract=2)  # exported ONNX takes uint8 video (DESIGN §3 contract 2)
    assert ModelConfig.from_json(config.parameters["mvrt_config"].string_value) == read_onnx_config(tiny.onnx) == exported
    inputs = {t.name: type_name(schema, t.data_type) for t in config.input}
    assert inputs == {**dict.fromkeys(tiny.config.audio_inputs, "TYPE_FP32"), "video": "TYPE_UINT8"}
    assert config.parameters["mvrt_precision"].string_value == "fp32" == repo.precision
    assert config.parameters["mvrt_model_sha256"].string_value == sha256_file(tiny.onnx)


def test_repository_model_runs_on_onnxruntime_with_the_same_logits(tiny_models, tmp_path):
    import onnxruntime as ort

    tiny = tiny_models["slowfast"]
    repo = write_triton_repository(tiny.onnx, tmp_path / "repo")
    assert repo.model_file == tmp_path / "repo" / "tiny-slowfast" / "1" / "model.onnx"
    assert repo.model_file.read_bytes() == tiny.onnx.read_bytes()
    feeds = random_feeds(read_onnx_config(tiny.onnx), 3, seed=1)
    assert feeds["video"].dtype == np.uint8
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]  # noqa: E731
    served, source = run(repo.model_file), run(tiny.onnx)
    assert served.shape == (3, 6) and np.array_equal(served, source)


def test_fp16_onnx_is_served_as_fp16_with_the_graph_io_types(schema, tiny_models, tmp_path):
    from mvrt.export.fp16 import convert_to_fp16

    proto = convert_to_fp16(onnx.load(str(tiny_models["musicvideo"].onnx))).model
    add_metadata(proto, {PRECISION_KEY: "fp16"})
    path = tmp_path / "mv.fp16.onnx"
    onnx.save(proto, str(path))
    repo = write_triton_repository(path, tmp_path / "repo")
    config = parse(schema, repo)
    assert repo.name == "mv.fp16" and config.parameters["mvrt_precision"].string_value == "fp16"
    assert_matches_graph(schema, config, path)  # the FP16 graph keeps float32 inputs and logits


@pytest.fixture(scope="module")
def int8_model(tiny_models, tmp_path_factory):
    """A calibrated Q/DQ INT8 musicvideo (min-max ranges over two synthetic batches) and its calibration feeds."""
    from mvrt.calibration.quantize import OP_TYPES, quantize_qdq
    from mvrt.calibration.ranges import collect_ranges
    tiny = tiny_models["musicvideo"]
    batches = [random_feeds(read_onnx_config(tiny.onnx), 2, seed=s) for s in range(2)]
    ranges = collect_ranges(tiny.onnx, lambda: iter(batches), ("minmax",), OP_TYPES, total_samples=4, progress=False)
    proto = quantize_qdq(tiny.onnx, ranges.tensors_data("minmax"))
    add_metadata(proto, {PRECISION_KEY: "int8"})
    path = tmp_path_factory.mktemp("int8") / "mv.int8.onnx"
    onnx.save(proto, str(path))
    return path, batches[0]


def test_int8_qdq_onnx_config_matches_the_graph(schema, int8_model, tiny_models, tmp_path):
    path, _ = int8_model
    repo = write_triton_repository(path, tmp_path / "repo", max_batch_size=4)
    config = parse(schema, repo)
    assert config.platform == "onnxruntime_onnx" and config.parameters["mvrt_precision"].string_value == "int8"
    assert config.max_batch_size == 4 and list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert_matches_graph(schema, config, path)
    assert ModelConfig.from_json(config.parameters["mvrt_config"].string_value) == read_onnx_config(path)
    assert {t.name: type_name(schema, t.data_type) for t in config.input} == {"audio": "TYPE_FP32", "video": "TYPE_UINT8"}


def test_int8_qdq_onnx_runs_from_the_repository_with_the_same_logits(int8_model, tmp_path):
    import onnxruntime as ort

    path, feeds = int8_model
    repo = write_triton_repository(path, tmp_path / "repo")
    assert repo.precision == "int8" and repo.platform == "onnxruntime_onnx"
    assert "DequantizeLinear" in {n.op_type for n in onnx.load(str(repo.model_file)).graph.node}
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]  # noqa: E731
    assert np.array_equal(run(repo.model_file), run(path))


def test_uint8_and_fp16_inputs_get_their_triton_types(schema, musicvideo_config, tmp_path):
    import onnxruntime as ort

    path = toy_onnx(tmp_path / "toy.onnx", musicvideo_config)
    repo = write_triton_repository(path, tmp_path / "repo")
    config = parse(schema, repo)
    assert {t.name: type_name(schema, t.data_type) for t in config.input} == {"audio": "TYPE_FP16", "video": "TYPE_UINT8"}
    assert_matches_graph(schema, config, path)
    shapes = musicvideo_config.input_shapes()
    feeds = {"audio": np.ones((2, *shapes["audio"]), np.float16), "video": np.full((2, *shapes["video"]), 2, np.uint8)}
    logits = ort.InferenceSession(str(repo.model_file), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    assert np.allclose(logits, np.arange(1, 7) * 3.0)


def test_batch_options_are_written_and_checked(schema, tiny_models, tmp_path):
    onnx_path = tiny_models["musicvideo"].onnx
    repo = write_triton_repository(onnx_path, tmp_path / "r", max_batch_size=32, max_queue_delay_microseconds=0,
                                   instance_count=2, instance_kind="KIND_CPU")
    config = parse(schema, repo)
    assert config.max_batch_size == 32 and list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert config.instance_group[0].count == 2 and schema[0].ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_CPU"
    repo = write_triton_repository(onnx_path, tmp_path / "r", name="one", max_batch_size=6, preferred_batch_sizes=[6, 3, 3])
    assert list(parse(schema, repo).dynamic_batching.preferred_batch_size) == [3, 6]
    repo = write_triton_repository(onnx_path, tmp_path / "r", name="single", max_batch_size=1)
    assert parse(schema, repo).max_batch_size == 1 and repo.preferred_batch_sizes == ()


# --- fixed batch axes --------------------------------------------------------------------------

def test_fixed_batch_one_is_max_batch_size_one(schema, musicvideo_config, tmp_path):
    path = toy_onnx(tmp_path / "b1.onnx", musicvideo_config, batch=1)
    config = parse(schema, write_triton_repository(path, tmp_path / "repo"))
    assert config.max_batch_size == 1 and list(config.dynamic_batching.preferred_batch_size) == []
    assert_matches_graph(schema, config, path)


def test_fixed_batch_above_one_is_not_batched_by_triton(schema, musicvideo_config, tmp_path):
    path = toy_onnx(tmp_path / "b4.onnx", musicvideo_config, batch=4)
    repo = write_triton_repository(path, tmp_path / "repo")
    config = parse(schema, repo)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert_matches_graph(schema, config, path, batching=False)  # dims keep the batch of 4


def test_a_fixed_batch_cannot_be_given_another_max_batch_size(musicvideo_config, tmp_path):
    path = toy_onnx(tmp_path / "b4.onnx", musicvideo_config, batch=4)
    with pytest.raises(UsageError, match=r"max_batch_size 8 does not fit .*b4\.onnx: its batch axis is fixed at 4") as info:
        write_triton_repository(path, tmp_path / "repo", max_batch_size=8)
    assert info.value.setting == "max_batch_size"
    with pytest.raises(UsageError, match=r"preferred_batch_sizes cannot be set for .*b4\.onnx"):
        write_triton_repository(path, tmp_path / "repo", preferred_batch_sizes=[2])
    repo = write_triton_repository(path, tmp_path / "repo")
    assert repo.max_batch_size == 0 and repo.inputs[1].dims == (4, 3, 64, 128, 128)


def test_inputs_that_disagree_on_the_batch_axis_are_refused(musicvideo_config, tmp_path):
    path = toy_onnx(tmp_path / "mixed.onnx", musicvideo_config, video_batch=2)
    with pytest.raises(ModelError, match=r"mixed\.onnx: its inputs and outputs disagree on the batch axis \(audio: variable, video: 2"):
        write_triton_repository(path, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


# --- TensorRT plans (fake plan bytes: the sidecar alone determines the config) -------------------

def test_plan_config_follows_its_batch_profile_and_copies_the_sidecar(schema, tiny_models, tmp_path):
    config_in = tiny_models["slowfast"].config
    plan, sidecar = fake_plan(tmp_path, config_in)
    repo = write_triton_repository(plan, tmp_path / "repo", name="sf")
    config = parse(schema, repo)
    assert config.platform == "tensorrt_plan" and config.backend == "tensorrt"
    assert config.max_batch_size == 16 and list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert schema[0].ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    listed = {t.name: (type_name(schema, t.data_type), tuple(t.dims)) for t in config.input}
    assert listed == {n: ("TYPE_FP32", s) for n, s in config_in.input_shapes().items()}
    assert [(t.name, type_name(schema, t.data_type), list(t.dims)) for t in config.output] == [("logits", "TYPE_FP32", [6])]
    assert repo.model_file.name == "model.plan" and repo.model_file.read_bytes() == plan.read_bytes()
    assert read_sidecar(repo.model_file) == sidecar  # sidecar copied beside it as model.plan.json
    assert ModelConfig.from_json(config.parameters["mvrt_config"].string_value) == config_in
    assert config.parameters["mvrt_precision"].string_value == "fp16"
    assert any("Orin (nvgpu)" in note and TENSORRT_VERSION in note for note in repo.notes)
    assert "batch profile is 1:4:16" in repo.config_path.read_text()


def test_a_contract_2_plan_takes_uint8_video(schema, tiny_models, tmp_path):
    """Without its ONNX, a plan's config lists the inputs its sidecar's model config says: uint8 `video`."""
    config_in = tiny_models["slowfast"].config.replace(contract=2)
    plan, _ = fake_plan(tmp_path, config_in)
    repo = write_triton_repository(plan, tmp_path / "repo")
    config = parse(schema, repo)
    listed = {t.name: (type_name(schema, t.data_type), tuple(t.dims)) for t in config.input}
    assert listed == {"audio_slow": ("TYPE_FP32", config_in.input_shapes()["audio_slow"]),
                      "audio_fast": ("TYPE_FP32", config_in.input_shapes()["audio_fast"]),
                      "video": ("TYPE_UINT8", (3, 64, 128, 128))}
    assert "TYPE_UINT8" in repo.config_path.read_text()


def test_plan_max_batch_size_may_be_lowered(schema, tiny_models, tmp_path):
    plan, _ = fake_plan(tmp_path, tiny_models["slowfast"].config)
    config = parse(schema, write_triton_repository(plan, tmp_path / "repo", max_batch_size=8))
    assert config.max_batch_size == 8 and list(config.dynamic_batching.preferred_batch_size) == [4, 8]


def test_plan_max_batch_size_must_fit_the_profile(tiny_models, tmp_path):
    plan, _ = fake_plan(tmp_path, tiny_models["slowfast"].config)
    with pytest.raises(UsageError, match=r"max_batch_size 32 is more than .*m\.plan can run: its batch profile is 1:4:16") as info:
        write_triton_repository(plan, tmp_path / "repo", max_batch_size=32)
    assert info.value.setting == "max_batch_size" and not (tmp_path / "repo").exists()
    with pytest.raises(UsageError, match=r"preferred_batch_sizes: each must be a whole number from 1 to max_batch_size \(16\), got 17"):
        write_triton_repository(plan, tmp_path / "repo", name="p", preferred_batch_sizes=[4, 17])


def test_plan_sidecar_problems_are_one_line_model_errors(tiny_models, tmp_path):
    config = tiny_models["slowfast"].config
    plan, sidecar = fake_plan(tmp_path, config)
    os.remove(str(plan) + ".json")
    with pytest.raises(ModelError, match=r"m\.plan: its sidecar .*m\.plan\.json is missing"):
        write_triton_repository(plan, tmp_path / "repo")
    write_sidecar(plan, dataclasses.replace(sidecar, plan_sha256="00" * 32))
    with pytest.raises(ModelError, match=r"m\.plan: plan sha256 .* differs from its sidecar"):
        write_triton_repository(plan, tmp_path / "repo")
    write_sidecar(plan, dataclasses.replace(sidecar, batch=BatchProfile(4, 4, 4)))
    with pytest.raises(ModelError, match=r"m\.plan: its batch profile 4:4:4 starts at 4, but Triton sends batches from 1"):
        write_triton_repository(plan, tmp_path / "repo")
    write_sidecar(plan, sidecar)
    with pytest.raises(UsageError, match="KIND_CPU cannot serve a TensorRT plan"):
        write_triton_repository(plan, tmp_path / "repo", instance_kind="KIND_CPU")
    assert not (tmp_path / "repo").exists()


def test_an_engine_suffix_is_served_as_model_plan(tiny_models, tmp_path):
    plan, sidecar = fake_plan(tmp_path, tiny_models["slowfast"].config)
    engine = tmp_path / "m.engine"
    shutil.copyfile(plan, engine)
    write_sidecar(engine, sidecar)
    repo = write_triton_repository(engine, tmp_path / "repo")
    assert repo.name == "m" and repo.platform == "tensorrt_plan"
    assert sorted(p.name for p in repo.model_file.parent.iterdir()) == ["model.plan", "model.plan.json"]
    assert read_sidecar(repo.model_file) == sidecar


def test_version_compatible_plan_says_how_triton_must_be_started(tiny_models, tmp_path):
    plan, _ = fake_plan(tmp_path, tiny_models["slowfast"].config, version_compatible=True)
    repo = write_triton_repository(plan, tmp_path / "repo")
    assert any("--backend-config=tensorrt,version-compatible=true" in note for note in repo.notes)


def test_plan_io_can_come_from_the_onnx_it_was_built_from(schema, musicvideo_config, tmp_path):
    source = toy_onnx(tmp_path / "source.onnx", musicvideo_config)
    plan, _ = fake_plan(tmp_path, musicvideo_config, onnx_sha256=sha256_file(source))
    config = parse(schema, write_triton_repository(plan, tmp_path / "repo", source_onnx=source))
    assert {t.name: type_name(schema, t.data_type) for t in config.input} == {"audio": "TYPE_FP16", "video": "TYPE_UINT8"}
    assert config.max_batch_size == 16


def test_plan_source_onnx_must_be_the_one_it_was_built_from(musicvideo_config, tmp_path):
    source = toy_onnx(tmp_path / "source.onnx", musicvideo_config)
    plan, _ = fake_plan(tmp_path, musicvideo_config, onnx_sha256=sha256_file(source))
    other = toy_onnx(tmp_path / "other.onnx", musicvideo_config, audio=TensorProto.FLOAT)
    with pytest.raises(ModelError, match=r"other\.onnx: is not the ONNX model .*m\.plan was built from"):
        write_triton_repository(plan, tmp_path / "repo", source_onnx=other)
    with pytest.raises(ModelError, match=r"nowhere\.onnx: no such model file \(source_onnx of .*m\.plan\)"):
        write_triton_repository(plan, tmp_path / "repo", source_onnx=tmp_path / "nowhere.onnx")
    assert write_triton_repository(plan, tmp_path / "repo", source_onnx=source).inputs[1].data_type == "TYPE_UINT8"


# --- bad input ---------------------------------------------------------------------------------

def test_files_that_are_not_mvrt_models_are_refused(musicvideo_config, tiny_models, tmp_path):
    cases = [
        (toy_onnx(tmp_path / "plain.onnx", musicvideo_config, metadata=False), r"plain\.onnx: no mvrt model config in its metadata"),
        (tmp_path / "garbage.onnx", r"garbage\.onnx: not an ONNX model"),
        (tiny_models["slowfast"].checkpoint, r"tiny-slowfast\.safetensors: a Triton repository takes an ONNX model .* export a checkpoint to ONNX first"),
        (tmp_path / "missing.onnx", r"missing\.onnx: no such model file"),
        (toy_onnx(tmp_path / "renamed.onnx", musicvideo_config, names=("audio", "frames")), r"renamed\.onnx: graph inputs \['audio', 'frames'\] differ from its config's \['audio', 'video'\]"),
    ]
    (tmp_path / "garbage.onnx").write_bytes(b"\xff" * 64)
    for path, match in cases:
        with pytest.raises(ModelError, match=match) as info:
            write_triton_repository(path, tmp_path / "repo")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "", "x" * 129, "sp ace", "-dash"])
def test_unsafe_names_are_refused(tiny_models, tmp_path, name):
    with pytest.raises(UsageError, match="is not a safe folder name") as info:
        write_triton_repository(tiny_models["musicvideo"].onnx, tmp_path / "repo", name=name)
    assert info.value.setting == "name" and not (tmp_path / "repo").exists()


def test_default_name_is_the_file_stem_made_safe(musicvideo_config, tmp_path):
    path = toy_onnx(tmp_path / "my model (v2).onnx", musicvideo_config)
    assert write_triton_repository(path, tmp_path / "repo").name == "my_model__v2_"


@pytest.mark.parametrize("options, setting", [
    ({"max_batch_size": 0}, "max_batch_size"), ({"max_batch_size": True}, "max_batch_size"),
    ({"preferred_batch_sizes": [16]}, "preferred_batch_sizes"), ({"preferred_batch_sizes": "8"}, "preferred_batch_sizes"),
    ({"instance_count": 0}, "instance_count"), ({"max_queue_delay_microseconds": -1}, "max_queue_delay_microseconds"),
    ({"instance_kind": "GPU"}, "instance_kind"), ({"source_onnx": "x.onnx"}, "source_onnx"),
])
def test_bad_options_name_the_keyword(tiny_models, tmp_path, options, setting):
    with pytest.raises(UsageError, match=setting) as info:
        write_triton_repository(tiny_models["musicvideo"].onnx, tmp_path / "repo", **options)
    assert info.value.setting == setting and "--" not in str(info.value)


# --- writing -----------------------------------------------------------------------------------

def test_existing_model_folder_needs_overwrite_and_is_then_replaced_whole(tiny_models, tmp_path):
    repo_dir = tmp_path / "repo"
    first = write_triton_repository(tiny_models["musicvideo"].onnx, repo_dir, name="m")
    (first.model_dir / "stale.txt").write_text("left by hand")
    before = first.config_path.read_text()
    with pytest.raises(OutputError, match=r"repo/m: already exists; pass overwrite=True to replace it") as info:
        write_triton_repository(tiny_models["slowfast"].onnx, repo_dir, name="m")
    assert info.value.setting == "overwrite" and first.config_path.read_text() == before
    second = write_triton_repository(tiny_models["slowfast"].onnx, repo_dir, name="m", overwrite=True)
    assert "audio_slow" in second.config_path.read_text() and not (second.model_dir / "stale.txt").exists()
    assert sorted(p.name for p in repo_dir.iterdir()) == ["m"]  # no staging folders left


def test_a_failed_write_leaves_nothing_half_written(tiny_models, tmp_path, monkeypatch):
    repo_dir = tmp_path / "repo"
    old = write_triton_repository(tiny_models["musicvideo"].onnx, repo_dir, name="m")
    old_sha = hashlib.sha256(old.model_file.read_bytes()).hexdigest()
    real_copy = shutil.copyfile

    def disk_full(src, dst, *args, **kwargs):
        with open(dst, "wb") as f:
            f.write(b"\0" * 100)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(OutputError, match=r"repo/m: cannot write the model folder \(No space left on device\)$"):
        write_triton_repository(tiny_models["slowfast"].onnx, repo_dir, name="m", overwrite=True)
    with pytest.raises(OutputError, match=r"repo/new: cannot write"):
        write_triton_repository(tiny_models["slowfast"].onnx, repo_dir, name="new")
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    assert sorted(p.name for p in repo_dir.iterdir()) == ["m"]  # no "new", no staging folders
    assert hashlib.sha256(old.model_file.read_bytes()).hexdigest() == old_sha and "video_fast" not in old.config_path.read_text()


def test_repo_dir_that_is_a_file_is_an_output_error(tiny_models, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match=r"file: cannot create the model repository folder"):
        write_triton_repository(tiny_models["musicvideo"].onnx, tmp_path / "file")


def test_strings_are_escaped_for_the_text_format(schema):
    from mvrt.export.triton_repo import _quote

    model_config_pb2, text_format = schema
    for text in ['say "hi"', "back\\slash", "two\nlines\ttab", "Ünïcode ✓", "\x00\x7f"]:
        parsed = text_format.Parse(f"parameters {{ key: \"k\" value {{ string_value: {_quote(text)} }} }}",
                                   model_config_pb2.ModelConfig())
        assert parsed.parameters["k"].string_value == text
        assert _quote(text).isascii() and "\n" not in _quote(text)
