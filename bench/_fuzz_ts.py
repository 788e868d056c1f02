"""MPEG-TS packet walker and packet / PSI mutations for the fuzz harness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from _fuzz_fields import new_uint, note, pick, pick_weighted, poke_byte, read_uint, write_uint

PACKET = 188
SYNC = 0x47
STREAM_TYPES = (0x01, 0x02, 0x03, 0x04, 0x06, 0x0F, 0x10, 0x11, 0x15, 0x1B, 0x24, 0x81, 0x87, 0xFF)
KIND_WEIGHTS = {"pid": 1.0, "continuity": 1.0, "adaptation": 1.0, "pusi": 1.0, "pes_header": 2.0,
                "pmt_stream_type": 2.0, "pmt_pid": 1.0}


@dataclass(frozen=True)
class TsPacket:
    offset: int
    pid: int
    pusi: bool
    adaptation: int  # adaptation_field_control, 0..3
    payload: int  # offset of the payload in the file (offset + 188 when there is none)


def walk_ts(data: bytes, max_packets: int = 100000) -> list[TsPacket]:
    """The 188-byte packets from the first sync byte on, while they stay in sync."""
    start = next((i for i in range(min(len(data), PACKET)) if data[i] == SYNC and
                  (i + PACKET >= len(data) or data[i + PACKET] == SYNC)), None)
    packets: list[TsPacket] = []
    pos = start if start is not None else len(data)
    while pos + PACKET <= len(data) and data[pos] == SYNC and len(packets) < max_packets:
        afc = data[pos + 3] >> 4 & 3
        payload = pos + 4 + (1 + data[pos + 4] if afc & 2 else 0)
        packets.append(TsPacket(pos, read_uint(data, pos + 1, 2) & 0x1FFF, bool(data[pos + 1] & 0x40), afc,
                                min(payload, pos + PACKET) if afc & 1 else pos + PACKET))
        pos += PACKET
    return packets


def crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1 ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else crc << 1 & 0xFFFFFFFF
    return crc


def _section(data: bytes, packet: TsPacket) -> tuple[int, int] | None:
    """(start, length incl. header and CRC) of the PSI section that starts in `packet`, if it fits."""
    if not packet.pusi or packet.payload >= packet.offset + PACKET:
        return None
    start = packet.payload + 1 + data[packet.payload]
    if start + 3 > packet.offset + PACKET:
        return None
    length = 3 + (read_uint(data, start + 1, 2) & 0x0FFF)
    return (start, length) if start + length <= packet.offset + PACKET and length >= 12 else None


def pmt_pids(data: bytes, packets: list[TsPacket]) -> set[int]:
    """PIDs of the program map tables named by the PAT."""
    pids: set[int] = set()
    for packet in packets:
        section = _section(data, packet) if packet.pid == 0 else None
        if section and data[section[0]] == 0:
            start, length = section
            for entry in range(start + 8, start + length - 4, 4):
                if read_uint(data, entry, 2) != 0:  # program 0 names the network PID
                    pids.add(read_uint(data, entry + 2, 2) & 0x1FFF)
    return pids


def pmt_entries(data: bytes, packets: list[TsPacket]) -> list[tuple[int, int, int, int]]:
    """(section start, section length, entry offset, stream type) of every elementary stream in a PMT."""
    entries = []
    pmts = pmt_pids(data, packets)
    for packet in packets:
        section = _section(data, packet) if packet.pid in pmts else None
        if not section or data[section[0]] != 2:
            continue
        start, length = section
        pos = start + 12 + (read_uint(data, start + 10, 2) & 0x0FFF)
        while pos + 5 <= start + length - 4:
            entries.append((start, length, pos, data[pos]))
            pos += 5 + (read_uint(data, pos + 3, 2) & 0x0FFF)
    return entries


def _with_crc(out: bytearray, start: int, length: int) -> None:
    write_uint(out, start + length - 4, 4, crc32_mpeg2(bytes(out[start : start + length - 4])))


def _mutate_pmt(data: bytes, kind: str, entry, rng: np.random.Generator, notes) -> bytes:
    start, length, pos, stream_type = entry
    out = bytearray(data)
    if kind == "pmt_stream_type":
        new = pick(rng, [t for t in STREAM_TYPES if t != stream_type])
        out[pos] = new
        note(notes, f"ts PMT@{start} stream type 0x{stream_type:02X} -> 0x{new:02X} (CRC fixed)")
    else:
        old = read_uint(out, pos + 1, 2) & 0x1FFF
        new = new_uint(rng, old, 13, (0, 0x11, 0x100, 0x101, 0x1000, 0x1FFF))
        write_uint(out, pos + 1, 2, 0xE000 | new)
        note(notes, f"ts PMT@{start} elementary PID 0x{old:X} -> 0x{new:X} (CRC fixed)")
    _with_crc(out, start, length)
    return bytes(out)


def _mutate_packet(data: bytes, kind: str, packet: TsPacket, pids: list[int], rng: np.random.Generator,
                   notes) -> bytes:
    out = bytearray(data)
    pos = packet.offset
    where = f"ts packet@{pos} pid 0x{packet.pid:X}"
    if kind == "pid":
        new = pick(rng, [p for p in pids if p != packet.pid] or [0x1FFF])
        new = new if rng.random() < 0.7 else new_uint(rng, packet.pid, 13)
        write_uint(out, pos + 1, 2, (read_uint(out, pos + 1, 2) & 0xE000) | new)
        note(notes, f"{where} pid -> 0x{new:X}")
    elif kind == "continuity":
        new = new_uint(rng, out[pos + 3] & 0x0F, 4)
        out[pos + 3] = (out[pos + 3] & 0xF0) | new
        note(notes, f"{where} continuity counter -> {new}")
    elif kind == "adaptation":
        if packet.adaptation & 2 and rng.random() < 0.5:
            out[pos + 4] = new_uint(rng, out[pos + 4], 8, (183, 184, 255))
            note(notes, f"{where} adaptation field length -> {out[pos + 4]}")
        else:
            new = pick(rng, [a for a in range(4) if a != packet.adaptation])
            out[pos + 3] = (out[pos + 3] & 0xCF) | new << 4
            note(notes, f"{where} adaptation_field_control {packet.adaptation} -> {new}")
    elif kind == "pusi":
        out[pos + 1] ^= 0x40
        note(notes, f"{where} payload_unit_start {int(packet.pusi)} -> {int(not packet.pusi)}")
    else:
        return _mutate_pes(data, packet, rng, notes, where)
    return bytes(out)


def _mutate_pes(data: bytes, packet: TsPacket, rng: np.random.Generator, notes, where: str) -> bytes:
    """One field of the PES header that starts in `packet`: stream id, packet length, flags, header length
    or a PTS byte."""
    fields = {"stream_id": (3, 1), "pes_length": (4, 2), "flags": (6, 2), "header_length": (8, 1),
              "pts": (9 + int(rng.integers(5)), 1)}
    name = pick(rng, list(fields))
    offset, nbytes = fields[name]
    offset += packet.payload
    if offset + nbytes > packet.offset + PACKET:
        return poke_byte(data, rng, notes, f"{where}: PES header too short")
    out = bytearray(data)
    old = read_uint(out, offset, nbytes)
    new = new_uint(rng, old, 8 * nbytes)
    write_uint(out, offset, nbytes, new)
    note(notes, f"{where} PES {name} 0x{old:X} -> 0x{new:X}")
    return bytes(out)


def mutate_ts(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """One MPEG-TS mutation: a packet's PID, continuity counter, adaptation field or start flag, a PES
    header field, or a PMT stream type / elementary PID (with the section CRC recomputed)."""
    packets = walk_ts(data)
    if not packets:
        return poke_byte(data, rng, notes, "ts: no packets")
    entries = pmt_entries(data, packets)
    psi = pmt_pids(data, packets) | {0}
    pes = [p for p in packets if p.pusi and p.pid not in psi and data[p.payload : p.payload + 3] == b"\0\0\1"]
    targets = {"pid": packets, "continuity": packets, "adaptation": packets, "pusi": packets, "pes_header": pes,
               "pmt_stream_type": entries, "pmt_pid": entries}
    kind = pick_weighted(rng, {k: KIND_WEIGHTS[k] for k, v in targets.items() if v})
    target = pick(rng, targets[kind])
    if kind.startswith("pmt_"):
        return _mutate_pmt(data, kind, target, rng, notes)
    return _mutate_packet(data, kind, target, sorted({p.pid for p in packets}), rng, notes)
