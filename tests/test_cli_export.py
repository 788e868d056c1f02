"""`mvrt export`: files written, parity lines printed, one-line usage and dependency errors."""

from __future__ import annotations

import importlib.util
import json
import shutil

import onnx
import pytest

from mvrt.cli import main
from mvrt.config import ModelConfig
from mvrt.runtime.model_meta import read_onnx_config, read_onnx_metadata, sha256_file


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def checkpoint(tiny_models, tmp_path):
    """A private copy of the tiny slowfast checkpoint (default outputs land beside it)."""
    return shutil.copy(tiny_models["slowfast"].checkpoint, tmp_path / "model.safetensors")


def test_export_fp32_writes_checked_onnx_and_prints_parity(capsys, checkpoint, tmp_path):
    out = tmp_path / "sub" / "out.onnx"
    code, stdout, err = run(capsys, "export", checkpoint, "--onnx", out)
    assert code == 0 and stdout == ""
    onnx.checker.check_model(str(out), full_check=True)
    meta = read_onnx_metadata(out)
    assert meta["mvrt_precision"] == "fp32" and meta["checkpoint_sha256"] == sha256_file(checkpoint)
    assert read_onnx_config(out) == ModelConfig.from_json(meta["mvrt_config"])
    assert f"mvrt export: {checkpoint}: precision fp32, opset 18, tensor contract 2, parity batch 8" in err
    assert f"wrote {out} (fp32, opset 18" in err and "mvrt export: inputs: contract 2 (uint8 video)" in err
    config = read_onnx_config(out)
    assert config.contract == 2 and config.input_names == ("audio_slow", "audio_fast", "video")
    assert config.input_dtypes()["video"] == "uint8"
    assert "TensorRT op check (ONNX parser of TensorRT >= 10.3): all" in err
    assert "parity fp32 vs torch fp32 on 8 random samples: max |Δlogits|" in err and ": ok" in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.onnx"]  # no staging leftovers


def test_export_fp16_default_name_metadata_and_parity(capsys, checkpoint, tmp_path):
    code, _, err = run(capsys, "export", checkpoint, "--precision", "FP16", "--parity-batch", "3")
    out = tmp_path / "model.fp16.onnx"
    assert code == 0 and out.is_file()
    onnx.checker.check_model(str(out), full_check=True)
    meta = read_onnx_metadata(out)
    assert meta["mvrt_precision"] == "fp16" and json.loads(meta["mvrt_fp32_ops"]) == ["ReduceMean", "Sigmoid"]
    assert "kept in float32 (ReduceMean, Sigmoid)" in err
    assert "float32 audio inputs, the uint8 video input and float32 logits are kept" in err
    assert read_onnx_config(out).contract == 2
    assert "parity fp16 vs torch fp32 on 3 random samples" in err and "bound 0.01" in err and ": ok" in err


def test_contract_1_writes_the_float_inputs_older_versions_feed(capsys, checkpoint, tmp_path):
    out = tmp_path / "v1.onnx"
    code, _, err = run(capsys, "export", checkpoint, "--contract", "1", "--onnx", out, "--parity-batch", "2")
    assert code == 0, err
    config = read_onnx_config(out)
    assert config.contract == 1 and config.input_names == ("audio_slow", "audio_fast", "video_slow", "video_fast")
    assert set(config.input_dtypes().values()) == {"float32"}
    assert json.loads(read_onnx_metadata(out)["mvrt_config"])["version"] == 1  # what older mvrt versions read
    assert "tensor contract 1" in err and "inputs: contract 1 (float32 video per pathway" in err and ": ok" in err
    graph = onnx.load(str(out)).graph
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in graph.input)


def test_contract_flag_maps_to_the_setting(capsys, checkpoint, tmp_path, monkeypatch):
    """--contract N reaches export_model(contract=N); the default is 2."""
    from mvrt.export import pipeline

    seen = []

    def fake_export(*args, **kwargs):
        seen.append(kwargs["contract"])
        raise pipeline.UsageError("stop here")

    monkeypatch.setattr(pipeline, "export_model", fake_export)
    for argv, want in (([], 2), (["--contract", "1"], 1), (["--contract", "2"], 2)):
        code, _, err = run(capsys, "export", checkpoint, *argv)
        assert code == 2 and "stop here" in err
        assert seen[-1] == want
    code, _, err = run(capsys, "export", checkpoint, "--contract", "3")
    assert code == 2 and err.count("\n") == 1 and "--contract" in err and len(seen) == 3


def test_failed_parity_writes_nothing(capsys, checkpoint, tmp_path, monkeypatch):
    from mvrt.export import parity

    monkeypatch.setitem(parity.TOLERANCES, "fp32", parity.ParityTolerance(max_relative=1e-12, min_top1=1.0))
    out = tmp_path / "never.onnx"
    code, _, err = run(capsys, "export", checkpoint, "--onnx", out, "--parity-batch", "2")
    assert code == 1 and not out.exists()
    assert f"mvrt: error: {out}: parity fp32" in err and "FAILED; the conversion is not trustworthy" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("argv, message", [
    (["--engine", "m.plan", "--batch", "8:4:2"], "--batch 8:4:2: must satisfy 1 <= MIN <= OPT <= MAX"),
    (["--engine", "m.plan", "--dla-core", "-1"], "--dla-core must be a core index"),
    (["--precision", "int8"], "--precision int8 needs calibration data: run `mvrt calibrate`"),
    (["--precision", "bf16"], "choose fp32 or fp16"),
    (["--batch", "4"], "--batch only apply when building a TensorRT engine; add --engine OUT.plan"),
    (["--workspace-gib", "2", "--version-compatible"], "--workspace-gib, --version-compatible only apply"),
    (["--engine", "m.plan", "--workspace-gib", "0"], "--workspace-gib must be positive"),
    (["--onnx", "x.txt"], "the output must be an .onnx file"),
])
def test_invalid_options_are_one_line_usage_errors(capsys, checkpoint, tmp_path, argv, message):
    code, _, err = run(capsys, "export", checkpoint, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("mvrt: error: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_engine_without_tensorrt_names_the_extra(capsys, checkpoint, tmp_path):
    code, _, err = run(capsys, "export", checkpoint, "--engine", tmp_path / "m.plan", "--batch", "1:2:4")
    assert code == 1 and err.count("\n") == 1
    assert "building a TensorRT engine needs the 'tensorrt' package; install it with `pip install 'mvrt[tensorrt]'`" in err
    assert not (tmp_path / "model.onnx").exists()  # refused before exporting


@pytest.mark.gpu
def test_export_fp16_builds_a_tensorrt_engine(capsys, checkpoint, tmp_path):
    """Real build (skipped without TensorRT + CUDA; MVRT_REQUIRE_GPU=1 makes it fail instead)."""
    from gpu import require_tensorrt

    require_tensorrt()
    plan = tmp_path / "model.plan"
    code, _, err = run(capsys, "export", checkpoint, "--precision", "fp16", "--engine", plan, "--batch", "1:2:4",
                       "--parity-batch", "2")
    assert code == 0, err
    sidecar = json.loads((tmp_path / "model.plan.json").read_text())
    assert sidecar["precision"] == "fp16" and sidecar["batch"] == {"min": 1, "opt": 2, "max": 4}
    assert sidecar["onnx_sha256"] == sha256_file(tmp_path / "model.fp16.onnx") and plan.stat().st_size > 0
    assert "TensorRT" in err and "batch 1:2:4" in err


def test_missing_checkpoint_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "export", tmp_path / "nope.safetensors")
    assert code == 1 and err == f"mvrt: error: {tmp_path / 'nope.safetensors'}: no such checkpoint\n"


def test_library_contract_setting_is_checked_before_any_work(checkpoint, tmp_path):
    from mvrt.errors import UsageError
    from mvrt.export.pipeline import export_model

    for bad in (3, 0, True):
        with pytest.raises(UsageError, match=r"^contract .*: choose 2 \(uint8 video, the default\) or 1") as caught:
            export_model(checkpoint, tmp_path / "x.onnx", contract=bad)
        assert caught.value.setting == "contract"
    assert not (tmp_path / "x.onnx").exists()
