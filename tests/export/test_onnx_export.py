"""Plain ONNX export under both tensor contracts: checker, metadata, dynamic batch, ORT-vs-torch parity,
and contract 1 against contract 2 on the same generated media."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_factory import random_feeds

from mvrt.checkpoint import load_checkpoint, save_checkpoint
from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import UsageError
from mvrt.export.onnx_export import export_onnx
from mvrt.models import build_model
from mvrt.runtime.model_meta import sha256_file

PARITY_ATOL = 1e-4
FRONTEND = FrontendConfig(window_seconds=4.0, image_size=32)


def _inputs(config: ModelConfig, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Audio ch0 ~ N(0,1), ch1 (phase) in [-pi, pi]; float video ~ N(0,1), uint8 video uniform in 0..255."""
    return random_feeds(config, batch, seed, phase=True)


@pytest.fixture(scope="module", params=["slowfast", "musicvideo"])
def checkpoint(request, tmp_path_factory):
    """(config, checkpoint) of a tiny model whose BN statistics come from train-mode passes."""
    arch = request.param
    config = ModelConfig(arch=arch, width=1 / 16, frontend=FRONTEND, trained_on="test")
    torch.manual_seed(0)
    model = build_model(config).train()
    with torch.no_grad():
        for seed in range(2):
            model(*(torch.from_numpy(x) for x in _inputs(config, 2, seed).values()))
    folder = tmp_path_factory.mktemp(arch)
    return config, save_checkpoint(model, config, folder / f"{arch}.safetensors")


@pytest.fixture(scope="module", params=[2, 1], ids=["contract2", "contract1"])
def exported(request, checkpoint):
    """(config of the graph, checkpoint, onnx) exported under contract 2 (the default) or 1."""
    config, ckpt = checkpoint
    contract = request.param
    path = ckpt.with_name(f"{ckpt.stem}.c{contract}.onnx")
    if not path.exists():
        if contract == 2:
            export_onnx(ckpt, None, path)  # the default
        else:
            export_onnx(ckpt, None, path, contract=1)
    return config.replace(contract=contract), ckpt, path


def test_checker_metadata_and_single_file(exported):
    config, ckpt, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert not [p.name for p in path.parent.iterdir() if p.suffix not in (".onnx", ".safetensors")]  # no external data
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
    video = onnx.TensorProto.UINT8 if config.contract == 2 else onnx.TensorProto.FLOAT
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    assert types == {**{n: onnx.TensorProto.FLOAT for n in [*config.audio_inputs, "logits"]},
                     **{n: video for n in config.video_inputs}}
    if config.contract == 2:
        assert list(config.video_inputs) == ["video"] and config.input_shapes()["video"] == (3, 64, 32, 32)
        readers = [n.op_type for n in graph.node if "video" in n.input]
        assert readers == ["Cast"]  # TensorRT takes a uint8 input only through a Cast


def test_onnxruntime_matches_torch(exported):
    config, ckpt, path = exported
    from mvrt.models.contract import with_contract

    network, _ = load_checkpoint(ckpt)
    model = with_contract(network, config).eval()  # torch takes the same (uint8) feeds as the graph
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


def test_both_contracts_agree_on_the_same_generated_media(checkpoint, tmp_path):
    """One checkpoint exported twice; the windows of one generated clip read per contract; ORT CPU logits."""
    from mvrt.export.parity import onnxruntime_logits, read_windows, write_media_clip

    config, ckpt = checkpoint
    paths = {c: ckpt.with_name(f"{ckpt.stem}.c{c}.onnx") for c in (1, 2)}
    for contract, path in paths.items():
        if not path.exists():
            export_onnx(ckpt, None, path, contract=contract)
    names = {c: [n.name for n in onnx.load(str(paths[c])).graph.node] for c in (1, 2)}
    front = [n for n in names[2] if n.startswith("/input_front/")]
    assert [n for n in names[2] if n not in front] == names[1]  # layer names (--exclude) do not depend on the contract
    assert {"/input_front/Cast", "/input_front/Mul", "/input_front/Sub"} <= set(front) and len(set(names[2])) == len(names[2])
    clip = write_media_clip(tmp_path / "clip.mp4", config, seed=4)
    feeds = {c: read_windows(clip, config.replace(contract=c)) for c in (1, 2)}
    assert feeds[2]["video"].dtype == np.uint8 and feeds[1][next(iter(config.video_inputs))].dtype == np.float32
    bytes_per_window = {c: sum(a[0].nbytes for a in f.values()) for c, f in feeds.items()}
    from mvrt.calibration.dataset import input_bytes_per_window

    assert bytes_per_window == {c: input_bytes_per_window(config.replace(contract=c)) for c in (1, 2)}
    assert bytes_per_window[1] > 2 * bytes_per_window[2]  # 4-byte float frames (slowfast: and a slow copy)
    logits = {c: onnxruntime_logits(paths[c], feeds[c]) for c in (1, 2)}
    scale = np.abs(logits[1] - logits[1].mean(axis=1, keepdims=True)).max()
    assert scale > 1e-3
    assert np.abs(logits[2] - logits[1]).max() <= 1e-5 * scale


def test_bad_contract_is_a_usage_error(checkpoint, tmp_path):
    _, ckpt = checkpoint
    for bad in (0, 3, True, "2"):
        with pytest.raises(UsageError, match="^contract"):
            export_onnx(ckpt, None, tmp_path / "x.onnx", contract=bad)
    assert not (tmp_path / "x.onnx").exists()


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
