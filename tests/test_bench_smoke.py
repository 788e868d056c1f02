"""Smoke run of bench/bench_pipeline.py: a tiny generated video and a tiny model, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("librosa")
pytest.importorskip("onnx")

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import _baseline
        import bench_pipeline

        yield bench_pipeline, _baseline
    finally:
        sys.path.remove(str(BENCH_DIR))


@pytest.fixture(scope="module")
def smoke_run(bench, tmp_path_factory):
    """34 s at 144p (two 30 s windows: one batch of two), width 1/16."""
    bench_pipeline, _ = bench
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out.json"
    argv = ["--quick", "--seconds", "34", "--height", "144", "--fps", "25", "--width", "0.0625",
            "--cache-dir", str(tmp / "cache"), "--json", str(out)]
    returned = bench_pipeline.main(argv)
    return returned, json.loads(out.read_text()), tmp / "cache"


def test_json_has_every_row_with_positive_times(bench, smoke_run):
    bench_pipeline, _ = bench
    returned, written, _ = smoke_run
    assert written["rows"] == returned["rows"]
    assert set(written["rows"]) == set(bench_pipeline.ROWS)
    for row in written["rows"].values():
        assert row["baseline_seconds"] > 0 and row["mvrt_seconds"] > 0
        assert row["speedup"] == pytest.approx(row["baseline_seconds"] / row["mvrt_seconds"], rel=0.02)
    end_to_end = written["rows"]["end-to-end"]
    media = written["video"]["duration_seconds"]
    assert media == pytest.approx(34, abs=0.2)
    assert written["rtf"]["mvrt"] == pytest.approx(media / end_to_end["mvrt_seconds"], rel=0.02)
    # The generated video really has B-frames, and every frame was decoded by the baseline.
    assert written["video"]["windows"] == 2
    assert written["video"]["decoded_frames"] == 34 * 25
    assert written["video"]["b_frames"] > 0


def test_both_paths_computed_the_same_thing(smoke_run):
    _, written, _ = smoke_run
    agreement = written["agreement"]
    measured = agreement["measured"]
    assert agreement["ok"], measured
    assert measured["audio_samples_max_abs"] < 1e-4
    assert measured["db_loud_max_rel"] < 1e-3  # log-mel (dB): mvrt native vs librosa
    assert measured["phase_loud_p99_abs"] < 1e-2  # radians
    assert measured["frames_wrong_picks"] == 0
    assert measured["frames_mean_abs"] < 3.0  # uint8 levels: same resize geometry
    assert measured["logits_max_abs_rel"] < 1e-3  # ORT vs torch eager on the same inputs
    assert agreement["logits_pipeline_vs_staged_max_abs"] < 1e-4
    assert agreement["logits_isolated_vs_pipeline_max_abs"] < 1e-4  # isolate=True: the same inputs


def test_the_isolation_overhead_is_measured_side_by_side(smoke_run):
    iso = smoke_run[1]["isolation"]
    assert iso["isolated_seconds"] > 0 and iso["in_process_seconds"] > 0
    assert iso["ratio"] == pytest.approx(iso["isolated_seconds"] / iso["in_process_seconds"], rel=0.05)


def test_the_files_floor_is_measured_side_by_side(bench, smoke_run):
    """floor = decode every frame once (no conversion) + the engine row; end-to-end / floor reported."""
    bench_pipeline, _ = bench
    written = smoke_run[1]
    floor = written["floor"]
    assert floor["decode_seconds"] > 0
    assert floor["engine_seconds"] == pytest.approx(written["rows"]["engine"]["mvrt_seconds"], rel=1e-3)
    assert floor["floor_seconds"] == pytest.approx(floor["decode_seconds"] + floor["engine_seconds"], rel=0.02)
    assert floor["end_to_end_seconds"] == pytest.approx(written["rows"]["end-to-end"]["mvrt_seconds"], rel=1e-3)
    assert floor["ratio"] == pytest.approx(floor["end_to_end_seconds"] / floor["floor_seconds"], rel=0.02)
    assert floor["target_ratio"] == bench_pipeline.FLOOR_TARGET_RATIO
    assert floor["met"] == (floor["ratio"] <= floor["target_ratio"])


def test_the_floor_decode_sees_every_frame(bench, smoke_run):
    """Every video frame (34 s at 25 fps) and every AAC frame (1024 samples) of the file."""
    bench_pipeline, _ = bench
    written = smoke_run[1]
    audio_frames = 34 * 44100 / 1024
    frames = bench_pipeline.decode_floor(written["video"]["path"])
    assert 34 * 25 + audio_frames - 3 <= frames <= 34 * 25 + audio_frames + 3


def test_wrong_frame_picks_are_detected(bench, smoke_run):
    """The pick check is not vacuous: frames one step off do not match mvrt's."""
    bench_pipeline, baseline = bench
    _, written, cache = smoke_run
    from mvrt.config import ModelConfig
    from mvrt.runtime.decode import iter_window_frames
    from mvrt.runtime.window_reader import file_windows

    path = written["video"]["path"]
    windows = file_windows(path, ModelConfig())
    mvrt0 = next(iter(iter_window_frames(path, windows[:1])))
    _, picks, _, _ = baseline.decode_frames_naive(path, windows[:1], 64, 128)
    assert baseline.count_wrong_picks(path, mvrt0, picks[0]) == 0
    assert baseline.count_wrong_picks(path, mvrt0, picks[0] + 1) > 32


def test_area_resize_matches_block_mean(bench):
    _, baseline = bench
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 384, 3), dtype=np.uint8)
    expected = image.reshape(128, 2, 128, 3, 3).astype(np.float64).mean(axis=(1, 3))  # 2x3 blocks
    assert np.abs(baseline.area_resize(image, 128).astype(np.float64) - expected).max() <= 0.5 + 1e-3


def test_librosa_front_end_matches_mvrt_reference(bench):
    """The baseline's librosa features equal mvrt's numpy reference (DESIGN §4) closely."""
    _, baseline = bench
    from mvrt.runtime.spectrogram import log_mel_phase_reference

    rng = np.random.default_rng(1)
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000 * 3) / 8000) + 0.05 * rng.standard_normal(8000 * 3)).astype(np.float32)
    ours = baseline.librosa_log_mel_phase(y, 8000, 2048, 512, 128)
    ref = log_mel_phase_reference(y, 8000)
    diff = baseline.compare_audio(ref, ours)
    assert ours.shape == ref.shape == (2, 128, 1 + y.size // 512)
    assert diff["db_loud_max_abs"] < 1e-3
    assert diff["phase_loud_p99_abs"] < 1e-3
