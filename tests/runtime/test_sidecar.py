"""TensorRT sidecar: round trip, machine validation with the rebuild command, plan hash, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import ModelError
from mvrt.runtime.engines.sidecar import (
    BatchProfile,
    EngineSidecar,
    Machine,
    check_plan_hash,
    check_plan_trust,
    read_sidecar,
    rebuild_command,
    sidecar_path,
    validate_sidecar,
    write_sidecar,
)

CONFIG = ModelConfig(arch="musicvideo", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0), contract=2)
BUILT_ON = Machine(tensorrt_version="10.3.0.30", gpu_name="Orin (nvgpu)", compute_capability="8.7", dla_cores=2)
REBUILD = r"rebuild it with `mvrt export model\.safetensors --onnx \S+x\.fp16\.onnx --engine \S+x\.plan --batch 1:2:4 --precision fp16 --workspace-gib 1`"


@pytest.fixture
def plan(tmp_path):
    """A plan file (its bytes are opaque here) and the sidecar describing it."""
    path = tmp_path / "x.plan"
    path.write_bytes(bytes(range(256)) * 10)
    sidecar = EngineSidecar(
        plan_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), plan_bytes=2560,
        tensorrt_version=BUILT_ON.tensorrt_version, gpu_name=BUILT_ON.gpu_name,
        compute_capability=BUILT_ON.compute_capability, precision="fp16", batch=BatchProfile(1, 2, 4),
        onnx_sha256="ab" * 32, model_config=CONFIG, calibration_sha256=None, source="model.safetensors",
    )
    write_sidecar(path, sidecar)
    return path, sidecar


def test_round_trip_keeps_every_field_and_the_design_keys(plan):
    path, sidecar = plan
    assert sidecar_path(path).name == "x.plan.json"
    assert read_sidecar(path) == sidecar
    data = json.loads(sidecar_path(path).read_text())
    for key in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "onnx_sha256",
                "calibration_sha256", "plan_sha256", "version_compatible", "dla_core", "workspace_bytes"):
        assert key in data
    assert data["batch"] == {"min": 1, "opt": 2, "max": 4}
    assert ModelConfig.from_dict(data["model_config"]) == CONFIG


def test_unknown_keys_from_a_newer_writer_are_ignored(plan):
    path, sidecar = plan
    data = json.loads(sidecar_path(path).read_text())
    data["future_field"] = [1, 2]
    sidecar_path(path).write_text(json.dumps(data))
    assert read_sidecar(path) == sidecar


def test_matching_machine_passes(plan):
    path, sidecar = plan
    validate_sidecar(sidecar, BUILT_ON, path)
    validate_sidecar(sidecar, dataclasses.replace(BUILT_ON, tensorrt_version="10.3.0.26"), path)  # build number only


@pytest.mark.parametrize("change, reason", [
    ({"tensorrt_version": "10.4.0.26"}, r"built with TensorRT 10\.3\.0\.30, this is TensorRT 10\.4\.0\.26"),
    ({"tensorrt_version": "11.4.0.106"}, r"built with TensorRT 10\.3\.0\.30, this is TensorRT 11\.4\.0\.106"),
    ({"gpu_name": "NVIDIA H100 PCIe", "compute_capability": "9.0"}, r"compute capability 8\.7 \(Orin \(nvgpu\)\), this GPU is 9\.0"),
    ({"compute_capability": "8.6"}, r"compute capability 8\.7"),
    ({"gpu_name": "NVIDIA A10"}, r"built on a Orin \(nvgpu\), this GPU is a NVIDIA A10"),
])
def test_each_mismatch_names_the_rebuild_command(plan, change, reason):
    path, sidecar = plan
    with pytest.raises(ModelError, match=reason + ".*" + REBUILD) as info:
        validate_sidecar(sidecar, dataclasses.replace(BUILT_ON, **change), path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("built, running, exclude_lean, ok", [
    ("10.3.0.30", "10.8.0.43", False, True),    # newer minor
    ("10.3.0.30", "11.4.0.106", False, True),   # 10 -> 11 is supported
    ("10.8.0.43", "10.3.0.30", False, False),   # older runtime
    ("11.1.0.1", "12.0.0.1", False, False),     # unsupported major step
    ("10.3.0.30", "10.8.0.43", True, False),    # lean runtime left out: exact version only
    ("10.3.0.30", "10.3.0.30", True, True),
])
def test_version_compatible_policy(plan, built, running, exclude_lean, ok):
    path, sidecar = plan
    sidecar = dataclasses.replace(sidecar, tensorrt_version=built, version_compatible=True, exclude_lean_runtime=exclude_lean)
    machine = dataclasses.replace(BUILT_ON, tensorrt_version=running)
    if ok:
        validate_sidecar(sidecar, machine, path)
    else:
        with pytest.raises(ModelError, match=r"--precision fp16 --workspace-gib 1 --version-compatible`"):
            validate_sidecar(sidecar, machine, path)


def test_dla_plan_needs_that_core(plan):
    path, sidecar = plan
    sidecar = dataclasses.replace(sidecar, dla_core=1)
    validate_sidecar(sidecar, BUILT_ON, path)
    with pytest.raises(ModelError, match=r"DLA core 1, this device has 1 DLA core.*--dla-core 1`"):
        validate_sidecar(sidecar, dataclasses.replace(BUILT_ON, dla_cores=1), path)


def test_plan_hash_is_checked(plan):
    path, sidecar = plan
    check_plan_hash(sidecar, path)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    with pytest.raises(ModelError, match=r"differs from its sidecar's"):
        check_plan_hash(sidecar, path, bytes(data))  # bytes already read are hashed, not the file
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"x\.plan: plan sha256 \w+… differs from its sidecar's .*" + REBUILD):
        check_plan_hash(sidecar, path)


def test_missing_or_broken_sidecar(plan, tmp_path):
    path, _ = plan
    other = tmp_path / "y.engine"
    other.write_bytes(b"plan")
    with pytest.raises(ModelError, match=r"y\.engine: its sidecar \S+y\.engine\.json is missing; rebuild the engine with `mvrt export CHECKPOINT\.safetensors --onnx \S+y\.onnx --engine \S+y\.engine`"):
        read_sidecar(other)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ModelError, match=r"x\.plan\.json: sidecar is not valid JSON"):
        read_sidecar(path)
    sidecar_path(path).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match=r"not an mvrt TensorRT sidecar"):
        read_sidecar(path)
    sidecar_path(path).write_text(json.dumps({"format": "mvrt-tensorrt-engine", "version": 1, "batch": {"min": 1}}))
    with pytest.raises(ModelError, match=r"malformed sidecar"):
        read_sidecar(path)


def test_rebuild_command_quotes_paths_with_spaces(plan, tmp_path):
    _, sidecar = plan
    sidecar = dataclasses.replace(sidecar, source=str(tmp_path / "my model.safetensors"), dla_core=0)
    command = rebuild_command(sidecar, tmp_path / "out dir" / "m.plan")
    assert f"'{tmp_path / 'my model.safetensors'}'" in command
    # the rebuilt ONNX goes beside the plan (never over the model the plan came from)
    assert f"--onnx '{tmp_path / 'out dir' / 'm.fp16.onnx'}' --engine '{tmp_path / 'out dir' / 'm.plan'}'" in command
    assert command.endswith("--precision fp16 --workspace-gib 1 --dla-core 0")


def test_rebuild_of_a_plan_from_a_graph_names_the_graph_and_keeps_the_build_settings(plan, tmp_path):
    """`mvrt calibrate --engine` plans: `mvrt export m.int8.onnx --engine ...` (export takes no
    --precision int8); the workspace and timing cache of the build are kept."""
    _, sidecar = plan
    graph = tmp_path / "m.int8.onnx"
    sidecar = dataclasses.replace(sidecar, precision="int8", source=str(graph), workspace_bytes=3 << 29,
                                  timing_cache=str(tmp_path / "t.cache"), calibration_sha256="cd" * 32)
    command = rebuild_command(sidecar, tmp_path / "m.plan")
    assert command == (f"mvrt export {graph} --engine {tmp_path / 'm.plan'} --batch 1:2:4 --workspace-gib 1.5 "
                       f"--timing-cache {tmp_path / 't.cache'}")


def test_rebuild_of_a_contract_1_plan_asks_for_contract_1(plan, tmp_path):
    _, sidecar = plan
    sidecar = dataclasses.replace(sidecar, model_config=CONFIG.replace(contract=1))
    assert rebuild_command(sidecar, tmp_path / "x.plan").endswith("--batch 1:2:4 --precision fp16 --contract 1 --workspace-gib 1")


def test_layer_devices_round_trip_and_are_checked(plan):
    path, sidecar = plan
    counts = {"dla": 120, "gpu": 400, "audio_on_gpu": 3}
    write_sidecar(path, dataclasses.replace(sidecar, dla_core=0, layer_devices=counts))
    assert read_sidecar(path).layer_devices == counts
    data = json.loads(sidecar_path(path).read_text())
    for bad in ({"dla": "many"}, {"dla": -1}, {"dla": True}, [1, 2]):
        sidecar_path(path).write_text(json.dumps(data | {"layer_devices": bad}))
        with pytest.raises(ModelError, match=r"malformed sidecar .*layer_devices"):
            read_sidecar(path)


def test_version_compatible_plans_need_explicit_trust(plan):
    path, sidecar = plan
    check_plan_trust(sidecar, path, trusted=False)  # a plain plan carries no host code
    compatible = dataclasses.replace(sidecar, version_compatible=True)
    check_plan_trust(compatible, path, trusted=True)
    for trusted in (False, 1, "yes"):  # only True is consent
        with pytest.raises(ModelError, match=r"x\.plan: is a version-compatible plan: it carries TensorRT host code that "
                           r"would run inside this process; load it only from a source you trust, with trust_plan_code=True$"):
            check_plan_trust(compatible, path, trusted=trusted)
    with pytest.raises(ModelError, match=r"you trust, by giving --trust-plan-code$"):
        check_plan_trust(compatible, path, trusted=False, how="by giving --trust-plan-code")


@pytest.mark.parametrize("change, match", [
    ({"version_compatible": "yes"}, r"\(TypeError: field 'version_compatible' has the wrong type \(str\)\)"),
    ({"dla_core": True}, r"field 'dla_core' has the wrong type \(bool\)"),
    ({"plan_sha256": 5}, r"field 'plan_sha256' has the wrong type"),
    ({"version": "1"}, r"\(version '1' is not an integer\)"),
    ({"batch": {"min": 4, "opt": 2, "max": 1}}, r"batch profile 4:2:1 is not min <= opt <= max"),
    ({"batch": {"min": 1, "opt": 2, "max": 10**9}}, r"batch sizes must be integers from 1 to 65536, got 1000000000"),
    ({"batch": {"min": True, "opt": 2, "max": 4}}, r"batch sizes must be integers"),
])
def test_sidecar_field_types_are_checked(plan, change, match):
    path, _ = plan
    data = json.loads(sidecar_path(path).read_text()) | change
    sidecar_path(path).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"x\.plan\.json: malformed sidecar .*" + match):
        read_sidecar(path)


def test_sidecar_model_config_is_checked_strictly(plan):
    path, _ = plan
    data = json.loads(sidecar_path(path).read_text())
    data["model_config"]["frontend"]["hop_length"] = 0
    sidecar_path(path).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"x\.plan\.json: model config field 'frontend\.hop_length' must be a positive integer, got 0$"):
        read_sidecar(path)


def test_huge_or_deep_sidecar_is_refused_before_parsing(plan):
    path, _ = plan
    sidecar_path(path).write_text('{"format": "mvrt-tensorrt-engine", "x": ' + "[" * 100 + "]" * 100 + "}")
    with pytest.raises(ModelError, match=r"x\.plan\.json: sidecar JSON is nested 101 levels deep; at most 32 are read$"):
        read_sidecar(path)
    with open(sidecar_path(path), "wb") as f:
        f.truncate(2 << 20)
    with pytest.raises(ModelError, match=r"x\.plan\.json: sidecar is 2097152 bytes; at most 1048576 are read"):
        read_sidecar(path)
