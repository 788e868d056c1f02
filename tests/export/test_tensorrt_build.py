"""TensorRT builder: settings checks and plan/sidecar writing here; real builds where TensorRT is.

Without TensorRT / a CUDA driver the build tests skip; MVRT_REQUIRE_GPU=1 makes them fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging

import numpy as np
import onnx
import pytest
from gpu import require_tensorrt
from model_factory import random_feeds

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import MissingDependencyError, ModelError, UsageError
from mvrt.export.onnx_export import add_metadata
from mvrt.export.build_settings import TensorRTSettings
from mvrt.export.tensorrt_build import build_engine, prepare, write_engine
from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, read_sidecar, sidecar_path
from mvrt.runtime.model_meta import CONFIG_KEY

CONFIG = ModelConfig(arch="musicvideo", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0))
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _metadata_onnx(path, **metadata):
    """A small valid ONNX file carrying mvrt metadata (the builder checks read only the metadata)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    add_metadata(model, {CONFIG_KEY: CONFIG.to_json(), **metadata})
    onnx.save(model, path)
    return path


def test_precision_comes_from_the_graph(tmp_path):
    fp16 = _metadata_onnx(tmp_path / "m16.onnx", mvrt_precision="fp16")
    plan = prepare(fp16, tmp_path / "m.plan", TensorRTSettings(precision="fp16", batch_min=1, batch_opt=2, batch_max=4))
    assert (plan.precision, plan.batch, plan.config) == ("fp16", BatchProfile(1, 2, 4), CONFIG)
    assert plan.workspace_bytes == 1 << 30 and plan.source == str(fp16)
    with pytest.raises(UsageError, match=r"m16\.onnx: the graph is fp16 \(metadata mvrt_precision\), but precision fp32 was asked"):
        prepare(fp16, tmp_path / "m.plan", TensorRTSettings(precision="fp32"))
    fp32 = _metadata_onnx(tmp_path / "m32.onnx")  # no key: fp32
    assert prepare(fp32, tmp_path / "m.plan", TensorRTSettings()).precision == "fp32"
    odd = _metadata_onnx(tmp_path / "odd.onnx", mvrt_precision="fp8")
    with pytest.raises(ModelError, match=r"odd\.onnx: unknown mvrt_precision 'fp8'"):
        prepare(odd, tmp_path / "m.plan", TensorRTSettings())


def test_bad_inputs_are_refused_before_tensorrt_is_needed(tmp_path):
    onnx_path = _metadata_onnx(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match=r"m\.onnx: the graph is fp32 .* precision int8 was asked"):
        build_engine(onnx_path, tmp_path / "m.plan", TensorRTSettings(precision="int8"))
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"m\.safetensors: a TensorRT engine is built from an \.onnx model"):
        build_engine(ckpt, tmp_path / "m.plan", TensorRTSettings())
    with pytest.raises(UsageError, match=r"would overwrite its own ONNX model"):
        build_engine(onnx_path, onnx_path, TensorRTSettings())


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_build_without_tensorrt_names_the_extra(tmp_path):
    onnx_path = _metadata_onnx(tmp_path / "m.onnx")
    with pytest.raises(MissingDependencyError, match=r"building a TensorRT engine needs the 'tensorrt' package; "
                       r"install it with `pip install 'mvrt\[tensorrt\]'`"):
        build_engine(onnx_path, tmp_path / "m.plan", TensorRTSettings())
    assert not (tmp_path / "m.plan").exists()


def test_written_sidecar_is_the_returned_and_logged_settings(tmp_path, caplog):
    payload = np.random.default_rng(0).bytes(4096)  # opaque plan bytes
    sidecar = EngineSidecar(plan_sha256="", plan_bytes=0, tensorrt_version="11.4.0.106", gpu_name="NVIDIA H100 80GB HBM3",
                            compute_capability="9.0", precision="fp32", batch=BatchProfile(1, 2, 4), onnx_sha256="cd" * 32,
                            model_config=CONFIG, timing_cache=str(tmp_path / "cache.bin"), source="m.safetensors")
    engine_path = tmp_path / "out" / "m.plan"
    with caplog.at_level(logging.INFO, logger="mvrt.export.tensorrt_build"):
        record = write_engine(payload, engine_path, sidecar)
    assert engine_path.read_bytes() == payload  # plain: exactly the serialized bytes
    assert record == json.loads(sidecar_path(engine_path).read_text())
    assert record["plan_sha256"] == hashlib.sha256(payload).hexdigest() and record["plan_bytes"] == 4096
    assert read_sidecar(engine_path).plan_sha256 == record["plan_sha256"]
    assert sorted(p.name for p in engine_path.parent.iterdir()) == ["m.plan", "m.plan.json"]  # no temp files left
    (message,) = [r.getMessage() for r in caplog.records if "settings used" in r.getMessage()]
    for key in ("'batch': {'min': 1, 'opt': 2, 'max': 4}", "'precision': 'fp32'", "'workspace_bytes': 1073741824",
                f"'timing_cache': '{tmp_path / 'cache.bin'}'", "'version_compatible': False"):
        assert key in message


# --- TensorRT --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trt_and_models(request):
    trt = require_tensorrt()  # before the tiny models are made
    return trt, request.getfixturevalue("tiny_models")


@pytest.mark.gpu
def test_fp32_build_records_the_machine_and_reuses_the_timing_cache(trt_and_models, tmp_path):
    from mvrt.runtime.engines import cuda_runtime
    from mvrt.runtime.model_meta import sha256_file

    trt, models = trt_and_models
    tm = models["slowfast"]
    cache = tmp_path / "timing.cache"
    settings = TensorRTSettings(batch_min=1, batch_opt=2, batch_max=4, timing_cache=cache)
    first = build_engine(tm.onnx, tmp_path / "a.plan", settings, source=tm.checkpoint)
    assert first == json.loads(sidecar_path(tmp_path / "a.plan").read_text())
    name, capability = cuda_runtime.device_name_and_capability(0)
    assert (first["tensorrt_version"], first["gpu_name"], first["compute_capability"]) == (trt.__version__, name, capability)
    assert first["precision"] == "fp32" and first["batch"] == {"min": 1, "opt": 2, "max": 4}
    assert first["onnx_sha256"] == sha256_file(tm.onnx) and first["plan_sha256"] == sha256_file(tmp_path / "a.plan")
    assert first["calibration_sha256"] is None and first["version_compatible"] is False and first["dla_core"] is None
    assert first["source"] == str(tm.checkpoint) and ModelConfig.from_dict(first["model_config"]) == tm.config.replace(contract=2)
    assert first["layer_devices"] is None  # no DLA
    assert cache.stat().st_size > 0 and first["timing_cache_loaded"] is False
    second = build_engine(tm.onnx, tmp_path / "b.plan", settings)
    assert second["timing_cache_loaded"] is True and cache.stat().st_size > 0


@pytest.mark.gpu
def test_version_compatible_build_runs_and_keeps_the_calibration_hash(trt_and_models, tmp_path):
    from mvrt.runtime.engines import open_engine

    _, models = trt_and_models
    tm = models["musicvideo"]
    proto = onnx.load(tm.onnx)
    add_metadata(proto, {"mvrt_calibration_sha256": "ef" * 32})
    onnx_path = tmp_path / "vc.onnx"
    onnx.save(proto, onnx_path)
    record = build_engine(onnx_path, tmp_path / "vc.plan", TensorRTSettings(batch_min=1, batch_opt=1, batch_max=2,
                                                                           version_compatible=True))
    assert record["version_compatible"] is True and record["calibration_sha256"] == "ef" * 32
    feeds = random_feeds(tm.config.replace(contract=2), 2, seed=1)
    with open_engine(tmp_path / "vc.plan", trust_plan_code=True) as trt_engine, open_engine(tm.onnx) as ort_engine:
        np.testing.assert_allclose(trt_engine.infer(feeds), ort_engine.infer(feeds), atol=1e-3, rtol=0)


@pytest.mark.gpu
def test_parser_errors_are_one_line(trt_and_models, tmp_path):
    _, models = trt_and_models
    proto = onnx.load(models["slowfast"].onnx)
    proto.graph.node[0].op_type = "NoSuchOperator"
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, broken)
    with pytest.raises(ModelError, match=r"broken\.onnx: TensorRT \S+ cannot parse the model: .*NoSuchOperator") as info:
        build_engine(broken, tmp_path / "broken.plan", TensorRTSettings())
    assert "\n" not in str(info.value) and not (tmp_path / "broken.plan").exists()


@pytest.mark.gpu
def test_fixed_batch_plan_takes_uint8_video_and_pads_a_partial_batch(trt_and_models, tmp_path):
    """Contract 2: the plan's `video` input stays uint8 (strongly typed network); a 2:2:2 plan runs
    batch 1 padded, and its logits are those of ONNX Runtime on the unpadded batch."""
    from mvrt.runtime.engines import open_engine

    trt, models = trt_and_models
    tm = models["slowfast"]
    plan = tmp_path / "fixed.plan"
    build_engine(tm.onnx, plan, TensorRTSettings(batch_min=2, batch_opt=2, batch_max=2), source=tm.checkpoint)
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan.read_bytes())
    assert engine.get_tensor_dtype("video") == trt.DataType.UINT8
    with open_engine(plan) as trt_engine, open_engine(tm.onnx) as ort_engine:
        assert trt_engine.fixed_batch == 2
        for batch in (1, 2):
            feeds = random_feeds(trt_engine.config, batch, seed=batch)
            np.testing.assert_allclose(trt_engine.infer(feeds), ort_engine.infer(feeds), atol=1e-3, rtol=0)


@pytest.mark.gpu
def test_dla_build_puts_the_audio_pathways_on_the_dla(trt_and_models, tmp_path):
    """Jetson only (a device with DLA cores); elsewhere skipped even under MVRT_REQUIRE_GPU=1."""
    from mvrt.export.pipeline import export_model
    from mvrt.runtime.engines import open_engine

    trt, models = trt_and_models
    if int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores or 0) < 1:
        pytest.skip("this GPU has no DLA core")
    tm = models["slowfast"]
    fp16 = export_model(tm.checkpoint, tmp_path / "m.fp16.onnx", precision="fp16").onnx_path
    record = build_engine(fp16, tmp_path / "dla.plan", TensorRTSettings(precision="fp16", batch_min=2, batch_opt=2,
                                                                       batch_max=2, dla_core=0))
    counts = record["layer_devices"]
    assert record["dla_core"] == 0 and counts["dla"] > 0 and counts["gpu"] > 0
    with open_engine(tmp_path / "dla.plan") as trt_engine, open_engine(fp16) as ort_engine:
        feeds = random_feeds(trt_engine.config, 1)
        got, ref = trt_engine.infer(feeds), ort_engine.infer(feeds)
    assert (got.argmax(1) == ref.argmax(1)).all() and np.abs(got - ref).max() < 0.1
