"""Result records: the whole-video reading weighted by the time each window covers, names, reprs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvrt.config import CLASSES
from mvrt.runtime.results import VideoResult, WindowResult, softmax, weighted_mean, window_weights
from mvrt.runtime.windows import plan_windows


def _window(index: int, start: float, end: float, probabilities, path: str = "clip.mp4") -> WindowResult:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    logits = np.log(np.clip(probabilities, 1e-12, None))
    return WindowResult(path, index, start, end, logits, probabilities, 1 / (1 + np.exp(-logits)),
                        CLASSES[int(np.argmax(probabilities))], CLASSES)


def _video(spans, probabilities) -> VideoResult:
    windows = tuple(_window(i, s, e, p) for i, ((s, e), p) in enumerate(zip(spans, probabilities)))
    return VideoResult("clip.mp4", windows, CLASSES)


def _spans(duration: float, window: float, hop: float | None = None) -> list[tuple[float, float]]:
    return [(w.start_seconds, w.end_seconds) for w in plan_windows(duration, window, hop)]


def _random_probabilities(count: int, seed: int = 0) -> np.ndarray:
    return softmax(np.random.default_rng(seed).normal(size=(count, len(CLASSES))))  # (N, C)


def test_the_end_aligned_window_does_not_count_its_overlap_twice():
    spans = _spans(70.0, 30.0, 30.0)
    assert spans == [(0.0, 30.0), (30.0, 60.0), (40.0, 70.0)]
    # [0,30] alone: 30 to window 0; [30,40] window 1 alone: 10; [40,60] shared by 1 and 2: 10 each;
    # [60,70] window 2 alone: 10.
    video = _video(spans, _random_probabilities(3))
    np.testing.assert_allclose(video.window_weights, [30.0, 20.0, 20.0], rtol=0, atol=1e-12)
    expected = (30 * video.windows[0].probabilities + 20 * video.windows[1].probabilities
                + 20 * video.windows[2].probabilities) / 70
    np.testing.assert_allclose(video.probabilities, expected, rtol=0, atol=1e-15)
    assert not np.allclose(video.probabilities, np.mean([w.probabilities for w in video.windows], axis=0))


def test_overlapping_hops_share_each_stretch_among_the_windows_over_it():
    # starts 0, 10, 20, 30, 40 (W 30 every 10 s on 70 s): stretches of 10 s covered by 1, 2, 3, 3, 3, 2, 1
    np.testing.assert_allclose(window_weights(*zip(*_spans(70.0, 30.0, 10.0))),
                               [10 + 5 + 10 / 3, 5 + 20 / 3, 10, 5 + 20 / 3, 10 + 5 + 10 / 3], atol=1e-12)
    # starts 0, 20, 40 and the end-aligned 45 on 75 s: cuts at 0 20 30 40 45 50 70 75
    spans = _spans(75.0, 30.0, 20.0)
    assert [s for s, _ in spans] == [0.0, 20.0, 40.0, 45.0]
    weights = window_weights(*zip(*spans))
    np.testing.assert_allclose(weights, [20 + 5, 5 + 10 + 2.5 + 5 / 3, 2.5 + 5 / 3 + 10, 5 / 3 + 10 + 5], atol=1e-12)
    assert weights.sum() == pytest.approx(75.0, abs=1e-12)  # every second counts once


def test_without_overlap_the_reading_is_exactly_the_plain_mean():
    probabilities = _random_probabilities(3, seed=1)
    video = _video(_spans(90.0, 30.0), probabilities)  # [0,30] [30,60] [60,90]
    np.testing.assert_array_equal(video.window_weights, [30.0, 30.0, 30.0])
    np.testing.assert_array_equal(video.probabilities, np.mean(probabilities, axis=0))  # bit for bit
    # boundaries that are not exact binary fractions: within 1e-12 of the plain mean
    many = _random_probabilities(30, seed=2)
    spans = [(i * 0.1, (i + 1) * 0.1) for i in range(30)]
    np.testing.assert_allclose(_video(spans, many).probabilities, np.mean(many, axis=0), rtol=0, atol=1e-12)


def test_a_single_window_weighs_the_media_it_covers():
    (span,) = _spans(12.0, 30.0)
    assert span == (0.0, 12.0)
    probabilities = _random_probabilities(1, seed=3)
    video = _video([span], probabilities)
    np.testing.assert_array_equal(video.window_weights, [12.0])
    np.testing.assert_array_equal(video.probabilities, probabilities[0])


def test_media_no_window_covers_counts_for_none():
    np.testing.assert_array_equal(window_weights([0.0, 20.0], [10.0, 30.0]), [10.0, 10.0])
    assert window_weights([], []).shape == (0,)
    np.testing.assert_allclose(weighted_mean([[0.2, 0.8], [0.6, 0.4]], [0.0, 0.0]), [0.4, 0.6], atol=1e-15)


def test_the_label_follows_the_weighted_mean():
    a, b = CLASSES.index("Sad"), CLASSES.index("Fear")
    rows = np.zeros((3, len(CLASSES)))
    rows[0, [a, b]] = 0.1, 0.9  # window 0 stands alone for 30 s
    rows[1:, a], rows[1:, b] = 0.75, 0.25  # windows 1 and 2 overlap by 20 s
    video = _video(_spans(70.0, 30.0, 30.0), rows)
    assert CLASSES[int(np.argmax(rows.mean(axis=0)))] == "Sad"  # the plain mean would say Sad
    assert video.label == "Fear"  # (30*0.9 + 40*0.25) / 70 = 0.53 > (3 + 30) / 70 = 0.47
    assert video.by_class["Fear"] == pytest.approx(37 / 70)


def test_json_carries_each_windows_weight_and_names_probabilities():
    video = _video(_spans(70.0, 30.0, 30.0), _random_probabilities(3, seed=4))
    data = json.loads(json.dumps(video.to_dict()))
    assert [w["weight_seconds"] for w in data["windows"]] == [30.0, 20.0, 20.0]
    assert set(data["probabilities"]) == set(CLASSES) and "audio_path" not in data
    assert "weight_seconds" not in video.windows[0].to_dict()  # a streamed window line: not final yet
    window = video.windows[1]
    assert list(window.by_class) == list(CLASSES)
    assert window.by_class["Sad"] == window.probabilities[CLASSES.index("Sad")]


def test_a_live_summary_keeps_its_running_mean():
    mean = _random_probabilities(1, seed=5)[0]
    live = VideoResult("udp://127.0.0.1:5000", (), CLASSES, window_count=7, mean_probabilities=mean)
    np.testing.assert_array_equal(live.probabilities, mean)
    assert live.count == 7 and live.label == CLASSES[int(np.argmax(mean))]
    assert live.window_weights.shape == (0,)


def test_reprs_read_well():
    rows = np.full((3, len(CLASSES)), 0.02)
    rows[:, CLASSES.index("Sad")], rows[:, CLASSES.index("Fear")] = 0.8, 0.1
    video = _video(_spans(70.0, 30.0, 30.0), rows)
    assert repr(video) == ("VideoResult(path='clip.mp4', label='Sad', windows=3 (0.00-70.00 s), "
                           "top: Sad 0.80, Fear 0.10, Excited 0.02)")
    assert repr(video.windows[2]) == ("WindowResult(path='clip.mp4', index=2, 40.00-70.00 s, label='Sad', "
                                      "top: Sad 0.80, Fear 0.10, Excited 0.02)")
    failed = VideoResult("bad.mp4", (), CLASSES, "bad.mp4: no such file", audio_path="bad.wav")
    assert repr(failed) == "VideoResult(path='bad.mp4', audio_path='bad.wav', error='bad.mp4: no such file')"
    assert failed.label is None and failed.to_dict() == {"path": "bad.mp4", "audio_path": "bad.wav", "ok": False,
                                                         "error": "bad.mp4: no such file"}
