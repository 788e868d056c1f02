import subprocess
import sys

import numpy as np
import pytest

from mvrt.api import load_model
from mvrt.errors import MediaError


def test_classify_and_iter_windows_agree(tiny_models, clip_10s):
    with load_model(tiny_models["slowfast"].onnx, batch_size=2) as model:
        assert model.backend == "onnxruntime" and model.config.arch == "slowfast"
        video = model.classify(clip_10s)
        windows = list(model.iter_windows(clip_10s))
    assert [w.index for w in windows] == [0, 1, 2]
    np.testing.assert_allclose(video.probabilities, np.mean([w.probabilities for w in windows], axis=0), atol=1e-7)
    assert "probabilities=<(6,)>" in repr(windows[0]) and "windows=3" in repr(video)


def test_a_bad_file_raises_a_one_line_media_error(tiny_models, tmp_path):
    bad = tmp_path / "empty.mkv"
    bad.write_bytes(b"")
    with load_model(tiny_models["slowfast"].onnx) as model:
        with pytest.raises(MediaError, match="empty.mkv"):
            model.classify(bad)
        with pytest.raises(MediaError, match="empty.mkv"):
            list(model.iter_windows(bad))


def test_inference_on_onnx_never_imports_torch(tiny_models, clip_10s):
    code = (
        "import sys, mvrt.api, mvrt.cli\n"
        f"m = mvrt.api.load_model({str(tiny_models['musicvideo'].onnx)!r})\n"
        f"r = m.classify({str(clip_10s)!r})\n"
        "print(r.label is not None, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"], out.stderr
