"""`mvrt infer --ray local` (a local Ray cluster) and `--resume` end to end, against the plain local run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from mvrt.cli import main

pytest.importorskip("torch")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _records(path) -> tuple[dict, dict, int]:
    """(window probabilities by (path, index), video records by path, model lines) of a jsonl output."""
    windows, videos, models = {}, {}, 0
    for line in open(path, encoding="utf-8"):
        record = json.loads(line)
        if record["type"] == "window":
            windows[(record["path"], record["window"])] = np.array(list(record["probabilities"].values()))
        elif record["type"] == "video":
            assert record["path"] not in videos, f"{record['path']} twice"
            videos[record["path"]] = record
        elif record["type"] == "model":
            models += 1
    return windows, videos, models


@pytest.fixture()
def archive(tmp_path, clip_10s):
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(clip_10s, folder / f"{name}.mp4")
    (folder / "bad.mp4").write_bytes(b"not a video at all")
    return folder


def _require_ray():
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("MVRT_REQUIRE_RAY") == "1":
            pytest.fail("MVRT_REQUIRE_RAY=1 but ray is not installed (pip install 'mvrt[ray]')")
        pytest.skip("ray is not installed (pip install 'mvrt[ray]')")


def test_ray_local_reads_what_the_local_run_reads_and_a_bad_file_is_one_error_row(
        capsys, tiny_models, archive, tmp_path):
    _require_ray()
    onnx = tiny_models["slowfast"].onnx
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    code, _, err = run(capsys, "infer", archive, "--model", onnx, "--format", "jsonl", "-o", local, "-q")
    assert code == 1, err
    code, _, err = run(capsys, "infer", archive, "--model", onnx, "--format", "jsonl", "-o", remote, "-q",
                       "--ray", "local", "--ray-cpus", 2)
    assert code == 1, err
    assert "Traceback" not in err
    want, want_videos, _ = _records(local)
    got, got_videos, models = _records(remote)
    assert models == 1 and sorted(got) == sorted(want) and len(got) == 9
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5)
    bad = str(archive / "bad.mp4")
    assert [p for p, v in got_videos.items() if not v["ok"]] == [bad]
    assert got_videos[bad]["error"] == want_videos[bad]["error"]
    assert f"mvrt: error: {bad}: not a readable audio/video file" in err


def test_resume_runs_only_what_the_output_lacks_and_appends(capsys, tiny_models, archive, tmp_path):
    onnx = tiny_models["slowfast"].onnx
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    code, _, err = run(capsys, "infer", archive, "--model", onnx, "--format", "jsonl", "-o", full, "-q")
    assert code == 1, err
    lines = full.read_text().splitlines(keepends=True)
    second_video = [i for i, line in enumerate(lines) if '"type": "video"' in line][1]
    part.write_text("".join(lines[:second_video + 1]) + lines[second_video + 1][:25])  # stopped mid-line
    code, _, err = run(capsys, "infer", archive, "--model", onnx, "--format", "jsonl", "-o", part, "-q", "--resume")
    assert "--resume: 2 of 4 input(s) already in" in err
    windows, videos, models = _records(part)
    want_windows, want_videos, _ = _records(full)
    assert models == 1 and sorted(videos) == sorted(want_videos)
    assert code == 1  # a.mp4 and b.mp4 were done; bad.mp4 and c.mp4 ran, and bad.mp4 failed again
    assert sorted(windows) == sorted(want_windows)
    for key in want_windows:
        np.testing.assert_allclose(windows[key], want_windows[key], atol=1e-6)
    code, _, err = run(capsys, "infer", archive, "--model", onnx, "--format", "jsonl", "-o", part, "-q", "--resume")
    assert code == 0 and "4 of 4 input(s) already in" in err
    assert _records(part)[1] == videos


@pytest.mark.parametrize("argv, message", [
    (["--ray-cpus", "2"], "--ray-cpus applies with --ray only"),
    (["--engine-actors", "2"], "--engine-actors applies with --ray only"),
    (["--ray", "127.0.0.1:6379", "--ray-cpus", "2"], "--ray-cpus sizes the cluster --ray local starts"),
    (["--ray", "local", "--jobs", "2"], "--jobs applies to a local run"),
    (["--ray", "local", "--isolate"], "--isolate applies to a local run"),
    (["--resume"], "--resume reads and appends to a jsonl output: add --format jsonl --output FILE"),
])
def test_scaleout_options_that_do_not_go_together_are_usage_errors(capsys, tiny_models, archive, argv, message):
    code, _, err = run(capsys, "infer", archive, "--model", tiny_models["slowfast"].onnx, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
