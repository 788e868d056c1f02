"""`mvrt features`: the bundled model by default, --model/--arch exclusive, --audio-out per sample rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from mvrt.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def seen_audio(monkeypatch):
    """The audio the front-end is handed while `mvrt features` runs: a list of {rate: samples}."""
    import mvrt.runtime.window_reader as window_reader

    seen = []
    original = window_reader.window_features

    def spy(audio, frames, config, **kwargs):
        seen.append({rate: np.array(samples) for rate, samples in audio.items()})
        return original(audio, frames, config, **kwargs)

    monkeypatch.setattr(window_reader, "window_features", spy)
    return seen


def test_without_a_model_the_bundled_one_is_used(capsys, clip_10s, tmp_path):
    from mvrt.bundled import default_model_path
    from mvrt.config import ModelConfig
    from mvrt.runtime.model_meta import read_model_config

    out = tmp_path / "feats.npz"
    code, _, err = run(capsys, "features", clip_10s, "-o", out)
    assert code == 0, err
    assert "mvrt: no --model given: using the bundled demo model" in err.splitlines()[0]
    feats = np.load(out, allow_pickle=False)
    bundled = read_model_config(default_model_path())
    assert ModelConfig.from_json(str(feats["mvrt_config"])) == bundled
    assert {k: feats[k].shape for k in bundled.input_names} == bundled.input_shapes()


def test_model_and_arch_together_are_a_usage_error(capsys, clip_10s, tmp_path):
    code, out, err = run(capsys, "features", clip_10s, "--model", "m.onnx", "--arch", "slowfast", "-o",
                         tmp_path / "f.npz")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("mvrt: error: --model and --arch conflict")
    assert not (tmp_path / "f.npz").exists()


def test_audio_out_writes_each_rate_the_front_end_saw(capsys, tiny_models, clip_10s, tmp_path, seen_audio):
    from mvrt.runtime.network_inputs import audio_input

    tm = tiny_models["slowfast"]  # two audio pathways: 8 kHz and 32 kHz
    out, wav = tmp_path / "f.npz", tmp_path / "w.wav"
    code, _, err = run(capsys, "features", clip_10s, "--model", tm.onnx, "--start", 4, "-o", out, "--audio-out", wav)
    assert code == 0, err
    (front_end,) = seen_audio
    feats = np.load(out, allow_pickle=False)
    window = tm.config.frontend.window_seconds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "w.32000.wav", "w.8000.wav"]
    for name, rate in tm.config.audio_inputs.items():
        path = tmp_path / f"w.{rate}.wav"
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (rate, 1, "FLOAT", "WAV")
        samples, read_rate = soundfile.read(path, dtype="float32")
        assert read_rate == rate and samples.shape == (round(window * rate),)
        np.testing.assert_array_equal(samples, front_end[rate][: samples.size])  # bit for bit
        # ... and they are what the npz's spectrograms were computed from
        np.testing.assert_array_equal(audio_input({rate: samples}, rate, name, tm.config), feats[name])
        assert f"wrote {path}: mono audio at {rate} Hz, {window:g} s" in err


def test_one_rate_is_one_file_and_flac_is_24_bit(capsys, tiny_models, clip_10s, tmp_path, seen_audio):
    tm = tiny_models["musicvideo"]  # one audio pathway at 22.05 kHz
    target = tmp_path / "audio.flac"
    code, _, err = run(capsys, "features", clip_10s, "--model", tm.onnx, "-o", tmp_path / "f.npz",
                       "--audio-out", target)
    assert code == 0, err
    info = soundfile.info(target)
    assert (info.samplerate, info.format, info.subtype) == (22050, "FLAC", "PCM_24")
    samples, _ = soundfile.read(target, dtype="float32")
    (front_end,) = seen_audio
    assert samples.shape == (round(tm.config.frontend.window_seconds * 22050),)
    np.testing.assert_allclose(samples, front_end[22050][: samples.size], atol=2.0 ** -23)


def test_audio_out_needs_an_audio_suffix(capsys, tiny_models, clip_10s, tmp_path):
    code, _, err = run(capsys, "features", clip_10s, "--model", tiny_models["slowfast"].onnx, "-o",
                       tmp_path / "f.npz", "--audio-out", tmp_path / "a.mp3")
    assert code == 2 and err == f"mvrt: error: --audio-out {tmp_path / 'a.mp3'}: expected a .wav or .flac file\n"
    assert list(tmp_path.iterdir()) == []


def test_an_architecture_gives_its_default_front_end(capsys, clip_10s, tmp_path):
    out = tmp_path / "f.npz"
    code, _, _ = run(capsys, "features", clip_10s, "--arch", "musicvideo", "-o", out)
    assert code == 0
    assert json.loads(str(np.load(out)["mvrt_config"]))["arch"] == "musicvideo"
