"""Stand-in MVED data: layout, determinism and class-dependent content."""

from __future__ import annotations

import numpy as np
import pytest

from mvrt.config import CLASSES
from mvrt.errors import UsageError
from mvrt.runtime.decode import decode_audio, iter_window_frames, probe
from mvrt.runtime.windows import Window
from mvrt.standin import generate_standin

SMALL = dict(seconds=1.5, width=64, height=48, fps=10, sample_rate=22050, progress=False)
WHOLE = [Window(0, 0.0, 1.5, 1.5)]


def _decoded(path):
    (frames,) = iter_window_frames(path, WHOLE, frames=8, size=32)
    return decode_audio(path, 22050), frames


def test_flat_layout_has_six_classes_per_split(tmp_path):
    summary = generate_standin(
        tmp_path, clips_per_class={"train": 2, "test": 1}, splits=("train", "test"), **SMALL
    )
    assert summary.total_clips == 18 and summary.layout == "flat"
    for split, per_class in (("train", 2), ("test", 1)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == sorted(CLASSES)
        for label in CLASSES:
            clips = sorted((tmp_path / split / label).glob("*.mp4"))
            assert len(clips) == per_class
    info = probe(summary.clips[0].video_path, require_streams=True)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 64, 48)
    assert info.duration_seconds == pytest.approx(1.5, abs=0.1)
    assert "elapsed_seconds" in repr(summary) and "clips=" not in repr(summary)


def test_authors_layout_pairs_audio_and_video_by_stem(tmp_path):
    summary = generate_standin(tmp_path, clips_per_class=1, splits=("validation",), layout="authors", **SMALL)
    for label in CLASSES:
        audio = sorted((tmp_path / "validation" / label / "audio").glob("*.flac"))
        video = sorted((tmp_path / "validation" / label / "video").glob("*.mp4"))
        assert [p.stem for p in audio] == [p.stem for p in video] and len(audio) == 1
        a, v = probe(audio[0]), probe(video[0])
        assert (a.has_audio, a.has_video, v.has_audio, v.has_video) == (True, False, False, True)
        assert a.audio_codec == "flac"
    assert summary.clips[0].audio_path != summary.clips[0].video_path


def test_same_seed_same_media_other_seed_other_media(tmp_path):
    """The seed fixes the synthesised media exactly; the encoded files decode to the same media.

    libx264 is not bit-reproducible here: the same frames (identical bytes) encoded in the same
    process sometimes give another stream (seen with one thread too), so decoded frames are
    compared to within a few levels, and the synthesised frames and audio exactly.
    """
    from mvrt._synth import synth_clip
    from mvrt.standin import clip_seed

    shape = dict(seconds=1.5, width=64, height=48, fps=10, rate=22050)
    synth = [synth_clip("Tension", np.random.default_rng(clip_seed(seed, "test", 5, 0)), **shape) for seed in (7, 7, 8)]
    np.testing.assert_array_equal(synth[0][0], synth[1][0])
    np.testing.assert_array_equal(synth[0][1], synth[1][1])
    assert not np.array_equal(synth[0][1], synth[2][1])
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        summary = generate_standin(tmp_path / name, clips_per_class=1, splits=("test",), seed=seed, **SMALL)
        runs[name] = [_decoded(c.video_path) for c in summary.clips]
    for (audio_a, frames_a), (audio_b, frames_b) in zip(runs["a"], runs["b"]):
        np.testing.assert_array_equal(audio_a, audio_b)
        assert np.abs(frames_a.astype(np.int16) - frames_b).mean() < 1.0
    assert np.abs(runs["a"][0][1].astype(np.int16) - runs["c"][0][1]).mean() > 2.0
    assert not np.array_equal(runs["a"][0][0], runs["c"][0][0])


def _features(path):
    audio, frames = _decoded(path)
    rgb = frames.reshape(-1, 3).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    centroid = (np.fft.rfftfreq(audio.size, 1 / 22050) * spectrum).sum() / spectrum.sum()
    motion = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean()
    return {
        "rms": float(np.sqrt(np.mean(audio**2))),
        "centroid": float(centroid),
        "brightness": float(rgb.mean()),
        "warmth": float(rgb[:, 0].mean() - rgb[:, 2].mean()),
        "motion": float(motion),
    }


def test_classes_differ_in_the_expected_directions(tmp_path):
    summary = generate_standin(tmp_path, clips_per_class=3, splits=("train",), seed=1, **SMALL)
    feats = {label: [] for label in CLASSES}
    for clip in summary.clips:
        feats[clip.label].append(_features(clip.video_path))
    mean = {label: {k: np.mean([f[k] for f in fs]) for k in fs[0]} for label, fs in feats.items()}
    excited, sad, relax, tension = mean["Excited"], mean["Sad"], mean["Relaxation"], mean["Tension"]
    # every Excited clip is louder, brighter, warmer and busier than every Sad clip
    for key in ("rms", "centroid", "brightness", "warmth", "motion"):
        assert min(f[key] for f in feats["Excited"]) > max(f[key] for f in feats["Sad"]), key
    assert sad["warmth"] < 0 < excited["warmth"]  # blue vs warm
    assert tension["motion"] > relax["motion"] and tension["rms"] > relax["rms"]


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="layout"):
        generate_standin(tmp_path, clips_per_class=1, layout="nested", **SMALL)
    with pytest.raises(UsageError, match="unknown split"):
        generate_standin(tmp_path, clips_per_class={"training": 1}, **SMALL)


def test_the_folder_says_it_is_stand_in_data(tmp_path):
    import json

    from mvrt.standin import MARKER_NAME, generate_standin
    from mvrt.training.train import trained_on

    generate_standin(tmp_path / "d", clips_per_class=1, seconds=1.0, splits=("test",), progress=False, seed=3)
    marker = json.loads((tmp_path / "d" / MARKER_NAME).read_text())
    assert marker["seed"] == 3 and marker["counts"] == {"test": 1} and "not MVED" in marker["note"]
    assert "stand-in" in trained_on(tmp_path / "d") and "not MVED" in trained_on(tmp_path / "d")


def test_one_labelled_clip_and_a_reproducible_encoding(tmp_path):
    """`write_labelled_clip`: both streams, the asked length; without x264's mbtree the same seed decodes the same."""
    from mvrt.standin import write_labelled_clip

    options = {"x264-params": "mbtree=0"}
    paths = [write_labelled_clip(tmp_path / f"{name}.mp4", "Excited", seconds=2.0, width=64, height=48, fps=15,
                                 sample_rate=32000, seed=seed, options=options)
             for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    info = probe(paths[0], require_streams=True)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.05) and (info.width, info.height) == (64, 48)
    (audio_a, frames_a), (audio_b, frames_b), (audio_c, _) = (_decoded(p) for p in paths)
    np.testing.assert_array_equal(frames_a, frames_b)
    np.testing.assert_array_equal(audio_a, audio_b)
    assert not np.array_equal(audio_a[: audio_c.size], audio_c[: audio_a.size])
    with pytest.raises(UsageError, match=r"label must be one of Excited, .*got 'Happy'") as caught:
        write_labelled_clip(tmp_path / "d.mp4", "Happy", seconds=1.0)
    assert caught.value.setting == "label"
