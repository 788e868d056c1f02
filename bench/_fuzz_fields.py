"""Small helpers shared by the fuzz mutators: integer fields, value choices and notes."""

from __future__ import annotations

import numpy as np


def note(notes: list[str] | None, text: str) -> None:
    """Append a one-line description of a mutation to `notes` (when the caller asked for notes)."""
    if notes is not None:
        notes.append(text)


def log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high] (low >= 1), each decade about as likely as the next."""
    if high <= low:
        return low
    value = int(np.exp(rng.uniform(np.log(low), np.log(high + 1))))
    return min(max(value, low), high)


def read_uint(data: bytes | bytearray, offset: int, nbytes: int) -> int:
    """Big-endian unsigned integer of `nbytes` at `offset`."""
    return int.from_bytes(data[offset : offset + nbytes], "big")


def write_uint(buf: bytearray, offset: int, nbytes: int, value: int) -> None:
    buf[offset : offset + nbytes] = int(value).to_bytes(nbytes, "big")


def new_uint(rng: np.random.Generator, old: int, bits: int, extra: tuple[int, ...] = ()) -> int:
    """An 'interesting' unsigned value of `bits` bits that differs from `old`: a boundary, a small change of
    `old`, a multiple, a random value, or one of `extra` (e.g. a size that points past the end)."""
    top = (1 << bits) - 1
    delta = log_uniform_int(rng, 1, 1 << min(bits, 16))
    candidates = [0, 1, old + 1, old - 1, old + delta, old - delta, old * 2, old // 2, top, top >> 1,
                  (top >> 1) + 1, _random_uint(rng, bits), *extra]
    candidates = [c for c in candidates if 0 <= c <= top and c != old]
    if not candidates:  # only when bits == 0 cannot hold another value; flip the lowest bit
        return old ^ 1
    return int(candidates[int(rng.integers(len(candidates)))])


def _random_uint(rng: np.random.Generator, bits: int) -> int:
    return int.from_bytes(rng.integers(0, 256, (bits + 7) // 8, dtype=np.uint8).tobytes(), "big") & ((1 << bits) - 1)


def pick(rng: np.random.Generator, items):
    """One element of a non-empty sequence."""
    return items[int(rng.integers(len(items)))]


def pick_weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def poke_byte(data: bytes, rng: np.random.Generator, notes: list[str] | None, why: str) -> bytes:
    """Fallback when a structural mutator finds no structure: change one random byte."""
    if not data:
        return b"\x00"
    out = bytearray(data)
    pos = int(rng.integers(len(out)))
    out[pos] ^= int(rng.integers(1, 256))
    note(notes, f"{why}; changed the byte at {pos}")
    return bytes(out)
