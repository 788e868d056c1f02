"""Matroska / WebM (EBML) element walker and element mutations for the fuzz harness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from _fuzz_fields import new_uint, note, pick, pick_weighted, poke_byte, read_uint, write_uint

MASTERS: dict[int, str] = {
    0x1A45DFA3: "EBML", 0x18538067: "Segment", 0x114D9B74: "SeekHead", 0x4DBB: "Seek", 0x1549A966: "Info",
    0x1654AE6B: "Tracks", 0xAE: "TrackEntry", 0xE0: "Video", 0xE1: "Audio", 0x55B0: "Colour",
    0x1F43B675: "Cluster", 0xA0: "BlockGroup", 0x1C53BB6B: "Cues", 0xBB: "CuePoint", 0xB7: "CueTrackPositions",
    0x1254C367: "Tags", 0x7373: "Tag", 0x63C0: "Targets", 0x67C8: "SimpleTag", 0x1043A770: "Chapters",
    0x1941A469: "Attachments", 0x6D80: "ContentEncodings", 0x6240: "ContentEncoding",
}
LEAVES: dict[int, str] = {
    0x4286: "EBMLVersion", 0x42F7: "EBMLReadVersion", 0x42F2: "EBMLMaxIDLength", 0x42F3: "EBMLMaxSizeLength",
    0x4282: "DocType", 0x4287: "DocTypeVersion", 0x4285: "DocTypeReadVersion", 0xEC: "Void", 0x53AB: "SeekID",
    0x53AC: "SeekPosition", 0x2AD7B1: "TimestampScale", 0x4489: "Duration", 0x4D80: "MuxingApp",
    0x5741: "WritingApp", 0x73A4: "SegmentUUID", 0x4461: "DateUTC", 0xD7: "TrackNumber", 0x73C5: "TrackUID",
    0x83: "TrackType", 0x9C: "FlagLacing", 0x22B59C: "Language", 0x86: "CodecID", 0x63A2: "CodecPrivate",
    0x23E383: "DefaultDuration", 0x56AA: "CodecDelay", 0x56BB: "SeekPreRoll", 0x88: "FlagDefault",
    0xB9: "FlagEnabled", 0x55AA: "FlagForced", 0xB0: "PixelWidth", 0xBA: "PixelHeight", 0x54B0: "DisplayWidth",
    0x54BA: "DisplayHeight", 0x54B2: "DisplayUnit", 0xB5: "SamplingFrequency", 0x9F: "Channels",
    0x6264: "BitDepth", 0xE7: "Timestamp", 0xA3: "SimpleBlock", 0xA1: "Block", 0x9B: "BlockDuration",
    0xFB: "ReferenceBlock", 0x75A2: "DiscardPadding", 0xB3: "CueTime", 0xF7: "CueTrack",
    0xF1: "CueClusterPosition", 0xF0: "CueRelativePosition", 0xB2: "CueDuration", 0x5378: "CueBlockNumber",
    0x45A3: "TagName", 0x4487: "TagString", 0x68CA: "TargetTypeValue", 0x63C5: "TagTrackUID",
    0xBF: "CRC-32", 0x55EE: "MaxBlockAdditionID", 0x55B1: "MatrixCoefficients", 0x55B9: "Range", 0x55BA: "TransferCharacteristics", 0x55BB: "Primaries",
}
NAMES = {**MASTERS, **LEAVES}
BLOCKS = frozenset([0xA3, 0xA1])
# CodecID strings grouped by length, so one can replace another without moving any byte.
CODEC_IDS = (b"A_AAC", b"A_AC3", b"A_DTS", b"V_VP8", b"V_VP9", b"V_AV1", b"A_OPUS", b"A_FLAC", b"A_EAC3",
             b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/ASP", b"V_MPEG4/ISO/SP", b"A_MPEG/L3", b"A_MPEG/L2", b"A_VORBIS",
             b"V_THEORA", b"V_MJPEG", b"V_MPEG2", b"V_MPEG1", b"A_PCM/INT/LIT", b"A_PCM/FLOAT/IEEE")
KIND_WEIGHTS = {"size": 3.0, "size_length": 1.0, "id": 1.0, "value": 2.0, "block_header": 2.0, "codec": 1.0}


@dataclass(frozen=True)
class Element:
    """One EBML element: its ID (length marker included), where its size vint and data lie, and its path."""

    offset: int
    id: int
    id_bytes: int
    size_bytes: int  # length of the size vint
    size: int | None  # data size; None for 'unknown size'
    end: int
    path: str  # e.g. "Segment/Tracks/TrackEntry/CodecID"

    @property
    def size_offset(self) -> int:
        return self.offset + self.id_bytes

    @property
    def data_offset(self) -> int:
        return self.size_offset + self.size_bytes

    @property
    def name(self) -> str:
        return NAMES.get(self.id, f"0x{self.id:X}")


def read_vint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(length, value without the marker) of the variable-size integer at `pos`, or None if invalid."""
    if pos >= len(data) or data[pos] == 0:
        return None
    length = 9 - data[pos].bit_length()
    if pos + length > len(data):
        return None
    value = data[pos] & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = value << 8 | byte
    return length, value


def encode_vint(value: int, length: int) -> bytes:
    """`value` as a size vint of exactly `length` bytes (all value bits set means 'unknown size')."""
    if not 0 <= value < 1 << (7 * length):
        raise ValueError(f"{value} does not fit a {length}-byte vint")
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def walk_ebml(data: bytes, max_elements: int = 50000, max_depth: int = 8) -> list[Element]:
    """Every element of `data` in file order (depth first into master elements); stops at the first
    malformed ID or size. An unknown-size element runs to the end of its parent."""
    elements: list[Element] = []

    def walk(start: int, end: int, parent: str, depth: int) -> None:
        pos = start
        while pos < end and len(elements) < max_elements:
            id_len = 9 - data[pos].bit_length() if data[pos] else 9
            if id_len > 4 or pos + id_len > end:
                return
            size_vint = read_vint(data, pos + id_len)
            if size_vint is None:
                return
            size_len, size = size_vint
            data_offset = pos + id_len + size_len
            unknown = size == (1 << (7 * size_len)) - 1
            element_end = end if unknown else data_offset + size
            if element_end > end:
                return
            element_id = read_uint(data, pos, id_len)
            name = NAMES.get(element_id, f"0x{element_id:X}")
            element = Element(pos, element_id, id_len, size_len, None if unknown else size, element_end,
                              f"{parent}/{name}" if parent else name)
            elements.append(element)
            if element_id in MASTERS and depth < max_depth:
                walk(data_offset, element_end, element.path, depth + 1)
            pos = element_end

    walk(0, len(data), "", 0)
    return elements


def set_element_size(data: bytes, element: Element, value: int) -> bytes:
    """`data` with only the size vint of `element` changed, keeping its length."""
    out = bytearray(data)
    out[element.size_offset : element.data_offset] = encode_vint(value, element.size_bytes)
    return bytes(out)


def _targets(elements: list[Element]) -> dict[str, list[Element]]:
    leaves = [e for e in elements if e.id not in MASTERS and e.size is not None]
    return {
        "size": elements,
        "size_length": elements,
        "id": elements,
        "value": [e for e in leaves if 1 <= e.size <= 8 and e.id not in BLOCKS],
        "block_header": [e for e in leaves if e.id in BLOCKS and e.size >= 4],
        "codec": [e for e in leaves if e.id in (0x86, 0x63A2) and e.size >= 1],
    }


def _mutate_size(data: bytes, e: Element, rng: np.random.Generator, notes, where: str) -> bytes:
    bits = 7 * e.size_bytes
    old = (1 << bits) - 1 if e.size is None else e.size
    new = new_uint(rng, old, bits, (len(data) - e.data_offset + 1,))
    note(notes, f"{where} size {'unknown' if e.size is None else old} -> {new}")
    return set_element_size(data, e, new)


def _mutate_size_length(data: bytes, e: Element, rng: np.random.Generator, notes, where: str) -> bytes:
    """Rewrite the length marker of the size vint: the parser then reads a different number of bytes."""
    length = pick(rng, [n for n in range(1, 9) if n != e.size_bytes])
    old = data[e.size_offset]
    new = (0x80 >> (length - 1)) | (old & (0xFF >> length))
    note(notes, f"{where} size vint length {e.size_bytes} -> {length}")
    return data[: e.size_offset] + bytes([new]) + data[e.size_offset + 1 :]


def _mutate_id(data: bytes, e: Element, rng: np.random.Generator, notes, where: str) -> bytes:
    same_length = [i for i in NAMES if (i.bit_length() + 7) // 8 == e.id_bytes and i != e.id]
    if same_length and rng.random() < 0.6:
        new = pick(rng, same_length)
    else:  # a random ID of the same length (its length marker kept)
        marker = 1 << (8 * e.id_bytes - e.id_bytes)
        new = marker | int(rng.integers(0, marker))
        new = new if new != e.id else e.id ^ 1
    note(notes, f"{where} id -> {NAMES.get(new, hex(new))}")
    out = bytearray(data)
    write_uint(out, e.offset, e.id_bytes, new)
    return bytes(out)


def _mutate_value(data: bytes, e: Element, rng: np.random.Generator, notes, where: str) -> bytes:
    out = bytearray(data)
    old = read_uint(out, e.data_offset, e.size)
    new = new_uint(rng, old, 8 * e.size)
    write_uint(out, e.data_offset, e.size, new)
    note(notes, f"{where} value 0x{old:X} -> 0x{new:X}")
    return bytes(out)


def _mutate_block(data: bytes, e: Element, rng: np.random.Generator, notes, where: str) -> bytes:
    """A (Simple)Block header: track number vint, 16-bit relative timestamp, flags (lacing bits included)."""
    track = read_vint(data, e.data_offset)
    track_len = track[0] if track else 1
    field = pick(rng, ["track", "timestamp", "flags"])
    if field == "track" or e.size < track_len + 3:
        offset, nbytes = e.data_offset, 1
    elif field == "timestamp":
        offset, nbytes = e.data_offset + track_len, 2
    else:
        offset, nbytes = e.data_offset + track_len + 2, 1
    out = bytearray(data)
    old = read_uint(out, offset, nbytes)
    new = new_uint(rng, old, 8 * nbytes, (0x81, 0x82, 0x83) if field == "track" else (0x02, 0x04, 0x06, 0x80, 0x08))
    write_uint(out, offset, nbytes, new)
    note(notes, f"{where} block {field} 0x{old:X} -> 0x{new:X}")
    return bytes(out)


def _mutate_codec(data: bytes, e: Element, rng: np.random.Generator, notes, where: str) -> bytes:
    old = bytes(data[e.data_offset : e.end])
    same_length = [c for c in CODEC_IDS if len(c) == len(old) and c != old]
    if e.id == 0x86 and same_length:
        new = pick(rng, same_length)
    else:
        pos = int(rng.integers(min(len(old), 48)))
        new = old[:pos] + bytes([old[pos] ^ int(rng.integers(1, 256))]) + old[pos + 1 :]
    note(notes, f"{where} {e.name} {old[:20]!r} -> {new[:20]!r}")
    return data[: e.data_offset] + new + data[e.end :]


_MUTATIONS = {"size": _mutate_size, "size_length": _mutate_size_length, "id": _mutate_id, "value": _mutate_value,
              "block_header": _mutate_block, "codec": _mutate_codec}


def mutate_ebml(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """One element-level mutation: a size vint (value or length marker), an ID, a small value, a block
    header (track, timestamp, lacing flags) or the CodecID / CodecPrivate."""
    elements = walk_ebml(data)
    if not elements:
        return poke_byte(data, rng, notes, "ebml: no elements")
    targets = {k: v for k, v in _targets(elements).items() if v}
    kind = pick_weighted(rng, {k: KIND_WEIGHTS[k] for k in targets})
    element = pick(rng, targets[kind])
    return _MUTATIONS[kind](data, element, rng, notes, f"ebml {element.path}@{element.offset}")
