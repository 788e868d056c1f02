"""The live media clock (`_demux.LiveClock`): wraps, resets and jumps keep each stream monotonic."""

from fractions import Fraction

import pytest

from mvrt.runtime._demux import MAX_HOLE_SECONDS, LiveClock

TS = Fraction(1, 90000)
WRAP = 2**33


def _times(clock, key, kind, ticks, step=3600):
    """Corrected seconds of successive timestamps of one stream."""
    return [float((t + clock.offset_ticks(key, kind, TS, t, step)) * TS) for t in ticks]


def test_steady_timestamps_are_left_alone():
    clock = LiveClock("src")
    ticks = [1000 + 3600 * i for i in range(10)]
    assert _times(clock, 0, "video", ticks) == [float(t * TS) for t in ticks]
    assert clock.discontinuities == clock.wraps == 0


def test_a_wrap_of_the_33_bit_clock_adds_2_to_the_33_ticks():
    clock = LiveClock("src")
    before = [WRAP - 7200, WRAP - 3600]
    after = [0, 3600]
    times = _times(clock, 0, "video", before + after)
    assert clock.wraps == 1 and clock.discontinuities == 0
    assert times[2] == pytest.approx(float(WRAP * TS)) and times[3] - times[2] == pytest.approx(0.04)


def test_a_reset_continues_after_the_last_timestamp_for_both_streams_alike():
    clock = LiveClock("src")
    video = _times(clock, 0, "video", [90000 * 20 + 3600 * i for i in range(3)])  # 20.00, 20.04, 20.08
    audio = _times(clock, 1, "audio", [90000 * 20 + 1920 * i for i in range(3)], step=1920)
    reset_video = _times(clock, 0, "video", [900, 4500])  # timestamps start again near 0
    reset_audio = _times(clock, 1, "audio", [900, 2820], step=1920)
    assert clock.discontinuities == 1  # one discontinuity, seen by both streams
    assert reset_video[0] == pytest.approx(video[-1] + 0.04)
    assert reset_audio[0] - reset_video[0] == pytest.approx(0.0, abs=1e-9)  # the same shift: still in sync
    assert audio[-1] < reset_audio[0]


def test_a_short_hole_stays_and_a_huge_jump_is_a_discontinuity():
    clock = LiveClock("src")
    hole = _times(clock, 0, "video", [0, 3600, 3600 + 90000 * 3])
    assert hole[-1] - hole[-2] == pytest.approx(3.0)  # a real 3 s hole: filled and reported downstream
    jump = _times(clock, 0, "video", [3600 + 90000 * int(MAX_HOLE_SECONDS + 3600)])
    assert clock.discontinuities == 1 and jump[0] == pytest.approx(hole[-1] + 0.04)
