"""The report says which sensitivity mode ran, keeps proxy-only layers free of exact numbers, and shows notes."""

import json
from pathlib import Path

import numpy as np

from mvrt.calibration.compare import compare_logits
from mvrt.calibration.proxy import LayerProxy
from mvrt.calibration.report import CalibrationReport, render_report, write_report
from mvrt.calibration.sensitivity import LayerSensitivity, SensitivityResult

CLASSES = ("a", "b", "c")


def _report(sensitivity, notes=()) -> CalibrationReport:
    rng = np.random.default_rng(0)
    fp32 = rng.standard_normal((6, 3))
    comparison = compare_logits(np.array([0, 1, 2, 0, 1, 2]), fp32, fp32 + 0.01, CLASSES)
    return CalibrationReport(Path("m.onnx"), Path("m.int8.onnx"), "minmax", "onnxruntime", "ab" * 32, 6, "train",
                             "validation", (), 5, comparison, {"minmax": comparison}, sensitivity, notes=notes)


def _proxy(*names):
    return tuple(LayerProxy(name, "Conv", 0.5 / (i + 1), 0.1 / (i + 1)) for i, name in enumerate(names))


def test_fast_mode_measures_the_top_and_ranks_the_rest_by_the_proxy_only(tmp_path):
    measured = (LayerSensitivity("/b", "Conv", 0.03, 0.09, 1), LayerSensitivity("/a", "Conv", 0.01, 0.02, 0))
    result = SensitivityResult("fast", 8, measured, _proxy("/a", "/b", "/c", "/d", "/e"), top=2, proxy_clips=1)
    text = render_report(_report(result))
    assert ("most sensitive layers (fast: the 2 layers the proxy ranks worst, each quantised alone on 8 validation "
            "clips; keep them in FP32 with --exclude NAME):") in text
    assert "    0.03000  0.09000     1  /b (Conv)" in text
    assert ("  the other 3 quantised layers were ranked by the proxy only (each layer quantised alone on the least "
            "confident validation clip, ranked by the relative shift of the logits), not measured on all clips; "
            "--sensitivity full measures every layer") in text
    assert "/c" not in text and "/d" not in text  # nothing shown for them in the exact table
    shown = json.loads(write_report(_report(result), tmp_path / "r.json").read_text())["sensitivity"]
    assert shown["mode"] == "fast" and shown["clips"] == 8 and shown["measured_layers"] == 2 and shown["proxy_clips"] == 1
    assert [layer["node"] for layer in shown["layers"]] == ["/b", "/a"]
    assert [p["node"] for p in shown["proxy_ranking"]] == ["/a", "/b", "/c", "/d", "/e"]
    assert all(set(p) == {"node", "op_type", "proxy_logit_shift", "proxy_abs_dp"} for p in shown["proxy_ranking"])


def test_full_mode_says_every_layer_was_measured():
    measured = tuple(LayerSensitivity(f"/l{i}", "Conv", 0.01 / (i + 1), 0.02, 0) for i in range(12))
    text = render_report(_report(SensitivityResult("full", 8, measured)))
    assert "most sensitive layers (full: every layer quantised alone on 8 validation clips;" in text
    assert "proxy" not in text and "/l9 (Conv)" in text and "/l10 (Conv)" not in text  # ten shown
    shown = _report(SensitivityResult("full", 8, measured)).to_dict()["sensitivity"]
    assert shown["mode"] == "full" and "proxy_ranking" not in shown and len(shown["layers"]) == 12


def test_no_sensitivity_and_notes():
    report = _report(None, notes=("small calibration set: 6 clips", "small validation set: 6 clips"))
    text = render_report(report)
    assert "most sensitive" not in text
    assert text.endswith("\n\nnotes:\n  - small calibration set: 6 clips\n  - small validation set: 6 clips")
    shown = report.to_dict()
    assert shown["sensitivity"] == {"mode": "off", "clips": 0, "layers": []}
    assert shown["notes"] == ["small calibration set: 6 clips", "small validation set: 6 clips"]
