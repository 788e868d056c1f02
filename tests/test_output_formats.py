"""Result documents: the model they came from (backend, precision, training data) in every format."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from mvrt import output_formats
from mvrt.config import CLASSES, ModelConfig
from mvrt.runtime.results import VideoResult, WindowResult, sigmoid, softmax


def _window(path: str, index: int, logits, audio: str | None = None) -> WindowResult:
    logits = np.asarray(logits, dtype=np.float64)
    probs = softmax(logits)
    return WindowResult(path, index, 4.0 * index, 4.0 * index + 4.0, logits, probs, sigmoid(logits),
                        CLASSES[int(np.argmax(probs))], CLASSES, audio_path=audio)


def _videos() -> list[VideoResult]:
    pair = VideoResult("v.mp4", (_window("v.mp4", 0, [0, 0, 0, 0, 3, 0], "a.wav"),), CLASSES, audio_path="a.wav")
    muxed = VideoResult("m.mkv", (_window("m.mkv", 0, [2, 0, 0, 0, 0, 0]), _window("m.mkv", 1, [0, 2, 0, 0, 0, 0])),
                        CLASSES)
    failed = VideoResult("bad.mp4", (), CLASSES, error="bad.mp4: no audio stream")
    return [pair, muxed, failed]


SUMMARY = output_formats.model_summary(ModelConfig(trained_on="MVED train"), "m.int8.onnx", "onnxruntime", precision="int8")


def test_the_summary_names_backend_and_precision():
    assert (SUMMARY["backend"], SUMMARY["precision"], SUMMARY["trained_on"]) == ("onnxruntime", "int8", "MVED train")
    assert output_formats.model_summary(ModelConfig(), "m.onnx", "torch")["precision"] == "fp32"
    assert output_formats.model_summary(ModelConfig(), "m.onnx", "torch")["trained_on"] == "unknown"


def test_table_footer_and_pair_header():
    lines = output_formats.render_table(_videos(), SUMMARY).splitlines()
    assert lines[0] == "== v.mp4 (audio: a.wav)"
    assert "== m.mkv" in lines and "   error: bad.mp4: no audio stream" in lines
    assert lines[-1] == "-- model: m.int8.onnx (slowfast, onnxruntime, int8); trained on: MVED train"


def test_csv_carries_the_audio_file_and_the_training_data_on_every_row():
    rows = list(csv.DictReader(io.StringIO(output_formats.render_csv(_videos(), CLASSES, trained_on="MVED train"))))
    assert list(rows[0])[-4:] == ["error", "undecodable_packets", "audio_path", "trained_on"]
    assert [(r["path"], r["kind"], r["audio_path"]) for r in rows] == [
        ("v.mp4", "window", "a.wav"), ("v.mp4", "video", "a.wav"), ("m.mkv", "window", ""), ("m.mkv", "window", ""),
        ("m.mkv", "video", ""), ("bad.mp4", "video", "")]
    assert {r["trained_on"] for r in rows} == {"MVED train"}
    assert rows[-1]["error"] == "bad.mp4: no audio stream" and rows[-1]["Sad"] == ""
    assert float(rows[1]["Sad"]) > 0.5


def test_json_and_jsonl_carry_the_summary():
    doc = json.loads(output_formats.render_json(_videos(), SUMMARY))
    assert doc["model"] == SUMMARY and [v["path"] for v in doc["videos"]] == ["v.mp4", "m.mkv", "bad.mp4"]
    line = json.loads(output_formats.jsonl_line(_videos()[0]))
    assert line["type"] == "video" and line["audio_path"] == "a.wav" and "windows" not in line
