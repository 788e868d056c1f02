import json

import pytest

from mvrt.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("which", ["onnx", "checkpoint"])
def test_bench_reports_every_batch_size(capsys, tiny_models, which):
    model = getattr(tiny_models["slowfast"], which)
    code, out, err = run(capsys, "bench", "--model", model, "--batch-size", "1,2", "--iterations", 2, "--warmup", 0,
                         "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["batch_size"] for r in doc["rows"]] == [1, 2]
    assert doc["settings"]["backend"] == ("onnxruntime" if which == "onnx" else "torch")
    assert doc["settings"]["precision"] == "fp32"
    assert all(r["samples_per_second"] > 0 for r in doc["rows"])
    if which == "onnx":  # the provider that ran, its options, no TensorRT cache on the CPU
        assert doc["settings"]["provider"] == "CPUExecutionProvider" == doc["settings"]["providers"][0]
        assert doc["settings"]["provider_options"] == {"CPUExecutionProvider": {}}
        assert doc["settings"]["cache_dir"] is None and doc["settings"]["contract"] == 2


def test_the_table_header_names_backend_and_precision(capsys, tiny_models):
    model = tiny_models["slowfast"].onnx
    code, out, err = run(capsys, "bench", "--model", model, "--batch-size", 1, "--batch-size", 3, "--iterations", 1,
                         "--warmup", 0, "--threads", 1)
    assert code == 0, err
    header, columns, *rows = out.splitlines()
    assert header == (f"mvrt bench: {model} (slowfast, onnxruntime, fp32); width=0.0625, threads=1, contract=2, "
                      f"provider=CPUExecutionProvider")
    assert columns.split()[:3] == ["batch", "p50", "ms"] and [r.split()[0] for r in rows] == ["1", "3"]


@pytest.mark.parametrize("value, message", [
    ("1,0", "--batch-size 0: must be at least 1"), ("1,,2", "--batch-size '1,,2': empty item"),
    ("two", "--batch-size 'two': expected a whole number"),
])
def test_bad_batch_sizes_are_one_line_usage_errors(capsys, tiny_models, value, message):
    code, _, err = run(capsys, "bench", "--model", tiny_models["slowfast"].onnx, "--batch-size", value)
    assert code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("flags, message", [
    (["--precision", "fp16"], "--precision applies to the torch backend only"),
    (["--cuda-graphs"], "--cuda-graphs applies to the torch backend only"),
])
def test_torch_only_flags_are_refused_for_onnx(capsys, tiny_models, flags, message):
    code, _, err = run(capsys, "bench", "--model", tiny_models["slowfast"].onnx, *flags)
    assert code == 2 and message in err


def test_fp16_on_cpu_is_refused_not_rewritten(capsys, tiny_models):
    code, _, err = run(capsys, "bench", "--model", tiny_models["slowfast"].checkpoint, "--precision", "fp16")
    assert code == 2 and "needs a CUDA device (--device cuda)" in err


def test_bench_runs_a_fixed_batch_graph_and_says_so(capsys, tiny_models, tmp_path):
    import onnx

    proto = onnx.load(str(tiny_models["musicvideo"].onnx))
    for value in [*proto.graph.input, *proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 2
    model = tmp_path / "b2.onnx"
    onnx.save(proto, str(model))
    code, out, err = run(capsys, "bench", "--model", model, "--batch-size", "1,2", "--iterations", 1, "--warmup", 0,
                         "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["settings"]["fixed_batch"] == 2 and [r["batch_size"] for r in doc["rows"]] == [1, 2]
    code, _, err = run(capsys, "bench", "--model", model, "--batch-size", 3, "--iterations", 1, "--warmup", 0)
    assert code == 2 and "batch size 3 exceeds the engine's maximum batch 2" in err
