import json

import numpy as np
import pytest

from mvrt.api import load_model
from mvrt.bundled import default_checkpoint_path, default_model_path
from mvrt.cli import main
from mvrt.config import CLASSES
from mvrt.standin import generate_standin


def test_infer_without_model_uses_the_bundled_model_and_says_what_it_learned_from(capsys, clip_10s):
    code = main(["infer", str(clip_10s), "--format", "json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["path"] == str(default_model_path())
    assert "stand-in data, not MVED" in doc["model"]["trained_on"]
    assert "bundled demo model" in err


def test_bundled_model_recognises_fresh_stand_in_clips(tmp_path):
    summary = generate_standin(tmp_path / "fresh", clips_per_class=1, seconds=8.0, seed=123, splits=("test",), progress=False)
    with load_model(default_model_path()) as model:
        assert model.config.arch == "slowfast" and "stand-in" in model.config.trained_on
        labels = [model.classify(clip.video_path).label for clip in summary.clips]
    truth = [clip.label for clip in summary.clips]
    correct = np.mean([a == b for a, b in zip(labels, truth)])
    assert sorted(set(truth)) == sorted(CLASSES)
    assert correct >= 5 / 6, list(zip(truth, labels))


def test_the_bundled_checkpoint_on_torch_reads_a_clip_as_the_bundled_onnx_does(clip_10s):
    """The shipped checkpoint runs on the torch backend and gives the ONNX model's reading."""
    pytest.importorskip("torch")
    with load_model(default_checkpoint_path()) as checkpoint, load_model(default_model_path()) as exported:
        assert (checkpoint.backend, exported.backend) == ("torch", "onnxruntime")
        assert exported.config.contract == 2  # the bundled ONNX takes uint8 video; the checkpoint is the network
        assert checkpoint.config == exported.config.replace(contract=1)
        a, b = checkpoint.classify(clip_10s), exported.classify(clip_10s)
    assert a.label == b.label
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
