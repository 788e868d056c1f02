"""`mvrt calibrate` on the command line: JSON report on stdout, INT8 model usable by `mvrt infer`, errors."""

import json

import pytest

from mvrt.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_calibrate_json_then_infer_with_the_int8_model(calib_data, tmp_path, capsys):
    root, model = calib_data
    out_model = tmp_path / "tiny.int8.onnx"
    code, out, err = run(capsys, "calibrate", model.onnx, "--data", root, "--method", "minmax", "--samples", "6",
                         "--sensitivity-samples", "0", "--latency-rounds", "0", "--out", out_model,
                         "--cache", tmp_path / "cache", "--format", "json", "-q")
    assert code == 0, err
    report = json.loads(out)  # stdout is only the report: ONNX Runtime's prints are kept off it
    assert report["method"] == "minmax" and report["calibration"]["clips"] == 6
    assert f"wrote {out_model}" in err
    clip = next(p for p in sorted((root / "validation").rglob("*.mp4")))
    code, out, err = run(capsys, "infer", clip, "--model", out_model, "--format", "json", "-q")
    assert code == 0, err
    assert json.loads(out)["videos"][0]["label"] in model.config.classes


def test_usage_errors_are_one_line(calib_data, tmp_path, capsys):
    root, model = calib_data
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--batch", "1:2:4")
    assert code == 2 and err.strip() == ("mvrt: error: --batch only apply when building a TensorRT engine; "
                                         "add --engine OUT.plan")
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--method", "kl")
    assert code == 2 and "--method 'kl': choose one of minmax, entropy, percentile or auto" in err
    code, _, err = run(capsys, "calibrate", tmp_path / "missing.onnx", "--data", root)
    assert code == 1 and "missing.onnx: no such model file" in err and "Traceback" not in err
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--exclude", "/nope", "--samples", "2",
                       "--cache", tmp_path / "cache", "-q")
    assert code == 2 and "--exclude '/nope' matches no quantisable layer" in err and len(err.strip().splitlines()) == 2


def test_count_options_name_their_bound(calib_data, capsys):
    """argparse's own exit (status 2) with the bound in its one-line message."""
    root, model = calib_data
    cases = [("--latency-rounds", "-1", "must be 0 or more, got -1"), ("--samples", "0", "must be at least 1, got 0"),
             ("--sensitivity-samples", "two", "expected an integer, got 'two'")]
    for option, value, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["calibrate", str(model.onnx), "--data", str(root), option, value])
        assert exit_info.value.code == 2 and f"argument {option}: {message}" in capsys.readouterr().err
