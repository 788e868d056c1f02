"""Live sources end to end (DESIGN §9): a sender subprocess streams a clip, mvrt reads it live.

Loopback only (127.0.0.1); every sender runs under a wall-clock limit and is killed in a
finally; every read has a read timeout. The reference is the same clip read as a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mvrt.api
from live_helpers import free_port
from mvrt.runtime.events import SourceEvent
from mvrt.runtime.pipeline import PipelineConfig
from mvrt.runtime.results import VideoResult, WindowResult

SENDER = Path(__file__).resolve().parents[1] / "live_sender.py"
CLIP_SECONDS = 12.0
TIMEOUT = 20.0  # read timeout of every live read here


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_bound(port: int, proto: str = "tcp", seconds: float = 30.0) -> None:
    """Wait (bounded) until something listens on 127.0.0.1:`port` (TCP) or is bound to it (UDP).

    Reads /proc/net/{tcp,udp} rather than connecting: a probe connection would be taken for
    the reader by a sender that accepts one.
    """
    wanted = f"0100007F:{port:04X}"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(f"/proc/net/{proto}") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[1] == wanted and (proto == "udp" or fields[3] == "0A"):
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound to 127.0.0.1:{port}/{proto} after {seconds} s")


@contextlib.contextmanager
def sender(clip: Path, to: str, *options: str, stdout=None, max_seconds: float = 60.0):
    """The sender subprocess; yields (Popen, report dict filled in when it has exited)."""
    report: dict = {}
    proc = subprocess.Popen(
        [sys.executable, str(SENDER), str(clip), "--to", to, "--max-seconds", str(max_seconds), *options],
        stdout=stdout, stderr=subprocess.PIPE,
    )
    try:
        yield proc, report
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        lines = [line for line in err.decode(errors="replace").splitlines() if line.startswith("{")]
        if lines:
            report.update(json.loads(lines[-1]))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from shared_fixtures import _moving_clip

    return _moving_clip(tmp_path_factory.mktemp("live") / "clip.mp4", CLIP_SECONDS, fps=25, seed=3)


@pytest.fixture(scope="module")
def model(tiny_models):
    with mvrt.api.load_model(tiny_models["slowfast"].onnx, batch_size=1, read_timeout_seconds=TIMEOUT) as m:
        yield m


@pytest.fixture(scope="module")
def sent_file(clip) -> Path:
    """Exactly what the sender sends (MPEG-TS), as a file: the reference read by the file path.

    (MPEG-TS keeps AAC's priming samples that the MP4's edit list hides, so its time 0 is the
    MP4's -46 ms: the clip as sent, not the MP4, is the same media.)
    """
    path = clip.with_suffix(".ts")
    with open(path, "wb") as out:
        subprocess.run([sys.executable, str(SENDER), str(clip), "--to", "stdout", "--speed", "0"],
                       stdout=out, stderr=subprocess.DEVNULL, check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def file_windows(model, sent_file) -> dict[float, WindowResult]:
    return {round(w.start_seconds, 3): w for w in model.iter_windows(sent_file)}


def _windows(events) -> list[WindowResult]:
    return [e for e in events if isinstance(e, WindowResult)]


def _agree(live: list[WindowResult], reference: dict[float, WindowResult]) -> None:
    """Same labels and probabilities within 1e-3 as the file's windows at the same starts."""
    assert live, "no live window"
    for w in live:
        want = reference[round(w.start_seconds, 3)]
        assert w.label == want.label, f"window at {w.start_seconds} s"
        assert np.max(np.abs(w.probabilities - want.probabilities)) <= 1e-3, f"window at {w.start_seconds} s"


def _collect(stream, arrivals: list | None = None) -> list:
    events = []
    for event in stream:
        events.append(event)
        if arrivals is not None:
            arrivals.append(time.time())
    return events


# Pushes a clip to URL (both streams) or, given two, video to the first and audio to the second.
_PUSHER = """
import sys, time, av
clip, fmt, speed, urls = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
deadline = time.monotonic() + 60
with av.open(clip) as inp:
    v, a = inp.streams.video[0], inp.streams.audio[0]
    opened = [av.open(url, "w", format=fmt) for url in urls]
    outs = {v.index: opened[0], a.index: opened[-1]}
    streams = {s.index: outs[s.index].add_stream_from_template(s) for s in (v, a)}
    start = time.monotonic()
    for packet in inp.demux(v, a):
        if packet.dts is None or time.monotonic() > deadline:
            continue
        wait = float(packet.dts * packet.time_base) / speed - (time.monotonic() - start)
        if wait > 0:
            time.sleep(min(wait, 1.0))
        index = packet.stream.index
        packet.stream = streams[index]
        outs[index].mux(packet)
    for out in opened:
        out.close()
"""


@contextlib.contextmanager
def _pusher(clip: Path, fmt: str, speed: float, *urls: str):
    proc = subprocess.Popen([sys.executable, "-c", _PUSHER, str(clip), fmt, str(speed), *urls],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _read_while_pushing(stream, port: int, proto: str, push) -> list:
    """The events of a listening `stream`, read in a thread while `push()` (a context manager) sends."""
    events: list = []
    reader = threading.Thread(target=lambda: events.extend(_collect(stream)), daemon=True)
    reader.start()
    wait_bound(port, proto)  # mvrt listens (or is bound) before the first byte is sent
    with push():
        reader.join(timeout=40)
    assert not reader.is_alive()
    return events


def test_stdin_pipe_gives_windows_while_the_sender_sends_and_agrees_with_the_file(clip, tiny_models, file_windows):
    with sender(clip, "stdout", "--speed", "3", stdout=subprocess.PIPE) as (proc, report):
        mvrt_proc = subprocess.Popen(
            [sys.executable, "-m", "mvrt.cli", "infer", "-", "--model", str(tiny_models["slowfast"].onnx),
             "--read-timeout", str(TIMEOUT)],
            stdin=proc.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        proc.stdout.close()
        first_window_at = None
        lines = []
        for line in mvrt_proc.stdout:
            lines.append(json.loads(line))
            if lines[-1]["type"] == "window" and first_window_at is None:
                first_window_at = time.time()
        code = mvrt_proc.wait(timeout=60)
        proc.wait(timeout=30)
    assert code == 0, mvrt_proc.stderr.read()
    assert first_window_at is not None and first_window_at < report["wall_end"] - 0.5  # while still sending
    types = [line["type"] for line in lines]
    assert types[0] == "model" and types[1] == "source" and types[-1] == "video"
    assert [line["state"] for line in lines if line["type"] == "source"] == ["connected", "ended"]
    windows = [line for line in lines if line["type"] == "window"]
    assert [w["start_seconds"] for w in windows] == [0.0, 4.0, 8.0]
    for w in windows:
        want = file_windows[w["start_seconds"]]
        got = np.array([w["probabilities"][c] for c in want.classes])
        assert w["label"] == want.label and np.max(np.abs(got - want.probabilities)) <= 1e-3
        assert w["gap_seconds"] == 0.0 and 0.0 <= w["latency_seconds"] < 5.0
        assert w["wall_time"].endswith("Z") and w["wall_time"].startswith("20")


def test_named_pipe(model, clip, tmp_path, file_windows):
    fifo = tmp_path / "live.ts"
    os.mkfifo(fifo)
    with sender(clip, f"fifo:{fifo}", "--speed", "6"):
        with model.stream(fifo) as stream:
            events = _collect(stream)
    _agree(_windows(events), file_windows)
    states = [e.state for e in events if isinstance(e, SourceEvent)]
    assert states == ["connected", "ended"]


def test_tcp_source_and_max_windows_ends_cleanly(clip, tiny_models, file_windows):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", "--speed", "4"):
        wait_bound(port)
        done = subprocess.run(
            [sys.executable, "-m", "mvrt.cli", "infer", f"tcp://127.0.0.1:{port}", "--model",
             str(tiny_models["slowfast"].onnx), "--max-windows", "2", "--read-timeout", str(TIMEOUT)],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 0, done.stderr
    windows = [json.loads(line) for line in done.stdout.splitlines() if '"type": "window"' in line]
    assert [w["window"] for w in windows] == [0, 1]
    assert all(w["label"] == file_windows[w["start_seconds"]].label for w in windows)


def test_udp_source(model, clip, file_windows):
    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1"
    with model.stream(url, max_windows=2) as stream:
        events = _read_while_pushing(stream, port, "udp", lambda: sender(clip, f"udp:127.0.0.1:{port}", "--speed", "3"))
    windows = _windows(events)
    assert [w.index for w in windows] == [0, 1]
    _agree(windows, file_windows)


def test_rtsp_mvrt_listens_and_the_sender_pushes(model, clip, file_windows):
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    with model.stream(url, max_windows=2, input_options={"rtsp_flags": "listen", "rtsp_transport": "tcp"}) as stream:
        events = _read_while_pushing(stream, port, "tcp", lambda: sender(clip, f"rtsp:127.0.0.1:{port}/live",
                                                                        "--speed", "3"))
    windows = _windows(events)
    assert [w.index for w in windows] == [0, 1]
    for w in windows:  # RTP carries its own clock: labels agree, probabilities closely
        assert w.label == file_windows[round(w.start_seconds, 3)].label


def test_a_sender_that_stops_and_restarts_gives_reconnect_events_and_windows_resume(model, clip):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", "--speed", "6", "--sessions", "2", "--pause", "1"):
        wait_bound(port)
        with model.stream(f"tcp://127.0.0.1:{port}", reconnect=True, max_windows=6) as stream:
            events = _collect(stream)
    states = [e.state for e in events if isinstance(e, SourceEvent)]
    first_retry = states.index("reconnecting")
    # connected, then reconnecting (more than once while the sender pauses), then connected again
    assert states[0] == "connected" and "connected" in states[first_retry:], states
    retries = [e.detail for e in events if isinstance(e, SourceEvent) and e.state == "reconnecting"]
    assert [r["delay_seconds"] for r in retries] == [0.5 * 2**i for i in range(len(retries))][: len(retries)]
    windows = _windows(events)
    assert [w.index for w in windows] == list(range(6))
    assert [w.start_seconds for w in windows] == [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]
    reconnect = next(i for i, e in enumerate(events) if isinstance(e, SourceEvent) and e.state == "reconnecting")
    before = [e.index for e in events[:reconnect] if isinstance(e, WindowResult)]
    assert before == [0, 1, 2]  # the first connection's windows, none mixed with the second's


def test_a_hole_in_the_stream_gives_flagged_windows(model, clip):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", "--speed", "6", "--hole", "5:3"):
        wait_bound(port)
        with model.stream(f"tcp://127.0.0.1:{port}") as stream:
            windows = _windows(_collect(stream))
    gaps = {w.start_seconds: w.gap_seconds for w in windows}
    assert set(gaps) == {0.0, 4.0, 8.0}
    assert gaps[0.0] == 0.0 and gaps[8.0] < 0.05  # (up to the first audio frame after 8 s)
    assert 2.9 <= gaps[4.0] <= 3.1  # media 5-8 s was missing


@pytest.mark.parametrize("ffmpeg_unwraps", [True, False])
def test_mpeg_ts_wrap_around_keeps_the_clock_monotonic(model, clip, file_windows, ffmpeg_unwraps, caplog):
    """The 33-bit clock wraps 5 s in. FFmpeg unwraps one wrap itself (times start negative);
    with correct_ts_overflow=0 the raw jump back reaches mvrt's own clock, which unwraps it."""
    port = free_port()
    wrap = 2**33 / 90000  # seconds
    options = {} if ffmpeg_unwraps else {"correct_ts_overflow": "0"}
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", "--speed", "6", "--pts-offset-seconds", str(wrap - 5.0)):
        wait_bound(port)
        with model.stream(f"tcp://127.0.0.1:{port}", input_options=options) as stream:
            windows = _windows(_collect(stream))
    assert [w.start_seconds for w in windows] == [0.0, 4.0, 8.0]
    assert all(w.gap_seconds == 0.0 for w in windows)
    assert "timestamps jump" not in caplog.text  # a wrap, not taken for a discontinuity
    _agree(windows, file_windows)


def test_sigterm_mid_stream_flushes_and_exits_cleanly(clip, tiny_models, tmp_path):
    port = free_port()
    out = tmp_path / "live.jsonl"
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", "--speed", "1", "--loops", "3"):
        wait_bound(port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mvrt.cli", "infer", f"tcp://127.0.0.1:{port}", "--model",
             str(tiny_models["slowfast"].onnx), "-o", str(out), "--read-timeout", str(TIMEOUT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and (not out.exists() or '"type": "window"' not in out.read_text()):
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "SIGTERM" in err or "terminated" in err.lower()
    text = out.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # every line complete
    assert any(line["type"] == "window" for line in lines)


def test_two_sources_one_stalled_the_other_delivers_on_time(model, clip, tmp_path):
    good, stalled = free_port(), free_port()
    config = PipelineConfig(batch_size=2, read_timeout_seconds=6.0)
    arrivals: dict[str, list[float]] = {}
    failed_at: dict[str, float] = {}
    with sender(clip, f"tcp-listen:127.0.0.1:{good}", "--speed", "4"), \
            sender(clip, f"tcp-listen:127.0.0.1:{stalled}", "--speed", "4", "--stall-after", "1", "--stall-hold", "30"):
        wait_bound(good)
        wait_bound(stalled)
        start = time.monotonic()
        videos = {}
        for event in model.run([f"tcp://127.0.0.1:{stalled}", f"tcp://127.0.0.1:{good}"], config):
            if isinstance(event, WindowResult):
                arrivals.setdefault(event.path, []).append(time.monotonic() - start)
            elif isinstance(event, VideoResult):
                videos[event.path] = event
                failed_at[event.path] = time.monotonic() - start
    good_url, stalled_url = f"tcp://127.0.0.1:{good}", f"tcp://127.0.0.1:{stalled}"
    assert len(arrivals[good_url]) == 3 and stalled_url not in arrivals
    assert max(arrivals[good_url]) < failed_at[stalled_url]  # all before the stalled source gave up
    assert videos[good_url].ok and not videos[stalled_url].ok
    assert "stalled" in videos[stalled_url].error or "no data" in videos[stalled_url].error


def test_concurrent_files_with_jobs_give_the_same_results(model, clip, tmp_path):
    from shared_fixtures import _moving_clip

    other = _moving_clip(tmp_path / "other.mp4", 8.0, fps=25, seed=4)
    one = {v.path: v for v in model.run([clip, other]) if isinstance(v, VideoResult)}
    two = {v.path: v for v in model.run([clip, other], PipelineConfig(batch_size=1, jobs=2)) if isinstance(v, VideoResult)}
    assert set(one) == set(two) == {str(clip), str(other)}
    for path in one:
        np.testing.assert_allclose(two[path].probabilities, one[path].probabilities, atol=1e-6)


def test_hls_playlist_over_http_reads_as_the_file(model, clip, tmp_path, file_windows):
    import av

    folder = tmp_path / "hls"
    folder.mkdir()
    with av.open(str(clip)) as inp, av.open(str(folder / "index.m3u8"), "w", format="hls", options={
        "hls_time": "4", "hls_playlist_type": "vod", "hls_segment_filename": str(folder / "seg%03d.ts")}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in (inp.streams.video[0], inp.streams.audio[0])}
        for packet in inp.demux(*[inp.streams.video[0], inp.streams.audio[0]]):
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/index.m3u8"
        for _ in range(50):  # bounded wait for the server
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        windows = list(model.iter_windows(url))
    finally:
        server.terminate()
        server.wait(timeout=10)
    # A VOD playlist states its duration (12 s): read as a file, windows 0, 4 and 8 s
    assert [w.start_seconds for w in windows] == [0.0, 4.0, 8.0]
    _agree(windows, file_windows)


def test_bad_sources_are_one_line_errors(model):
    from mvrt.errors import MediaError, UsageError

    with pytest.raises(MediaError, match=r"tcp://127\.0\.0\.1:\d+: connection refused"):
        list(model.stream(f"tcp://127.0.0.1:{free_port()}"))
    with pytest.raises(UsageError, match="input_format 'nosuchformat'"):
        list(model.stream("-", input_format="nosuchformat"))
    with pytest.raises(UsageError, match="max_windows"):
        model.stream("-", max_windows=0)


def test_stop_from_another_thread_ends_the_stream(model, clip):
    port = free_port()
    with sender(clip, f"tcp-listen:127.0.0.1:{port}", "--speed", "1", "--loops", "5"):
        wait_bound(port)
        with model.stream(f"tcp://127.0.0.1:{port}") as stream:
            events = []
            for event in stream:
                events.append(event)
                if isinstance(event, WindowResult):
                    threading.Thread(target=stream.stop).start()
            ended = time.monotonic()
    assert len(_windows(events)) <= 2
    assert time.monotonic() - ended < 10


def _remux_ts(clip: Path, out_path: Path, rewrite) -> Path:
    """`clip` remuxed to MPEG-TS in arrival order, each packet passed through `rewrite(packet, is_video)`."""
    import av

    with av.open(str(clip)) as inp, av.open(str(out_path), "w", format="mpegts") as out:
        video, audio = inp.streams.video[0], inp.streams.audio[0]
        streams = {video.index: out.add_stream_from_template(video), audio.index: out.add_stream_from_template(audio)}
        for packet in inp.demux(video, audio):
            if packet.dts is None:
                continue
            index = packet.stream.index
            packet = rewrite(packet, index == video.index)
            packet.stream = streams[index]
            out.mux_one(packet)  # as a live encoder writes them: no interleaving by timestamp
    return out_path


def _drifting_copy(clip: Path, out_path: Path, audio_rate: float) -> Path:
    """`clip` remuxed to MPEG-TS, its audio clock running `audio_rate` x fast."""

    def rewrite(packet, is_video):
        if not is_video:
            packet.pts, packet.dts = (int(round(t * audio_rate)) for t in (packet.pts, packet.dts))
        return packet

    return _remux_ts(clip, out_path, rewrite)


def test_audio_and_video_clocks_drifting_apart_are_reported(model, clip, tmp_path, caplog):
    drifting = _drifting_copy(clip, tmp_path / "drift.ts", audio_rate=1.15)
    with model.stream(drifting, live=True) as stream:
        windows = _windows(_collect(stream))
    assert windows
    warnings = [r.getMessage() for r in caplog.records if "drifted" in r.getMessage()]
    assert len(warnings) == 1 and "audio ahead" in warnings[0], caplog.text
    steady = _drifting_copy(clip, tmp_path / "steady.ts", audio_rate=1.0)
    caplog.clear()
    with model.stream(steady, live=True) as stream:
        _collect(stream)
    assert "drifted" not in caplog.text


def test_a_device_through_input_format(model):
    """FFmpeg's lavfi input stands in for a capture device (--input-format, as ffmpeg -f)."""
    graph = "testsrc2=size=96x64:rate=25[out0];sine=frequency=440:sample_rate=22050[out1]"
    with model.stream(graph, input_format="lavfi", max_windows=2) as stream:
        events = _collect(stream)
    windows = _windows(events)
    assert [(w.index, w.start_seconds, w.end_seconds) for w in windows] == [(0, 0.0, 4.0), (1, 4.0, 8.0)]
    assert [e.state for e in events if isinstance(e, SourceEvent)] == ["connected", "ended"]
    assert all(w.gap_seconds == 0.0 and w.latency_seconds is not None for w in windows)
    assert stream.result is not None and stream.result.count == 2


def test_a_live_source_whose_video_never_decodes_fails_instead_of_ending_empty(model, clip, tmp_path):
    import av

    from mvrt.errors import MediaError

    rng = np.random.default_rng(0)

    def noise(packet, is_video):  # same timing, noise for data
        if not is_video:
            return packet
        slice_nal = b"\x00\x00\x00\x01\x41" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        fake = av.Packet(slice_nal)  # an Annex B slice with no parameter sets anywhere
        fake.pts, fake.dts, fake.time_base = packet.pts, packet.dts, packet.time_base
        return fake

    damaged = _remux_ts(clip, tmp_path / "garbage-video.ts", noise)
    with pytest.raises(MediaError, match="garbage-video.ts: video stream contains no decodable frames"):
        list(model.stream(damaged, live=True))


def test_rtmp_mvrt_listens_and_an_flv_pusher_connects(model, clip):
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/stream"
    with model.stream(url, max_windows=2, input_options={"listen": "1"}) as stream:
        events = _read_while_pushing(stream, port, "tcp", lambda: _pusher(clip, "flv", 4, url))
    windows = _windows(events)
    assert [(w.index, w.start_seconds) for w in windows] == [(0, 0.0), (1, 4.0)]
    assert [e.state for e in events if isinstance(e, SourceEvent)] == ["connected", "ended"]


def _sdp(clip: Path, port: int) -> str:
    """The session description of the RTP pusher: H.264 on `port`, AAC on `port + 2`."""
    import base64

    import av

    with av.open(str(clip)) as media:
        avcc = media.streams.video[0].codec_context.extradata
        audio = media.streams.audio[0]
        config, rate, channels = audio.codec_context.extradata.hex(), audio.sample_rate, audio.channels
    sets, i = [], 6  # avcC: SPS count at byte 5, then (length, SPS)..., PPS count, (length, PPS)...
    for count_at in (5, None):
        count = (avcc[5] & 0x1F) if count_at else avcc[i - 1]
        for _ in range(count):
            size = int.from_bytes(avcc[i : i + 2], "big")
            sets.append(base64.b64encode(avcc[i + 2 : i + 2 + size]).decode())
            i += 2 + size
        i += 1
    return "\n".join([
        "v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=mvrt test", "c=IN IP4 127.0.0.1", "t=0 0",
        f"m=video {port} RTP/AVP 96", "a=rtpmap:96 H264/90000",
        f"a=fmtp:96 packetization-mode=1; sprop-parameter-sets={','.join(sets)}",
        f"m=audio {port + 2} RTP/AVP 97", f"a=rtpmap:97 MPEG4-GENERIC/{rate}/{channels}",
        f"a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}",
    ]) + "\n"


def test_rtp_described_by_an_sdp_file(model, clip, tmp_path):
    """RTP as it is deployed: an SDP file names the streams; mvrt reads it like ffmpeg -i x.sdp."""
    port = free_udp_port() & ~1  # RTP on an even port, RTCP beside it
    sdp = tmp_path / "stream.sdp"
    sdp.write_text(_sdp(clip, port))
    rtp = (f"rtp://127.0.0.1:{port}", f"rtp://127.0.0.1:{port + 2}")  # video, audio
    with model.stream(sdp, live=False, max_windows=2,
                      input_options={"protocol_whitelist": "file,udp,rtp"}) as stream:
        events = _read_while_pushing(stream, port, "udp", lambda: _pusher(clip, "rtp", 3, *rtp))
    windows = _windows(events)
    assert [(w.index, w.start_seconds) for w in windows] == [(0, 0.0), (1, 4.0)]
    assert [e.state for e in events if isinstance(e, SourceEvent)] == ["connected", "ended"]
