import numpy as np
import pytest

from mvrt.config import AudioNorm, FrontendConfig, ModelConfig
from mvrt.errors import UsageError
from mvrt.runtime.network_inputs import fit_length, normalize_frames, window_features
from mvrt.runtime.spectrogram import log_mel_phase

SHORT = FrontendConfig(window_seconds=2.0)


def _audio(rates, seconds, seed=0):
    rng = np.random.default_rng(seed)
    return {sr: (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32) for sr in rates}


def _frames(count=64, seed=1):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 128, 128, 3), dtype=np.uint8)


def test_slowfast_inputs_have_the_contract_shapes_and_dtype():
    config = ModelConfig(arch="slowfast", frontend=SHORT)
    feeds = window_features(_audio([8000, 32000], 2.0), _frames(), config)
    assert {k: v.shape for k, v in feeds.items()} == config.input_shapes()
    assert all(v.dtype == np.float32 for v in feeds.values())


def test_slow_video_is_the_pyslowfast_subset_of_fast_frames():
    config = ModelConfig(arch="slowfast", frontend=SHORT)
    feeds = window_features(_audio([8000, 32000], 2.0), _frames(), config)
    np.testing.assert_array_equal(feeds["video_slow"], feeds["video_fast"][:, [0, 9, 18, 27, 36, 45, 54, 63]])


def test_video_normalisation_matches_the_formula():
    frames = _frames(4)
    got = normalize_frames(frames, SHORT)
    expected = (frames.astype(np.float64) / 255.0 - 0.45) / 0.225  # (T, H, W, 3)
    np.testing.assert_allclose(got, expected.transpose(3, 0, 1, 2), atol=1e-5)


def test_audio_normalisation_from_the_model_is_applied_per_channel():
    norm = AudioNorm(mean=(-40.0, 0.5), std=(20.0, 2.0))
    plain = ModelConfig(arch="musicvideo", frontend=SHORT)
    normed = plain.replace(audio_norm=(("audio", norm),))
    audio = _audio([22050], 2.0)
    a = window_features(audio, _frames(), plain)["audio"]
    b = window_features(audio, _frames(), normed)["audio"]
    np.testing.assert_allclose(b[0], (a[0] + 40.0) / 20.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b[1], (a[1] - 0.5) / 2.0, rtol=1e-5, atol=1e-6)


def test_short_audio_is_zero_padded_and_long_audio_cut():
    config = ModelConfig(arch="musicvideo", frontend=SHORT)
    short = {22050: np.ones(22050, dtype=np.float32)}
    padded = np.concatenate([np.ones(22050, np.float32), np.zeros(22050, np.float32)])
    got = window_features(short, _frames(), config)["audio"]
    np.testing.assert_array_equal(got, log_mel_phase(padded, 22050))
    long = {22050: np.concatenate([padded, np.ones(5000, np.float32)])}
    np.testing.assert_array_equal(window_features(long, _frames(), config)["audio"], got)


def test_fit_length_rejects_multichannel_audio():
    with pytest.raises(UsageError, match="mono"):
        fit_length(np.zeros((2, 100), np.float32), 10)


def test_wrong_frame_size_is_rejected_with_the_expected_shape():
    config = ModelConfig(arch="musicvideo", frontend=SHORT)
    with pytest.raises(UsageError, match=r"uint8 \(T, 128, 128, 3\)"):
        window_features(_audio([22050], 2.0), np.zeros((64, 64, 64, 3), np.uint8), config)


def test_missing_sample_rate_is_reported():
    config = ModelConfig(arch="slowfast", frontend=SHORT)
    with pytest.raises(UsageError, match="32000 Hz"):
        window_features(_audio([8000], 2.0), _frames(), config)
