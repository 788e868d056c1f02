"""Engines: ORT and torch agree through one interface; feeds are checked; files are vetted."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_factory import random_feeds

from mvrt.checkpoint import save_checkpoint
from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.export.onnx_export import export_onnx
from mvrt.models import build_model
from mvrt.runtime.engines import OnnxRuntimeEngine, open_engine
from mvrt.runtime.engines.onnxruntime_engine import resolve_providers
from mvrt.runtime.model_meta import describe_model, read_model_config, read_onnx_metadata, sha256_file

CONFIG = ModelConfig(arch="slowfast", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0, image_size=32))


def _feeds(batch: int, seed: int = 0, config: ModelConfig = CONFIG) -> dict[str, np.ndarray]:
    """Random feeds of `config`'s contract: float32 audio (phase in [-pi, pi]) and video, uint8 video for contract 2."""
    return random_feeds(config, batch, seed, phase=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(checkpoint, contract-1 onnx) of a tiny slowfast with BN statistics from train-mode passes."""
    torch.manual_seed(0)
    model = build_model(CONFIG).train()
    with torch.no_grad():
        model(*(torch.from_numpy(x) for x in _feeds(2, seed=99).values()))
    folder = tmp_path_factory.mktemp("engines")
    ckpt = save_checkpoint(model, CONFIG, folder / "tiny.safetensors")
    return ckpt, export_onnx(ckpt, None, folder / "tiny.onnx", contract=1)


@pytest.fixture(scope="module")
def onnx_v2(models):
    """The same checkpoint exported under tensor contract 2 (uint8 `video`)."""
    return export_onnx(models[0], None, models[0].with_name("tiny.v2.onnx"))


def test_onnxruntime_and_torch_engines_agree(models):
    ckpt, onnx_path = models
    with open_engine(onnx_path) as ort_engine, open_engine(ckpt) as torch_engine:
        assert (ort_engine.name, torch_engine.name) == ("onnxruntime", "torch")
        assert ort_engine.config == torch_engine.config == CONFIG
        assert ort_engine.input_shapes == CONFIG.input_shapes() and ort_engine.max_batch is None
        assert ort_engine.providers == ["CPUExecutionProvider"]
        for batch in (1, 3):
            feeds = _feeds(batch, seed=batch)
            a, b = ort_engine.infer(feeds), torch_engine.infer(feeds)
            assert a.shape == b.shape == (batch, 6) and a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_engine_loads_lazily_and_releases_on_exit(models):
    engine = OnnxRuntimeEngine(models[1], threads=1)
    assert engine.config == CONFIG  # known before loading
    assert engine.infer(_feeds(1)).shape == (1, 6)  # first infer loads
    with engine:
        pass
    assert engine._session is None


@pytest.mark.parametrize("change,match", [
    (lambda f: f.pop("video_fast"), r"missing \['video_fast'\]"),
    (lambda f: f.update(extra=f["audio_slow"]), r"unexpected \['extra'\]"),
    (lambda f: f.update(audio_fast=f["audio_fast"].astype(np.float64)), r"input 'audio_fast' must be float32, got float64"),
    (lambda f: f.update(video_slow=f["video_slow"][:, :, :4]), r"input 'video_slow' has shape \(2, 3, 4, 32, 32\), expected \(batch, 3, 8, 32, 32\)"),
    (lambda f: f.update(audio_slow=f["audio_slow"][0]), r"input 'audio_slow' has shape \(2, 128, 63\)"),
    (lambda f: f.update(video_fast=f["video_fast"][:1]), r"different batch sizes: .*'video_fast': 1"),
    (lambda f: f.update(audio_slow=f["audio_slow"].tolist()), r"input 'audio_slow' must be a numpy array, got list"),
])
def test_bad_feeds_are_rejected(models, change, match):
    feeds = _feeds(2)
    change(feeds)
    engine = OnnxRuntimeEngine(models[1])
    with pytest.raises(UsageError, match=match):
        engine.infer(feeds)
    assert engine._session is None  # checked before loading anything


def test_open_engine_file_errors(models, tmp_path):
    ckpt, onnx_path = models
    with pytest.raises(ModelError, match=r"nope\.onnx: no such model file"):
        open_engine(tmp_path / "nope.onnx")
    odd = tmp_path / "weights.pt"
    odd.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"weights\.pt: unknown model file type '\.pt'"):
        open_engine(odd)
    with pytest.raises(UsageError, match=r"tiny\.onnx: the torch backend runs \.safetensors"):
        open_engine(onnx_path, backend="torch")
    with pytest.raises(UsageError, match=r"tiny\.safetensors: onnxruntime needs an ONNX model"):
        open_engine(ckpt, backend="onnxruntime")
    with pytest.raises(UsageError, match="unknown backend 'tvm'"):
        open_engine(onnx_path, backend="tvm")
    with pytest.raises(UsageError, match="the onnxruntime backend takes no option\\(s\\) device"):
        open_engine(onnx_path, device="cuda")


def test_onnx_metadata_reader_matches_onnx(models, tmp_path):
    onnx_path = models[1]
    want = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    assert read_onnx_metadata(onnx_path) == want
    assert read_model_config(onnx_path) == read_model_config(models[0]) == CONFIG
    info = describe_model(onnx_path)
    assert info["checkpoint_sha256"] == sha256_file(models[0]) and info["output"] == {"logits": ["batch", 6]}


def test_onnx_without_mvrt_metadata_or_not_onnx(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    plain = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(graph), str(plain))
    with pytest.raises(ModelError, match=r"plain\.onnx: no mvrt model config in its metadata"):
        open_engine(plain)
    text = tmp_path / "notes.onnx"
    text.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ModelError, match=r"notes\.onnx: not an ONNX model"):
        open_engine(text)


def test_unavailable_provider_is_a_clear_error():
    assert resolve_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["cuda"], ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
        resolve_providers(["cuda"], ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match="provider 'rocm' is not available"):
        resolve_providers("rocm", ort.get_available_providers())


def test_runtime_engine_never_imports_torch(models):
    code = (
        "import sys, numpy as np\n"
        "from mvrt.runtime.engines import open_engine\n"
        f"with open_engine({str(models[1])!r}) as e:\n"
        "    feeds = {n: np.zeros((1, *s), np.float32) for n, s in e.input_shapes.items()}\n"
        "    print(e.infer(feeds).shape, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(1,", "6)", "False"]


def test_contract_2_graph_takes_uint8_video_and_pads_on_onnxruntime(onnx_v2):
    config = CONFIG.replace(contract=2)
    with open_engine(onnx_v2) as engine:
        assert engine.config == config and engine.input_dtypes["video"] == np.uint8
        feeds = _feeds(3, seed=5, config=config)
        want = engine.infer(feeds)
        with pytest.raises(UsageError, match=r"input 'video' must be uint8, got float32 \(the model takes frames as uint8"):
            engine.infer({**feeds, "video": feeds["video"].astype(np.float32)})
        engine.fixed_batch = 4  # what a graph whose batch axis is the number 4 sets
        got = engine.infer(feeds)  # onnxruntime runs 4 rows, 3 come back
    assert got.shape == (3, 6)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
