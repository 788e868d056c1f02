"""The lean install (`pip install .` alone: no torch, no onnx) runs inference and says what the
rest needs. CI runs this module in a venv of its own (`.ci/run`); where torch or onnx is
installed it skips, since it checks what happens without them."""

from __future__ import annotations

import importlib.util

import pytest

from media_factory import sine
from mvrt.cli import main
from mvrt.standin import write_clip

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None or importlib.util.find_spec("onnx") is not None,
    reason="checks the lean install: runs where neither torch nor onnx is installed (.ci/run's lean venv)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import numpy as np

    frames = np.zeros((24, 48, 64, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, 24, dtype=np.uint8)[:, None, None]
    return write_clip(tmp_path_factory.mktemp("lean") / "clip.mp4", sine(3.0, 22050, [0.3, 0.2]), 22050, frames, 8)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_infer_info_and_features_work_with_the_bundled_model(capsys, clip, tmp_path):
    code, out, err = run(capsys, "infer", clip, "--format", "json", "-q")
    assert code == 0 and '"ok": true' in out and '"precision": "fp32"' in out
    code, out, _ = run(capsys, "info", clip)
    assert code == 0 and "has_audio: True" in out
    code, _, err = run(capsys, "features", clip, "-o", tmp_path / "f.npz", "--audio-out", tmp_path / "w.wav")
    assert code == 0 and (tmp_path / "f.npz").is_file() and (tmp_path / "w.8000.wav").is_file(), err


@pytest.mark.parametrize("argv, needs", [
    (["init-model", "m.safetensors"], "pip install 'mvrt[torch]'"),
    (["export", "BUNDLED_CHECKPOINT", "--onnx", "out.onnx"], "pip install 'mvrt[torch]'"),
    (["train", "data"], "pip install 'mvrt[torch]'"),
    (["infer", "CLIP", "--model", "BUNDLED_CHECKPOINT"], "pip install 'mvrt[torch]'"),
])
def test_commands_that_need_torch_say_so_in_one_line(capsys, clip, tmp_path, monkeypatch, argv, needs):
    from mvrt.bundled import default_checkpoint_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    argv = [str(default_checkpoint_path()) if a == "BUNDLED_CHECKPOINT" else str(clip) if a == "CLIP" else a
            for a in argv]
    code, _, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.startswith("mvrt: error:")]
    assert code != 0 and len(lines) == 1 and needs in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out.onnx").exists()
