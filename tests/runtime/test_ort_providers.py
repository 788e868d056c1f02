"""ONNX Runtime providers: the TensorRT / CUDA EP options and caches for real models, contract-2 and
fixed-batch graphs on the CPU provider. No GPU here: the GPU providers' options are built for the
providers a GPU build would list, and no GPU session is created (none is claimed to run)."""

from __future__ import annotations

import logging
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mvrt.artifacts import PRECISION_KEY
from mvrt.config import FrontendConfig
from mvrt.errors import BackendError, ModelError, UsageError
from mvrt.runtime.engine_timing import synthetic_feeds
from mvrt.runtime.engines import OnnxRuntimeEngine, open_engine
from mvrt.runtime.engines.onnxruntime_engine import describe_providers, fixed_batch_size
from mvrt.runtime.engines.ort_providers import (
    CACHE_SUFFIX, CPU, CUDA, TENSORRT, announce, ensure_cache, plan_providers, tensorrt_cache, with_cache,
)
from mvrt.runtime.model_meta import sha256_file

GPU_BUILD = [TENSORRT, CUDA, CPU]  # what onnxruntime-gpu lists on a machine with TensorRT


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Real ONNX exports of one tiny slowfast (32-pixel frames): contract 2 fp32 and fp16, contract 1 fp32."""
    pytest.importorskip("torch")
    from model_factory import make_tiny_model

    from mvrt.export.fp16 import convert_to_fp16
    from mvrt.export.onnx_export import add_metadata, export_onnx, save_single_file

    folder = tmp_path_factory.mktemp("ort-providers")
    ckpt, fp32, config = make_tiny_model(folder, frontend=FrontendConfig(window_seconds=4.0, image_size=32))
    fp16 = convert_to_fp16(onnx.load(str(fp32))).model
    add_metadata(fp16, {PRECISION_KEY: "fp16"})
    contract1 = export_onnx(ckpt, None, folder / "contract1.onnx", contract=1)
    return {"fp32": fp32, "fp16": save_single_file(fp16, folder / "fp16.onnx"), "contract1": contract1}


@pytest.fixture
def model(models, tmp_path):
    """The contract-2 fp32 model copied into a fresh folder (its cache folder starts absent)."""
    path = tmp_path / "m.onnx"
    path.write_bytes(models["fp32"].read_bytes())
    return path


def _options(plan) -> dict:
    return dict(zip(plan.providers, plan.provider_options))


def test_tensorrt_gets_engine_and_timing_caches_beside_the_model(model):
    plan = plan_providers(model, "auto", GPU_BUILD)
    assert plan.providers == (TENSORRT, CUDA, CPU)
    trt = _options(plan)[TENSORRT]
    root = model.with_name("m.onnx" + CACHE_SUFFIX)
    assert trt["trt_engine_cache_enable"] is True and trt["trt_timing_cache_enable"] is True
    assert trt["trt_timing_cache_path"] == str(root)
    assert trt["trt_engine_cache_path"] == str(root / sha256_file(model)[:16])
    assert (trt["trt_fp16_enable"], trt["trt_int8_enable"], trt["device_id"]) == (False, False, 0)  # fp32 stays fp32
    assert _options(plan)[CUDA] == {"device_id": 0} and _options(plan)[CPU] == {}
    assert plan.cache.beside_model and plan.cache.cached_engines == 0
    assert not root.exists()  # planning writes nothing


def test_precision_flags_follow_the_graph(models):
    fp16 = _options(OnnxRuntimeEngine(models["fp16"], providers="tensorrt").plan(GPU_BUILD))[TENSORRT]
    assert (fp16["trt_fp16_enable"], fp16["trt_int8_enable"]) == (True, False)
    fp32 = _options(OnnxRuntimeEngine(models["fp32"], providers="tensorrt").plan(GPU_BUILD))[TENSORRT]
    assert (fp32["trt_fp16_enable"], fp32["trt_int8_enable"]) == (False, False)
    int8 = _options(plan_providers(models["fp32"], "tensorrt", GPU_BUILD, precision="int8"))[TENSORRT]
    assert (int8["trt_fp16_enable"], int8["trt_int8_enable"]) == (False, True)  # Q/DQ scales need INT8 on
    assert not any("calibration" in key for key in int8)  # TensorRT refuses a table for a Q/DQ graph


def test_tensorrt_alone_gets_cuda_next_and_a_device_index(model):
    plan = plan_providers(model, ["tensorrt:1"], GPU_BUILD)
    assert plan.providers == (TENSORRT, CUDA, CPU)
    assert _options(plan)[TENSORRT]["device_id"] == 1 and _options(plan)[CUDA] == {"device_id": 1}
    cuda = plan_providers(model, "cuda", GPU_BUILD, device_id=2)
    assert cuda.providers == (CUDA, CPU) and cuda.cache is None and _options(cuda)[CUDA] == {"device_id": 2}
    with pytest.raises(UsageError, match=r"name different GPUs \[0, 1\]"):
        plan_providers(model, ["tensorrt:0", "cuda:1"], GPU_BUILD)
    with pytest.raises(UsageError, match="must be a device index"):
        plan_providers(model, "cuda:first", GPU_BUILD)


def test_the_cache_is_created_on_demand_and_found_again(model):
    plan = plan_providers(model, "tensorrt", GPU_BUILD)
    cache = ensure_cache(plan.cache, model)
    assert cache == plan.cache and cache.engines.is_dir()
    (cache.engines / "TensorrtExecutionProvider_TRTKernel_graph_main_1_1_sm90.engine").write_bytes(b"engine")
    again = plan_providers(model, "tensorrt", GPU_BUILD).cache
    assert again.cached_engines == 1
    model.write_bytes(model.read_bytes() + b"\0")  # other bytes (re-exported weights): other engines, same timing cache
    changed = plan_providers(model, "tensorrt", GPU_BUILD).cache
    assert changed.root == again.root and changed.engines != again.engines and changed.cached_engines == 0


def test_an_unwritable_model_folder_falls_back_to_the_user_cache(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    model.with_name(model.name + CACHE_SUFFIX).write_text("not a folder")  # the name beside the model is taken
    plan = plan_providers(model, "tensorrt", GPU_BUILD)
    assert not plan.cache.beside_model and plan.cache.root.parent == tmp_path / "user-cache" / "mvrt" / "ort-trt"
    assert _options(plan)[TENSORRT]["trt_timing_cache_path"] == str(plan.cache.root)
    assert ensure_cache(plan.cache, model).engines.is_dir()


def test_a_cache_folder_that_cannot_be_made_falls_back_when_loading(model, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    plan = plan_providers(model, "tensorrt", GPU_BUILD)
    plan.cache.root.mkdir()
    plan.cache.engines.write_text("in the way")  # mkdir of the engines folder fails
    with caplog.at_level(logging.WARNING, logger="mvrt.runtime.engines.ort_providers"):
        cache = ensure_cache(plan.cache, model)
    assert not cache.beside_model and cache.engines.is_dir() and str(tmp_path / "user-cache") in str(cache.root)
    assert "TensorRT caches go to" in caplog.text
    moved = _options(with_cache(plan, cache))[TENSORRT]
    assert moved["trt_engine_cache_path"] == str(cache.engines) and moved["trt_timing_cache_path"] == str(cache.root)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_model_folder_uses_the_user_cache(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    model.parent.chmod(0o555)
    try:
        assert not tensorrt_cache(model).beside_model
    finally:
        model.parent.chmod(0o755)


def test_the_tensorrt_log_line_names_the_cache_and_what_was_there(model, caplog):
    plan = plan_providers(model, "tensorrt", GPU_BUILD)
    with caplog.at_level(logging.INFO, logger="mvrt.runtime.engines.ort_providers"):
        announce(plan, model.name)
        announce(plan_providers(model, "auto", [CPU]), model.name)  # CPU only: nothing to say
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    text = record.getMessage()
    assert "may build TensorRT engines for m.onnx" in text and "can take minutes" in text
    assert str(plan.cache.engines) in text and "no cached engine there yet" in text and "trt_fp16_enable=False" in text


def test_the_cpu_engine_records_what_it_used(model):
    with open_engine(model, threads=1) as engine:
        assert engine.providers == [CPU] and engine.provider_options == {CPU: {}}
        assert engine.cache_dir is None and engine.cache_existed is None
    assert not model.with_name(model.name + CACHE_SUFFIX).exists()


def test_describe_providers_without_a_session(model):
    shown = describe_providers(model)
    assert shown["available"] == ort.get_available_providers() and shown["chosen"] == [CPU]
    assert shown["tensorrt_cache"]["root"] == str(model) + CACHE_SUFFIX and shown["tensorrt_cache"]["exists"] is False
    assert "onnxruntime-gpu" in shown["tensorrt_cache"]["note"]


@pytest.mark.parametrize("which", ["fp32", "contract1"])
def test_both_contracts_load_and_run(models, which):
    with open_engine(models[which], threads=1) as engine:
        assert engine.config.contract == (2 if which == "fp32" else 1)
        video = "video" if which == "fp32" else "video_fast"
        assert engine.input_dtypes[video] == (np.uint8 if which == "fp32" else np.float32)
        logits = engine.infer(synthetic_feeds(engine.input_shapes, 2, input_dtypes=engine.input_dtypes))
        assert logits.shape == (2, 6) and np.isfinite(logits).all() and engine.fixed_batch is None


def test_a_graph_whose_input_type_disagrees_with_its_metadata(models, tmp_path):
    proto = onnx.load(str(models["fp32"]))
    (video,) = [i for i in proto.graph.input if i.name == "video"]
    video.type.tensor_type.elem_type = onnx.TensorProto.FLOAT  # its Cast to float still loads
    path = tmp_path / "float-video.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelError) as caught:
        OnnxRuntimeEngine(path).load()
    message = str(caught.value)
    assert "\n" not in message and "float-video.onnx: graph input 'video' is tensor(float)" in message
    assert "(tensor contract 2) says uint8" in message and "disagree" in message


def _with_batch(source, target, sizes: dict[str, int]):
    proto = onnx.load(str(source))
    for value in [*proto.graph.input, *proto.graph.output]:
        if value.name in sizes:
            value.type.tensor_type.shape.dim[0].dim_value = sizes[value.name]
    onnx.save(proto, str(target))
    return target


def test_a_fixed_batch_graph_sets_fixed_batch_and_max_batch(models, tmp_path):
    names = ["audio_slow", "audio_fast", "video", "logits"]
    path = _with_batch(models["fp32"], tmp_path / "b2.onnx", dict.fromkeys(names, 2))
    with open_engine(path, threads=1) as engine:
        assert (engine.fixed_batch, engine.max_batch) == (2, 2)
        feeds = synthetic_feeds(engine.input_shapes, 2, input_dtypes=engine.input_dtypes)
        both = engine.infer(feeds)
        assert both.shape == (2, 6)
        one = engine.infer({name: value[:1] for name, value in feeds.items()})  # padded up to 2 by base.Engine
        np.testing.assert_allclose(one, both[:1], atol=1e-5)
        with pytest.raises(UsageError, match="batch size 3 exceeds this engine's fixed batch 2"):
            engine.infer(synthetic_feeds(engine.input_shapes, 3, input_dtypes=engine.input_dtypes))


def test_fixed_batch_sizes_read_from_shapes():
    assert fixed_batch_size([["batch", 2], ["batch", 6]]) is None
    assert fixed_batch_size([[4, 2], ["batch", 3], [4, 6]]) == 4
    with pytest.raises(ModelError, match=r"fix different batch sizes \[2, 4\]"):
        fixed_batch_size([[2, 1], [4, 1]], "m.onnx")


def test_an_unavailable_gpu_provider_needs_onnxruntime_gpu(model):
    if TENSORRT in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        OnnxRuntimeEngine(model, providers="tensorrt").load()


def _require_provider(name: str) -> None:
    """Skip without onnxruntime-gpu's `name` provider; fail instead under MVRT_REQUIRE_GPU=1 (tests/gpu.py's rule)."""
    if name in ort.get_available_providers():
        return
    reason = f"this onnxruntime ({ort.__version__}) has no {name} (onnxruntime-gpu is not installed)"
    if os.environ.get("MVRT_REQUIRE_GPU") == "1":
        pytest.fail(f"MVRT_REQUIRE_GPU=1 but {reason}")
    pytest.skip(reason)


def _cpu_logits(path, feeds):
    with OnnxRuntimeEngine(path, providers="cpu", threads=1) as engine:
        return engine.infer(feeds)


def test_gpu_cuda_provider_matches_the_cpu(model):
    _require_provider(CUDA)
    with OnnxRuntimeEngine(model, providers="cuda") as engine:
        assert engine.providers[0] == CUDA and engine.provider_options[CUDA] == {"device_id": 0}
        feeds = synthetic_feeds(engine.input_shapes, 2, input_dtypes=engine.input_dtypes)
        np.testing.assert_allclose(engine.infer(feeds), _cpu_logits(model, feeds), atol=1e-3)


def test_gpu_tensorrt_provider_builds_its_cache_once(model, caplog):
    _require_provider(TENSORRT)
    with caplog.at_level(logging.INFO, logger="mvrt.runtime.engines.ort_providers"):
        with OnnxRuntimeEngine(model, providers="tensorrt") as engine:
            assert engine.providers[0] == TENSORRT and engine.cache_existed is False
            feeds = synthetic_feeds(engine.input_shapes, 2, input_dtypes=engine.input_dtypes)
            np.testing.assert_allclose(engine.infer(feeds), _cpu_logits(model, feeds), atol=1e-3)
    assert "no cached engine there yet" in caplog.text
    assert engine.cache_dir == model.with_name(model.name + CACHE_SUFFIX)
    assert list(engine.cache_dir.rglob("*.engine")), "the TensorRT EP wrote no engine into the cache folder"
    with OnnxRuntimeEngine(model, providers="tensorrt") as again:
        assert again.cache_existed is True and again.infer(feeds).shape == (2, 6)
