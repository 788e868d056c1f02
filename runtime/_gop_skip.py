"""Whole groups of pictures that no target shows, never decoded: the one-pass reading's seek.

In the one demux pass the video decoder cannot seek (the audio shares the packets), so where
windows are far apart it passes over the stretch between them instead: packets whose next target
is still `MIN_SKIP_SECONDS` or more ahead are held back, from their keyframe on, and when the
next keyframe arrives with no target in between, the held ones are dropped. A target's frame
is the last frame with PTS <= the target (plus a tolerance), so a group of pictures with no
target between its keyframe and the next is shown at none: dropping it leaves the chosen
frames exactly as a seek past it would (closed groups, as keyframes in these streams are). Packets near a target, or
without a timestamp, are passed on at once, so dense windows (and live sources, where holding
back would add latency) are not affected.
"""

from __future__ import annotations

from typing import Callable, Iterator

# Hold packets back only while the next target is at least this far ahead (as the seek rule).
MIN_SKIP_SECONDS = 1.0


def _seconds(packet) -> float | None:
    if packet.pts is None or packet.time_base is None:
        return None
    base = packet.time_base
    return float(packet.pts) * base.numerator / base.denominator


def skip_gops(
    packets: Iterator, next_target: Callable[[float], float], on_skip: Callable[[int], None], eps_seconds: float
) -> Iterator:
    """`packets` (decode order) minus the groups of pictures that no target shows.

    `next_target(t)` is the first target at or after t; `on_skip(count)` is told how many
    packets a dropped group had. A group runs from a keyframe K1 to the next keyframe K2; it
    is shown at no target when no target lies in [K1 - eps, K2 - eps).
    """
    held: list = []
    start = None  # seconds of the held group's keyframe
    for packet in packets:
        seconds = _seconds(packet) if packet.size else None
        if held and packet.size and packet.is_keyframe and seconds is not None and \
                next_target(start - eps_seconds) >= seconds - eps_seconds:
            on_skip(len(held))
            held, start = [], None
        far = seconds is not None and next_target(seconds - eps_seconds) - seconds >= MIN_SKIP_SECONDS
        if far and (held or packet.is_keyframe):
            if not held:
                start = seconds
            held.append(packet)
            continue
        if held:
            yield from held
            held, start = [], None
        yield packet
    yield from held
