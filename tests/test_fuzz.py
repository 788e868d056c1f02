"""The media fuzz harness (bench/fuzz_media.py): mutators, walkers, outcome classification, the CI campaign."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import mvrt.errors
from mvrt.errors import MediaError

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
CI_INPUTS = 800  # about 65 s on 2 free cores (12-13 inputs/s measured); 2-4 minutes on a busy machine
CI_SEED = 1
SEED_NAMES = {"mp4", "mp4-faststart", "mp4-fragmented", "mkv", "webm", "mpegts"}


@pytest.fixture(scope="module")
def fuzz():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import _fuzz_ebml
        import _fuzz_mp4
        import _fuzz_mutate
        import _fuzz_seeds
        import _fuzz_ts
        import _fuzz_worker
        import fuzz_media

        yield SimpleNamespace(media=fuzz_media, mutate=_fuzz_mutate, mp4=_fuzz_mp4, ebml=_fuzz_ebml, ts=_fuzz_ts,
                              worker=_fuzz_worker, seeds=_fuzz_seeds)
    finally:
        sys.path.remove(str(BENCH_DIR))


@pytest.fixture(scope="module")
def seeds_dir(fuzz, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    fuzz.seeds.seed_clips(folder)
    return folder


@pytest.fixture(scope="module")
def seeds(fuzz, seeds_dir) -> dict:
    return {s.name: s for s in fuzz.seeds.seed_clips(seeds_dir)}


def _diff(a: bytes, b: bytes) -> np.ndarray:
    assert len(a) == len(b)
    return np.flatnonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))


# ---------------------------------------------------------------- seeds and mutators
def test_seeds_cover_the_containers_and_are_byte_identical_when_regenerated(fuzz, seeds, tmp_path):
    import av

    assert SEED_NAMES <= set(seeds)
    for seed in seeds.values():
        with av.open(str(seed.path)) as container:
            assert {s.type for s in container.streams} >= {"audio", "video"}, seed.name
    again = {s.name: s.sha256 for s in fuzz.seeds.seed_clips(tmp_path / "again")}
    assert again == {name: s.sha256 for name, s in seeds.items()}


def test_every_mutator_is_deterministic_per_seed_and_changes_the_input(fuzz, seeds):
    for seed in seeds.values():
        data = seed.path.read_bytes()
        for name, mutator in fuzz.mutate.mutators_for(seed.family).items():
            outputs = [mutator(data, np.random.default_rng([5, k])) for k in range(8)]
            assert outputs == [mutator(data, np.random.default_rng([5, k])) for k in range(8)], (seed.name, name)
            assert all(out != data for out in outputs), (seed.name, name)
            assert len(set(outputs)) > 1, (seed.name, name)


def test_an_input_is_rebuilt_from_seed_and_index_alone(fuzz, seeds):
    table = [(s.name, s.family, s.suffix, s.path.read_bytes()) for s in seeds.values()]
    first = [fuzz.mutate.make_input(3, i, table) for i in range(40)]
    assert fuzz.mutate.make_input(3, 29, table) == first[29]
    assert fuzz.mutate.make_input(4, 29, table) != first[29]
    assert {item.mutator for item in first} >= {"bit_flip", "truncate", "combo"}
    assert all(item.notes for item in first)


def test_mp4_walker_finds_the_box_tree(fuzz, seeds):
    paths = {}
    for name in ("mp4", "mp4-faststart", "mp4-fragmented"):
        boxes = fuzz.mp4.walk_mp4(seeds[name].path.read_bytes())
        paths[name] = [b.path for b in boxes]
        assert boxes[0].type == b"ftyp" and boxes[-1].end == seeds[name].size_bytes, name
    stbl = "moov/trak/mdia/minf/stbl"
    assert set(paths["mp4"]) >= {"moov/mvhd", "moov/trak/tkhd", "moov/trak/mdia/mdhd", "moov/trak/mdia/hdlr",
                                 f"{stbl}/stsd/avc1/avcC", f"{stbl}/stsd/mp4a/esds", f"{stbl}/stts", f"{stbl}/stsc",
                                 f"{stbl}/stsz", f"{stbl}/stco", f"{stbl}/stss", "mdat"}
    assert paths["mp4"].index("mdat") < paths["mp4"].index("moov")
    assert paths["mp4-faststart"].index("moov") < paths["mp4-faststart"].index("mdat")
    assert set(paths["mp4-fragmented"]) >= {"moov/mvex/trex", "moof/mfhd", "moof/traf/tfhd", "moof/traf/trun"}


def test_mp4_size_mutation_changes_exactly_the_size_field(fuzz, seeds):
    data = seeds["mp4"].path.read_bytes()
    stsz = next(b for b in fuzz.mp4.walk_mp4(data) if b.type == b"stsz")
    mutated = fuzz.mp4.set_box_size(data, stsz, stsz.size + 1000)
    changed = _diff(data, mutated)
    assert changed.size and changed.min() >= stsz.offset and changed.max() < stsz.offset + 4
    assert int.from_bytes(mutated[stsz.offset : stsz.offset + 4], "big") == stsz.size + 1000


def test_mp4_mutator_reaches_every_field_kind(fuzz, seeds):
    data = seeds["mp4"].path.read_bytes()
    notes: list[str] = []
    for k in range(300):
        fuzz.mp4.mutate_mp4(data, np.random.default_rng([9, k]), notes)
    expected = [("", " size "), ("", " type -> "), ("", " version "), ("", " flags "), ("stsz@", " entry count "),
                ("hdlr@", " handler type "), ("stsd/avc1@", " width "), ("stsd/mp4a@", " channelcount "),
                ("avcC@", " config byte "), ("esds@", " config byte "), ("mdhd@", " timescale ")]
    for box, words in expected:
        assert any(box in line and words in line for line in notes), (box, words)


def test_ebml_walker_finds_the_elements(fuzz, seeds):
    for name, doc_type, codecs in (("mkv", b"matroska", {b"V_MPEG4/ISO/AVC", b"A_AAC"}),
                                   ("webm", b"webm", {b"V_VP9", b"A_OPUS"})):
        data = seeds[name].path.read_bytes()
        elements = fuzz.ebml.walk_ebml(data)
        by_path = {}
        for e in elements:
            by_path.setdefault(e.path, []).append(e)
        assert {"Segment/Info/TimestampScale", "Segment/Tracks/TrackEntry/Video/PixelWidth",
                "Segment/Tracks/TrackEntry/Audio/SamplingFrequency", "Segment/Cluster/Timestamp",
                "Segment/Cues/CuePoint"} <= set(by_path), name
        (doc,) = by_path["EBML/DocType"]
        assert data[doc.data_offset : doc.end] == doc_type
        assert {data[e.data_offset : e.end] for e in by_path["Segment/Tracks/TrackEntry/CodecID"]} == codecs
        blocks = [e for e in elements if e.id in fuzz.ebml.BLOCKS]
        assert len(blocks) > 50, name


def test_ebml_size_mutation_changes_exactly_the_size_field(fuzz, seeds):
    data = seeds["mkv"].path.read_bytes()
    tracks = next(e for e in fuzz.ebml.walk_ebml(data) if e.path == "Segment/Tracks")
    mutated = fuzz.ebml.set_element_size(data, tracks, tracks.size + 3)
    changed = _diff(data, mutated)
    assert changed.size and changed.min() >= tracks.size_offset and changed.max() < tracks.data_offset
    assert fuzz.ebml.read_vint(mutated, tracks.size_offset) == (tracks.size_bytes, tracks.size + 3)
    assert fuzz.ebml.encode_vint(5, 2) == b"\x40\x05"
    with pytest.raises(ValueError, match="does not fit"):
        fuzz.ebml.encode_vint(128, 1)


def test_ts_walker_finds_the_pmt_and_pmt_mutations_keep_the_crc(fuzz, seeds):
    data = seeds["mpegts"].path.read_bytes()
    packets = fuzz.ts.walk_ts(data)
    assert len(packets) == len(data) // 188
    entries = fuzz.ts.pmt_entries(data, packets)
    assert {stream_type for *_, stream_type in entries} == {0x1B, 0x0F}  # H.264, AAC (ADTS)
    for start, length, _, _ in entries:
        assert fuzz.ts.crc32_mpeg2(data[start : start + length]) == 0
    for k in range(200):
        notes: list[str] = []
        mutated = fuzz.ts.mutate_ts(data, np.random.default_rng([2, k]), notes)
        if "stream type" in notes[0]:
            break
    changed = [e for e, old in zip(fuzz.ts.pmt_entries(mutated, packets), entries) if e[3] != old[3]]
    assert len(changed) == 1
    start, length, _, _ = changed[0]
    assert fuzz.ts.crc32_mpeg2(mutated[start : start + length]) == 0


# ---------------------------------------------------------------- classification of outcomes
def misbehave(index: int, path: str) -> None:
    """Test-only worker hook (run before classify): each index misbehaves in one way; 6 and up do not."""
    if index == 0:
        os.kill(os.getpid(), signal.SIGSEGV)
    elif index == 1:
        time.sleep(60)
    elif index == 2:
        blocks = [np.ones(64 << 20, np.uint8) for _ in range(48)]  # 3 GiB, touched; the parent kills first
        time.sleep(30 + len(blocks))
    elif index == 3:
        raise RuntimeError("boom")
    elif index == 4:
        raise MemoryError("cannot allocate")
    elif index == 5:
        raise MediaError(f"{path}: first line\nsecond line")


@pytest.fixture(scope="module")
def misbehaving(fuzz, seeds_dir):
    # 15 s: on a VM whose fresh pages fault in slowly (measured 512 MiB in 7.8 s once), the
    # 3 GiB worker must still pass 800 MiB before the timeout calls it a hang.
    return fuzz.media.run_campaign(8, 11, 2, None, timeout_seconds=15, memory_mib=800, cache_dir=seeds_dir,
                                   hook=misbehave)


def test_a_worker_killed_by_a_signal_is_a_crash(misbehaving):
    record = misbehaving.records[0]
    assert (record.outcome, record.error_type) == ("crash", "SIGSEGV")
    assert "Segmentation fault" in record.detail and "misbehave" in record.detail  # faulthandler's traceback


def test_a_worker_over_the_timeout_is_a_hang(misbehaving):
    record = misbehaving.records[1]
    assert (record.outcome, record.error_type) == ("hang", "timeout")
    assert 15 <= record.seconds < 30
    assert "misbehave" in record.detail  # the stacks dumped before the kill say where it hung


def test_a_worker_over_the_memory_limit_is_memory(misbehaving):
    rss, raised = misbehaving.records[2], misbehaving.records[4]
    assert (rss.outcome, rss.error_type) == ("memory", "RSS") and rss.peak_rss_mib > 800
    assert rss.seconds < 20
    assert (raised.outcome, raised.error_type) == ("memory", "MemoryError")


def test_exceptions_are_unexpected_unless_clean_one_line_mvrt_errors(misbehaving):
    boom, multi = misbehaving.records[3], misbehaving.records[5]
    assert (boom.outcome, boom.error_type, boom.message) == ("unexpected exception", "RuntimeError", "boom")
    assert multi.outcome == "unexpected exception"
    assert multi.error_type == "MediaError (message not one line)"


def test_the_campaign_goes_on_with_fresh_workers(misbehaving):
    assert [r.index for r in misbehaving.records] == list(range(8))
    assert {r.outcome for r in misbehaving.records[6:]} <= {"ok", "clean error"}
    assert {r.index for r in misbehaving.failures} == set(range(6))
    assert misbehaving.reproduce[0] == (
        "python bench/fuzz_media.py --seed 11 --only 0 --timeout-seconds 15 --memory-mib 800")


def test_pipeline_wrapped_exceptions_are_unexpected(fuzz):
    outcome = fuzz.worker.mvrt_outcome(MediaError("/t/x.mkv: unexpected AttributeError: 'NoneType' has no rate"),
                                       "/t/x.mkv")
    assert (outcome.outcome, outcome.error_type, outcome.message) == (
        "unexpected exception", "AttributeError", "'NoneType' has no rate")
    clean = fuzz.worker.mvrt_outcome(MediaError("/t/x.mkv: no audio stream"), "/t/x.mkv")
    assert (clean.outcome, clean.error_type) == ("clean error", "MediaError")
    unexpected_error = getattr(mvrt.errors, "UnexpectedError", None)
    if unexpected_error is not None:  # the class of wrapped exceptions, whatever its message says
        outcome = fuzz.worker.mvrt_outcome(unexpected_error("/t/x.mkv: decoder gave up"), "/t/x.mkv")
        assert (outcome.outcome, outcome.error_type) == ("unexpected exception", "UnexpectedError")


def test_only_rebuilds_one_input_and_writes_it(fuzz, seeds_dir, tmp_path, capsys):
    status = fuzz.media.main(["--seed", "1", "--only", "3", "--cache-dir", str(seeds_dir),
                              "--keep-dir", str(tmp_path)])
    out = capsys.readouterr().out
    (written,) = tmp_path.iterdir()
    table = [(s.name, s.family, s.suffix, s.path.read_bytes()) for s in fuzz.seeds.seed_clips(seeds_dir)]
    assert written.read_bytes() == fuzz.mutate.make_input(1, 3, table).data
    assert "input 3 of seed 1" in out and "outcome: " in out
    assert status == int(any(o in out for o in ("outcome: crash", "outcome: hang", "outcome: memory",
                                                "outcome: unexpected")))


# ---------------------------------------------------------------- the CI campaign
@pytest.fixture(scope="module")
def ci_campaign(fuzz, seeds_dir):
    return fuzz.media.run_campaign(CI_INPUTS, CI_SEED, 2, None, timeout_seconds=60, memory_mib=3072,
                                   cache_dir=seeds_dir)


def test_ci_campaign_has_no_crash_hang_unexpected_exception_or_memory(ci_campaign):
    lines = [f"#{r.index} {r.outcome} {r.error_type}: {r.message[:120]} [{r.seed_name} / {r.mutator}: "
             f"{'; '.join(r.notes)[:160]}] reproduce: {ci_campaign.reproduce[r.index]}" for r in ci_campaign.failures]
    assert not lines, f"{len(lines)} failing inputs:\n" + "\n".join(lines)


def test_ci_campaign_is_not_vacuous(fuzz, ci_campaign):
    counts = ci_campaign.counts
    assert counts["ok"] >= CI_INPUTS // 10 and counts["clean error"] >= CI_INPUTS // 10, counts
    assert set(ci_campaign.by("seed_name")) >= SEED_NAMES
    mutators = set(fuzz.mutate.GENERIC) | {name for name, _ in fuzz.mutate.STRUCTURAL.values()} | {"combo"}
    assert set(ci_campaign.by("mutator")) == mutators
    for name, _ in fuzz.mutate.STRUCTURAL.values():  # structural mutations reach past the demuxer's checks
        assert ci_campaign.by("mutator")[name]["ok"] > 0, name
