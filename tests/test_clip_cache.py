"""Feature cache: keys, resume, recompute on change, exact equality with window_features."""

from __future__ import annotations

import io
import logging
import re
import tracemalloc
import zipfile

import numpy as np
import numpy.lib.format as npy
import pytest

import mvrt.clip_cache as fc
from mvrt.config import AudioNorm, FrontendConfig, ModelConfig
from mvrt.data import discover
from mvrt.errors import MvrtError
from mvrt.clip_cache import FeatureCache, entry_features, frontend_key, load_batch, load_entry
from mvrt.runtime.window_reader import iter_file_features, window_at
from mvrt.standin import generate_standin


def _config(arch="slowfast", **frontend) -> ModelConfig:
    fe = FrontendConfig(**{"window_seconds": 2.0, "image_size": 32, **frontend})
    return ModelConfig(arch=arch, width=1 / 16, frontend=fe)


@pytest.fixture(scope="module")
def flat_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat")
    generate_standin(root, clips_per_class=1, splits=("train",), seconds=1.5, width=64, height=48, progress=False)
    return root


def test_second_build_computes_nothing_and_change_recomputes(flat_root, tmp_path):
    clips = discover(flat_root, "train")
    cache = FeatureCache(tmp_path, _config())
    first = cache.build(clips, progress=False)
    assert (first.computed, first.cached, first.failed_count) == (6, 0, 0)
    second = cache.build(clips, progress=False)
    assert (second.computed, second.cached) == (0, 6)
    changed = tmp_path / "copy.mp4"
    changed.write_bytes(clips[0].video_path.read_bytes())
    moved = [c.__class__(changed, changed, c.label, c.class_name, c.split, c.stem) if i == 0 else c for i, c in enumerate(clips)]
    before = cache.path_for(moved[0])
    with open(changed, "ab") as f:
        f.write(b"\0")  # new content: a new fingerprint
    assert cache.path_for(moved[0]) != before
    third = cache.build(moved, progress=False)
    assert (third.computed, third.cached) == (1, 5)


def test_frontend_parameters_change_the_key():
    base = frontend_key(_config())
    assert frontend_key(_config()) == base
    assert frontend_key(_config(n_mels=64)) != base
    assert frontend_key(_config(window_seconds=3.0)) != base
    assert frontend_key(_config("musicvideo")) != base
    assert frontend_key(_config().replace(width=0.5, audio_norm=(("audio_slow", AudioNorm((1, 2), (3, 4))),))) == base


def test_interrupted_build_resumes(flat_root, tmp_path, monkeypatch):
    clips = discover(flat_root, "train")
    config = _config("musicvideo")
    real = fc.compute_clip_arrays
    calls = []

    def failing(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies after 2 clips
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fc, "compute_clip_arrays", failing)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(tmp_path, config).build(clips, progress=False)
    monkeypatch.setattr(fc, "compute_clip_arrays", real)
    assert not list(tmp_path.glob("*/.tmp-*"))  # no half-written entry left behind
    report = FeatureCache(tmp_path, config).build(clips, progress=False)
    assert (report.computed, report.cached) == (4, 2)


def test_cached_tensors_equal_window_features_exactly(flat_root, tmp_path):
    clip = discover(flat_root, "train")[3]
    norm = (("audio_fast", AudioNorm((-40.0, 0.1), (20.0, 1.7))), ("audio_slow", AudioNorm((-30.0, -0.2), (15.0, 1.5))))
    config = _config().replace(audio_norm=norm)
    report = FeatureCache(tmp_path, config.replace(audio_norm=())).build([clip], progress=False)
    raw = load_entry(report.entries[0][1])
    assert raw["frames"].dtype == np.uint8 and raw["frames"].shape == (64, 32, 32, 3)
    got = entry_features(raw, config)
    window = window_at(clip.video_path, config, 0.0)
    _, expected = next(iter_file_features(clip.video_path, config, [window]))
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_authors_layout_and_decode_failure(tmp_path):
    root = tmp_path / "data"
    generate_standin(root, clips_per_class=1, splits=("train",), seconds=1.5, width=64, height=48,
                     layout="authors", progress=False)
    broken = root / "train" / "Sad" / "video" / "sad_0000.mp4"
    broken.write_bytes(b"not a video")
    clips = discover(root, "train")
    assert all(c.audio_path != c.video_path for c in clips)
    report = FeatureCache(tmp_path / "cache", _config()).build(clips, progress=False)
    assert (report.computed, report.failed_count) == (5, 1)
    assert "sad_0000.mp4" in report.failed[0][1] and "\n" not in report.failed[0][1]
    raw = load_entry(report.entries[0][1])
    assert raw["audio_fast"].shape == (2, 128, 126) and raw["frames"].shape == (64, 32, 32, 3)


def test_a_pair_shorter_than_a_window_spans_the_longer_file_as_inference_does(tmp_path):
    """Audio 1.8 s, video 1.2 s, 2 s windows: the span is 1.8 s (the pair reader's), the last frame held."""
    from media_factory import chirp, index_frames, read_indices

    from mvrt.data import Clip
    from mvrt.runtime.inputs import MediaPair
    from mvrt.runtime.window_reader import WindowFeatures, iter_pair_features
    from mvrt.standin import write_audio, write_clip

    audio = write_audio(tmp_path / "audio" / "a.flac", chirp(1.8, 32000), 32000)
    video = write_clip(tmp_path / "video" / "a.mp4", None, 32000, index_frames(12, 48, 48), 10)
    clip = Clip(audio, video, 0, "Excited", "train", "a")
    config = _config()
    window = fc.clip_window(clip, config)
    assert (window.start_seconds, window.window_seconds) == (0.0, 2.0)
    assert window.span_seconds == pytest.approx(1.8, abs=0.03)
    report = FeatureCache(tmp_path / "cache", config).build([clip], progress=False)
    raw = load_entry(report.entries[0][1], config)
    shown = read_indices(raw["frames"])
    assert shown[0] == 0 and shown[-22:] == [11] * 22  # targets past 1.2 s show the last frame
    pair = [e for e in iter_pair_features(MediaPair(audio, video), config) if isinstance(e, WindowFeatures)]
    assert pair[0].window == window
    got = entry_features(raw, config)
    for name, expected in pair[0].feeds.items():
        np.testing.assert_array_equal(got[name], expected, err_msg=name)


def test_the_frontend_version_is_in_the_key(monkeypatch):
    base = frontend_key(_config())
    monkeypatch.setattr(fc, "FRONTEND_VERSION", fc.FRONTEND_VERSION + 1)
    assert frontend_key(_config()) != base


# --- entries nobody vetted ----------------------------------------------------------------------

def test_one_cache_serves_both_tensor_contracts(flat_root, tmp_path):
    """The entries hold the raw uint8 frames: contract 2 loads them as uint8 `video` (3, T, H, W), stacked as uint8,
    exactly the frames contract 1 normalises; the key does not depend on the contract."""
    clip = discover(flat_root, "train")[2]
    c1, c2 = _config(), _config().replace(contract=2)
    assert frontend_key(c1) == frontend_key(c2)
    report = FeatureCache(tmp_path, c1).build([clip], progress=False)
    path = report.entries[0][1]
    raw = load_entry(path, c2)
    batch = load_batch([path, path], c2)
    assert set(batch) == {"audio_slow", "audio_fast", "video"}
    assert batch["video"].dtype == np.uint8 and batch["video"].shape == (2, 3, 64, 32, 32)
    np.testing.assert_array_equal(batch["video"][1], raw["frames"].transpose(3, 0, 1, 2))
    window = window_at(clip.video_path, c2, 0.0)
    _, expected = next(iter_file_features(clip.video_path, c2, [window]))
    for name in expected:
        np.testing.assert_array_equal(batch[name][0], expected[name], err_msg=name)
    float_batch = load_batch([path], c1)
    np.testing.assert_array_equal(float_batch["audio_fast"], batch["audio_fast"][:1])
    assert float_batch["video_fast"].dtype == np.float32


@pytest.fixture(scope="module")
def clean_entry(flat_root, tmp_path_factory):
    """(clip, config, arrays) of one clip's entry as the current writer computes it."""
    clip, config = discover(flat_root, "train")[0], _config()
    root = tmp_path_factory.mktemp("clean")
    report = FeatureCache(root, config).build([clip], progress=False)
    return clip, config, load_entry(report.entries[0][1])


def _npy_header(dtype, shape) -> bytes:
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return buf.getvalue()  # magic, length, header text


def _zip(path, members: dict[str, bytes | tuple[bytes, int]], compression=zipfile.ZIP_STORED) -> None:
    """A zip of `members`: name -> bytes, or (header bytes, count of zero bytes streamed after it)."""
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=1) as archive:
        for name, content in members.items():
            with archive.open(name, "w", force_zip64=True) as f:
                head, zeros = content if isinstance(content, tuple) else (content, 0)
                f.write(head)
                for start in range(0, zeros, 1 << 20):
                    f.write(bytes(min(1 << 20, zeros - start)))


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _members(arrays: dict, **changes) -> dict:
    members = {f"{name}.npy": _npy(array) for name, array in arrays.items()}
    for name, value in changes.items():
        if value is None:
            del members[f"{name}.npy"]
        else:
            members[f"{name}.npy"] = value
    return members


FRAMES = (64, 32, 32, 3)
BAD_ENTRIES = {
    # the header claims the right small array, the member inflates to 64 MiB
    "zip bomb": (lambda a: _members(a, frames=(_npy_header(np.uint8, FRAMES), 64 << 20)), zipfile.ZIP_DEFLATED,
                 r"member 'frames.npy' inflates to \d+ bytes, more than a uint8 array of shape \(64, 32, 32, 3\) needs"),
    # a valid .npy of a wrong, 48 MiB shape, compressed small
    "wrong huge shape": (lambda a: _members(a, frames=(_npy_header(np.uint8, (64, 512, 512, 3)), 64 * 512 * 512 * 3)),
                         zipfile.ZIP_DEFLATED, r"member 'frames.npy' inflates to \d+ bytes"),
    # a header claiming 3 TB with hardly any data (np.load: MemoryError)
    "huge shape header": (lambda a: _members(a, frames=_npy_header(np.uint8, (10**9, 32, 32, 3)) + bytes(100)),
                          zipfile.ZIP_STORED, r"'frames' is uint8 \(1000000000, 32, 32, 3\), this model's front-end needs "
                          r"uint8 \(64, 32, 32, 3\)"),
    "missing member": (lambda a: _members(a, audio_fast=None), zipfile.ZIP_STORED, r"missing member\(s\) 'audio_fast'$"),
    "wrong dtype": (lambda a: _members(a, audio_slow=_npy(a["audio_slow"].astype(np.int32))), zipfile.ZIP_STORED,
                    r"'audio_slow' is int32 \(2, 128, 32\), this model's front-end needs float32 \(2, 128, 32\)"),
    "extra member": (lambda a: _members(a, notes=_npy(np.zeros(3))), zipfile.ZIP_STORED, r"unexpected member\(s\) 'notes'$"),
    "header and size disagree": (lambda a: _members(a, frames=_npy(a["frames"][:32])), zipfile.ZIP_STORED,
                                 r"'frames' is uint8 \(32, 32, 32, 3\)"),
}


def _write_bad(path, case, arrays) -> None:
    if case == "non-zip":
        path.write_bytes(b"not a zip file at all " * 100)
    else:
        build, compression, _ = BAD_ENTRIES[case]
        _zip(path, build(arrays), compression)


@pytest.mark.parametrize("case", [*BAD_ENTRIES, "non-zip"])
def test_build_discards_and_recomputes_a_bad_entry(clean_entry, tmp_path, caplog, case):
    clip, config, clean = clean_entry
    cache = FeatureCache(tmp_path, config)
    path = cache.path_for(clip)
    path.parent.mkdir(parents=True)
    _write_bad(path, case, clean)
    match = BAD_ENTRIES[case][2] if case in BAD_ENTRIES else r"not a zip file written by mvrt"
    with caplog.at_level(logging.WARNING, logger="mvrt.clip_cache"):
        report = cache.build([clip], progress=False)
    assert (report.computed, report.cached, report.failed_count) == (1, 0, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "discarded a bad feature-cache entry" in warnings[0]
    assert "\n" not in warnings[0] and re.search(match.rstrip("$"), warnings[0])
    recomputed = load_entry(path, config)
    assert set(recomputed) == set(clean)
    for name in clean:
        assert recomputed[name].dtype == clean[name].dtype
        np.testing.assert_array_equal(recomputed[name], clean[name], err_msg=name)
    assert cache.build([clip], progress=False).cached == 1  # and the recomputed entry is trusted from now on

    _write_bad(path, case, clean)
    tracemalloc.start()
    try:
        problem = fc.entry_problem(path, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problem is not None and re.search(match, problem), problem
    assert peak < 2 << 20, f"checking the entry took {peak} bytes"  # nothing big was decompressed


@pytest.mark.parametrize("case", ["huge shape header", "missing member", "extra member", "non-zip"])
def test_loading_a_bad_entry_deletes_it_with_one_line_error(clean_entry, tmp_path, case):
    _, config, clean = clean_entry
    path = tmp_path / "entry.npz"
    _write_bad(path, case, clean)
    with pytest.raises(MvrtError, match=r"^" + re.escape(f"{path}: bad feature-cache entry (") + r".*\); it was deleted; "
                       r"build the cache again \(rerun the command\) to recompute it$") as info:
        load_batch([path], config)
    assert "\n" not in str(info.value) and not path.exists()
    _write_bad(path, case, clean)
    with pytest.raises(MvrtError, match=r"bad feature-cache entry"):
        load_entry(path)  # without a config: the members and dtypes of some architecture are still checked


def test_damaged_data_is_found_when_loading(clean_entry, tmp_path):
    """Array bytes are checked (CRC) only when read; the directory and headers stay valid."""
    clip, config, clean = clean_entry
    cache = FeatureCache(tmp_path, config)
    path = cache.build([clip], progress=False).entries[0][1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the frames' data
    path.write_bytes(bytes(data))
    assert fc.entry_problem(path, config) is None
    with pytest.raises(MvrtError, match=r"bad feature-cache entry \(unreadable: Bad CRC-32 for file 'frames.npy'\)"):
        load_batch([path], config)
    assert cache.build([clip], progress=False).computed == 1
    np.testing.assert_array_equal(load_entry(path, config)["frames"], clean["frames"])


def test_entries_of_the_current_writer_pass_without_a_config(clean_entry, tmp_path):
    clip, config, clean = clean_entry
    path = FeatureCache(tmp_path, config).build([clip], progress=False).entries[0][1]
    assert fc.entry_problem(path) is None
    raw = load_entry(path)
    assert all(np.array_equal(raw[name], clean[name]) for name in clean) and raw["frames"].flags.writeable
