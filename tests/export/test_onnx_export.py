"""Plain ONNX export: checker, metadata, dynamic batch, and ORT-vs-torch parity."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mvrt.checkpoint import load_checkpoint, save_checkpoint
from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import UsageError
from mvrt.export.onnx_export import export_onnx
from mvrt.models import build_model
from mvrt.runtime.model_meta import sha256_file

PARITY_ATOL = 1e-4
FRONTEND = FrontendConfig(window_seconds=4.0, image_size=32)


def _inputs(config: ModelConfig, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Audio ch0 ~ N(0,1), ch1 (phase) in [-pi, pi]; video ~ N(0,1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in config.input_shapes().items():
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        if name in config.audio_inputs:
            x[:, 1] = rng.uniform(-np.pi, np.pi, (batch, *shape[1:]))
        feeds[name] = x
    return feeds


@pytest.fixture(scope="module", params=["slowfast", "musicvideo"])
def exported(request, tmp_path_factory):
    """(config, checkpoint, onnx) for a tiny model whose BN statistics come from train-mode passes."""
    arch = request.param
    config = ModelConfig(arch=arch, width=1 / 16, frontend=FRONTEND, trained_on="test")
    torch.manual_seed(0)
    model = build_model(config).train()
    with torch.no_grad():
        for seed in range(2):
            model(*(torch.from_numpy(x) for x in _inputs(config, 2, seed).values()))
    folder = tmp_path_factory.mktemp(arch)
    ckpt = save_checkpoint(model, config, folder / f"{arch}.safetensors")
    onnx_path = export_onnx(ckpt, None, folder / f"{arch}.onnx")
    return config, ckpt, onnx_path


def test_checker_metadata_and_single_file(exported):
    config, ckpt, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([ckpt.name, path.name])  # no external data
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    meta = {p.key: p.value for p in proto.metadata_props}
    assert ModelConfig.from_json(meta["mvrt_config"]) == config
    assert json.loads(meta["mvrt_config"])["arch"] == config.arch
    assert meta["checkpoint_sha256"] == sha256_file(ckpt)


def test_inputs_outputs_and_dynamic_batch(exported):
    config, _, path = exported
    graph = onnx.load(str(path)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    expected = {name: ["batch", *shape] for name, shape in config.input_shapes().items()}
    assert [v.name for v in graph.input] == list(config.input_names)
    assert dims == {**expected, "logits": ["batch", 6]}
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*graph.input, *graph.output])


def test_onnxruntime_matches_torch(exported):
    config, ckpt, path = exported
    model, _ = load_checkpoint(ckpt)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 8):
        feeds = _inputs(config, batch, seed=10 + batch)
        with torch.inference_mode():
            want = model(*(torch.from_numpy(feeds[n]) for n in config.input_names)).numpy()
        (got,) = session.run(["logits"], feeds)
        assert got.shape == (batch, 6)
        if batch > 1:
            assert want.std(axis=0).max() > 10 * PARITY_ATOL  # the logits depend on the input
        err = np.abs(got - want).max()
        print(f"{config.arch} batch {batch}: max |dlogits| = {err:.2e}")
        assert err <= PARITY_ATOL


def test_export_from_a_module_keeps_its_mode_and_records_the_given_sha(tmp_path):
    config = ModelConfig(arch="musicvideo", width=1 / 16, frontend=FRONTEND)
    model = build_model(config).train()
    path = export_onnx(model, config, tmp_path / "m.onnx", checkpoint_sha256="abc123")
    assert model.training
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["checkpoint_sha256"] == "abc123"


def test_export_refuses_old_opsets_and_conflicting_configs(exported, tmp_path):
    config, ckpt, _ = exported
    with pytest.raises(UsageError, match="^opset 17 is too old"):
        export_onnx(ckpt, None, tmp_path / "x.onnx", opset=17)
    with pytest.raises(UsageError, match=r"\.safetensors: the given config differs"):
        export_onnx(ckpt, config.replace(dropout=0.1), tmp_path / "x.onnx")
    with pytest.raises(UsageError, match="needs its ModelConfig"):
        export_onnx(build_model(config), None, tmp_path / "x.onnx")
    with pytest.raises(UsageError, match="module is not the .* network of the given config"):
        export_onnx(build_model(config.replace(mmtm=not config.mmtm)), config, tmp_path / "x.onnx")
