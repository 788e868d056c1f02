"""`mvrt train` and `mvrt evaluate` end to end on stand-in clips (checkpoint and ONNX)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("torch")

from mvrt.cli import main  # noqa: E402
from mvrt.evaluation.evaluate import evaluate  # noqa: E402
from mvrt.runtime.model_meta import read_model_config  # noqa: E402
from mvrt.standin import generate_standin  # noqa: E402
from mvrt.evaluation.metrics import classification_metrics  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A stand-in root and a checkpoint trained on it for 2 epochs through the CLI."""
    root = tmp_path_factory.mktemp("data")
    work = tmp_path_factory.mktemp("work")
    generate_standin(root, clips_per_class={"train": 2, "validation": 1, "test": 1}, seconds=1.5, width=64,
                     height=48, progress=False)
    ckpt = work / "model.safetensors"
    code = main(["train", str(root), "--width", "0.0625", "--window", "2", "--image-size", "32", "--epochs", "2",
                 "--lr", "1e-2", "--threads", "1", "--cache", str(work / "cache"), "--out", str(ckpt), "-q"])
    assert code == 0
    return root, work, ckpt


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_train_writes_best_and_last_with_provenance(trained):
    root, _, ckpt = trained
    assert ckpt.is_file() and ckpt.with_name("model.last.safetensors").is_file()
    config = read_model_config(ckpt)
    assert (config.arch, config.mmtm, config.frontend.window_seconds) == ("slowfast", True, 2.0)
    assert {name for name, _ in config.audio_norm} == {"audio_slow", "audio_fast"}
    assert config.trained_on == f"stand-in data (generated, not MVED): {root.resolve().name}"


def test_evaluate_writes_metrics_and_plots(trained, capsys, tmp_path):
    root, work, ckpt = trained
    code, out, _ = run(capsys, "evaluate", ckpt, root, "--split", "test", "--cache", work / "cache",
                       "--out-dir", tmp_path, "--threads", "1", "-q")
    assert code == 0 and "accuracy" in out and "macro ROC-AUC" in out
    written = json.loads((tmp_path / "metrics.json").read_text())
    api = evaluate(ckpt, root, split="test", cache_dir=work / "cache", progress=False, threads=1)
    expected = classification_metrics(api.labels, api.logits, api.metrics.classes).to_dict()
    for key in ("accuracy", "macro_f1", "macro_roc_auc", "confusion", "f1", "roc_auc", "count"):
        assert written[key] == pytest.approx(expected[key], abs=1e-12) if isinstance(expected[key], float) \
            else written[key] == expected[key], key
    assert written["count"] == 6 and written["split"] == "test"
    for name, size in (("confusion.png", (650, 550)), ("roc.png", (600, 550))):
        path = tmp_path / name
        assert _png_size(path) == size and path.stat().st_size > 10_000


def test_onnx_export_evaluates_the_same(trained, tmp_path):
    from mvrt.export.onnx_export import export_onnx

    root, work, ckpt = trained
    onnx_path = export_onnx(ckpt, None, tmp_path / "model.onnx")
    torch_eval = evaluate(ckpt, root, split="validation", cache_dir=work / "cache", progress=False, threads=1)
    onnx_eval = evaluate(onnx_path, root, split="val", cache_dir=work / "cache", progress=False, batch_size=4)
    assert onnx_eval.backend == "onnxruntime" and torch_eval.backend != "onnxruntime"
    np.testing.assert_allclose(onnx_eval.logits, torch_eval.logits, rtol=1e-4, atol=1e-4)
    assert onnx_eval.metrics.accuracy == torch_eval.metrics.accuracy
    assert np.array_equal(onnx_eval.labels, torch_eval.labels)


def test_usage_errors_are_one_line(trained, capsys, tmp_path):
    root, work, ckpt = trained
    code, _, err = run(capsys, "evaluate", ckpt, root, "--split", "dev", "--cache", work / "cache")
    assert code == 2 and err.strip().count("\n") == 0 and "unknown split 'dev'" in err
    code, _, err = run(capsys, "train", tmp_path / "missing", "--out", tmp_path / "x.safetensors", "-q")
    assert code == 2 and "no such data folder" in err


def test_train_progress_lines_go_to_stderr_only_inside_the_command(capsys):
    import logging

    import click

    from mvrt._cli_app import build_command
    from mvrt._cli_train import progress_log

    log = logging.getLogger("mvrt.training.train")
    with click.Context(build_command().commands["train"]), progress_log("train"):
        log.info("epoch %d/%d: val acc %.3f", 1, 2, 0.5)
        log.info("init %s: loaded 3 tensor(s)", "p.safetensors", extra={"setting": "init"})
        log.info("s.last.safetensors: starting afresh (resume=False to silence)", extra={"setting": "resume"})
        log.debug("not shown at the default level")
    log.info("after the command")
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["mvrt train: epoch 1/2: val acc 0.500",
                                              "mvrt train: --init p.safetensors: loaded 3 tensor(s)",
                                              "mvrt train: s.last.safetensors: starting afresh (--restart to silence)"]
    assert logging.getLogger("mvrt.training").handlers == [] and logging.getLogger("mvrt.training").propagate


def test_device_and_init_errors_name_the_flag(capsys, tmp_path, monkeypatch):
    import torch

    code, _, err = run(capsys, "train", tmp_path, "--device", "tpu", "-q")
    assert code == 2 and err == "mvrt: error: --device must be cpu or cuda[:N], got 'tpu'\n"
    code, _, err = run(capsys, "train", tmp_path, "--init", tmp_path / "nope.safetensors", "-q")
    assert code == 2 and err == f"mvrt: error: --init {tmp_path / 'nope.safetensors'}: no such checkpoint\n"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "pretrain", tmp_path, "--device", "cuda", "-q")
    assert code == 2 and err == "mvrt: error: --device cuda: torch sees no CUDA device; pretrain with --device cpu\n"
