"""live_sender.py read back with plain PyAV on every transport (loopback only)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

av = pytest.importorskip("av")

from live_helpers import (  # noqa: E402
    RTSP_LISTEN_OPTIONS,
    UDP_OPTIONS,
    Background,
    free_port,
    make_clip,
    make_fifo,
    read_stream,
    sender,
    sender_command,
    wait_exit,
)

SECONDS = 4.0
FPS = 25
WRAP_SECONDS = 2**33 / 90000  # 95443.7176: MPEG-TS 33-bit PTS at 90 kHz


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("live") / "clip4.mp4", SECONDS, fps=FPS)


def assert_full_clip(got, *, video_slack: int = 2, rtsp: bool = False) -> None:
    """Both streams, about SECONDS of packets, no known duration (live)."""
    assert got.error is None or isinstance(got.error, av.error.ExitError), got.error
    assert sorted(got.streams) == ["audio", "video"]
    assert got.duration is None
    assert abs(got.count("video") - SECONDS * FPS) <= video_slack
    for kind in ("video", "audio"):
        times = got.times(kind)
        assert times[-1] - times[0] == pytest.approx(SECONDS, abs=0.2 if not rtsp else 0.3), kind


def assert_live(got, report, speed: float) -> None:
    """Packets arrived spread over the paced send, the first one well before the sender ended."""
    arrivals = [a for _, _, a in got.packets]
    assert report["wall_end"] - arrivals[0] > 0.5 * SECONDS / speed
    assert arrivals[-1] - arrivals[0] > 0.6 * SECONDS / speed


def test_stdout_pipe_is_live_with_both_streams(clip):
    with sender(clip, "stdout", speed=2) as proc:
        got = read_stream(f"pipe:{proc.stdout.fileno()}", format="mpegts", max_seconds=10)
        assert wait_exit(proc, 5) == 0
    assert_full_clip(got)
    assert got.error is None  # the sender closing is a clean end of stream
    assert_live(got, proc.report, speed=2)
    assert proc.report["reason"] == "done" and proc.report["packets"] == len(got.packets)
    assert got.start_time == pytest.approx(33556, abs=2000)  # first PTS; the muxer shifts DTS to 0


def test_stdout_as_file_object(clip):
    with sender(clip, "stdout", speed=0) as proc:
        got = read_stream(proc.stdout, format="mpegts", max_seconds=10)
    assert_full_clip(got)


def test_fifo(clip, tmp_path):
    fifo = make_fifo(tmp_path / "live.ts")
    with sender(clip, f"fifo:{fifo}", speed=4) as proc:
        got = read_stream(str(fifo), format="mpegts", max_seconds=10)
        assert wait_exit(proc, 5) == 0
    assert_full_clip(got)
    assert_live(got, proc.report, speed=4)


def test_tcp_sender_listens(clip):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", speed=4) as proc:
        got = read_stream(f"tcp://127.0.0.1:{port}", format="mpegts", timeout=(5, 3), retry_seconds=5)
        assert wait_exit(proc, 5) == 0
    assert_full_clip(got)
    assert got.error is None
    assert_live(got, proc.report, speed=4)


def test_tcp_reader_listens(clip):
    port = free_port()
    reader = Background(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=10000", format="mpegts", timeout=(10, 3))
    with sender(clip, f"tcp:127.0.0.1:{port}", speed=4) as proc:
        got = reader.result(15)
        assert wait_exit(proc, 5) == 0
    assert_full_clip(got)
    assert got.error is None
    assert_live(got, proc.report, speed=4)


def test_udp_ends_only_by_read_timeout(clip):
    port = free_port()
    reader = Background(f"udp://127.0.0.1:{port}", format="mpegts", options=UDP_OPTIONS, timeout=(5, 1))
    time.sleep(0.2)  # bound before the first datagram: UDP has no replay
    with sender(clip, f"udp:127.0.0.1:{port}", speed=4) as proc:
        got = reader.result(15)
    assert_full_clip(got)
    assert isinstance(got.error, av.error.ExitError)  # PyAV's read timeout, not TimeoutError
    assert time.time() - proc.report["wall_end"] < 3
    assert_live(got, proc.report, speed=4)


def test_rtsp_listen(clip):
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    reader = Background(url, format="rtsp", options=RTSP_LISTEN_OPTIONS, timeout=(10, 3))
    with sender(clip, f"rtsp:127.0.0.1:{port}/live", speed=4) as proc:
        got = reader.result(15)
        assert wait_exit(proc, 5) == 0
    assert_full_clip(got, rtsp=True)
    assert got.error is None  # the pusher's TEARDOWN / close ends the demux cleanly
    assert_live(got, proc.report, speed=4)


def test_rtsp_listen_needs_listen_timeout():
    port = free_port()
    with pytest.raises(av.error.OverflowError, match="out of range"):
        av.open(f"rtsp://127.0.0.1:{port}/live", format="rtsp", options={"rtsp_flags": "listen"}, timeout=2)


def test_hole_leaves_a_real_gap(clip):
    with sender(clip, "stdout", speed=0, hole="1.5:1") as proc:
        got = read_stream(proc.stdout, format="mpegts", max_seconds=10)
    for kind in ("video", "audio"):
        assert got.largest_gap(kind) == pytest.approx(1.0, abs=0.1), kind
        gap_end = max(b for a, b in zip(got.times(kind), got.times(kind)[1:]) if b - a > 0.5)
        assert gap_end == pytest.approx(2.55, abs=0.1), kind  # later timestamps unchanged
    assert got.times("video")[-1] == pytest.approx(4.0, abs=0.05)
    assert got.count("video") == pytest.approx(SECONDS * FPS - FPS, abs=2)


def test_loops_continue_timestamps(clip):
    with sender(clip, "stdout", speed=0, loops=2) as proc:
        got = read_stream(proc.stdout, format="mpegts", max_seconds=10)
    assert got.count("video") == 2 * SECONDS * FPS
    assert got.largest_gap("video") < 0.1
    assert got.times("video")[-1] - got.times("video")[0] == pytest.approx(2 * SECONDS, abs=0.1)


def test_two_sessions_over_tcp_listen(clip):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", speed=8, sessions=2, pause=0.5) as proc:
        first = read_stream(f"tcp://127.0.0.1:{port}", format="mpegts", timeout=(5, 3), retry_seconds=5)
        second = read_stream(f"tcp://127.0.0.1:{port}", format="mpegts", timeout=(5, 3), retry_seconds=5)
        assert wait_exit(proc, 5) == 0
    for got in (first, second):
        assert_full_clip(got)
        assert got.error is None
    assert second.packets[0][2] - first.packets[-1][2] >= 0.4  # the pause between connections
    assert proc.report["sessions"] == 2 and len(proc.report["session_packets"]) == 2


def test_stall_keeps_connection_open_until_read_timeout(clip):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", speed=4, stall_after=2, stall_hold=5) as proc:
        got = read_stream(f"tcp://127.0.0.1:{port}", format="mpegts", timeout=(5, 0.7), retry_seconds=5)
        timed_out_at = time.time()
        assert proc.poll() is None  # still holding the connection open
    assert isinstance(got.error, av.error.ExitError)
    assert got.times("video")[-1] == pytest.approx(2.0, abs=0.15)
    # The demuxer holds each stream's last PES until the next one starts, and hands those over
    # when the read fails: so the final packets "arrive" at the timeout, the others ~0.7 s before.
    arrivals = [a for _, _, a in got.packets]
    assert timed_out_at - arrivals[-1] < 0.1
    before = max(a for a in arrivals if a < timed_out_at - 0.3)
    assert timed_out_at - before == pytest.approx(0.7, abs=0.35)


def test_reader_closing_is_a_normal_exit(clip):
    with sender(clip, "stdout", speed=4) as proc:
        with av.open(proc.stdout, format="mpegts") as container:
            next(p for p in container.demux() if p.size)
        proc.stdout.close()
        assert wait_exit(proc, 5) == 0
    assert proc.report["reason"] == "reader-closed"


def test_max_seconds_bounds_a_fifo_without_reader(clip, tmp_path):
    fifo = make_fifo(tmp_path / "nobody.ts")
    started = time.monotonic()
    with sender(clip, f"fifo:{fifo}", max_seconds=0.5) as proc:
        assert wait_exit(proc, 5) == 0
    assert time.monotonic() - started < 4
    assert proc.report["reason"] == "max-seconds" and proc.report["packets"] == 0


def _raw_video_pts(data: bytes) -> list[int]:
    """PES PTS (90 kHz ticks, as written) of the first elementary stream's PID in TS bytes."""
    found, pid_seen = [], None
    for i in range(0, len(data) - 187, 188):
        p = data[i : i + 188]
        if p[0] != 0x47 or not p[1] & 0x40 or not (p[3] >> 4) & 1:
            continue
        pid = ((p[1] & 0x1F) << 8) | p[2]
        offset = 4 + (1 + p[4] if (p[3] >> 4) & 2 else 0)
        pes = p[offset:]
        if pes[:3] != b"\0\0\1" or not pes[7] & 0x80:
            continue
        pid_seen = pid if pid_seen is None else pid_seen
        if pid == pid_seen:
            b = pes[9:14]
            found.append(((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1)
    return found


def test_pts_offset_wraps_in_the_muxer_and_libavformat_unwraps(clip, tmp_path):
    out = tmp_path / "wrap.ts"
    offset = WRAP_SECONDS - 2.0  # wraps 2 s into the stream
    with open(out, "wb") as sink:
        subprocess.run(sender_command(clip, "stdout", speed=0, pts_offset_seconds=offset), stdout=sink,
                       stderr=subprocess.DEVNULL, timeout=20, check=True)
    raw = _raw_video_pts(out.read_bytes())
    assert raw[0] > 2**33 - 3 * 90000 and min(raw) < 90000  # the written PTS went back to ~0
    with open(out, "rb") as f:
        unwrapped = read_stream(f, format="mpegts")
    with open(out, "rb") as f:
        wrapped = read_stream(f, format="mpegts", options={"correct_ts_overflow": "0"})
    times = [t for k, t, _ in unwrapped.packets if k == "video"]
    assert times[0] == pytest.approx(-2.0, abs=0.1)  # within 60 s of the wrap: shifted negative
    assert all(b > a - 0.2 for a, b in zip(times, times[1:]))  # no jump back
    raw_times = [t for k, t, _ in wrapped.packets if k == "video"]
    assert raw_times[0] == pytest.approx(offset, abs=0.1) and raw_times[-1] < 3.0


def test_bad_arguments_fail_with_one_line(clip):
    done = subprocess.run([sys.executable, *sender_command(clip, "tcp:nohost")[1:]], capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 2
    assert "expected HOST:PORT" in done.stderr
    done = subprocess.run(sender_command(clip, "stdout", hole="abc"), capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "--hole 'abc'" in done.stderr
