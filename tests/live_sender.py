#!/usr/bin/env python
"""Stream a clip live, for tests: remux its first video + first audio stream (no re-encode).

    python tests/live_sender.py CLIP --to DEST [--speed X] [--loops N] [--hole START:SECONDS]
        [--stall-after SECONDS] [--stall-hold SECONDS] [--sessions N] [--pause SECONDS]
        [--pts-offset-seconds S] [--max-seconds T]

DEST: ``stdout`` | ``fifo:PATH`` | ``tcp-listen:127.0.0.1:PORT`` | ``tcp:127.0.0.1:PORT`` |
``udp:127.0.0.1:PORT`` | ``rtsp:127.0.0.1:PORT/PATH`` (RTSP push: RTP, not MPEG-TS). Every other
destination carries MPEG-TS. Packets are paced by DTS: media second i leaves at wall second
i / speed (speed 0: as fast as possible). At exit one JSON line goes to stderr:
``{"packets", "sessions", "sent_seconds", "session_packets", "reason", "wall_start", "wall_end"}``
(wall_* are epoch seconds, time.time()). A reader that goes
away (broken pipe, connection reset) is a normal exit (code 0, reason "reader-closed").
Imports PyAV only (nothing from mvrt).
"""

from __future__ import annotations

import argparse
import errno
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction

_READER_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNREFUSED}
_TICK_SECONDS = 0.05  # longest single sleep, so every wait re-checks the deadline


@dataclass
class Clip:
    """The clip's packets in DTS order (bytes + timing in each stream's time base)."""

    time_bases: list  # per chosen stream (video first), Fraction seconds per tick
    packets: list  # (stream position, pts, dts, duration, keyframe, bytes, media_seconds)
    seconds: float  # length of one loop in media seconds


@dataclass
class Report:
    packets: int = 0
    sessions: int = 0
    sent_seconds: float = 0.0
    session_packets: list = field(default_factory=list)
    reason: str = "done"
    wall_start: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _printed: bool = False

    def emit(self) -> None:
        """Print the one JSON line to stderr, once (the watchdog and the main path race)."""
        with self._lock:
            if self._printed:
                return
            self._printed = True
            line = {"packets": self.packets, "sessions": self.sessions, "sent_seconds": round(self.sent_seconds, 3),
                    "session_packets": self.session_packets, "reason": self.reason,
                    "wall_start": round(self.wall_start, 3), "wall_end": round(time.time(), 3)}
            sys.stderr.write(json.dumps(line) + "\n")
            sys.stderr.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--to", required=True)
    parser.add_argument("--speed", type=float, default=4.0, help="media seconds per wall second; 0 = unpaced")
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--hole", default=None, help="START:SECONDS of media to drop")
    parser.add_argument("--stall-after", type=float, default=None, help="media seconds, then stop sending")
    parser.add_argument("--stall-hold", type=float, default=30.0, help="wall seconds to hold the stalled output")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--pause", type=float, default=1.0, help="wall seconds between sessions")
    parser.add_argument("--pts-offset-seconds", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-clock limit of the whole run")
    args = parser.parse_args(argv)
    if args.speed < 0 or args.loops < 1 or args.sessions < 1 or args.max_seconds <= 0:
        parser.error("--speed must be >= 0, --loops and --sessions >= 1, --max-seconds > 0")
    args.hole = _parse_hole(parser, args.hole)
    try:
        parse_to(args.to)
    except SystemExit as error:
        parser.error(str(error))
    return args


def _parse_hole(parser: argparse.ArgumentParser, text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        start, seconds = (float(part) for part in text.split(":"))
    except ValueError:
        parser.error(f"--hole {text!r}: expected START:SECONDS (two numbers)")
    return start, seconds


class Deadline(Exception):
    """--max-seconds came while waiting for the reader."""


_TS_OPTIONS = {"flush_packets": "1", "pes_payload_size": "0"}  # muxer: every packet out at once


def parse_to(to: str) -> tuple[str, str]:
    """(kind, rest) of a --to value, checked."""
    kind, _, rest = to.partition(":")
    if kind in ("tcp-listen", "tcp", "udp") and rest:
        _host_port(rest)
    if (kind == "stdout" and not rest) or (kind in _KINDS and rest):
        return kind, rest
    raise SystemExit(f"--to {to!r}: expected stdout, fifo:PATH, tcp-listen:HOST:PORT, tcp:HOST:PORT, "
                     "udp:HOST:PORT or rtsp:HOST:PORT/PATH")


def _host_port(rest: str) -> tuple[str, int]:
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--to ...:{rest!r}: expected HOST:PORT")
    return host, int(port)


def connect(to: str, deadline: float):
    """Reach the reader: (url, muxer, muxer options, close). Raises Deadline.

    The waits that can block (FIFO without a reader, accept, connect) happen here in Python
    with bounded polls: PyAV opens an output's AVIO at the first mux *holding the GIL*, so a
    blocking FFmpeg open could not be interrupted, not even by our watchdog thread. We then
    hand FFmpeg the ready descriptor as ``pipe:FD``.
    """
    kind, rest = parse_to(to)
    if kind == "stdout":
        return "pipe:1", "mpegts", _TS_OPTIONS, lambda: None
    if kind == "udp":
        return f"udp://{rest}?pkt_size=1316", "mpegts", _TS_OPTIONS, lambda: None
    if kind == "rtsp":
        return f"rtsp://{rest}", "rtsp", {"rtsp_transport": "tcp"}, lambda: None
    if kind == "fifo":
        fd = _open_fifo(rest, deadline)
        return f"pipe:{fd}", "mpegts", _TS_OPTIONS, lambda: os.close(fd)
    sock = _accept(*_host_port(rest), deadline) if kind == "tcp-listen" else _connect_tcp(*_host_port(rest), deadline)
    return f"pipe:{sock.fileno()}", "mpegts", _TS_OPTIONS, lambda: _close_socket(sock)


_KINDS = ("fifo", "tcp-listen", "tcp", "udp", "rtsp")


def _open_fifo(path: str, deadline: float) -> int:
    """Open a named pipe for writing once a reader has it open (ENXIO until then)."""
    for _ in range(10_000_000):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno != errno.ENXIO:
                raise SystemExit(f"--to fifo:{path}: {error.strerror}") from None
            if not wait_until(time.monotonic() + 0.02, deadline):
                raise Deadline from None
            continue
        os.set_blocking(fd, True)
        return fd
    raise Deadline


def _accept(host: str, port: int, deadline: float):
    """Listen on host:port, accept one reader, stop listening (a restart refuses meanwhile)."""
    import socket

    with socket.create_server((host, port), reuse_port=False, backlog=1) as server:
        server.settimeout(_TICK_SECONDS)
        for _ in range(10_000_000):
            if time.monotonic() >= deadline:
                raise Deadline
            try:
                sock, _ = server.accept()
            except TimeoutError:
                continue
            sock.setblocking(True)
            return sock
    raise Deadline


def _connect_tcp(host: str, port: int, deadline: float):
    """Connect to a listening reader, retrying refusals until `deadline`."""
    import socket

    for _ in range(10_000_000):
        try:
            sock = socket.create_connection((host, port), timeout=1.0)
        except (ConnectionRefusedError, TimeoutError):
            if not wait_until(time.monotonic() + 0.05, deadline):
                raise Deadline from None
            continue
        sock.setblocking(True)
        return sock
    raise Deadline


def _close_socket(sock) -> None:
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the reader already went away
    sock.close()


def _first_streams(container) -> list:
    """The first video and the first audio stream of an open input, in that order."""
    picked = []
    for kind in ("video", "audio"):
        first = next((s for s in container.streams if s.type == kind), None)
        if first is not None:
            picked.append(first)
    return picked


def load_clip(path: str) -> Clip:
    """Read the chosen streams' packets into memory (test clips are small), in media-time order."""
    import av

    with av.open(path) as container:
        chosen = _first_streams(container)
        if not chosen:
            raise SystemExit(f"{path}: no audio or video stream")
        position = {s.index: i for i, s in enumerate(chosen)}
        time_bases = [s.time_base for s in chosen]
        raw = []
        for packet in container.demux(chosen):
            if not packet.size:
                continue  # the demuxer's flush packets
            stamp = packet.dts if packet.dts is not None else packet.pts
            raw.append((position[packet.stream.index], packet.pts, packet.dts, packet.duration or 0,
                        packet.is_keyframe, bytes(packet), float(stamp * packet.time_base)))
    if not raw:
        raise SystemExit(f"{path}: no packets")
    origin = min(r[6] for r in raw)
    packets = sorted((r[:6] + (r[6] - origin,) for r in raw), key=lambda r: r[6])
    return Clip(time_bases, packets, _loop_seconds(raw, time_bases))


def _loop_seconds(raw: list, time_bases: list) -> float:
    """Length of one loop: the longest stream's PTS span (first PTS to last PTS + duration).

    Every stream then continues without overlap (AAC priming packets have negative PTS); the
    shorter stream gets a small gap at each loop boundary instead.
    """
    spans = []
    for position, tb in enumerate(time_bases):
        stamps = [(r[1] if r[1] is not None else r[2], r[3]) for r in raw if r[0] == position]
        if stamps:
            spans.append(float((max(t + d for t, d in stamps) - min(t for t, _ in stamps)) * tb))
    return max(spans)


def open_clip_streams(path: str):
    """Reopen the input: output streams are made from live input streams. (container, streams)."""
    import av

    container = av.open(path)
    return container, _first_streams(container)


def start_muxer(url: str, muxer: str, options: dict, templates: list, deadline: float):
    """Open the muxer and write its header (RTSP connects here): retry refusals until `deadline`."""
    import av

    for _ in range(100_000):
        out = av.open(url, "w", format=muxer, options=options)
        try:
            streams = [out.add_stream_from_template(s) for s in templates]
            out.start_encoding()
            return out, streams
        except ConnectionRefusedError:
            out.close()
            if not wait_until(time.monotonic() + 0.05, deadline):
                raise Deadline from None
        except BaseException:
            out.close()
            raise
    raise Deadline


def reader_gone(error: BaseException) -> bool:
    return isinstance(error, (BrokenPipeError, ConnectionError)) or getattr(error, "errno", None) in _READER_GONE


def wait_until(wall: float, deadline: float) -> bool:
    """Sleep until monotonic `wall` (seconds); False when `deadline` comes first."""
    for _ in range(1_000_000):
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= wall:
            return True
        time.sleep(min(wall - now, deadline - now, _TICK_SECONDS))
    return False


def in_hole(seconds: float, hole: tuple[float, float] | None) -> bool:
    return hole is not None and hole[0] <= seconds < hole[0] + hole[1]


def send_session(args, clip: Clip, report: Report, deadline: float) -> str:
    """One opening of the destination: all loops of the clip (or until a stall). Returns the ending."""
    source, templates = open_clip_streams(args.clip)
    sent = 0
    try:
        url, muxer, options, close = connect(args.to, deadline)
        try:
            out, streams = start_muxer(url, muxer, options, templates, deadline)
            with out:
                reason, sent = _send_packets(args, clip, streams, report, time.monotonic(), deadline)
                if reason == "stalled":
                    wait_until(time.monotonic() + args.stall_hold, deadline)
        finally:
            close()
    except Deadline:
        reason = "max-seconds"
    finally:
        source.close()
        report.session_packets.append(sent)
    return reason


def _send_packets(args, clip: Clip, outs: list, report: Report, start: float, deadline: float) -> tuple[str, int]:
    import av

    sent = 0
    last_seconds = 0.0
    for loop in range(args.loops):
        base = loop * clip.seconds
        for position, pts, dts, duration, keyframe, data, media in clip.packets:
            media_seconds = base + media
            if args.stall_after is not None and media_seconds >= args.stall_after:
                return "stalled", sent
            if in_hole(media_seconds, args.hole):
                continue
            if args.speed > 0 and not wait_until(start + media_seconds / args.speed, deadline):
                return "max-seconds", sent
            stream = outs[position]
            tb = clip.time_bases[position]
            shift = round((Fraction(base) + Fraction(args.pts_offset_seconds)) / tb)
            packet = av.Packet(data)
            packet.pts = None if pts is None else pts + shift
            packet.dts = None if dts is None else dts + shift
            packet.duration, packet.time_base, packet.is_keyframe = duration, tb, keyframe
            packet.stream = stream
            stream.container.mux(packet)
            sent += 1
            report.packets += 1
            end_seconds = media_seconds + float(duration * tb)
            if end_seconds > last_seconds:
                report.sent_seconds += end_seconds - last_seconds
                last_seconds = end_seconds
    return "done", sent


def run(args, report: Report) -> None:
    clip = load_clip(args.clip)
    deadline = time.monotonic() + args.max_seconds
    for session in range(args.sessions):
        if session and not wait_until(time.monotonic() + args.pause, deadline):
            report.reason = "max-seconds"
            return
        report.sessions += 1
        try:
            report.reason = send_session(args, clip, report, deadline)
        except Exception as error:  # noqa: BLE001 - the reader leaving is an expected ending
            if not reader_gone(error):
                raise
            report.reason = "reader-closed"
            return
        if report.reason == "max-seconds":
            return


def _watchdog(report: Report, seconds: float) -> None:
    """Hard limit: a blocked open (FIFO without reader, listen without client) cannot outlive it."""
    def fire():
        report.reason = "max-seconds"
        report.emit()
        os._exit(0)

    timer = threading.Timer(seconds + 0.5, fire)
    timer.daemon = True
    timer.start()
    # Backstop in C (needs no GIL): should a call ever block holding the GIL, die anyway.
    faulthandler.dump_traceback_later(seconds + 5.0, exit=True)


class Terminated(BaseException):
    """SIGTERM: stop now, report, exit 0."""


def _on_term(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    _watchdog(report, args.max_seconds)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        run(args, report)
    except Terminated:
        report.reason = "terminated"
    except SystemExit as error:  # a one-line input error
        report.reason = f"error: {error}"
        raise
    except BaseException as error:  # noqa: BLE001 - report, then fail
        report.reason = f"error: {type(error).__name__}: {error}"
        report.emit()
        return 1
    finally:
        report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
