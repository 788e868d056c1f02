"""Which H.264 packets no other picture depends on, read from NAL unit headers.

A packet is *droppable* when it holds exactly one picture whose slices all have
nal_ref_idc == 0 (non-IDR slices, NAL type 1): no later picture predicts from it, so never
decoding it changes no other decoded frame (H.264 7.4.1: such pictures "may be discarded").
Everything else in the packet must be state-free: access unit delimiters, filler, and SEI
messages that describe only their own picture (buffering period, picture timing, filler,
user data except x264's version string, which FFmpeg remembers to work around old x264
bugs). Parameter sets, recovery points, data partitions, SVC/MVC units and anything that
cannot be parsed make a packet not droppable. Field pictures can come one per packet
(MPEG-TS), where dropping a non-reference second field would tear its frame, so a stream is
only trusted once its sequence parameter sets say frame_mbs_only_flag = 1.

Packets are length-prefixed (AVCC: MP4, Matroska) when the extradata is an avcC record
(first byte 1), else Annex B start codes, the same rule FFmpeg's decoder applies.
"""

from __future__ import annotations

from dataclasses import dataclass

_NON_IDR, _IDR, _SEI, _SPS, _AUD, _FILLER = 1, 5, 6, 7, 9, 12
_STATE_FREE = {_AUD, _FILLER}
# SEI payload types that apply to their own picture only.
_SEI_OWN_PICTURE = {0, 1, 3, 4, 5}
_SEI_USER_DATA_UNREGISTERED = 5
_X264_VERSION = b"x264 - core"
# profile_idc values whose SPS carries chroma format, bit depths and scaling matrices.
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def nal_length_size(extradata: bytes | None) -> int | None:
    """Length-prefix size in bytes from an avcC record; None for Annex B streams."""
    if extradata and len(extradata) >= 7 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def nal_units(data: bytes, length_size: int | None) -> list[tuple[int, int]] | None:
    """(start, end) byte ranges of the NAL units in `data`, header byte first; None if unparsable."""
    units = _split_avcc(data, length_size) if length_size else _split_annex_b(data)
    if not units or any(data[start] & 0x80 for start, _ in units):  # forbidden_zero_bit
        return None
    return units


def _split_avcc(data: bytes, length_size: int) -> list[tuple[int, int]] | None:
    units, pos = [], 0
    while pos < len(data):
        start = pos + length_size
        end = start + int.from_bytes(data[pos:start], "big")
        if end <= start or end > len(data):
            return None
        units.append((start, end))
        pos = end
    return units


def _split_annex_b(data: bytes) -> list[tuple[int, int]] | None:
    first = data.find(b"\x00\x00\x01")
    if first < 0 or data[:first].strip(b"\x00"):
        return None  # bytes before the first start code that are not zero padding
    starts, pos = [], first
    while pos >= 0:
        starts.append(pos + 3)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    units = []
    for start, following in zip(starts, starts[1:] + [len(data) + 3]):
        end = len(data[start : following - 3].rstrip(b"\x00")) + start  # drop the next code's zeros
        if end <= start:
            return None
        units.append((start, end))
    return units


def unescape(payload: bytes) -> bytes:
    """Raw byte sequence payload: emulation prevention bytes (00 00 03) removed."""
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """MSB-first bit reader with Exp-Golomb codes; reading past the end raises ValueError."""

    def __init__(self, data: bytes):
        self.value, self.size, self.pos = int.from_bytes(data, "big"), 8 * len(data), 0

    def u(self, count: int) -> int:
        if self.pos + count > self.size:
            raise ValueError("out of bits")
        self.pos += count
        return (self.value >> (self.size - self.pos)) & ((1 << count) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


@dataclass(frozen=True)
class SpsLayout:
    """The picture layout fields of a sequence parameter set."""

    width_mbs: int  # pic_width_in_mbs_minus1 + 1
    height_map_units: int  # pic_height_in_map_units_minus1 + 1 (field MB pairs if not frames only)
    frame_mbs_only: bool  # False: field pictures (or MBAFF) may occur


def read_sps(sps: bytes) -> SpsLayout | None:
    """Layout of a sequence parameter set NAL unit (header included); None if unreadable."""
    try:
        bits = _Bits(unescape(sps[1:]))
        profile = bits.u(8)
        bits.u(16)  # constraint flags, level_idc
        bits.ue()  # seq_parameter_set_id
        if profile in _HIGH_PROFILES:
            _skip_high_profile_fields(bits)
        bits.ue()  # log2_max_frame_num_minus4
        poc_type = bits.ue()
        if poc_type == 0:
            bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
        elif poc_type == 1:
            bits.u(1)  # delta_pic_order_always_zero_flag
            bits.se(), bits.se()  # offsets for non-reference pictures, top to bottom field
            for _ in range(bits.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
                bits.se()
        bits.ue(), bits.u(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
        width, height = bits.ue() + 1, bits.ue() + 1
        return SpsLayout(width, height, bits.u(1) == 1)
    except ValueError:
        return None


def _skip_high_profile_fields(bits: _Bits) -> None:
    chroma_format = bits.ue()
    if chroma_format == 3:
        bits.u(1)  # separate_colour_plane_flag
    bits.ue(), bits.ue(), bits.u(1)  # bit depths, qpprime_y_zero_transform_bypass_flag
    if bits.u(1):  # seq_scaling_matrix_present_flag
        for i in range(8 if chroma_format != 3 else 12):
            if bits.u(1):
                _skip_scaling_list(bits, 16 if i < 6 else 64)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


def sei_is_own_picture(sei: bytes) -> bool:
    """True when every message of an SEI NAL unit (header included) concerns its picture only."""
    rbsp = unescape(sei[1:]).rstrip(b"\x00")
    pos = 0
    while pos < len(rbsp):
        if rbsp[pos:] == b"\x80":  # rbsp_trailing_bits
            return True
        payload_type, pos = _sei_number(rbsp, pos)
        payload_size, pos = _sei_number(rbsp, pos)
        if pos < 0 or pos + payload_size > len(rbsp) or payload_type not in _SEI_OWN_PICTURE:
            return False
        payload = rbsp[pos : pos + payload_size]
        if payload_type == _SEI_USER_DATA_UNREGISTERED and payload[16:].startswith(_X264_VERSION):
            return False
        pos += payload_size
    return False  # no trailing bits: malformed


def _sei_number(rbsp: bytes, pos: int) -> tuple[int, int]:
    """An SEI payload type or size (runs of 0xFF plus a last byte); pos -1 past the end."""
    value = 0
    while 0 <= pos < len(rbsp) and rbsp[pos] == 0xFF:
        value, pos = value + 255, pos + 1
    if pos < 0 or pos >= len(rbsp):
        return 0, -1
    return value + rbsp[pos], pos + 1


def is_droppable(data: bytes, length_size: int | None) -> bool:
    """True when the packet is one non-reference picture and nothing that outlives it."""
    units = nal_units(data, length_size)
    return units is not None and _droppable_units(data, units)


def _droppable_units(data: bytes, units: list[tuple[int, int]]) -> bool:
    pictures = 0
    for start, end in units:
        header = data[start]
        kind = header & 0x1F
        if kind == _NON_IDR:
            if header & 0x60 or end - start < 2:  # nal_ref_idc != 0, or no slice header
                return False
            if data[start + 1] & 0x80:  # first_mb_in_slice == 0 (ue '1'): a new picture
                pictures += 1
            elif pictures == 0:
                return False  # slices out of order: cannot tell the pictures apart
        elif kind == _SEI:
            if not sei_is_own_picture(data[start:end]):
                return False
        elif kind not in _STATE_FREE:
            return False
    return pictures == 1


class H264Refs:
    """Per-stream droppability, trusting only streams whose SPSs rule out field pictures.

    `droppable(data)` must see every packet in decode order: it reads in-band SPSs.
    """

    def __init__(self, extradata: bytes | None):
        self.length_size = nal_length_size(extradata)
        self.frames_only: bool | None = None  # None until an SPS has been read
        for sps in _extradata_sps(extradata or b"", self.length_size):
            self._note_sps(sps)

    def _note_sps(self, sps: bytes) -> None:
        """Any SPS allowing field pictures, or unreadable, disables dropping for good."""
        layout = read_sps(sps)
        self.frames_only = layout is not None and layout.frame_mbs_only and self.frames_only is not False

    def droppable(self, data: bytes) -> bool:
        units = nal_units(data, self.length_size)
        if units is None:
            return False
        for start, end in units:
            if data[start] & 0x1F == _SPS:
                self._note_sps(data[start:end])
        return bool(self.frames_only) and _droppable_units(data, units)


def _extradata_sps(extradata: bytes, length_size: int | None) -> list[bytes]:
    """The SPS NAL units in an avcC record or in Annex B extradata."""
    if not length_size:
        units = _split_annex_b(extradata) if extradata else None
        return [extradata[a:b] for a, b in units or [] if extradata[a] & 0x1F == _SPS]
    found, pos = [], 6  # avcC: 5 header bytes, SPS count, then (16-bit size, SPS) entries
    for _ in range(extradata[5] & 0x1F):
        size = int.from_bytes(extradata[pos : pos + 2], "big")
        found.append(extradata[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return found
