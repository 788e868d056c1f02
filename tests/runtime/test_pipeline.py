import threading
import time
import tracemalloc

import numpy as np
import pytest

from mvrt.errors import UsageError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.window_reader import file_windows, iter_file_features
from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
from mvrt.runtime.results import VideoResult, WindowResult

pytest.importorskip("torch")


def _events(engine, paths, **cfg):
    return list(run_pipeline(engine, paths, PipelineConfig(**cfg)))


def _windows(events):
    return [e for e in events if isinstance(e, WindowResult)]


def _videos(events):
    return [e for e in events if isinstance(e, VideoResult)]


def test_windows_cover_the_clip_and_the_video_reading_is_their_time_weighted_mean(tiny_models, clip_10s):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        events = _events(engine, [clip_10s], batch_size=2)
    windows = _windows(events)
    assert [w.start_seconds for w in windows] == pytest.approx([0.0, 4.0, 6.0], abs=0.05)
    (video,) = _videos(events)
    assert video.ok and len(video.windows) == 3
    # [0,4] alone; [4,8] shares 6..8 with the end-aligned [6,10]: every second counts once.
    np.testing.assert_allclose(video.window_weights, [4.0, 3.0, 3.0], atol=0.1)
    np.testing.assert_allclose(video.probabilities, np.average([w.probabilities for w in windows], axis=0,
                                                               weights=video.window_weights))
    for w in windows:
        assert w.probabilities.sum() == pytest.approx(1.0)
        assert w.label == video.classes[int(np.argmax(w.logits))]


def test_pipeline_logits_equal_the_engine_on_the_shared_front_end(tiny_models, clip_10s):
    tm = tiny_models["slowfast"]
    with open_engine(tm.onnx) as engine:
        got = {w.index: w.logits for w in _windows(_events(engine, [clip_10s], batch_size=3))}
        windows = file_windows(clip_10s, engine.config)
        for window, feeds in iter_file_features(clip_10s, engine.config, windows):
            batch = {k: v[None] for k, v in feeds.items()}  # (1, ...) each
            np.testing.assert_allclose(got[window.index], engine.infer(batch)[0], atol=1e-5)


def test_results_do_not_depend_on_batch_size_or_backend(tiny_models, clip_10s):
    tm = tiny_models["slowfast"]
    with open_engine(tm.onnx) as engine:
        one = _windows(_events(engine, [clip_10s], batch_size=1))
        many = _windows(_events(engine, [clip_10s, clip_10s], batch_size=4))
    with open_engine(tm.checkpoint, backend="torch") as engine:
        ref = _windows(_events(engine, [clip_10s], batch_size=2))
    for a, b, c in zip(one, many, ref):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        np.testing.assert_allclose(a.logits, c.logits, atol=1e-4)
    assert len(many) == 2 * len(one)


def test_a_bad_file_is_reported_and_the_others_complete(tiny_models, clip_10s, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        videos = _videos(_events(engine, [clip_10s, bad, clip_10s], batch_size=4))
    assert [v.ok for v in videos] == [True, False, True]
    assert "broken.mp4" in videos[1].error and "\n" not in videos[1].error
    np.testing.assert_allclose(videos[0].probabilities, videos[2].probabilities, atol=1e-6)


def test_an_engine_failing_on_a_batch_fails_its_input_and_the_run_goes_on(tiny_models, clip_10s, tmp_path, caplog):
    """A backend error on one batch (a KServe server lost mid-run) fails the inputs in it, not the run."""
    from mvrt.errors import BackendError
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    class FailsOnSecondCall(OnnxRuntimeEngine):
        calls = 0

        def _infer(self, feeds):
            self.calls += 1
            if self.calls == 2:
                raise BackendError("the server at 127.0.0.1:9 went away")
            return super()._infer(feeds)

    import shutil

    onnx = tiny_models["slowfast"].onnx
    other = shutil.copy(clip_10s, tmp_path / "other.mp4")
    with open_engine(onnx) as engine:
        clean = _videos(_events(engine, [clip_10s]))[0]
    with FailsOnSecondCall(onnx) as engine:
        first, second = _videos(_events(engine, [clip_10s, other], batch_size=1))
    assert (first.path, second.path) == (str(clip_10s), str(other))
    assert not first.ok and first.error == "the server at 127.0.0.1:9 went away"
    assert second.ok
    np.testing.assert_allclose(second.probabilities, clean.probabilities, atol=1e-6)
    assert "1 window(s) of" in caplog.text and "failed: the server at 127.0.0.1:9 went away" in caplog.text


def test_a_window_the_model_was_not_built_for_is_refused(tiny_models, clip_10s):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        with pytest.raises(UsageError, match="^window_seconds 30 does not match the model's 4 s"):
            _events(engine, [clip_10s], window_seconds=30.0)


def test_closing_early_stops_the_decoder_thread(tiny_models, clip_10s):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        events = run_pipeline(engine, [clip_10s] * 5, PipelineConfig(batch_size=1, queue_windows=1))
        next(e for e in events if isinstance(e, WindowResult))
        events.close()
    deadline = time.monotonic() + 5
    while any(t.name == "mvrt-decode" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "mvrt-decode" for t in threading.enumerate())


class _SlowEngine:
    """A real engine that takes its time: the decoder always fills the queue (the worst case)."""

    def __init__(self, engine, seconds: float):
        self._engine, self._seconds = engine, seconds
        self.config, self.max_batch = engine.config, engine.max_batch

    def infer(self, feeds):
        time.sleep(self._seconds)
        return self._engine.infer(feeds)


def test_peak_memory_does_not_grow_with_video_length(tiny_models, clip_10s, clip_40s):
    def peak(path):
        with open_engine(tiny_models["slowfast"].onnx) as engine:
            tracemalloc.start()
            # the bound is the queue; a slow engine makes both clips (7 and 37 windows) reach it
            events = _events(_SlowEngine(engine, 0.1), [path], batch_size=2, queue_windows=2, hop_seconds=1.0)
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return len(_windows(events)), top

    short_windows, short_peak = peak(clip_10s)
    long_windows, long_peak = peak(clip_40s)
    assert long_windows >= 3 * short_windows
    assert long_peak < 1.5 * short_peak, (short_peak, long_peak)
