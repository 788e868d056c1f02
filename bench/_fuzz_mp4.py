"""MP4 / ISO BMFF box walker and box-field mutations for the fuzz harness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from _fuzz_fields import new_uint, note, pick, pick_weighted, poke_byte, read_uint, write_uint

# Boxes whose payload holds child boxes, and how many payload bytes come before the first child.
CONTAINERS: dict[bytes, int] = {
    **dict.fromkeys([b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"udta", b"mvex", b"moof",
                     b"traf", b"mfra", b"sinf", b"schi"], 0),
    b"meta": 4, b"stsd": 8, b"dref": 8,
    **dict.fromkeys([b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09", b"av01", b"mp4v", b"encv"], 78),  # visual entries
    **dict.fromkeys([b"mp4a", b"Opus", b"fLaC", b"ac-3", b"ec-3", b"enca"], 28),  # audio sample entries
}
VISUAL_ENTRIES = frozenset(k for k, v in CONTAINERS.items() if v == 78)
AUDIO_ENTRIES = frozenset(k for k, v in CONTAINERS.items() if v == 28)
FULL_BOXES = frozenset([b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"vmhd", b"smhd", b"nmhd", b"dref", b"url ", b"stsd",
                        b"stts", b"stss", b"ctts", b"stsc", b"stsz", b"stz2", b"stco", b"co64", b"elst", b"sgpd",
                        b"sbgp", b"mehd", b"trex", b"mfhd", b"tfhd", b"trun", b"tfdt", b"meta", b"esds", b"sdtp",
                        b"cslg", b"iods", b"sidx", b"tfra", b"mfro", b"dOps"])
# Payload offset of the 32-bit entry (or sample) count, after version and flags.
COUNT_OFFSETS: dict[bytes, int] = {**dict.fromkeys([b"stts", b"stss", b"ctts", b"stsc", b"stco", b"co64", b"stsd",
                                                    b"dref", b"elst", b"trun"], 4), b"stsz": 8}
CODEC_CONFIGS = frozenset([b"avcC", b"hvcC", b"esds", b"dOps", b"vpcC", b"av1C"])
HANDLERS = (b"vide", b"soun", b"hint", b"text", b"meta", b"subt", b"sbtl", b"mdir", b"\x00\x00\x00\x00")
ENTRY_TYPES = (b"avc1", b"avc3", b"hev1", b"mp4v", b"mp4a", b"Opus", b"vp09", b"av01", b"twos", b"raw ", b"jpeg")
KNOWN_TYPES = tuple(sorted(set(CONTAINERS) | FULL_BOXES | CODEC_CONFIGS | {b"ftyp", b"mdat", b"free", b"skip"}))
VISUAL_FIELDS = {"data_reference_index": (14, 2), "width": (32, 2), "height": (34, 2), "frame_count": (48, 2),
                 "depth": (82, 2)}
AUDIO_FIELDS = {"data_reference_index": (14, 2), "version": (16, 2), "channelcount": (24, 2), "samplesize": (26, 2),
                "samplerate": (32, 4)}
KIND_WEIGHTS = {"size": 3.0, "type": 1.0, "version_flags": 1.0, "entry_count": 2.0, "handler": 1.0,
                "sample_entry": 2.0, "codec_config": 2.0, "timescale": 1.0}


@dataclass(frozen=True)
class Box:
    """One box: where it starts, its total size (header included) and its path from the top level."""

    offset: int
    size: int
    header_bytes: int  # 8, or 16 with a 64-bit largesize
    type: bytes
    path: str  # e.g. "moov/trak/mdia/minf/stbl/stsz"

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def payload(self) -> int:
        return self.offset + self.header_bytes

    @property
    def parent_type(self) -> str:
        return self.path.rsplit("/", 2)[-2] if "/" in self.path else ""

    def holds(self, payload_offset: int, nbytes: int) -> bool:
        return self.payload + payload_offset + nbytes <= self.end


def walk_mp4(data: bytes, max_boxes: int = 20000, max_depth: int = 12) -> list[Box]:
    """Every box of `data` in file order (depth first); stops quietly at the first malformed header."""
    boxes: list[Box] = []

    def walk(start: int, end: int, parent: str, depth: int) -> None:
        pos = start
        while pos + 8 <= end and len(boxes) < max_boxes:
            size, kind, header = read_uint(data, pos, 4), bytes(data[pos + 4 : pos + 8]), 8
            if size == 1:
                if pos + 16 > end:
                    return
                size, header = read_uint(data, pos + 8, 8), 16
            elif size == 0:
                size = end - pos
            if size < header or pos + size > end:
                return
            name = kind.decode("latin-1")
            box = Box(pos, size, header, kind, f"{parent}/{name}" if parent else name)
            boxes.append(box)
            skip = CONTAINERS.get(kind)
            if skip is not None and depth < max_depth:
                walk(box.payload + skip, box.end, box.path, depth + 1)
            pos += size

    walk(0, len(data), "", 0)
    return boxes


def set_box_size(data: bytes, box: Box, value: int) -> bytes:
    """`data` with only the size field of `box` changed (the 64-bit largesize when the box has one)."""
    out = bytearray(data)
    if box.header_bytes == 16:
        write_uint(out, box.offset + 8, 8, value)
    else:
        write_uint(out, box.offset, 4, value)
    return bytes(out)


def _timescale_offset(data: bytes, box: Box) -> int | None:
    offset = 20 if data[box.payload] == 1 else 12  # after version/flags and the creation/modification times
    return offset if box.holds(offset, 4) else None


def _targets(data: bytes, boxes: list[Box]) -> dict[str, list[Box]]:
    return {
        "size": boxes,
        "type": boxes,
        "version_flags": [b for b in boxes if b.type in FULL_BOXES and b.holds(0, 4)],
        "entry_count": [b for b in boxes if b.type in COUNT_OFFSETS and b.holds(COUNT_OFFSETS[b.type], 4)],
        "handler": [b for b in boxes if b.type == b"hdlr" and b.holds(8, 4)],
        "sample_entry": [b for b in boxes if b.parent_type == "stsd" and b.size >= 36],
        "codec_config": [b for b in boxes if b.type in CODEC_CONFIGS and b.size > b.header_bytes],
        "timescale": [b for b in boxes if b.type in (b"mdhd", b"mvhd") and b.holds(0, 4) and _timescale_offset(data, b)],
    }


def _other_type(rng: np.random.Generator, old: bytes, choices: tuple[bytes, ...]) -> bytes:
    mode = int(rng.integers(3))
    if mode == 0:
        new = pick(rng, [c for c in choices if c != old])
    elif mode == 1:
        new = bytes(rng.integers(0, 256, 4, dtype=np.uint8))
    else:  # one character changed (e.g. 'stsz' -> 'stsy')
        new = bytearray(old)
        new[int(rng.integers(4))] ^= int(rng.integers(1, 256))
    return bytes(new) if bytes(new) != old else bytes([old[0] ^ 0x20]) + old[1:]


def _set_uint(data: bytes, offset: int, nbytes: int, rng: np.random.Generator, notes, label: str, extra=()) -> bytes:
    out = bytearray(data)
    old = read_uint(out, offset, nbytes)
    new = new_uint(rng, old, 8 * nbytes, extra)
    write_uint(out, offset, nbytes, new)
    note(notes, f"{label} {old} -> {new}")
    return bytes(out)


def _mutate_box(data: bytes, kind: str, box: Box, rng: np.random.Generator, notes) -> bytes:
    where = f"mp4 {box.path}@{box.offset}"
    if kind == "size":
        extra = (box.header_bytes, len(data) - box.offset + 1, box.size + 8)
        nbytes = 8 if box.header_bytes == 16 else 4
        return _set_uint(data, box.offset + (8 if nbytes == 8 else 0), nbytes, rng, notes, f"{where} size", extra)
    if kind == "type":
        new = _other_type(rng, box.type, KNOWN_TYPES)
        note(notes, f"{where} type -> {new!r}")
        return data[: box.offset + 4] + new + data[box.offset + 8 :]
    if kind == "version_flags":
        if rng.random() < 0.5:
            return _set_uint(data, box.payload, 1, rng, notes, f"{where} version", (0, 1, 2, 3))
        return _set_uint(data, box.payload + 1, 3, rng, notes, f"{where} flags")
    if kind == "entry_count":
        return _set_uint(data, box.payload + COUNT_OFFSETS[box.type], 4, rng, notes, f"{where} entry count")
    if kind == "handler":
        new = _other_type(rng, bytes(data[box.payload + 8 : box.payload + 12]), HANDLERS)
        note(notes, f"{where} handler type -> {new!r}")
        return data[: box.payload + 8] + new + data[box.payload + 12 :]
    if kind == "sample_entry":
        return _mutate_sample_entry(data, box, rng, notes, where)
    if kind == "codec_config":
        span = min(box.size - box.header_bytes, 32)
        return _set_uint(data, box.payload + int(rng.integers(span)), 1, rng, notes, f"{where} config byte")
    offset = _timescale_offset(data, box)
    return _set_uint(data, box.payload + offset, 4, rng, notes, f"{where} timescale", (1, 90000, 44100))


def _mutate_sample_entry(data: bytes, box: Box, rng: np.random.Generator, notes, where: str) -> bytes:
    fields = VISUAL_FIELDS if box.type in VISUAL_ENTRIES else AUDIO_FIELDS if box.type in AUDIO_ENTRIES else {}
    fields = {k: v for k, v in fields.items() if box.offset + v[0] + v[1] <= box.end}
    name = pick(rng, ["fourcc", *fields])
    if name == "fourcc":
        new = _other_type(rng, box.type, ENTRY_TYPES)
        note(notes, f"{where} sample entry fourcc -> {new!r}")
        return data[: box.offset + 4] + new + data[box.offset + 8 :]
    offset, nbytes = fields[name]
    return _set_uint(data, box.offset + offset, nbytes, rng, notes, f"{where} {name}")


def mutate_mp4(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """One box-level mutation: a size, a fourcc, version/flags, an entry count, the `hdlr` handler type,
    a `stsd` sample entry field, a codec configuration byte or an `mdhd`/`mvhd` timescale."""
    boxes = walk_mp4(data)
    if not boxes:
        return poke_byte(data, rng, notes, "mp4: no boxes")
    targets = {k: v for k, v in _targets(data, boxes).items() if v}
    kind = pick_weighted(rng, {k: KIND_WEIGHTS[k] for k in targets})
    return _mutate_box(data, kind, pick(rng, targets[kind]), rng, notes)
