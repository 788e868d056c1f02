"""Packets that never need decoding: droppable, and shown at no target (exact skipping).

A packet may stay away from the decoder when (a) no other frame depends on it (the codec's
`droppable` test, e.g. an H.264 non-reference picture) and (b) its frame is displayed at no
target: with p its presentation time and q the next presentation time in the stream, no
target t has p <= t + eps < q. Packets arrive in decode order, so q is looked for among the
packets already passed and a lookahead of the next ones; any later presentation time bounds
q from above, which only widens the interval checked, so a q found anywhere is safe.

Never skipped: packets without a PTS (or near one without), a PTS shared with another packet,
the stream's earliest frame since the start or a seek (it is shown at targets before it),
the latest one (it stays on screen), and discarded or corrupt packets.

`decode_packets` then sends the packets to the decoder one at a time, tolerantly (audio and
video alike): empty packets never reach it (an empty packet drains a decoder, after which
nothing decodes), a packet it rejects is counted and passed over, and only a long run of
rejected packets ends the stream early.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Callable, Iterator, Protocol

import av
import numpy as np

# H.264 reorders at most 16 frames; the lookahead reaches well past that.
LOOKAHEAD_PACKETS = 32
# After this many undecodable packets in a row, a stream is treated as ended.
MAX_CONSECUTIVE_UNDECODABLE = 32
# Widens the display interval checked, beyond the decoder's own tolerance (float rounding).
_SLACK_SECONDS = 1e-6

_log = logging.getLogger(__name__)


class SkipPlan:
    """The targets (sorted seconds in the stream's timeline) and the codec's droppability test."""

    def __init__(self, targets, droppable: Callable[[bytes], bool], eps_seconds: float):
        # An array of sorted seconds, or an object whose `times` grow by `extend_to(seconds)`.
        self._source = targets if hasattr(targets, "extend_to") else None
        self._times = None if self._source is not None else np.asarray(targets, np.float64)
        self.droppable = droppable
        self.eps_seconds = eps_seconds
        self.enabled = True  # cleared when frames turn up without timestamps

    def displayed(self, start_seconds: float, next_seconds: float) -> bool:
        """Is a frame shown from `start_seconds` until `next_seconds` picked by any target?"""
        low = start_seconds - self.eps_seconds - _SLACK_SECONDS
        high = next_seconds - self.eps_seconds + _SLACK_SECONDS
        times = self._times
        if self._source is not None:
            self._source.extend_to(high)
            times = self._source.times
        i = int(np.searchsorted(times, low, side="left"))
        return i < times.size and times[i] < high


def _seconds(packet: "av.Packet") -> float | None:
    """Presentation time exactly as `frame.time` computes it from the same PTS."""
    if packet.pts is None or packet.time_base is None:
        return None
    base = packet.time_base
    return float(packet.pts) * base.numerator / base.denominator


def _next_seconds(seconds: float, neighbours) -> float | None:
    """Smallest presentation time after `seconds` among the neighbours; None if unsafe."""
    found = math.inf
    for other, shown in neighbours:
        if other is None or other == seconds:
            return None  # timing unknown nearby, or two frames at one instant
        if shown and seconds < other < found:
            found = other
    return found if found < math.inf else None


class _Lookahead:
    """Demuxed packets not yet handed on, read ahead; a read error waits until they are."""

    def __init__(self, packets: Iterator["av.Packet"], size: int = LOOKAHEAD_PACKETS):
        self.packets, self.queue, self.size = packets, deque(), size
        self.error: BaseException | None = None
        self.ended = False

    def fill(self) -> None:
        while not self.ended and len(self.queue) <= self.size:
            try:
                packet = next(self.packets)
            except StopIteration:
                self.ended = True
                break
            except av.error.FFmpegError as exc:
                self.error, self.ended = exc, True
                break
            self.queue.append((packet, _seconds(packet), not (packet.is_discard or packet.is_corrupt)))

    def timing(self):
        """(seconds, shown) of the queued packets that carry data (not the final flush)."""
        return ((s, shown) for packet, s, shown in self.queue if packet.size)


def packets_to_decode(
    packets: Iterator["av.Packet"], plan: SkipPlan, on_skip: Callable[[], None], lookahead: int = LOOKAHEAD_PACKETS
) -> Iterator["av.Packet"]:
    """`packets` (decode order) minus those that need no decoding; `on_skip()` per skipped one.

    A shorter `lookahead` (live sources: less waiting for packets not yet received) only
    skips fewer packets; what it skips is as safe.
    """
    ahead = _Lookahead(packets, lookahead)
    history: deque = deque(maxlen=LOOKAHEAD_PACKETS)  # (seconds, shown) of packets passed
    earliest_sent = math.inf
    while True:
        ahead.fill()
        if not ahead.queue:
            break
        packet, seconds, shown = ahead.queue.popleft()
        if not packet.size:  # the flush packet at the end of the stream
            yield packet
            continue
        droppable = plan.droppable(bytes(packet))  # every packet: the test may track state
        if droppable and plan.enabled and shown and seconds is not None and earliest_sent < seconds:
            following = _next_seconds(seconds, [*history, *ahead.timing()])
            if following is not None and not plan.displayed(seconds, following):
                on_skip()
                history.append((seconds, shown))
                continue
        if seconds is not None:
            earliest_sent = min(earliest_sent, seconds)
        history.append((seconds, shown))
        yield packet
    if ahead.error is not None:
        raise ahead.error


class PacketCounts(Protocol):
    """Counters that `decode_packets` updates (AudioDecodeStats, VideoDecodeStats)."""

    undecodable_packets: int
    empty_packets: int


def demux(container, stream) -> Iterator["av.Packet"]:
    """`container.demux(stream)`, ending with a flush packet even where PyAV fails to make one.

    PyAV builds its final flush packets from FFmpeg's stream count, which can outgrow its own
    stream list when a stream appears mid-file (MPEG-TS): an IndexError after the last packet.
    """
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except IndexError:
            flush = av.Packet()
            flush.time_base = stream.time_base  # stamps the frames drained by it
            yield flush
            return
        yield packet


class Feed:
    """Where a decoder's packets come from: its own demux of the container (the default), or
    `packets(stream)` of a `SharedDemux` that feeds both decoders; `on_send(packet)` is told of
    each packet the decoder really gets (see `decode_packets`)."""

    def __init__(self, packets: Callable | None = None, on_send: Callable | None = None):
        self._shared, self.on_send = packets, on_send

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def packets(self, container, stream) -> Iterator["av.Packet"]:
        return demux(container, stream) if self._shared is None else self._shared(stream)


def _decode_one(stream, packet: "av.Packet") -> list | None:
    """The frames of one packet; None when the decoder rejects it."""
    try:
        return stream.decode(packet)
    except av.error.FFmpegError:
        return None


def decode_packets(
    stream,
    packets: Iterator["av.Packet"],
    counts: PacketCounts,
    path: str,
    on_send: Callable[["av.Packet"], None] | None = None,
) -> Iterator["av.frame.Frame"]:
    """Frames of `packets` (demux order, ending with the flush packet), one packet at a time.

    Empty packets are counted and held back; the last one, PyAV's final flush, drains the
    decoder (its time base stamps the drained frames). A packet the decoder rejects is
    counted and passed over; MAX_CONSECUTIVE_UNDECODABLE in a row end the stream (logged).
    Errors reading the packets (demuxing) propagate. `on_send(packet)` is called for each
    packet just before the decoder gets it (arrival bookkeeping of live sources).
    """
    held = None  # the latest empty packet: the flush if nothing follows
    failures = 0
    for packet in packets:
        if held is not None:  # an empty packet with more after it: not the flush
            counts.empty_packets += 1
            held = None
        if not packet.size:
            held = packet
            continue
        if on_send is not None:
            on_send(packet)
        frames = _decode_one(stream, packet)
        if frames is None:
            counts.undecodable_packets += 1
            failures += 1
            if failures >= MAX_CONSECUTIVE_UNDECODABLE:
                _log.warning(
                    "%s: gave up on the %s stream after %d undecodable packets in a row",
                    path, stream.type, failures,
                )
                return
            continue
        failures = 0
        yield from frames
    if held is not None:
        frames = _decode_one(stream, held)
        if frames is None:
            counts.undecodable_packets += 1
        yield from frames or ()
