import ast
import gc
import logging
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
    assert [w.start_seconds for w in windows] == [0.0, 4.0, 6.0]  # 4 s windows, the last end-aligned
    # [4, 6] is window 1's alone, [6, 8] is shared with window 2: weights 4, 3, 3 (every second once)
    np.testing.assert_allclose(video.window_weights, [4.0, 3.0, 3.0], atol=1e-9)
    weighted = (4 * windows[0].probabilities + 3 * windows[1].probabilities + 3 * windows[2].probabilities) / 10
    np.testing.assert_allclose(video.probabilities, weighted, atol=1e-7)
    assert video.by_class == {name: float(p) for name, p in zip(video.classes, video.probabilities)}
    assert windows[1].by_class["Sad"] == windows[1].probabilities[video.classes.index("Sad")]
    assert "4.00-8.00 s" in repr(windows[1]) and "top: " in repr(windows[1])
    assert "windows=3 (0.00-10.00 s)" in repr(video) and f"label={video.label!r}" in repr(video)


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
        with pytest.raises(UsageError, match="^hop_seconds must be positive") as caught:
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


README_SNIPPET = """\
import mvrt

with mvrt.load_model() as model:                 # the bundled demo model
    video = model.classify("clip.mp4")
    print(video.label, video.by_class)
    for window in model.iter_windows("clip.mp4"):
        print(window.start_seconds, window.label, window.by_class["Sad"])
"""


def test_the_readme_snippet_runs_as_written_with_the_bundled_model(tmp_path, monkeypatch, capsys, caplog):
    from shared_fixtures import _moving_clip

    import mvrt.api

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mvrt.api, "_warned_demo", False)
    _moving_clip(tmp_path / "clip.mp4", 4.0)  # shorter than the demo model's 30 s: one window
    with caplog.at_level(logging.WARNING, logger="mvrt"):
        exec(compile(README_SNIPPET, "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    label, by_class = lines[0].split(" ", 1)
    probabilities = ast.literal_eval(by_class)
    assert list(probabilities) == list(mvrt.CLASSES) and label == max(probabilities, key=probabilities.get)
    assert sum(probabilities.values()) == pytest.approx(1.0)
    start, window_label, sad = lines[1].split()
    assert float(start) == 0.0 and window_label == label and float(sad) == pytest.approx(probabilities["Sad"])
    assert caplog.text.count("bundled demo model") == 1 and "not MVED" in caplog.text


def test_load_model_without_a_path_takes_the_bundled_model_and_warns_once(monkeypatch, caplog):
    import mvrt.api
    from mvrt.bundled import default_model_path

    monkeypatch.setattr(mvrt.api, "_warned_demo", False)
    with caplog.at_level(logging.WARNING, logger="mvrt"):
        with mvrt.load_model() as first, mvrt.load_model() as second:
            assert first.path == second.path == str(default_model_path())
            assert "stand-in" in first.config.trained_on
    assert caplog.text.count("using the bundled demo model") == 1


def test_mvrt_load_model_is_the_api_function_and_import_mvrt_stays_cheap():
    code = (
        "import sys, mvrt\n"
        "heavy = [m for m in ('numpy', 'av', 'onnxruntime', 'torch', 'mvrt.api') if m in sys.modules]\n"
        "import mvrt.api\n"
        "print(heavy, mvrt.load_model is mvrt.api.load_model, mvrt.MediaPair is mvrt.api.MediaPair)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True", "True"], out.stderr
    import mvrt

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        mvrt.nothing  # noqa: B018
    assert "load_model" in dir(mvrt)


def test_the_api_docstring_names_functions_that_exist():
    import dataclasses
    import inspect

    import mvrt.api

    import re

    import mvrt.runtime.results as results

    doc = mvrt.api.__doc__
    owners = {"mvrt": mvrt, "model": mvrt.api.Model, "Model": mvrt.api.Model, "video": results.VideoResult,
              "VideoResult": results.VideoResult, "window": results.WindowResult, "pair": results.VideoResult}
    used = re.findall(r"\b(mvrt|model|Model|video|VideoResult|window|pair)\.(\w+)", doc)
    assert len(used) > 10
    for owner, name in used:
        target = owners[owner]
        fields = {f.name for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else set()
        assert name in fields or hasattr(target, name), f"{owner}.{name}"
    for name in ("by_class", "window_weights", "probabilities", "classes"):
        assert f".{name}" in doc
    assert inspect.signature(mvrt.api.load_model).parameters["path"].default is None
    assert "audio" in inspect.signature(mvrt.api.Model.classify).parameters
    assert "audio" in inspect.signature(mvrt.api.Model.iter_windows).parameters
