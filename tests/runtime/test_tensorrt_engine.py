"""TensorRT engine: routing and checks that need no GPU; CUDA helpers and plan parity where present.

Without TensorRT / a CUDA driver the GPU tests skip; MVRT_REQUIRE_GPU=1 makes them fail.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from gpu import require_cuda, require_tensorrt, require_tensorrt_runtime
from model_factory import random_feeds

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, read_sidecar, write_sidecar
from mvrt.runtime.engines.tensorrt_engine import TensorRTEngine, parse_device
from mvrt.runtime.model_meta import read_onnx_config, sha256_file

CONFIG = ModelConfig(arch="slowfast", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0, image_size=32))
HAS_TENSORRT = any(importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_lean"))


def _has_cuda_python() -> bool:
    try:
        return importlib.util.find_spec("cuda.bindings") is not None or importlib.util.find_spec("cuda.cudart") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def unbuilt_plan(tmp_path):
    """A sidecar (profile 1:2:4) beside plan bytes no TensorRT built: enough for pre-load checks."""
    path = tmp_path / "tiny.plan"
    path.write_bytes(b"not a real plan")
    write_sidecar(path, EngineSidecar(
        plan_sha256=sha256_file(path), plan_bytes=path.stat().st_size, tensorrt_version="10.3.0.30",
        gpu_name="Orin (nvgpu)", compute_capability="8.7", precision="fp32", batch=BatchProfile(1, 2, 4),
        onnx_sha256="00" * 32, model_config=CONFIG, source="tiny.safetensors"))
    return path


# --- no GPU needed -------------------------------------------------------------------------

@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_plan_without_tensorrt_names_the_extra(unbuilt_plan):
    with pytest.raises(MissingDependencyError, match=r"running the TensorRT plan tiny\.plan needs the 'tensorrt' package; "
                       r"install it with `pip install 'mvrt\[tensorrt\]'`") as info:
        open_engine(unbuilt_plan)
    assert "\n" not in str(info.value)
    with pytest.raises(MissingDependencyError, match=r"pip install 'mvrt\[tensorrt\]'"):
        open_engine(unbuilt_plan, backend="tensorrt")


def test_routing_refuses_mismatched_backends(unbuilt_plan, tmp_path):
    onnx_like = tmp_path / "m.onnx"
    onnx_like.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"m\.onnx: the tensorrt backend runs serialized plans"):
        open_engine(onnx_like, backend="tensorrt")
    with pytest.raises(UsageError, match=r"tiny\.plan: a TensorRT plan runs on the tensorrt backend only, not onnxruntime"):
        open_engine(unbuilt_plan, backend="onnxruntime")


def test_engine_knows_its_inputs_and_profile_before_loading(unbuilt_plan):
    engine = TensorRTEngine(unbuilt_plan)
    assert engine.config == CONFIG and engine.input_shapes == CONFIG.input_shapes()
    assert engine.max_batch == 4 and str(engine.profile) == "1:2:4" and engine.device == 0
    assert (engine.min_batch, engine.fixed_batch) == (1, None)
    with pytest.raises(UsageError, match=r"batch size 5 is over this engine's profile 1:2:4 \(min:opt:max\); use at most 4.*"
                       r"mvrt export tiny\.safetensors --onnx \S+tiny\.onnx --engine \S+tiny\.plan --batch 1:2:4 "
                       r"--precision fp32 --contract 1 --workspace-gib 1`"):
        engine.infer(random_feeds(CONFIG, 5))
    with pytest.raises(UsageError, match=r"input 'audio_fast' has shape"):
        engine.infer({**random_feeds(CONFIG, 2), "audio_fast": np.zeros((2, 3), np.float32)})
    if not HAS_TENSORRT:
        with pytest.raises(MissingDependencyError, match=r"pip install 'mvrt\[tensorrt\]'"):
            engine.infer(random_feeds(CONFIG, 2))


def _with_profile(plan, low, opt, high):
    write_sidecar(plan, dataclasses.replace(read_sidecar(plan), batch=BatchProfile(low, opt, high)))
    return plan


def test_fixed_and_minimum_batches_come_from_the_sidecar_profile(unbuilt_plan):
    """Known before TensorRT is needed: under MIN is padded (not refused), over MAX is refused."""
    fixed = TensorRTEngine(_with_profile(unbuilt_plan, 4, 4, 4))
    assert (fixed.min_batch, fixed.fixed_batch, fixed.max_batch) == (4, 4, 4)
    assert [fixed.batch_to_run(b) for b in (1, 3, 4)] == [4, 4, 4]
    with pytest.raises(UsageError, match=r"batch size 5 is over this engine's profile 4:4:4"):
        fixed.check_feeds(random_feeds(CONFIG, 5))
    _, batch = fixed.check_feeds(random_feeds(CONFIG, 1))  # a partial batch passes the checks; infer pads it
    assert batch == 1
    ranged = TensorRTEngine(_with_profile(unbuilt_plan, 2, 4, 8))
    assert (ranged.min_batch, ranged.fixed_batch) == (2, None)
    assert [ranged.batch_to_run(b) for b in (1, 2, 5, 8)] == [2, 2, 5, 8]
    if not HAS_TENSORRT:  # batch 1 now reaches the load, which needs TensorRT
        with pytest.raises(MissingDependencyError, match=r"pip install 'mvrt\[tensorrt\]'"):
            ranged.infer(random_feeds(CONFIG, 1))


@pytest.fixture
def compatible_plan(unbuilt_plan):
    """The unbuilt plan, its sidecar now saying version-compatible (the plan would carry host code)."""
    write_sidecar(unbuilt_plan, dataclasses.replace(read_sidecar(unbuilt_plan), version_compatible=True))
    return unbuilt_plan


UNTRUSTED = (r"tiny\.plan: is a version-compatible plan: it carries TensorRT host code that would run inside this "
             r"process; load it only from a source you trust, with trust_plan_code=True$")


def test_version_compatible_plan_needs_trust_before_tensorrt_is_looked_for(compatible_plan, monkeypatch):
    imported = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: imported.append(name) or real_find_spec(name, *a))
    for attempt in (lambda: open_engine(compatible_plan), lambda: open_engine(compatible_plan, backend="tensorrt"),
                    lambda: TensorRTEngine(compatible_plan), lambda: open_engine(compatible_plan, trust_plan_code=False)):
        with pytest.raises(ModelError, match=UNTRUSTED) as info:
            attempt()
        assert "\n" not in str(info.value)
    assert not [name for name in imported if name.startswith("tensorrt")]
    engine = TensorRTEngine(compatible_plan, trust_plan_code=True)
    assert engine.trust_plan_code is True and engine.sidecar.version_compatible


def test_plain_plans_need_no_trust_and_trust_must_be_a_bool(unbuilt_plan):
    assert TensorRTEngine(unbuilt_plan).trust_plan_code is False
    with pytest.raises(UsageError, match=r"trust_plan_code must be True or False, got 'yes'"):
        TensorRTEngine(unbuilt_plan, trust_plan_code="yes")  # a truthy string must not count as consent
    with pytest.raises(UsageError, match=r"the onnxruntime backend takes no option\(s\) trust_plan_code"):
        open_engine(_onnx_file(unbuilt_plan), trust_plan_code=True)


def _onnx_file(near):
    path = near.with_name("m.onnx")
    path.write_bytes(b"x")
    return path


def test_load_model_passes_trust_to_the_engine(compatible_plan, monkeypatch):
    import mvrt.api

    with pytest.raises(ModelError, match=UNTRUSTED):
        mvrt.api.load_model(compatible_plan)
    loaded = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt" else real_find_spec(name, *a))
    monkeypatch.setattr(TensorRTEngine, "_load", lambda self: loaded.append(self.trust_plan_code))
    monkeypatch.setattr(TensorRTEngine, "_release", lambda self: None)
    with mvrt.api.load_model(compatible_plan, trust_plan_code=True) as model:
        assert model.backend == "tensorrt"
    assert loaded == [True]


@pytest.mark.parametrize("text, index", [(0, 0), ("1", 1), ("cuda", 0), ("cuda:2", 2)])
def test_device_spellings(text, index):
    assert parse_device(text) == index


def test_bad_device_is_a_usage_error():
    with pytest.raises(UsageError, match=r"GPU index such as 0 or 'cuda:1', got 'cpu'"):
        parse_device("cpu")


@pytest.mark.skipif(_has_cuda_python(), reason="cuda-python is installed")
def test_cuda_helpers_without_cuda_python():
    from mvrt.runtime.engines import cuda_runtime

    with pytest.raises(MissingDependencyError, match=r"needs the 'cuda-python' package.*mvrt\[tensorrt\]"):
        cuda_runtime.device_count()


def test_cuda_helpers_without_a_driver():
    if not _has_cuda_python():
        pytest.skip("cuda-python is not installed")
    from mvrt.runtime.engines import cuda_runtime

    rt = cuda_runtime.cudart()
    status = rt.cudaGetDeviceCount()[0]
    if status == rt.cudaError_t.cudaSuccess:
        pytest.skip("a CUDA driver is present")
    with pytest.raises(BackendError, match=r"^no CUDA driver found: cudaGetDeviceCount failed with cudaError\w+; "
                       r"the TensorRT backend needs an NVIDIA GPU"):
        cuda_runtime.device_count()


# --- CUDA (cuda-python and a driver) ---------------------------------------------------------

@pytest.mark.gpu
def test_pinned_and_device_buffers_round_trip():
    require_cuda()
    from mvrt.runtime.engines import cuda_runtime

    cuda_runtime.use_device(0)
    data = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    src, dst = cuda_runtime.PinnedBuffer((4, 5, 7), np.float32), cuda_runtime.PinnedBuffer((4, 5, 7), np.float32)
    device, stream = cuda_runtime.DeviceBuffer(src.nbytes), cuda_runtime.Stream()
    try:
        src.array[:3] = data
        dst.array[:] = -1
        cuda_runtime.copy_to_device(device.ptr, src, data.nbytes, stream)
        cuda_runtime.copy_to_host(dst, device.ptr, data.nbytes, stream)
        stream.synchronize()
        np.testing.assert_array_equal(dst.array[:3], data)
        assert (dst.array[3] == -1).all()  # only the batch's bytes were copied
    finally:
        for item in (src.free, dst.free, device.free, stream.destroy):
            item()
    assert src.array is None and device.ptr == 0 and stream.handle == 0
    with pytest.raises(BackendError, match=r"CUDA device 99 does not exist"):
        cuda_runtime.use_device(99)


@pytest.mark.gpu
def test_device_properties_match_torch():
    require_cuda()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA build here")
    from mvrt.runtime.engines import cuda_runtime

    name, capability = cuda_runtime.device_name_and_capability(0)
    assert name == torch.cuda.get_device_name(0)
    assert capability == "{}.{}".format(*torch.cuda.get_device_capability(0))


# --- TensorRT --------------------------------------------------------------------------------

@pytest.mark.gpu
def test_damaged_plan_with_a_matching_sidecar_is_a_model_error(tmp_path):
    """Runs with the full or the lean runtime: everything up to deserialisation is real."""
    trt = require_tensorrt_runtime()
    from mvrt.runtime.engines.tensorrt_engine import current_machine

    machine = current_machine(trt, 0)
    path = tmp_path / "damaged.plan"
    path.write_bytes(b"ftrt" + bytes(1000))
    write_sidecar(path, EngineSidecar(
        plan_sha256=sha256_file(path), plan_bytes=1004, tensorrt_version=machine.tensorrt_version,
        gpu_name=machine.gpu_name, compute_capability=machine.compute_capability, precision="fp32",
        batch=BatchProfile(1, 2, 4), onnx_sha256="00" * 32, model_config=CONFIG, version_compatible=True,
        source="tiny.safetensors"))
    engine = open_engine(path, trust_plan_code=True)
    with pytest.raises(ModelError, match=r"damaged\.plan: TensorRT \S+ cannot deserialise the plan: .+; rebuild it with "
                       r"`mvrt export tiny\.safetensors --onnx \S+damaged\.onnx --engine \S+damaged\.plan --batch 1:2:4 --precision fp32 --contract 1 --workspace-gib 1 --version-compatible`") as info:
        engine.load()
    assert "\n" not in str(info.value) and engine._state is None

@pytest.mark.gpu
def test_lean_runtime_alone_refuses_plain_plans(unbuilt_plan):
    if importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_lean") is None:
        pytest.skip("needs tensorrt_lean without the full tensorrt")
    with pytest.raises(MissingDependencyError, match=r"tiny\.plan, which is not version-compatible \(the installed "
                       r"tensorrt_lean runs only version-compatible plans\), needs the 'tensorrt' package"):
        open_engine(unbuilt_plan).load()


@pytest.fixture(scope="module")
def built(request, tmp_path_factory):
    """An FP32 plan of the tiny slowfast model, profile 1:2:4."""
    require_tensorrt()  # before the tiny models are made
    from mvrt.export.build_settings import TensorRTSettings
    from mvrt.export.tensorrt_build import build_engine

    tm = request.getfixturevalue("tiny_models")["slowfast"]
    plan = tmp_path_factory.mktemp("trt") / "tiny-slowfast.plan"
    build_engine(tm.onnx, plan, TensorRTSettings(batch_min=1, batch_opt=2, batch_max=4), source=tm.checkpoint)
    return tm, plan


@pytest.mark.gpu
def test_plan_matches_onnxruntime(built):
    tm, plan = built
    with open_engine(plan) as trt_engine, open_engine(tm.onnx) as ort_engine:
        assert trt_engine.name == "tensorrt" and trt_engine.max_batch == 4
        for batch in (1, 3):
            feeds = random_feeds(trt_engine.config, batch, seed=batch)  # the plan's contract (2: uint8 video)
            got, ref = trt_engine.infer(feeds), ort_engine.infer(feeds)
            assert got.shape == (batch, 6) and got.dtype == np.float32
            np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
        with pytest.raises(UsageError, match=r"batch size 5 is over this engine's profile 1:2:4"):
            trt_engine.infer(random_feeds(trt_engine.config, 5))
    assert trt_engine._state is None  # released on exit


@pytest.mark.gpu
def test_plan_is_plain_serialized_engine(built):
    trt = require_tensorrt()
    _, plan = built
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    assert engine is not None and engine.num_io_tensors == len(read_onnx_config(built[0].onnx).input_names) + 1


@pytest.mark.gpu
def test_classify_a_clip_with_the_plan(built, request):
    import mvrt.api

    tm, plan = built
    clip_10s = request.getfixturevalue("clip_10s")  # after the TensorRT check (it needs PyAV)
    with mvrt.api.load_model(plan) as trt_model, mvrt.api.load_model(tm.onnx) as ort_model:
        got, ref = trt_model.classify(clip_10s), ort_model.classify(clip_10s)
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-3)
    assert got.label == ref.label


@pytest.mark.gpu
def test_tampered_plan_is_refused(built, tmp_path):
    from mvrt.runtime.engines.sidecar import sidecar_path

    _, plan = built
    copy = tmp_path / "copy.plan"
    data = bytearray(plan.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    sidecar_path(copy).write_text(sidecar_path(plan).read_text())
    with pytest.raises(ModelError, match=r"copy\.plan: plan sha256 .* differs from its sidecar's"):
        with open_engine(copy):
            pass
