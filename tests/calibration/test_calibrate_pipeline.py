"""`calibrate` end to end on a tiny model, and the bundled model's INT8 promise on fresh stand-in clips."""

import json

import numpy as np
import pytest
from shared_fixtures import validation_feeds

from mvrt.calibration.pipeline import calibrate, default_int8_path
from mvrt.calibration.settings import CalibrationSettings
from mvrt.errors import UsageError
from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from mvrt.runtime.model_meta import read_onnx_config, read_onnx_metadata


@pytest.fixture(scope="module")
def calibrated(calib_data, tmp_path_factory):
    root, model = calib_data
    work = tmp_path_factory.mktemp("calibrated")
    settings = CalibrationSettings(method="auto", sensitivity_samples=2, latency_rounds=1, batch_size=4,
                                   cache_dir=work / "cache", threads=1)
    return root, model, work, calibrate(model.onnx, root, settings, out=work / "tiny.int8.onnx", progress=False)


def test_writes_a_tagged_int8_model_and_its_report(calibrated):
    _, model, work, result = calibrated
    meta = read_onnx_metadata(result.int8_path)
    report = json.loads(result.report_path.read_text())
    assert meta["mvrt_precision"] == "int8" and meta["mvrt_config"] == read_onnx_metadata(model.onnx)["mvrt_config"]
    assert meta["mvrt_calibration_sha256"] == report["calibration"]["sha256"] == result.report.calibration_sha256
    details = json.loads(meta["mvrt_calibration"])
    assert details["method"] == report["method"] in ("minmax", "entropy", "percentile") and details["symmetric"]
    assert set(report["methods_tried"]) == {"minmax", "entropy", "percentile"}
    best = report["methods_tried"][report["method"]]["top1_agreement"]
    assert best == max(t["top1_agreement"] for t in report["methods_tried"].values())
    assert report["calibration"]["clips"] == 12 and report["comparison"]["clips"] == 12
    config = read_onnx_config(result.int8_path)
    assert config.contract == report["calibration"]["contract"] == 2 and config.input_dtypes()["video"] == "uint8"
    fe = config.frontend
    video_bytes = 3 * fe.frames * fe.image_size ** 2  # uint8
    audio_bytes = sum(4 * 2 * fe.n_mels * fe.audio_frames(sr) for sr in config.audio_inputs.values())
    assert report["calibration"]["input_bytes_per_window"] == video_bytes + audio_bytes
    assert report["calibration"]["stored_bytes_per_window"] == video_bytes + audio_bytes  # the stack: uint8 frames too
    sensitivity = report["sensitivity"]
    assert sensitivity["mode"] == "fast" and sensitivity["clips"] == 2 and report["quantized_layers"] > 16
    assert sensitivity["measured_layers"] == len(sensitivity["layers"]) == 16  # the proxy's 16 worst, measured
    assert len(sensitivity["proxy_ranking"]) == report["quantized_layers"]  # every layer ranked by the proxy
    assert {layer["node"] for layer in sensitivity["layers"]} == {p["node"] for p in sensitivity["proxy_ranking"][:16]}
    assert [row["batch_size"] for row in report["latency_onnxruntime_cpu"]["rows"]] == [1, 4]
    assert result.report_path.name == "tiny.int8.report.json"
    assert [note.split(":")[0] for note in report["notes"]] == ["small calibration set", "small validation set"]


def test_the_table_says_which_sensitivity_mode_ran_and_cautions_about_small_sets(calibrated):
    from mvrt.calibration.report import render_report

    text = render_report(calibrated[3].report)
    assert ("most sensitive layers (fast: the 16 layers the proxy ranks worst, each quantised alone on 2 validation "
            "clips") in text
    unmeasured = calibrated[3].report.quantized_layers - 16
    assert (f"the other {unmeasured} quantised layers were ranked by the proxy only (each layer quantised alone on the "
            "least confident validation clip") in text
    assert "notes:\n  - small calibration set: 12 clips, 2 per class" in text
    assert "  - small validation set: agreement is measured on 12 clips" in text


def test_report_numbers_match_a_fresh_run_of_both_models(calibrated):
    root, model, work, result = calibrated
    labels, feeds = validation_feeds(root, read_onnx_config(model.onnx), work / "cache")  # contract 2: uint8 video
    assert feeds["video"].dtype == np.uint8
    with OnnxRuntimeEngine(model.onnx, threads=1) as fp32, OnnxRuntimeEngine(result.int8_path, threads=1) as int8:
        a, b = fp32.infer(feeds), int8.infer(feeds)
    c = result.report.comparison
    assert c.agreement == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    assert c.int8.accuracy == pytest.approx(np.mean(b.argmax(1) == labels))
    assert c.fp32.accuracy == pytest.approx(np.mean(a.argmax(1) == labels))


def test_bad_requests_fail_before_any_work(calibrated, tmp_path):
    root, model, work, result = calibrated
    with pytest.raises(UsageError, match="the graph is int8; calibrate the FP32 export"):
        calibrate(result.int8_path, root, progress=False)
    with pytest.raises(UsageError, match="would overwrite the FP32 model"):
        calibrate(model.onnx, root, out=model.onnx, progress=False)
    with pytest.raises(UsageError, match="takes an FP32 .onnx model"):
        calibrate(model.checkpoint, root, progress=False)
    with pytest.raises(UsageError, match="^split and validation_split are both 'train'"):
        CalibrationSettings(validation_split="train")
    with pytest.raises(UsageError, match="^method 'kl'"):
        CalibrationSettings(method="kl")
    assert default_int8_path(tmp_path / "m.onnx") == tmp_path / "m.int8.onnx"


def test_bundled_model_keeps_its_answers_in_int8(tmp_path):
    """Issue 5's promise on the README's stand-in validation split: >= 98% agreement, <= 1 point lost.

    `mvrt standin` seeds every clip from (seed, split, class, index), so 10 validation clips per
    class at seed 0 are exactly the README's 60; calibration uses the first 11 train clips per
    class (64 samples) instead of all 360 to keep CI short (README: 60/60 with all of them).
    """
    from mvrt.bundled import default_model_path
    from mvrt.standin import generate_standin

    generate_standin(tmp_path / "data", clips_per_class={"train": 11, "validation": 10}, seconds=8.0, seed=0,
                     splits=("train", "validation"), progress=False)
    settings = CalibrationSettings(method="percentile", sensitivity_samples=0, latency_rounds=0, samples=64)
    result = calibrate(default_model_path(), tmp_path / "data", settings, out=tmp_path / "b.int8.onnx", progress=False)
    shown = json.loads(result.report_path.read_text())["comparison"]
    assert shown == result.report.comparison.to_dict()
    assert shown["clips"] == 60 and shown["top1_agreement"] >= 0.98, shown
    assert shown["accuracy_drop_points"] <= 1.0 and shown["int8"]["accuracy"] >= 0.95, shown
