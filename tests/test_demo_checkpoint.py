"""The bundled demo checkpoint: it is what the bundled ONNX was exported from, and `mvrt export` /
`mvrt calibrate` run on it end to end; `tools/checkpoint_from_onnx.py` rebuilds a checkpoint from
a BN-folded ONNX export (how the bundled one was made)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import numpy_helper  # noqa: E402
from shared_fixtures import validation_feeds  # noqa: E402

from mvrt.bundled import default_checkpoint_path, default_model_path  # noqa: E402
from mvrt.checkpoint import load_checkpoint  # noqa: E402
from mvrt.cli import main  # noqa: E402
from mvrt.errors import ModelError, UsageError  # noqa: E402
from mvrt.export.parity import check_batch, onnxruntime_logits, torch_logits  # noqa: E402
from mvrt.runtime.engines import open_engine  # noqa: E402
from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from mvrt.runtime.model_meta import read_onnx_config, read_onnx_metadata, sha256_file  # noqa: E402

TOOL = Path(__file__).resolve().parents[1] / "tools" / "checkpoint_from_onnx.py"
LOGIT_BOUND = 1e-4


def _load_tool():
    spec = importlib.util.spec_from_file_location("checkpoint_from_onnx", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def initializers(path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


@pytest.fixture(scope="module")
def demo():
    model, config = load_checkpoint(default_checkpoint_path())
    return model, config


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """1 clip per class in train and validation, 3 s each (the model's window is 30 s: a clip shorter
    than the window is one window: its 64 frames spread over the clip, its audio zero-padded to 30 s),
    with the validation split's features."""
    from mvrt.standin import generate_standin

    root = tmp_path_factory.mktemp("demo-standin")
    generate_standin(root / "data", clips_per_class=1, seconds=3.0, width=64, height=48, seed=7,
                     splits=("train", "validation"), progress=False)
    labels, feeds = validation_feeds(root / "data", read_onnx_config(default_model_path()), root / "cache")
    return root, labels, feeds


def test_the_bundled_onnx_names_the_bundled_checkpoint():
    checkpoint, model = default_checkpoint_path(), default_model_path()
    assert checkpoint.parent == model.parent and checkpoint.suffix == ".safetensors"
    digest = sha256_file(checkpoint)
    assert read_onnx_metadata(model)["checkpoint_sha256"] == digest
    card = json.loads((model.parent / "standin-slowfast.json").read_text())
    assert card["checkpoint"] == {**card["checkpoint"], "file": checkpoint.name, "sha256": digest}
    assert 1_000_000 < checkpoint.stat().st_size < 20_000_000


def test_the_checkpoint_has_the_onnx_config_and_identity_batchnorms(demo):
    model, config = demo
    shipped = read_onnx_config(default_model_path())
    assert shipped.contract == 2 and config.contract == 1  # the ONNX takes uint8 video; the checkpoint is the network
    assert config == shipped.replace(contract=1)
    assert config.arch == "slowfast" and config.width == 0.25 and "stand-in data, not MVED" in config.trained_on
    assert 1.0e6 < sum(p.numel() for p in model.parameters()) < 1.2e6
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 148
    for bn in bns:  # rebuilt from the folded graph: eval-mode identity, the folded bias kept
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and not torch.equal(bn.bias, torch.zeros_like(bn.bias))
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var), atol=1e-7)


def test_torch_on_the_checkpoint_matches_onnx_runtime_on_the_bundled_onnx(demo, standin):
    model, config = demo
    _, labels, feeds = standin  # the bundled ONNX's inputs: contract 2, uint8 video
    assert feeds["video"].dtype == np.uint8
    reference = torch_logits(model, read_onnx_config(default_model_path()), feeds)
    with OnnxRuntimeEngine(default_model_path(), providers="cpu") as engine:
        candidate = engine.infer(feeds)
    assert reference.shape == (6, 6)
    assert np.abs(reference - candidate).max() < LOGIT_BOUND
    assert (reference.argmax(1) == candidate.argmax(1)).all()
    assert np.mean(reference.argmax(1) == labels) >= 5 / 6  # it still knows the stand-in classes


def hint(path, backend: str) -> str:
    """The UsageError message `open_engine` gives for `path` on `backend`."""
    with pytest.raises(UsageError) as info:
        open_engine(path, backend=backend)
    return str(info.value)


def hinted_command(message: str) -> list[str]:
    """The words of the last `mvrt export ...` command quoted in `message`."""
    return shlex.split(re.findall(r"`(mvrt export [^`]+)`", message)[-1])


def test_the_tensorrt_hints_name_the_checkpoint_not_the_onnx(tiny_models):
    message = hint(tiny_models["slowfast"].onnx, "tensorrt")
    assert "from the checkpoint it was exported from with `mvrt export CHECKPOINT.safetensors --onnx model.onnx " \
           "--engine model.plan`" in message
    assert hinted_command(message)[2] == str(default_checkpoint_path())  # the bundled demo's, as an example
    checkpoint = tiny_models["slowfast"].checkpoint
    words = hinted_command(hint(checkpoint, "tensorrt"))
    assert words == ["mvrt", "export", str(checkpoint), "--onnx", "tiny-slowfast.onnx", "--engine", "tiny-slowfast.plan"]
    words = hinted_command(hint(checkpoint, "onnxruntime"))
    assert words == ["mvrt", "export", str(checkpoint), "--onnx", "tiny-slowfast.onnx"]


def test_exporting_the_bundled_onnx_points_to_the_bundled_checkpoint(capsys, tmp_path):
    code, _, err = run(capsys, "export", default_model_path())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"`mvrt export {default_checkpoint_path()} --onnx standin-slowfast.onnx`" in err
    code, _, err = run(capsys, "export", default_model_path(), "--engine", tmp_path / "m.plan")
    if importlib.util.find_spec("tensorrt") is None:  # the plan-only build is accepted; only TensorRT is missing
        assert code == 1 and len(err.strip().splitlines()) == 1 and "needs the 'tensorrt' package" in err, err
        assert not (tmp_path / "m.plan").exists()


def test_an_export_never_writes_over_the_bundled_models(capsys):
    """Without --onnx the export would land beside the checkpoint: over the bundled ONNX."""
    bundled = default_model_path()
    before = sha256_file(bundled)
    code, _, err = run(capsys, "export", default_checkpoint_path())
    assert code == 2 and "would write into mvrt's bundled models" in err and "--onnx standin-slowfast.onnx" in err
    assert len(err.strip().splitlines()) == 1 and sha256_file(bundled) == before


def test_the_hinted_export_of_the_bundled_checkpoint_reproduces_the_bundled_onnx(capsys, tmp_path, monkeypatch):
    """The TensorRT hint for the bundled ONNX, run here without its --engine part (TensorRT needs a GPU)."""
    words = hinted_command(hint(default_model_path(), "tensorrt"))
    assert words[:3] == ["mvrt", "export", str(default_checkpoint_path())]
    engine = words.index("--engine")
    assert words[engine + 1] == "standin-slowfast.plan"
    del words[engine:engine + 2]
    monkeypatch.chdir(tmp_path)  # the hint writes into the current folder, never beside the installed model
    code, stdout, err = run(capsys, *words[1:], "--parity-batch", "2")
    out = tmp_path / "standin-slowfast.onnx"
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert "parity fp32 vs torch fp32 on 2 random samples" in err and ": ok" in err
    assert read_onnx_metadata(out)["checkpoint_sha256"] == sha256_file(default_checkpoint_path())
    assert read_onnx_config(out) == read_onnx_config(default_model_path())
    fresh, shipped = initializers(out), initializers(default_model_path())
    assert fresh.keys() == shipped.keys()
    assert max(float(np.abs(fresh[k] - shipped[k]).max()) for k in fresh) < 1e-6


def test_mvrt_calibrate_on_the_bundled_onnx_writes_an_int8_model_that_runs(capsys, standin, tmp_path):
    root, labels, feeds = standin
    out = tmp_path / "demo.int8.onnx"
    code, stdout, err = run(capsys, "calibrate", default_model_path(), "--data", root / "data", "--method", "minmax",
                            "--samples", "6", "--sensitivity-samples", "0", "--latency-rounds", "0", "--out", out,
                            "--cache", root / "cache", "--format", "json", "-q")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["calibration"]["clips"] == 6 and report["comparison"]["clips"] == 6
    assert read_onnx_metadata(out)["mvrt_precision"] == "int8"
    with OnnxRuntimeEngine(out, providers="cpu") as engine:
        logits = engine.infer(feeds)
    assert logits.shape == (6, 6) and np.isfinite(logits).all()
    assert report["comparison"]["top1_agreement"] == pytest.approx(
        np.mean(logits.argmax(1) == onnxruntime_logits(default_model_path(), feeds).argmax(1)))


# tools/checkpoint_from_onnx.py on the tiny seeded model (BN statistics warmed, so folding matters)


def test_rebuilt_network_reproduces_the_original_checkpoint(tiny_models):
    tiny = tiny_models["slowfast"]
    rebuilt, config, rebuild = tool.rebuild_from_onnx(tiny.onnx)
    original, stored = load_checkpoint(tiny.checkpoint)
    assert config == stored and rebuild.state_entries == len(original.state_dict())
    assert rebuild.folded_pairs == 148 and rebuild.copied > 0
    feeds = check_batch(config, 3, seed=5)
    a, b = torch_logits(original, config, feeds), torch_logits(rebuilt, config, feeds)
    assert np.abs(a - b).max() <= LOGIT_BOUND * max(1.0, np.abs(a).max())
    name = "pathways.audio_slow.stem.0.0.weight"  # a folded conv: new weight, same function
    assert not torch.equal(original.state_dict()[name], rebuilt.state_dict()[name])


def test_a_parameter_missing_from_the_graph_is_named(tiny_models, tmp_path):
    proto = onnx.load(str(tiny_models["slowfast"].onnx))
    victim = next(i for i in proto.graph.initializer if i.name == "head.fc.weight")
    victim.name = "renamed.weight"
    onnx.save(proto, str(tmp_path / "broken.onnx"))
    with pytest.raises(ModelError, match=r"parameters/buffers not found in the ONNX 1: head\.fc\.weight; "
                                         r"initializers matching no parameter 1: renamed\.weight"):
        tool.rebuild_from_onnx(tmp_path / "broken.onnx")


def test_the_script_writes_a_checkpoint_that_computes_the_original_logits(tiny_models, tmp_path, capsys):
    tiny = tiny_models["slowfast"]
    source = shutil.copy(tiny.onnx, tmp_path / "tiny.onnx")
    out = tmp_path / "rebuilt.safetensors"
    assert tool.main([str(source), str(out), "--clip-seconds", "2"]) == 0
    err = capsys.readouterr().err
    assert "148 conv+BN pairs unfolded" in err and "same top-1 on 6/6" in err and f"wrote {out}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rebuilt.safetensors", "tiny.onnx"]
    rebuilt, config = load_checkpoint(out)
    original, stored = load_checkpoint(tiny.checkpoint)
    assert config == stored
    feeds = check_batch(config, 2, seed=9)
    a, b = torch_logits(original, config, feeds), torch_logits(rebuilt, config, feeds)
    assert np.abs(a - b).max() <= LOGIT_BOUND * max(1.0, np.abs(a).max())


def test_the_script_refuses_a_non_safetensors_output(tiny_models, tmp_path, capsys):
    assert tool.main([str(tiny_models["slowfast"].onnx), str(tmp_path / "out.pt")]) == 1
    expected = f"checkpoint_from_onnx: {tmp_path / 'out.pt'}: the checkpoint must be a .safetensors file"
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "out.pt").exists()
