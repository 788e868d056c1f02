"""Never decoding non-reference packets that no target shows: identical frames, less work."""

from __future__ import annotations

import av
import numpy as np
import pytest
from media_factory import (
    cut_file,
    expected_indices,
    packet_reorders,
    read_indices,
    require_encoder,
    write_indexed,
)

from mvrt.runtime._h264_refs import (
    H264Refs,
    SpsLayout,
    is_droppable,
    nal_length_size,
    nal_units,
    read_sps,
    unescape,
)
from mvrt.runtime.decode import VideoDecodeStats, iter_window_frames
from mvrt.runtime.windows import Window

FPS = 50  # 20 ms frames: exact in every container's time base; ~3 frames per target below
FRAMES = 16
SIZE = 16
COUNT = 8 * FPS
# Always 3 B-frames (b-adapt=0) with the middle one a reference (b-pyramid), keyframe every 1 s.
PYRAMID = {"x264-params": "b-pyramid=normal:b-adapt=0:scenecut=0"}


def _windows(*starts: float, seconds: float = 1.0) -> list[Window]:
    return [Window(i, s, seconds, seconds) for i, s in enumerate(starts)]


WINDOW_SETS = {
    "dense": _windows(0.0, 1.0, 2.0, 3.0, 4.0),
    "sparse": _windows(0.3, 3.61, 6.2),  # keyframes in the gaps: seeks
    "overlapping": _windows(0.0, 0.45, 0.9, 1.2),
    "past_the_end": _windows(5.5, 7.6),  # the last frame stays on screen
}


@pytest.fixture(scope="module")
def pyramid_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("skip")
    return {
        ext: write_indexed(root / f"pyramid.{ext}", count=COUNT, fps=FPS, gop=FPS, options=PYRAMID)
        for ext in ("mp4", "mkv")
    }


def _both(path, windows, frame_seconds=None, frames=FRAMES) -> tuple[VideoDecodeStats, VideoDecodeStats]:
    """Decode with and without skipping; the outputs must be bit-identical (and right)."""
    on, off = VideoDecodeStats(), VideoDecodeStats()
    got = list(iter_window_frames(path, windows, frames=frames, size=SIZE, stats=on))
    want = list(iter_window_frames(path, windows, frames=frames, size=SIZE, stats=off, skip_nonref=False))
    assert len(got) == len(want) == len(windows)
    for window, a, b in zip(windows, got, want):
        assert np.array_equal(a, b), f"window at {window.start_seconds} s"
        if frame_seconds is not None:
            assert read_indices(a) == expected_indices(frame_seconds, window.frame_times(frames))
    assert off.packets_skipped == 0
    return on, off


@pytest.mark.parametrize("kind", sorted(WINDOW_SETS))
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_skipping_keeps_every_chosen_frame(pyramid_clips, ext, kind):
    path = pyramid_clips[ext]
    assert packet_reorders(path)
    on, off = _both(path, WINDOW_SETS[kind], np.arange(COUNT) / FPS)
    assert on.packets_skipped > 0 and on.frames_decoded < off.frames_decoded
    assert on.seeks == off.seeks and (on.seeks > 0) == (kind in ("sparse", "past_the_end"))
    if on.seeks == 0:  # one pass: no packet is decoded twice
        assert off.frames_decoded <= on.frames_decoded + on.packets_skipped <= COUNT


def test_targets_on_every_frame_skip_nothing(pyramid_clips):
    # 64 targets per 1 s at 50 fps over the whole clip: every frame is displayed.
    windows = _windows(*range(COUNT // FPS))
    on, off = _both(pyramid_clips["mp4"], windows, np.arange(COUNT) / FPS, frames=64)
    assert on.packets_skipped == 0 and on.frames_decoded == off.frames_decoded == COUNT


def test_skipped_packets_are_ffmpegs_non_reference_frames(pyramid_clips):
    """The NAL parser agrees with FFmpeg's own `skip_frame=NONREF` (nal_ref_idc == 0)."""
    for path in pyramid_clips.values():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            refs = H264Refs(stream.codec_context.extradata)
            kept = {p.pts for p in container.demux(stream) if p.size and not refs.droppable(bytes(p))}
        with av.open(str(path)) as container:
            container.streams.video[0].codec_context.skip_frame = "NONREF"
            decoded = {frame.pts for frame in container.decode(video=0)}
        assert decoded == kept and COUNT / 3 < len(kept) < COUNT * 2 / 3  # I/P/B-ref vs B


def test_variable_frame_rate_mp4(tmp_path):
    rng = np.random.default_rng(5)
    times = np.round(np.cumsum(rng.uniform(0.005, 0.04, size=150)), 3)
    path = write_indexed(tmp_path / "vfr.mp4", count=150, frame_times=times, options=PYRAMID)
    on, _ = _both(path, _windows(0.0, 0.8, 2.0), times - times[0])
    assert on.packets_skipped > 0


def test_mpeg_ts_annex_b_with_a_start_offset(tmp_path):
    # Annex B packets with in-band parameter sets; PTS start after 0 (the media origin).
    path = write_indexed(tmp_path / "clip.ts", count=COUNT // 2, fps=FPS, gop=FPS, options=PYRAMID)
    with av.open(str(path)) as container:
        assert nal_length_size(container.streams.video[0].codec_context.extradata) is None
        assert container.start_time > 0
    on, _ = _both(path, _windows(0.0, 0.5, 2.5), np.arange(COUNT // 2) / FPS)
    assert on.packets_skipped > 0


@pytest.mark.parametrize(
    "name, encoder, options, why",
    [
        ("vp9.webm", "libvpx-vp9", dict(video_codec="libvpx-vp9"), "not H.264"),
        ("interlaced.mkv", "libx264", dict(options={"x264-params": "interlaced=1"}), "field pictures"),
        ("raw.h264", "libx264", dict(options=PYRAMID), "no timestamps"),
    ],
)
def test_streams_that_must_not_skip_stay_identical(tmp_path, name, encoder, options, why):
    require_encoder(encoder)
    path = write_indexed(tmp_path / name, count=100, fps=FPS, **options)
    timed = not name.endswith(".h264")  # raw H.264 frames are timed at a guessed rate
    on, off = _both(path, _windows(0.0, 1.0), np.arange(100) / FPS if timed else None)
    assert on.packets_skipped == 0 and on.frames_decoded == off.frames_decoded, why


def test_truncated_file_skips_and_still_refuses_the_missing_part(pyramid_clips, tmp_path):
    from mvrt.errors import MediaError

    cut = cut_file(pyramid_clips["mkv"], tmp_path / "cut.mkv")
    on, _ = _both(cut, _windows(0.0, 1.2), np.arange(COUNT) / FPS)  # before the cut
    assert on.packets_skipped > 0
    with pytest.raises(MediaError, match="truncated"):
        list(iter_window_frames(cut, _windows(0.0, seconds=8.0), frames=FRAMES, size=SIZE))


# --- NAL unit parsing on handmade bytes -------------------------------------------------
SLICE_B = bytes([0x01, 0x9A, 0x20])  # nal_ref_idc 0, type 1; first_mb_in_slice 0 (bit '1')
SLICE_B_PART2 = bytes([0x01, 0x24, 0x11])  # same picture, first_mb_in_slice 3 (ue 00100)
SLICE_P = bytes([0x41, 0x9A, 0x02])  # nal_ref_idc 2: a reference picture
IDR = bytes([0x65, 0x88, 0x84])
AUD = bytes([0x09, 0xF0])
SPS = bytes.fromhex("6764000aacd9") + b"\x5f\x9e"
UUID = bytes(range(16))


def _sei(payload_type: int, payload: bytes) -> bytes:
    return bytes([0x06, payload_type, len(payload)]) + payload + b"\x80"


def _avcc(*units: bytes, size: int = 4) -> bytes:
    return b"".join(len(u).to_bytes(size, "big") + u for u in units)


def _annex_b(*units: bytes) -> bytes:
    return b"".join((b"\x00\x00\x00\x01" if i % 2 == 0 else b"\x00\x00\x01") + u for i, u in enumerate(units))


@pytest.mark.parametrize(
    "units, droppable",
    [
        ([SLICE_B], True),
        ([AUD, SLICE_B, SLICE_B_PART2], True),  # one picture in two slices
        ([_sei(5, UUID + b"encoder settings"), SLICE_B], True),
        ([_sei(1, b"\x12\x34"), SLICE_B], True),  # picture timing
        ([SLICE_P], False),
        ([IDR], False),
        ([AUD], False),  # no picture at all
        ([SLICE_B, SLICE_B], False),  # two pictures in one packet
        ([SLICE_B_PART2, SLICE_B], False),  # slices out of order
        ([SPS, SLICE_B], False),  # parameter sets outlive the picture
        ([_sei(5, UUID + b"x264 - core 164"), SLICE_B], False),  # FFmpeg keys workarounds on it
        ([_sei(6, b"\x84"), SLICE_B], False),  # recovery point
        ([bytes([0x06, 0x05, 0x20]) + UUID, SLICE_B], False),  # SEI payload longer than the NAL
        ([bytes([0x02, 0x9A]), SLICE_B], False),  # data partition A
        ([bytes([0x81, 0x9A]), SLICE_B], False),  # forbidden_zero_bit set
    ],
)
def test_nal_parser_on_handmade_packets(units, droppable):
    assert is_droppable(_avcc(*units), 4) is droppable
    assert is_droppable(_avcc(*units, size=2), 2) is droppable
    assert is_droppable(_annex_b(*units), None) is droppable
    assert is_droppable(b"\x00\x00" + _annex_b(*units) + b"\x00\x00", None) is droppable  # zero padding


def test_nal_parser_rejects_garbage():
    packet = _avcc(AUD, SLICE_B)
    assert nal_units(packet, 4) == [(4, 6), (10, 13)]
    assert nal_units(_annex_b(AUD, SLICE_B), None) == [(4, 6), (9, 12)]
    for bad, size in [
        (packet[:-1], 4),  # last unit cut short
        (packet + b"\x00", 4),  # stray trailing byte
        (_avcc(b"", SLICE_B), 4),  # empty unit
        (b"\x00\x00\x00\x00", 4),
        (b"", 4),
        (b"", None),
        (b"\x07" + _annex_b(SLICE_B), None),  # junk before the first start code
        (SLICE_B, None),  # no start code at all
        (_annex_b(SLICE_B) + b"\x00\x00\x01", None),  # empty unit at the end
    ]:
        assert nal_units(bad, size) is None
        assert not is_droppable(bad, size)
    rng = np.random.default_rng(0)
    for _ in range(200):  # random bytes never raise
        junk = rng.integers(0, 256, size=int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
        assert is_droppable(junk, 4) in (True, False) and is_droppable(junk, None) in (True, False)


def test_sei_with_emulation_prevention():
    # The payload bytes 00 00 01 are escaped as 00 00 03 01 in the NAL; sizes count unescaped bytes.
    raw = UUID + b"\x00\x00\x01\x02"
    escaped = raw[:16] + b"\x00\x00\x03\x01\x02"
    assert unescape(escaped) == raw
    sei = bytes([0x06, 5, len(raw)]) + escaped + b"\x80"
    assert is_droppable(_avcc(sei, SLICE_B), 4)
    assert is_droppable(_annex_b(sei, SLICE_B), None)


def test_length_size_comes_from_an_avcc_record():
    assert nal_length_size(bytes([1, 0x64, 0, 0x0A, 0xFF, 0xE1, 0])) == 4
    assert nal_length_size(bytes([1, 0x64, 0, 0x0A, 0xFD, 0xE1, 0])) == 2
    assert nal_length_size(b"\x00\x00\x00\x01" + SPS) is None
    assert nal_length_size(None) is None and nal_length_size(b"") is None


@pytest.mark.parametrize(
    "ext, params, size, frames_only",
    [
        ("mp4", "", (48, 80), True),
        ("mp4", "profile=baseline", (48, 80), True),  # no High profile fields
        ("mkv", "interlaced=1", (64, 48), False),  # height in field macroblock pairs
        ("ts", "", (32, 16), True),  # Annex B extradata
    ],
)
def test_sps_layout_matches_the_encoded_size(tmp_path, ext, params, size, frames_only):
    height, width = size
    options = {"x264-params": params} if params else {}
    path = write_indexed(tmp_path / f"sps.{ext}", count=4, size=size, options=options)
    with av.open(str(path)) as container:
        extradata = container.streams.video[0].codec_context.extradata
    refs = H264Refs(extradata)
    if refs.length_size is None:  # Annex B: SPS first
        start, end = nal_units(extradata, None)[0]
    else:  # avcC: 6 bytes, then a 16-bit size and the first SPS
        start, end = 8, 8 + int.from_bytes(extradata[6:8], "big")
    sps = extradata[start:end]
    assert sps[0] & 0x1F == 7
    layout = read_sps(sps)
    rows = 16 if frames_only else 32  # map units: macroblocks, or field macroblock pairs
    assert layout is not None and layout.frame_mbs_only is frames_only
    assert (layout.width_mbs, layout.height_map_units) == (-(-width // 16), -(-height // rows))
    assert refs.frames_only is frames_only
    assert read_sps(sps[:3]) is None  # cut short


class _BitWriter:
    """Exp-Golomb writer for handmade parameter sets (H.264 7.2, 9.1)."""

    def __init__(self):
        self.bits = ""

    def u(self, value: int, count: int) -> "_BitWriter":
        self.bits += format(value, f"0{count}b") if count else ""
        return self

    def ue(self, value: int) -> "_BitWriter":
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code
        return self

    def se(self, value: int) -> "_BitWriter":
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self, header: int) -> bytes:
        bits = self.bits + "1"  # rbsp_stop_one_bit, then zero alignment
        bits += "0" * (-len(bits) % 8)
        rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
        escaped = bytearray()
        for byte in rbsp:  # emulation prevention
            if len(escaped) >= 2 and escaped[-2:] == b"\x00\x00" and byte <= 3:
                escaped.append(3)
            escaped.append(byte)
        return bytes([header]) + bytes(escaped)


@pytest.mark.parametrize("chroma_format, frames_only", [(1, True), (3, False)])
def test_sps_with_scaling_lists_and_poc_type_1(chroma_format, frames_only):
    """The fields x264 never writes: scaling lists (4:2:0 and 4:4:4) and POC type 1."""
    w = _BitWriter().u(100, 8).u(0, 8).u(40, 8).ue(0)  # High profile, level 4.0, sps id 0
    w.ue(chroma_format)
    if chroma_format == 3:
        w.u(0, 1)  # separate_colour_plane_flag
    w.ue(0).ue(0).u(0, 1).u(1, 1)  # 8-bit, no bypass, seq_scaling_matrix_present_flag
    for i in range(8 if chroma_format != 3 else 12):
        w.u(i % 3 != 1, 1)  # some lists present
        if i % 3 != 1:
            size = 16 if i < 6 else 64
            if i == 3:  # delta to 0 at once: "use the default list", nothing more coded
                w.se(-8)
            else:
                for j in range(size):
                    w.se(1 if j % 2 else -1)
    w.ue(0).ue(1).u(0, 1).se(-2).se(1).ue(3).se(2).se(-1).se(0)  # frame_num, POC type 1 cycle
    w.ue(4).u(0, 1).ue(119).ue(67 if frames_only else 33).u(frames_only, 1)
    sps = w.nal(0x67)
    assert read_sps(sps) == SpsLayout(120, 68 if frames_only else 34, frames_only)
    assert read_sps(sps[:-4]) is None
    refs = H264Refs(_annex_b(sps))
    assert refs.length_size is None and refs.frames_only is frames_only
