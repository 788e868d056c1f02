"""Mutators of the media fuzz harness: pure functions of (bytes, numpy Generator) -> bytes.

The same Generator state gives the same output. Each also takes an optional `notes` list, to which it
appends one line per change it made (for the reports). Input `index` of a campaign with seed `seed` uses
`np.random.default_rng([seed, index])` for everything (which seed clip, which mutator, where), so any single
input can be rebuilt on its own.

Generic mutators work on any file; the structural ones parse the container (MP4 boxes, EBML elements,
MPEG-TS packets) and change a field of it; `combo` chains two or three of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from _fuzz_ebml import mutate_ebml
from _fuzz_fields import log_uniform_int, note, pick_weighted
from _fuzz_mp4 import mutate_mp4
from _fuzz_ts import mutate_ts

Mutator = Callable[..., bytes]


def bit_flip(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """Flip 1 to 64 distinct random bits."""
    out = bytearray(data or b"\0")
    bits = np.unique(rng.integers(0, len(out) * 8, size=log_uniform_int(rng, 1, 64)))
    for bit in bits.tolist():
        out[bit >> 3] ^= 1 << (bit & 7)
    note(notes, f"flipped {bits.size} bits from byte {int(bits[0]) >> 3} to {int(bits[-1]) >> 3}")
    return bytes(out)


def byte_run(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """Overwrite 1 to 1024 bytes at a random place with random bytes, zeros, 0xFF or one repeated byte."""
    out = bytearray(data or b"\0")
    start = int(rng.integers(len(out)))
    length = log_uniform_int(rng, 1, min(1024, len(out) - start))
    kind = ("random", "zeros", "ones", "repeat")[int(rng.integers(4))]
    if kind == "random":
        run = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    else:
        run = bytes([{"zeros": 0, "ones": 255}.get(kind, int(rng.integers(256)))]) * length
    if run == bytes(out[start : start + length]):
        run = bytes([run[0] ^ 0xFF]) + run[1:]
    out[start : start + length] = run
    note(notes, f"overwrote {length} bytes at {start} ({kind})")
    return bytes(out)


def truncate(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """Cut the file at a uniform random place, or drop a few bytes to a few KiB off its end."""
    if len(data) < 2:
        return b""
    if rng.random() < 0.5:
        keep = int(rng.integers(len(data)))
    else:
        keep = len(data) - log_uniform_int(rng, 1, len(data) - 1)
    note(notes, f"truncated to {keep} of {len(data)} bytes")
    return data[:keep]


def _chunk(data: bytes, rng: np.random.Generator) -> tuple[int, int]:
    length = log_uniform_int(rng, 1, max(1, len(data) // 4))
    start = int(rng.integers(0, max(1, len(data) - length + 1)))
    return start, length


def duplicate_chunk(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """Copy a chunk (1 byte to a quarter of the file) and insert it at a random place."""
    start, length = _chunk(data, rng)
    at = int(rng.integers(0, len(data) + 1))
    note(notes, f"copied {length} bytes from {start} to {at}")
    return data[:at] + data[start : start + length] + data[at:]


def remove_chunk(data: bytes, rng: np.random.Generator, notes: list[str] | None = None) -> bytes:
    """Remove a chunk (1 byte to a quarter of the file)."""
    if not data:
        return b"\0"
    start, length = _chunk(data, rng)
    note(notes, f"removed {length} bytes at {start}")
    return data[:start] + data[start + length :]


GENERIC: dict[str, Mutator] = {"bit_flip": bit_flip, "byte_run": byte_run, "truncate": truncate,
                               "duplicate_chunk": duplicate_chunk, "remove_chunk": remove_chunk}
STRUCTURAL: dict[str, tuple[str, Mutator]] = {"mp4": ("mp4_box", mutate_mp4), "ebml": ("ebml_element", mutate_ebml),
                                              "ts": ("ts_packet", mutate_ts)}
WEIGHTS = {"generic": 1.0, "structural": 4.0, "combo": 2.0}


def combo(data: bytes, rng: np.random.Generator, notes: list[str] | None = None, *,
          pool: tuple[str, ...] = tuple(GENERIC)) -> bytes:
    """Two or three mutators of `pool` (names of generic or structural mutators) one after another."""
    table = {**GENERIC, **dict(STRUCTURAL.values())}
    for _ in range(int(rng.integers(2, 4))):
        data = table[pool[int(rng.integers(len(pool)))]](data, rng, notes)
    return data


def mutators_for(family: str) -> dict[str, Mutator]:
    """The mutators that apply to a seed of `family` ('mp4', 'ebml', 'ts' or another): the generic ones,
    the family's structural one (if any), and `combo` over those."""
    table = dict(GENERIC)
    if family in STRUCTURAL:
        name, mutator = STRUCTURAL[family]
        table[name] = mutator
    table["combo"] = partial(combo, pool=tuple(table))
    return table


def weights_for(family: str) -> dict[str, float]:
    structural = STRUCTURAL.get(family, ("",))[0]
    return {name: WEIGHTS["combo" if name == "combo" else "structural" if name == structural else "generic"]
            for name in mutators_for(family)}


@dataclass(frozen=True)
class FuzzInput:
    """One input of a campaign: which seed clip, which mutator, what it changed, and the bytes."""

    index: int
    seed_name: str
    suffix: str
    mutator: str
    notes: tuple[str, ...]
    data: bytes


def make_input(seed: int, index: int, seeds: list[tuple[str, str, str, bytes]]) -> FuzzInput:
    """Input `index` of the campaign `seed`; `seeds` lists (name, family, suffix, bytes) of the seed clips."""
    rng = np.random.default_rng([seed, index])
    name, family, suffix, data = seeds[int(rng.integers(len(seeds)))]
    mutator = pick_weighted(rng, weights_for(family))
    notes: list[str] = []
    mutated = mutators_for(family)[mutator](data, rng, notes)
    return FuzzInput(index, name, suffix, mutator, tuple(notes), mutated)
