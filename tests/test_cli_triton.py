"""`--triton-repo DIR` of `mvrt export` and `mvrt calibrate`: the written model as a Triton model repository.

The config itself is checked against tritonclient's schema in tests/export/test_triton_repo.py;
here: the command writes the repository for the artifact it made (the same bytes), says how to
serve it, replaces it on a rerun, and refuses a file as DIR before doing any work.
"""

from __future__ import annotations

import importlib.util

import pytest

from mvrt.cli import main

pytest.importorskip("torch")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _parsed(config_path):
    """The config as tritonclient's protobuf schema reads it (None without tritonclient)."""
    if importlib.util.find_spec("tritonclient") is None:
        return None
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())


def model_config_type(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def test_export_writes_the_onnx_it_made_as_a_triton_model(tiny_models, tmp_path, capsys):
    onnx, repo = tmp_path / "tiny.onnx", tmp_path / "models"
    for _ in range(2):  # a rerun replaces the model folder
        code, _, err = run(capsys, "export", tiny_models["slowfast"].checkpoint, "--onnx", onnx, "--triton-repo", repo)
        assert code == 0, err
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) == [
        "tiny", "tiny/1", "tiny/1/model.onnx", "tiny/config.pbtxt"]
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == onnx.read_bytes()
    assert f"wrote the Triton model 'tiny' to {repo / 'tiny'} (onnxruntime_onnx, fp32, max_batch_size 8" in err
    assert f"`tritonserver --model-repository {repo}`" in err
    config = _parsed(repo / "tiny" / "config.pbtxt")
    if config is not None:
        assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
        exported = tiny_models["slowfast"].config.replace(contract=2)  # `mvrt export` writes tensor contract 2
        assert [i.name for i in config.input] == list(exported.input_names) == ["audio_slow", "audio_fast", "video"]
        types = {i.name: model_config_type(i.data_type) for i in config.input}
        assert types == {"audio_slow": "TYPE_FP32", "audio_fast": "TYPE_FP32", "video": "TYPE_UINT8"}


def test_a_file_as_triton_repo_is_refused_before_any_work(tiny_models, tmp_path, capsys):
    taken = tmp_path / "models"
    taken.write_text("not a folder")
    onnx = tmp_path / "tiny.onnx"
    code, _, err = run(capsys, "export", tiny_models["slowfast"].checkpoint, "--onnx", onnx, "--triton-repo", taken)
    assert code == 2
    assert err.strip() == f"mvrt: error: --triton-repo {taken}: is a file; name a folder (it is created if missing)"
    assert not onnx.exists()


def test_calibrate_writes_the_int8_model_as_a_triton_model(calib_data, tmp_path, capsys):
    root, model = calib_data
    out_model, repo = tmp_path / "tiny.int8.onnx", tmp_path / "models"
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--method", "minmax", "--samples", "4",
                       "--sensitivity-samples", "0", "--latency-rounds", "0", "--out", out_model,
                       "--cache", tmp_path / "cache", "-q", "--triton-repo", repo)
    assert code == 0, err
    served = repo / "tiny.int8" / "1" / "model.onnx"
    assert served.read_bytes() == out_model.read_bytes()
    assert "(onnxruntime_onnx, int8, max_batch_size 8" in err
    config = _parsed(repo / "tiny.int8" / "config.pbtxt")
    if config is not None:
        assert {p: v.string_value for p, v in config.parameters.items()}["mvrt_precision"] == "int8"
