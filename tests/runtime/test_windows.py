import numpy as np
import pytest

from mvrt.errors import UsageError
from mvrt.runtime.windows import Window, plan_windows, slow_indices


def test_short_media_gets_one_window_spanning_its_duration():
    (w,) = plan_windows(12.5, 30.0)
    assert (w.start_seconds, w.window_seconds, w.span_seconds) == (0.0, 30.0, 12.5)
    times = w.frame_times(64)
    assert times[0] == pytest.approx(0.5 * 12.5 / 64)
    assert times[-1] == pytest.approx(12.5 - 0.5 * 12.5 / 64)


def test_exact_multiple_needs_no_extra_window():
    windows = plan_windows(90.0, 30.0)
    assert [w.start_seconds for w in windows] == [0.0, 30.0, 60.0]


def test_tail_gets_an_end_aligned_window():
    windows = plan_windows(185.0, 30.0)
    starts = [w.start_seconds for w in windows]
    assert starts == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 155.0]
    assert windows[-1].end_seconds == pytest.approx(185.0)
    assert [w.index for w in windows] == list(range(7))


def test_hop_makes_overlapping_windows():
    windows = plan_windows(60.0, 30.0, 10.0)
    assert [w.start_seconds for w in windows] == [0.0, 10.0, 20.0, 30.0]
    assert all(w.span_seconds == 30.0 for w in windows)


def test_frame_times_are_centred_in_equal_slots():
    w = Window(3, 60.0, 30.0, 30.0)
    times = w.frame_times(64)
    np.testing.assert_allclose(np.diff(times), 30.0 / 64)
    assert times[0] == pytest.approx(60.0 + 0.5 * 30.0 / 64)
    assert times.mean() == pytest.approx(75.0)


def test_slow_indices_follow_pyslowfast():
    np.testing.assert_array_equal(slow_indices(64, 8), [0, 9, 18, 27, 36, 45, 54, 63])


@pytest.mark.parametrize("window, hop, match", [(0.0, None, "^window_seconds"), (30.0, -1.0, "^hop_seconds")])
def test_bad_window_or_hop_is_a_usage_error(window, hop, match):
    with pytest.raises(UsageError, match=match):
        plan_windows(100.0, window, hop)
