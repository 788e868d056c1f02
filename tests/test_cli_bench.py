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


def test_the_table_header_names_backend_and_precision(capsys, tiny_models):
    model = tiny_models["slowfast"].onnx
    code, out, err = run(capsys, "bench", "--model", model, "--batch-size", 1, "--batch-size", 3, "--iterations", 1,
                         "--warmup", 0, "--threads", 1)
    assert code == 0, err
    header, columns, *rows = out.splitlines()
    assert header.startswith(f"mvrt bench: {model} (slowfast, onnxruntime, fp32); width=0.0625, threads=1")
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
