import gc
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mvrt.api import load_model
from mvrt.errors import MediaError, UsageError


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


def _mvrt_threads():
    return [t for t in threading.enumerate() if t.name.startswith("mvrt-")]


def _no_mvrt_threads_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _mvrt_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _mvrt_threads()


def test_an_error_keeps_its_class(tiny_models, clip_10s):
    with load_model(tiny_models["slowfast"].onnx, hop_seconds=-1.0) as model:
        with pytest.raises(UsageError, match="--hop must be positive") as caught:
            model.classify(clip_10s)
    assert type(caught.value) is UsageError  # not flattened into a MediaError


@pytest.mark.parametrize("isolate", [False, True])
def test_the_api_runs_isolated_with_the_same_result(tiny_models, clip_10s, tmp_path, isolate):
    # batch 1: how many windows share a batch depends on timing, and changes the last bits
    with load_model(tiny_models["slowfast"].onnx, isolate=isolate, read_timeout_seconds=5.0, batch_size=1) as model:
        video = model.classify(clip_10s)
        with pytest.raises(MediaError, match="missing.mp4: no such file"):
            model.classify(tmp_path / "missing.mp4")
    with load_model(tiny_models["slowfast"].onnx, batch_size=1) as model:
        reference = model.classify(clip_10s)
    np.testing.assert_array_equal(video.probabilities, reference.probabilities)


def test_a_closed_or_collected_iterator_ends_the_decode_threads(tiny_models, clip_40s):
    with load_model(tiny_models["slowfast"].onnx) as model:
        windows = model.iter_windows(clip_40s)
        next(windows)
        assert _mvrt_threads()
        windows.close()
        assert _no_mvrt_threads_within(10)
        windows = model.iter_windows(clip_40s)
        next(windows)
        del windows
        gc.collect()
        assert _no_mvrt_threads_within(10)
