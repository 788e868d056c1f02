"""`mvrt infer --audio FILE --video FILE` and folders in the authors' layout: sound and picture in two files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from mvrt.cli import main

pytest.importorskip("torch")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _copy_stream(src: Path, dst: Path, kind: str) -> Path:
    """`dst` with only the first `kind` stream of `src`, packets copied (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = getattr(inp.streams, kind)[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def halves(tmp_path_factory, clip_10s):
    """clip_10s split into an audio-only .m4a and a video-only .mp4."""
    folder = tmp_path_factory.mktemp("halves")
    return _copy_stream(clip_10s, folder / "song.m4a", "audio"), _copy_stream(clip_10s, folder / "song.mp4", "video")


def _reading(doc: dict, index: int = 0) -> np.ndarray:
    return np.array([list(w["probabilities"].values()) for w in doc["videos"][index]["windows"]])


def test_a_pair_reads_as_the_muxed_file(capsys, tiny_models, clip_10s, halves):
    audio, video = halves
    model = tiny_models["slowfast"].onnx
    code, out, err = run(capsys, "infer", clip_10s, "--model", model, "--format", "json", "-q")
    assert code == 0, err
    muxed = json.loads(out)
    code, out, err = run(capsys, "infer", "--audio", audio, "--video", video, "--model", model, "--format", "json", "-q")
    assert code == 0, err
    paired = json.loads(out)
    (result,) = paired["videos"]
    assert (result["path"], result["audio_path"]) == (str(video), str(audio))
    np.testing.assert_allclose(_reading(paired), _reading(muxed), atol=1e-5)
    assert result["label"] == muxed["videos"][0]["label"]


def test_a_pair_and_positional_inputs_together(capsys, tiny_models, clip_10s, halves, tmp_path):
    audio, video = halves
    target = tmp_path / "out.csv"
    code, _, err = run(capsys, "infer", clip_10s, "--audio", audio, "--video", video, "--model",
                       tiny_models["slowfast"].onnx, "--format", "csv", "-o", target, "-q")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    videos = [r for r in rows if r["kind"] == "video"]
    assert [(r["path"], r["audio_path"]) for r in videos] == [(str(clip_10s), ""), (str(video), str(audio))]
    code, out, _ = run(capsys, "infer", "--audio", audio, "--video", video, "--model", tiny_models["slowfast"].onnx,
                       "-q")
    assert code == 0 and out.splitlines()[0] == f"== {video} (audio: {audio})"


def test_a_folder_in_the_authors_layout_pairs_by_stem(capsys, tiny_models, halves, tmp_path):
    import shutil

    audio, video = halves
    root = tmp_path / "test" / "Sad"
    (root / "audio").mkdir(parents=True)
    (root / "video").mkdir()
    shutil.copy(audio, root / "audio" / "clip1.m4a")
    shutil.copy(video, root / "video" / "clip1.mp4")
    code, out, err = run(capsys, "infer", tmp_path / "test", "--model", tiny_models["slowfast"].onnx, "--format",
                         "jsonl")
    assert code == 0, err
    (video_line,) = [json.loads(line) for line in out.splitlines() if json.loads(line)["type"] == "video"]
    assert video_line["path"] == str(root / "video" / "clip1.mp4")
    assert video_line["audio_path"] == str(root / "audio" / "clip1.m4a")
