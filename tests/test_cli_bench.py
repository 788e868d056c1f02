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
    code, out, err = run(capsys, "bench", "--model", model, "--batch-size", 1, 2, "--iterations", 2, "--warmup", 0, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["batch_size"] for r in doc["rows"]] == [1, 2]
    assert doc["settings"]["backend"] == ("onnxruntime" if which == "onnx" else "torch")
    assert all(r["samples_per_second"] > 0 for r in doc["rows"])


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
