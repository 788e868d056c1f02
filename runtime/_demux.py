"""One pass over an input's packets, shared by its audio and its video decoder (DESIGN §9).

`SharedDemux` reads the container once (`container.demux(audio, video)`) and hands each
stream's packets to its own consumer: the audio decoder (a prefetch thread) and the video
decoder (the caller's thread) pull `packets(stream)` independently; whichever needs a packet
that has not been read yet reads the next one from the container, and packets of the other
stream wait in its queue. The queues stay short because both decoders advance window by
window; a container that interleaves its streams so badly that one queue holds more than
`MAX_QUEUED_BYTES` is a MediaError rather than unbounded memory.

Every packet is stamped with its arrival (time.monotonic()) so that a window's latency can be
measured from the arrival of the last packet its decoders needed: `sent(packet)` is called
when a decoder really sends a packet, and `last_sent_arrival[kind]` is the arrival of the
latest one sent.

For live sources a `LiveClock` makes each stream's timestamps monotonic before any decoder sees
them (MPEG-TS wrap-around, resets and jumps; see its docstring).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Iterator

import av

from mvrt.runtime.probe import media_error

_log = logging.getLogger(__name__)

# At most this many bytes of packets wait for a consumer that lags behind the other.
MAX_QUEUED_BYTES = 256 << 20
# Arrival stamps kept for packets handed out but not (yet) sent to a decoder.
_ARRIVALS_KEPT = 4096
# MPEG-TS timestamps wrap at 2**33 ticks of 90 kHz.
_TS_WRAP_TICKS = 1 << 33
# A timestamp going back more than this is a reset or a wrap, not reordering jitter.
_BACKWARD_SECONDS = 1.0
# A forward jump up to this long is a real hole (filled); a longer one is a discontinuity.
MAX_HOLE_SECONDS = 60.0


class LiveClock:
    """Per-stream offsets that keep a live source's timestamps monotonic.

    Decode timestamps (presentation ones when a packet has none) are followed per stream:
    a step back of more than 2**32 ticks of 90 kHz that one wrap explains is a wrap (2**33
    ticks added); any other step back over a second, or a step forward over
    MAX_HOLE_SECONDS, is a discontinuity (a reset, a splice): the stream continues one packet
    duration after its last timestamp. Smaller forward steps are real holes and stay, to be
    filled by the decoders and reported as gaps. The same offset moves PTS and DTS.
    """

    def __init__(self, path: str):
        self.path = path
        self._last: dict[int, float] = {}  # stream index -> last (corrected) time, seconds
        self._step: dict[int, float] = {}  # stream index -> last packet duration, seconds
        self._offset: dict[int, int] = {}  # stream index -> ticks added
        self.discontinuities = 0
        self.wraps = 0
        # The latest discontinuity: (jump seconds, shift seconds). The other stream's matching
        # jump gets the same shift, so that audio and video stay in step across a reset.
        self._recent: tuple[float, float] | None = None
        self.latest: dict[str, float] = {}  # stream type -> latest corrected time, seconds

    def offset_seconds(self, stream) -> float:
        return float(self._offset.get(stream.index, 0) * stream.time_base) if stream.time_base else 0.0

    def correct(self, packet: "av.Packet") -> None:
        """Move `packet`'s PTS and DTS onto the monotonic clock of its stream."""
        stream, base = packet.stream, packet.time_base
        raw = packet.dts if packet.dts is not None else packet.pts
        if raw is None or base is None or stream is None:
            return
        offset = self.offset_ticks(stream.index, stream.type, base, raw, packet.duration)
        if packet.pts is not None:
            packet.pts += offset
        if packet.dts is not None:
            packet.dts += offset

    def offset_ticks(self, key: int, kind: str, base, raw: int, duration: int | None = None) -> int:
        """Ticks to add to a timestamp `raw` (time base `base`) of stream `key` (`kind`: audio/video)."""
        offset = self._offset.get(key, 0)
        now = float((raw + offset) * base)
        last = self._last.get(key)
        if last is not None:
            offset = self._rebase(key, raw, offset, now, last, base)
            now = float((raw + offset) * base)
        self._offset[key] = offset
        if duration:
            self._step[key] = float(duration * base)
        self._last[key] = now if last is None else max(last, now)
        self.latest[kind] = self._last[key]
        return offset

    def drift_seconds(self) -> float | None:
        """Latest audio time minus latest video time (None until both have been seen)."""
        if "audio" not in self.latest or "video" not in self.latest:
            return None
        return self.latest["audio"] - self.latest["video"]

    def _rebase(self, key: int, raw: int, offset: int, now: float, last: float, base) -> int:
        back, ahead = last - now, now - last
        if back <= _BACKWARD_SECONDS and ahead <= MAX_HOLE_SECONDS:
            return offset
        wrap = int(round(_TS_WRAP_TICKS / 90000 / float(base)))
        if back > _BACKWARD_SECONDS and abs(back - _TS_WRAP_TICKS / 90000) < MAX_HOLE_SECONDS:
            self.wraps += 1
            return offset + wrap
        jump = now - last
        recent = self._recent
        if recent is not None and abs(recent[0] - jump) < _BACKWARD_SECONDS:
            self._recent = None  # the other stream's side of the same discontinuity
            return offset + int(round(recent[1] / float(base)))
        shift = last + self._step.get(key, 0.0) - now
        self._recent = (jump, shift)
        self.discontinuities += 1
        _log.warning("%s: timestamps jump by %+.2f s; the media clock continues across the discontinuity",
                     self.path, jump)
        return offset + int(round(shift / float(base)))


class SharedDemux:
    """The packets of one container's first audio and first video stream, read once."""

    def __init__(self, container, audio, video, path: str, clock: LiveClock | None = None,
                 stop: threading.Event | None = None):
        self.path = path
        self._stop = stop  # set: the run is ending; both streams end at the next packet
        self._streams = {audio.index: audio, video.index: video}
        self._source = container.demux(audio, video)
        self._queues: dict[int, deque] = {audio.index: deque(), video.index: deque()}
        self._bytes = {audio.index: 0, video.index: 0}
        self._flushed: set[int] = set()
        self._cond = threading.Condition()
        self._reading = False
        self._ended = False
        self._error: BaseException | None = None
        self._clock = clock
        self._io = threading.Lock()  # held while reading the container
        self._closed = False
        self._arrivals: OrderedDict[int, float] = OrderedDict()
        self.last_sent_arrival: dict[str, float | None] = {"audio": None, "video": None}
        self.last_read_arrival: float | None = None
        self.packets_read = 0

    def packets(self, stream) -> Iterator["av.Packet"]:
        """`stream`'s packets in demux order, ending with a flush (empty) packet."""
        key = stream.index
        while True:
            packet = self._take(key)
            if packet is None:
                return
            yield packet

    def sent(self, packet: "av.Packet", kind: str) -> None:
        """A decoder sent `packet`: it is the latest packet that `kind`'s output depends on."""
        arrival = self._arrivals.pop(id(packet), None)
        if arrival is not None:
            self.last_sent_arrival[kind] = arrival

    def release(self, wait_seconds: float | None) -> bool:
        """Stop reading; True once no read is in progress (the container may be closed).

        Waits up to `wait_seconds` (None: for ever) for a read in another thread to return;
        False when it did not, and then the container must be left to that thread.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        acquired = self._io.acquire(timeout=-1 if wait_seconds is None else max(0.0, wait_seconds))
        if acquired:
            self._io.release()
        return acquired

    def _take(self, key: int):
        while True:
            with self._cond:
                while not self._queues[key] and not self._ended and self._reading and not self._closed:
                    self._cond.wait()
                if self._closed or (self._stop is not None and self._stop.is_set()):
                    return None
                queue = self._queues[key]
                if queue:
                    packet = queue.popleft()
                    self._bytes[key] -= packet.size
                    return packet
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return None
                self._reading = True
            try:
                self._read_one()
            finally:
                with self._cond:
                    self._reading = False
                    self._cond.notify_all()

    def _read_one(self) -> None:
        """Read one packet from the container (outside the lock) and queue it for its stream."""
        with self._io:
            self._read_locked()

    def _read_locked(self) -> None:
        if self._closed:
            return
        try:
            packet = next(self._source)
        except StopIteration:
            packet = None
        except IndexError:  # PyAV's flush packets for a stream that appeared mid-file
            packet = None
        except Exception as exc:  # noqa: BLE001 - handed to both decoders, each reports it
            with self._cond:
                self._error, self._ended = exc, True
            return
        arrival = time.monotonic()
        with self._cond:
            if packet is None:
                self._flush_all()
                self._ended = True
                return
            self._queue(packet, arrival)

    def _queue(self, packet: "av.Packet", arrival: float) -> None:
        stream = packet.stream
        key = stream.index if stream is not None else None
        if key not in self._queues:
            return
        if not packet.size:
            self._flushed.add(key)
        elif self._clock is not None:
            self._clock.correct(packet)
        self.packets_read += 1
        self.last_read_arrival = arrival
        self._arrivals[id(packet)] = arrival
        while len(self._arrivals) > _ARRIVALS_KEPT:
            self._arrivals.popitem(last=False)
        self._queues[key].append(packet)
        self._bytes[key] += packet.size
        if self._bytes[key] > MAX_QUEUED_BYTES:
            kind = self._streams[key].type
            self._error, self._ended = media_error(
                self.path,
                f"its audio and video are not interleaved (over {MAX_QUEUED_BYTES >> 20} MiB of {kind} "
                "packets waited for the other stream); remux it, e.g. with ffmpeg -i IN -c copy OUT.mp4",
            ), True

    def _flush_all(self) -> None:
        """End every stream with an empty packet (PyAV's own flush packets may be missing)."""
        for key, stream in self._streams.items():
            if key not in self._flushed:
                flush = av.Packet()
                flush.time_base = stream.time_base  # stamps the frames drained by it
                self._queues[key].append(flush)
                self._flushed.add(key)

    def first_seconds(self, limit_packets: int = 512) -> float | None:
        """The first timestamp of the source (reads and queues packets; before any consumer)."""
        for _ in range(limit_packets):
            for queue in self._queues.values():
                for packet in queue:
                    ticks = packet.pts if packet.pts is not None else packet.dts
                    if ticks is not None and packet.time_base is not None:
                        return float(ticks * packet.time_base)
            if self._ended:
                if self._error is not None:
                    raise self._error
                return None
            self._read_one()
        return None
