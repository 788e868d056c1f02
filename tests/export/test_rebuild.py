"""Rebuild commands that work (export/rebuild.py, sidecar.rebuild_command, `mvrt export MODEL.onnx`).

For every kind of sidecar, the rebuild command it names is run through the real CLI: it must get
as far as looking for TensorRT (the one thing missing here) and fail only with that
MissingDependencyError, never with a usage error. The INT8 graph is a real Q/DQ graph from
`mvrt.calibration.quantize.quantize_qdq` (ranges fixed at |x| <= 4: the graph's numbers do not
matter here, only that it is what `mvrt calibrate` writes).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shlex

import pytest

from mvrt import cli
from mvrt.artifacts import CALIBRATION_KEY, PRECISION_KEY
from mvrt.errors import MissingDependencyError, ModelError, UsageError
from mvrt.export.build_settings import TensorRTSettings
from mvrt.export.rebuild import build_plan_from_onnx, check_rebuild_request, graph_precision
from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, rebuild_command

pytest.importorskip("torch")
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
no_tensorrt = pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the command would really build")
NEEDS_TENSORRT = "building a TensorRT engine needs the 'tensorrt' package; install it with `pip install 'mvrt[tensorrt]'`"


@pytest.fixture(scope="module")
def int8_graph(tiny_models, tmp_path_factory):
    """The tiny slowfast (contract 2) as a Q/DQ INT8 graph with mvrt's INT8 metadata."""
    import onnx

    from mvrt.calibration.quantize import quantize_qdq
    from mvrt.calibration.ranges import RangeSet
    from mvrt.export.onnx_export import add_metadata, save_single_file

    fp32 = tiny_models["slowfast"].onnx
    graph = onnx.load(str(fp32)).graph
    names = {t for n in graph.node for t in [*n.input, *n.output] if t} | {i.name for i in graph.input}
    proto = quantize_qdq(fp32, RangeSet({name: 4.0 for name in names}).tensors_data("minmax"))
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    add_metadata(proto, {PRECISION_KEY: "int8", CALIBRATION_KEY: "cd" * 32})
    return save_single_file(proto, tmp_path_factory.mktemp("int8") / "m.int8.onnx")


def _sidecar(config, **changes) -> EngineSidecar:
    base = EngineSidecar(plan_sha256="ab" * 32, plan_bytes=1, tensorrt_version="10.3.0", gpu_name="Orin (nvgpu)",
                         compute_capability="8.7", precision="fp32", batch=BatchProfile(1, 4, 8), onnx_sha256="00" * 32,
                         model_config=config, workspace_bytes=2 << 30)
    return dataclasses.replace(base, **changes)


def _kinds(tm, int8, tmp_path) -> dict[str, EngineSidecar]:
    ckpt, v2 = str(tm.checkpoint), tm.config.replace(contract=2)
    cache = str(tmp_path / "trt.cache")
    return {
        "fp32 from a checkpoint": _sidecar(v2, source=ckpt, timing_cache=cache),
        "fp16 from a checkpoint": _sidecar(v2, source=ckpt, precision="fp16"),
        "contract-1 fp32": _sidecar(tm.config.replace(contract=1), source=ckpt),
        "int8 from calibrate": _sidecar(v2, source=str(int8), precision="int8", calibration_sha256="cd" * 32,
                                        timing_cache=cache, workspace_bytes=3 << 29),
        "version-compatible": _sidecar(v2, source=ckpt, version_compatible=True),
        "DLA fp16": _sidecar(v2, source=ckpt, precision="fp16", batch=BatchProfile(4, 4, 4), dla_core=0),
        "DLA int8": _sidecar(v2, source=str(int8), precision="int8", batch=BatchProfile(2, 2, 2), dla_core=1,
                             layer_devices={"dla": 10, "gpu": 20, "audio_on_gpu": 0}),
    }


def _run(argv, capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@no_tensorrt
def test_every_rebuild_command_is_one_mvrt_accepts(tiny_models, int8_graph, tmp_path, capsys):
    for kind, sidecar in _kinds(tiny_models["slowfast"], int8_graph, tmp_path).items():
        command = rebuild_command(sidecar, tmp_path / "out" / "m.plan")
        words = shlex.split(command)
        assert words[:2] == ["mvrt", "export"], kind
        code, err = _run(words[1:], capsys)
        assert (code, err.strip().splitlines()[-1]) == (MissingDependencyError.exit_code, f"mvrt: error: {NEEDS_TENSORRT}"), \
            f"{kind}: `{command}` -> {err}"
        assert f"--workspace-gib {sidecar.workspace_bytes / (1 << 30):g}" in command, kind
        assert ("--timing-cache" in command) == (sidecar.timing_cache is not None), kind
        from_graph = sidecar.source.endswith(".onnx")
        assert ("--precision" in command, "--onnx" in command) == (not from_graph, not from_graph), kind


def test_rebuild_commands_keep_what_the_plan_was_built_with(tiny_models, int8_graph, tmp_path):
    kinds = _kinds(tiny_models["slowfast"], int8_graph, tmp_path)
    plan = tmp_path / "m.plan"
    assert rebuild_command(kinds["int8 from calibrate"], plan) == (
        f"mvrt export {int8_graph} --engine {plan} --batch 1:4:8 --workspace-gib 1.5 --timing-cache {tmp_path / 'trt.cache'}")
    assert rebuild_command(kinds["DLA int8"], plan).endswith("--batch 2:2:2 --workspace-gib 2 --dla-core 1")
    assert rebuild_command(kinds["version-compatible"], plan).endswith("--precision fp32 --workspace-gib 2 --version-compatible")
    assert "--precision fp32 --contract 1 --workspace-gib 2" in rebuild_command(kinds["contract-1 fp32"], plan)


def test_the_old_int8_suggestion_is_a_one_line_usage_error(int8_graph, tmp_path, capsys):
    """What the sidecar used to suggest (`--onnx ... --precision int8` on the INT8 graph) is refused."""
    code, err = _run(["export", str(int8_graph), "--onnx", str(tmp_path / "x.onnx"), "--engine", str(tmp_path / "m.plan"),
                      "--batch", "1:4:8", "--precision", "int8"], capsys)
    assert code == UsageError.exit_code and len(err.strip().splitlines()) == 1
    assert "--onnx, --precision only apply when exporting a checkpoint; given an .onnx model, `mvrt export` builds " \
           "only its TensorRT plan, at the graph's precision" in err


@pytest.mark.parametrize("extra, flags", [(["--opset", "18"], "--opset only applies"),
                                          (["--contract", "2"], "--contract only applies"),
                                          (["--seed", "0", "--parity-batch", "8"], "--parity-batch, --seed only apply")])
def test_export_options_with_an_onnx_model_are_refused_even_at_their_defaults(int8_graph, tmp_path, capsys, extra, flags):
    code, err = _run(["export", str(int8_graph), "--engine", str(tmp_path / "m.plan"), *extra], capsys)
    assert code == UsageError.exit_code and f"{flags} when exporting a checkpoint" in err


def test_an_onnx_model_without_engine_or_with_a_bad_setting_is_refused(tiny_models, int8_graph, tmp_path, capsys):
    code, err = _run(["export", str(int8_graph)], capsys)
    assert code == UsageError.exit_code and "is an ONNX model already; add --engine OUT.plan" in err
    fp32 = tiny_models["slowfast"].onnx  # DLA runs fp16/int8 graphs only; the graph's precision decides
    code, err = _run(["export", str(fp32), "--engine", str(tmp_path / "m.plan"), "--dla-core", "0", "--batch", "2"], capsys)
    assert code == UsageError.exit_code and "DLA runs fp16 or int8 graphs only" in err
    code, err = _run(["export", str(tmp_path / "missing.onnx"), "--engine", str(tmp_path / "m.plan")], capsys)
    assert code == ModelError.exit_code and "missing.onnx: no such ONNX model" in err


def test_library_checks_come_before_tensorrt(tiny_models, int8_graph, tmp_path):
    plan = tmp_path / "m.plan"
    assert graph_precision(int8_graph) == "int8" and graph_precision(tiny_models["slowfast"].onnx) == "fp32"
    settings = check_rebuild_request(int8_graph, plan)
    assert settings == TensorRTSettings(precision="int8")
    with pytest.raises(UsageError, match=r"m\.int8\.onnx: the graph is int8 \(metadata mvrt_precision\), but precision "
                       r"fp16 was asked"):
        build_plan_from_onnx(int8_graph, plan, TensorRTSettings(precision="fp16"))
    with pytest.raises(UsageError, match=r"the engine would overwrite its own ONNX model"):
        build_plan_from_onnx(int8_graph, int8_graph, settings)
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(b"\x08\x07")  # a ModelProto (ir_version 7) without mvrt metadata
    with pytest.raises(ModelError, match=r"plain\.onnx: no mvrt model config in its metadata"):
        graph_precision(plain)
    if not HAS_TENSORRT:
        with pytest.raises(MissingDependencyError, match=r"building a TensorRT engine needs the 'tensorrt' package"):
            build_plan_from_onnx(int8_graph, plan)
        assert not plan.exists()
