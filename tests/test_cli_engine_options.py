"""Engine flags -> engine options: --trust-plan-code, and the CLI's wording of an untrusted plan."""

from __future__ import annotations

import importlib.util

import pytest

from mvrt._cli_app import build_command
from mvrt._cli_engine_options import engine_options
from mvrt._cli_types import Args
from mvrt.cli import main
from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import ModelError, UsageError
from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, write_sidecar
from mvrt.runtime.model_meta import sha256_file

CONFIG = ModelConfig(arch="slowfast", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0, image_size=32))
HAS_TENSORRT = any(importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_lean"))


def _plan(tmp_path, name: str = "m.plan", version_compatible: bool = False):
    path = tmp_path / name
    path.write_bytes(b"not a real plan")
    write_sidecar(path, EngineSidecar(
        plan_sha256=sha256_file(path), plan_bytes=path.stat().st_size, tensorrt_version="10.3.0.30",
        gpu_name="Orin (nvgpu)", compute_capability="8.7", precision="fp32", batch=BatchProfile(1, 2, 4),
        onnx_sha256="00" * 32, model_config=CONFIG, version_compatible=version_compatible, source="m.safetensors"))
    return path


def _options(*argv: str) -> dict:
    """The engine options of `mvrt infer clip.mp4 ARGV`, parsed as the CLI parses them."""
    ctx = build_command().commands["infer"].make_context("infer", ["clip.mp4", *argv])
    return engine_options(Args(ctx.params))


@pytest.mark.parametrize("name", ["m.plan", "m.engine", "m.trt"])
def test_the_flag_maps_to_the_engine_option(tmp_path, name):
    plan = _plan(tmp_path, name, version_compatible=True)
    assert _options("--model", str(plan), "--trust-plan-code") == {"trust_plan_code": True}
    plain = _plan(tmp_path, "plain" + plan.suffix)
    assert _options("--model", str(plain)) == {"trust_plan_code": False}


@pytest.mark.parametrize("argv", [
    ["--model", "m.onnx"], ["--model", "m.safetensors"], ["--model", "m.plan", "--backend", "onnxruntime"],
])
def test_the_flag_on_another_backend_is_a_usage_error(argv):
    with pytest.raises(UsageError, match=r"^--trust-plan-code applies to TensorRT plans \(the tensorrt backend\) only"):
        _options(*argv, "--trust-plan-code")


def test_an_untrusted_compatible_plan_names_the_flag(tmp_path, capsys):
    plan = _plan(tmp_path, version_compatible=True)
    with pytest.raises(ModelError, match=r"m\.plan: is a version-compatible plan: .* from a source you trust, "
                       r"by giving --trust-plan-code$") as info:
        _options("--model", str(plan))
    assert "trust_plan_code" not in str(info.value)
    assert main(["infer", str(tmp_path / "clip.mp4"), "--model", str(plan), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mvrt: error: {plan}: is a version-compatible plan") and err.count("\n") == 1
    assert err.rstrip().endswith("by giving --trust-plan-code")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_with_the_flag_the_plan_gets_as_far_as_tensorrt(tmp_path, capsys):
    plan = _plan(tmp_path, version_compatible=True)
    assert main(["infer", str(tmp_path / "clip.mp4"), "--model", str(plan), "-q", "--trust-plan-code"]) == 1
    assert "needs the 'tensorrt' package" in capsys.readouterr().err
