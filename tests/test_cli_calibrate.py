"""`mvrt calibrate` on the command line: JSON report on stdout, INT8 model usable by `mvrt infer`, errors."""

import json

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
    doc = json.loads(out)
    assert doc["videos"][0]["label"] in model.config.classes
    assert (doc["model"]["backend"], doc["model"]["precision"]) == ("onnxruntime", "int8")
    code, out, _ = run(capsys, "info", out_model, "--json")
    assert code == 0 and json.loads(out)["precision"] == "int8"


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
    """Usage errors of the option parser: exit 2, one line naming the option, its bound and the help."""
    root, model = calib_data
    cases = [("--latency-rounds", "-1", "must be 0 or more, got -1"), ("--samples", "0", "must be at least 1, got 0"),
             ("--sensitivity-samples", "two", "expected an integer, got 'two'"),
             ("--sensitivity", "half", "'half' is not one of 'fast', 'full'"),
             ("--sensitivity-top", "0", "must be at least 1, got 0")]
    for option, value, message in cases:
        assert main(["calibrate", str(model.onnx), "--data", str(root), option, value]) == 2
        err = capsys.readouterr().err
        assert err == f"mvrt: error: invalid value for {option}: {message}; see `mvrt calibrate --help`\n"


def test_exclude_is_repeatable_and_sensitivity_is_passed_on(calib_data, tmp_path, capsys):
    root, model = calib_data
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--exclude", "/nope", "--exclude", "/nix",
                       "--samples", "2", "--cache", tmp_path / "cache", "-q")
    assert code == 2 and "excluded: /nope, /nix" in err
    assert "sensitivity: fast (proxy ranking, the worst 16 measured on 8 clips)" in err
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--exclude", "/nope", "--samples", "2",
                       "--sensitivity", "full", "--cache", tmp_path / "cache", "-q")
    assert code == 2 and "sensitivity: full (every layer measured on 8 clips)" in err
    code, _, err = run(capsys, "calibrate", model.onnx, "--data", root, "--exclude", "/nope", "--samples", "2",
                       "--sensitivity-top", "3", "--cache", tmp_path / "cache", "-q")
    assert code == 2 and "the worst 3 measured" in err
