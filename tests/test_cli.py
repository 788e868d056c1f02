import csv
import io
import json
import os

import numpy as np
import pytest

from mvrt.cli import main
from mvrt.runtime.model_meta import read_onnx_config

pytest.importorskip("torch")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_infer_table_shows_windows_video_label_and_provenance(capsys, tiny_models, clip_10s):
    model = tiny_models["slowfast"].onnx
    code, out, err = run(capsys, "infer", clip_10s, "--model", model, "--quiet")
    assert code == 0, err
    assert f"== {clip_10s}" in out
    assert out.count("\n   ") >= 4  # header + 3 windows + video row
    assert out.splitlines()[-1] == (f"-- model: {model} (slowfast, onnxruntime, fp32); "
                                    "trained on: nothing: random initialisation (test model)")


def test_infer_json_is_machine_clean_and_consistent(capsys, tiny_models, clip_10s):
    code, out, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--format", "json",
                         "--progress")
    assert code == 0, err
    doc = json.loads(out)  # nothing but JSON on stdout; progress (forced: stderr is no terminal) went to stderr
    assert "window" in err
    (video,) = doc["videos"]
    assert doc["model"]["arch"] == "slowfast" and doc["model"]["backend"] == "onnxruntime"
    assert doc["model"]["precision"] == "fp32"
    assert len(video["windows"]) == 3
    probabilities = np.array([list(w["probabilities"].values()) for w in video["windows"]])
    weights = _seconds_alone([(w["start_seconds"], w["end_seconds"]) for w in video["windows"]])
    assert weights == pytest.approx([4.0, 3.0, 3.0], abs=1e-3)  # 0-4, 4-8, 6-10: 6-8 is shared
    np.testing.assert_allclose(list(video["probabilities"].values()), weights @ probabilities / weights.sum(),
                               atol=1e-5)
    assert video["label"] == max(video["probabilities"], key=video["probabilities"].get)


def _seconds_alone(spans, step: float = 1e-3) -> np.ndarray:
    """Seconds each window stands for, counted on a fine grid (a shared instant split equally)."""
    end = max(e for _, e in spans)
    t = np.arange(0.0, end, step) + step / 2
    inside = np.array([(t >= s) & (t < e) for s, e in spans], dtype=float)
    covering = inside.sum(axis=0)
    return (inside / np.where(covering > 0, covering, 1)).sum(axis=1) * step


def test_infer_jsonl_streams_one_event_per_line(capsys, tiny_models, clip_10s):
    code, out, _ = run(capsys, "infer", clip_10s, clip_10s, "--model", tiny_models["slowfast"].onnx,
                       "--format", "jsonl", "--batch-size", "2")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events].count("window") == 6
    assert [e["type"] for e in events].count("video") == 2
    assert events[0]["type"] == "model"
    assert (events[0]["backend"], events[0]["precision"]) == ("onnxruntime", "fp32")
    assert events[0]["trained_on"] == "nothing: random initialisation (test model)"


def test_infer_csv_has_a_row_per_window_and_video(capsys, tiny_models, clip_10s, tmp_path):
    target = tmp_path / "out.csv"
    code, out, _ = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx,
                       "--format", "csv", "--output", target, "--quiet")
    assert code == 0 and out == ""
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["kind"] for r in rows] == ["window"] * 3 + ["video"]
    assert {r["trained_on"] for r in rows} == {"nothing: random initialisation (test model)"}
    assert {r["audio_path"] for r in rows} == {""}  # one muxed file
    for row in rows[:3]:
        assert sum(float(row[c]) for c in ("Excited", "Fear", "Neutral", "Relaxation", "Sad", "Tension")) == pytest.approx(1.0, abs=1e-4)


def test_one_failing_input_is_reported_and_the_rest_complete(capsys, tiny_models, clip_10s, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    code, out, err = run(capsys, "infer", bad, clip_10s, "--model", tiny_models["slowfast"].onnx, "--format", "json")
    assert code == 1
    videos = json.loads(out)["videos"]
    assert [v["ok"] for v in videos] == [False, True]
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("mvrt: error:")]
    assert len(error_lines) == 1 and "notes.mp4" in error_lines[0]
    assert "1 of 2 input(s) failed" in err


def test_folders_expand_to_their_video_files(capsys, tiny_models, clip_10s, tmp_path):
    import shutil

    folder, empty = tmp_path / "videos", tmp_path / "empty"
    (folder / "b" / ".hidden").mkdir(parents=True)
    empty.mkdir()
    for name in ("b/one.mp4", "a.MKV", "b/.hidden/skipped.mp4", "b/.skipped.mp4"):
        shutil.copy(clip_10s, folder / name)
    (folder / "notes.txt").write_text("not media")
    code, out, err = run(capsys, "infer", folder, empty, clip_10s, "--model", tiny_models["slowfast"].onnx,
                         "--format", "json", "--quiet")
    assert code == 1 and "Traceback" not in err
    assert [v["path"] for v in json.loads(out)["videos"]] == [str(folder / "a.MKV"), str(folder / "b" / "one.mp4"),
                                                                str(clip_10s)]
    assert f"mvrt: error: {empty}: folder has no video files (.avi, .mkv, .mov, .mp4, .webm)" in err.splitlines()
    assert "1 of 4 input(s) failed" in err


def test_a_plot_suffix_it_cannot_draw_is_refused_before_any_work(capsys, tiny_models, clip_10s, tmp_path):
    code, out, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx,
                         "--plot", tmp_path / "curves.xyz", "-q")
    assert code == 2 and out == "" and "cannot draw a plot as .xyz; use .png, .pdf or .svg" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "curves.xyz").exists()


def test_plot_draws_one_panel_per_video_and_says_where(capsys, tiny_models, clip_10s, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    one, two, sig = tmp_path / "one.png", tmp_path / "two.png", tmp_path / "sigmoids.png"
    model = tiny_models["slowfast"].onnx
    code, _, err = run(capsys, "infer", clip_10s, "--model", model, "--plot", one, "-q")
    assert code == 0 and f"mvrt: wrote plot {one}" in err.splitlines()
    run(capsys, "infer", clip_10s, clip_10s, "--model", model, "--plot", two, "-q")
    assert image.imread(two).shape[0] > 1.3 * image.imread(one).shape[0]  # a second panel below the first
    code, _, err = run(capsys, "infer", clip_10s, "--model", model, "--plot", sig, "--plot-sigmoids", "-q")
    assert code == 0 and f"mvrt: wrote plot {sig}" in err
    assert sig.read_bytes() != one.read_bytes()  # sigmoid curves, not the softmax ones


def test_plot_sigmoids_needs_a_plot(capsys, tiny_models, clip_10s):
    code, out, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--plot-sigmoids")
    assert code == 2 and out == ""
    assert err == "mvrt: error: --plot-sigmoids changes what --plot draws; add --plot PNG\n"


def test_features_writes_the_tensors_the_engine_sees(capsys, tiny_models, clip_10s, tmp_path):
    from mvrt.runtime.engines import open_engine
    from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
    from mvrt.runtime.results import WindowResult

    out = tmp_path / "feats.npz"
    tm = tiny_models["slowfast"]
    code, _, err = run(capsys, "features", clip_10s, "--model", tm.onnx, "--start", 4, "--output", out)
    assert code == 0, err
    feats = np.load(out, allow_pickle=False)
    config = read_onnx_config(tm.onnx)  # the graph's inputs (tensor contract 2: uint8 video)
    assert {k: feats[k].shape for k in config.input_names} == config.input_shapes()
    assert {k: str(feats[k].dtype) for k in config.input_names} == config.input_dtypes()
    with open_engine(tm.onnx) as engine:
        logits = engine.infer({k: feats[k][None] for k in config.input_names})[0]
        window = next(e for e in run_pipeline(engine, [clip_10s], PipelineConfig()) if isinstance(e, WindowResult) and e.index == 1)
    np.testing.assert_allclose(logits, window.logits, atol=1e-5)


def test_info_shows_model_metadata(capsys, tiny_models):
    code, out, _ = run(capsys, "info", tiny_models["slowfast"].onnx, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["arch"] == "slowfast" and info["trained_on"].startswith("nothing")
    assert info["precision"] == "fp32"
    code, out, _ = run(capsys, "info", tiny_models["slowfast"].onnx)
    assert code == 0 and "precision: fp32" in out.splitlines()[2]


def test_info_lists_onnxruntime_providers_and_the_tensorrt_cache(capsys, tiny_models, tmp_path):
    import onnxruntime as ort

    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_models["slowfast"].onnx.read_bytes())
    code, out, err = run(capsys, "info", model, "--json")
    assert code == 0, err
    shown = json.loads(out)["onnxruntime"]
    assert shown["available"] == ort.get_available_providers() and shown["chosen"][-1] == "CPUExecutionProvider"
    cache = shown["tensorrt_cache"]
    assert cache["root"] == f"{model}.ort-trt-cache" and cache["beside_model"] and cache["exists"] is False
    code, out, err = run(capsys, "info", model)
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines()}
    assert lines["providers"].startswith(", ".join(shown["chosen"]))
    assert lines["tensorrt cache"].startswith(f"{model}.ort-trt-cache (not created yet")
    assert not (tmp_path / "m.onnx.ort-trt-cache").exists()  # info writes nothing


def test_missing_model_is_one_line_error(capsys, clip_10s, tmp_path):
    code, out, err = run(capsys, "infer", clip_10s, "--model", tmp_path / "nope.onnx")
    assert code != 0 and out == ""
    assert err.strip().count("\n") == 0 and "nope.onnx" in err


def test_conflicting_window_is_a_usage_error(capsys, tiny_models, clip_10s):
    code, _, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--window", 30)
    assert code == 2 and "--window 30 does not match" in err


def test_init_model_writes_a_labelled_checkpoint_and_onnx(capsys, tmp_path):
    ckpt, onnx_path = tmp_path / "m.safetensors", tmp_path / "m.onnx"
    code, _, err = run(capsys, "init-model", ckpt, "--arch", "musicvideo", "--width", "0.0625", "--no-mmtm", "--onnx", onnx_path)
    assert code == 0, err
    for path in (ckpt, onnx_path):
        code, out, _ = run(capsys, "info", path, "--json")
        info = json.loads(out)
        assert (info["arch"], info["width"], info["mmtm"], info["precision"]) == ("musicvideo", 0.0625, False, "fp32")
        assert "random initialisation" in info["trained_on"]


def test_init_model_refuses_a_pickle_style_name(capsys, tmp_path):
    code, _, err = run(capsys, "init-model", tmp_path / "m.pt")
    assert code == 2 and "m.pt: checkpoints are .safetensors files" in err


def test_standin_command_writes_the_mved_layout(capsys, tmp_path):
    code, _, err = run(capsys, "standin", tmp_path / "d", "--clips-per-class", 1, "--splits", "test", "--seconds", 1, "-q")
    assert code == 0, err
    clips = sorted(p.relative_to(tmp_path / "d").parts[:2] for p in (tmp_path / "d").rglob("*.mp4"))
    assert clips == [("test", c) for c in ("Excited", "Fear", "Neutral", "Relaxation", "Sad", "Tension")]
    assert "wrote 6 clips" in err and "not MVED" in err


def test_info_on_a_plan_reads_its_sidecar(capsys, tiny_models, tmp_path):
    from mvrt.runtime.engines.sidecar import BatchProfile, EngineSidecar, write_sidecar

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\0" * 64)
    write_sidecar(plan, EngineSidecar(
        plan_sha256="00" * 32, plan_bytes=64, tensorrt_version="10.3.0", gpu_name="Orin",
        compute_capability="8.7", precision="fp16", batch=BatchProfile(1, 4, 8), onnx_sha256="ab" * 32,
        model_config=tiny_models["slowfast"].config))
    code, out, err = run(capsys, "info", plan, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["arch"] == "slowfast" and info["format"] == "plan"
    assert info["engine"]["precision"] == "fp16" and info["engine"]["batch"] == {"min": 1, "opt": 4, "max": 8}
    assert info["precision"] == "fp16"


def test_a_stalled_input_times_out_and_the_next_one_runs(capsys, tiny_models, clip_10s, tmp_path):
    fifo = tmp_path / "nobody-writes.mp4"
    os.mkfifo(fifo)
    code, out, err = run(capsys, "infer", fifo, clip_10s, "--model", tiny_models["slowfast"].onnx,
                         "--format", "json", "--read-timeout", "1")
    assert code == 1
    first, second = json.loads(out)["videos"]
    assert not first["ok"] and second["ok"] and len(second["windows"]) == 3
    assert f"mvrt: error: {fifo}: no data for 1 s (read_timeout_seconds=1); the source stalled" in err.splitlines()


def test_damaged_packets_are_skipped_counted_and_reported(capsys, tiny_models, clip_10s, tmp_path, caplog):
    from media_factory import remux_damaged

    damaged = remux_damaged(clip_10s, tmp_path / "damaged.mkv", {("audio", 100): "garbage", ("audio", 150): "zero"})
    code, out, err = run(capsys, "infer", damaged, "--model", tiny_models["slowfast"].onnx, "--format", "json")
    assert code == 0, err
    (video,) = json.loads(out)["videos"]
    assert video["ok"] and len(video["windows"]) == 3
    assert 1 <= video["undecodable_packets"] <= 2
    assert any(f"{damaged}: skipped {video['undecodable_packets']} undecodable audio packet(s)" in m
               for m in caplog.messages)
    code, out, _ = run(capsys, "infer", damaged, "--model", tiny_models["slowfast"].onnx)
    assert f"note: {video['undecodable_packets']} undecodable packet(s) skipped (damaged media)" in out
