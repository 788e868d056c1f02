"""The tensors one window feeds a network: the single front-end entry point (DESIGN §4).

Training, calibration, export checks and inference all call `window_features`, so every
part of mvrt sees exactly the same input for the same media.
"""

from __future__ import annotations

import numpy as np

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import UsageError
from mvrt.runtime.spectrogram import log_mel_phase
from mvrt.runtime.windows import slow_indices


def window_features(
    audio: dict[int, np.ndarray],
    frames: np.ndarray,
    config: ModelConfig,
    *,
    implementation: str = "auto",
) -> dict[str, np.ndarray]:
    """Network inputs for one window, without the batch axis, as the model's contract says:
    float32, except contract 2's uint8 `video` (DESIGN §3).

    `audio` maps sample rate -> mono samples starting at the window start (cut or
    zero-padded to the window length here); `frames` is uint8 (frames, H, W, 3) RGB.
    """
    feeds = {name: audio_input(audio, sr, name, config, implementation) for name, sr in config.audio_inputs.items()}
    feeds.update(video_feeds(frames, config))
    return feeds


def video_feeds(frames: np.ndarray, config: ModelConfig) -> dict[str, np.ndarray]:
    """Every video input of the model from one window's uint8 (T, H, W, 3) frames (the feature
    cache stores the frames and calls this). Contract 1: normalised float32, and the slow
    pathway's subset of them; contract 2: the uint8 frames as (3, T, H, W), which the graph
    normalises and subsets itself."""
    if config.contract == 2:
        check_frames(frames, config.frontend)
        return {name: np.ascontiguousarray(frames.transpose(3, 0, 1, 2)) for name in config.video_inputs}  # (3, T, H, W)
    video = normalize_frames(frames, config.frontend)  # (3, T, H, W)
    return {name: video if count == video.shape[1] else np.ascontiguousarray(video[:, slow_indices(video.shape[1], count)])
            for name, count in config.video_inputs.items()}


def normalize_audio(spec: np.ndarray, name: str, config: ModelConfig) -> np.ndarray:
    """(2, n_mels, frames) log-mel/phase of input `name`, normalised with the model's own statistics."""
    norm = config.norm_for(name)
    mean = np.asarray(norm.mean, dtype=np.float32)[:, None, None]  # (2, 1, 1)
    std = np.asarray(norm.std, dtype=np.float32)[:, None, None]  # (2, 1, 1)
    return ((spec - mean) / std).astype(np.float32, copy=False)


def audio_input(
    audio: dict[int, np.ndarray], sample_rate: int, name: str, config: ModelConfig, implementation: str = "auto"
) -> np.ndarray:
    """Normalised (2, n_mels, frames) log-mel/phase input of one audio pathway."""
    fe = config.frontend
    if sample_rate not in audio:
        raise UsageError(f"input {name!r} needs audio at {sample_rate} Hz, got rates {sorted(audio)}")
    samples = fit_length(audio[sample_rate], fe.window_samples(sample_rate))
    spec = log_mel_phase(
        samples, sample_rate, n_fft=fe.n_fft, hop_length=fe.hop_length, n_mels=fe.n_mels, implementation=implementation
    )  # (2, n_mels, frames)
    return normalize_audio(spec, name, config)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """First `length` samples, zero-padded at the end if short."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise UsageError(f"audio must be mono 1-D, got shape {samples.shape}")
    if samples.shape[0] >= length:
        return samples[:length]
    return np.pad(samples, (0, length - samples.shape[0]))


def normalize_frames(frames: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB -> float32 (3, T, H, W), (x/255 - mean) / std."""
    check_frames(frames, frontend)
    scale = np.float32(1.0 / (255.0 * frontend.video_std))
    offset = np.float32(frontend.video_mean / frontend.video_std)
    video = frames.transpose(3, 0, 1, 2)  # (3, T, H, W)
    return video.astype(np.float32) * scale - offset


def check_frames(frames: np.ndarray, frontend: FrontendConfig) -> None:
    """UsageError unless `frames` is uint8 (T, size, size, 3)."""
    size = frontend.image_size
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (size, size, 3):
        raise UsageError(f"frames must be uint8 (T, {size}, {size}, 3), got {getattr(frames, 'dtype', type(frames).__name__)} "
                         f"{getattr(frames, 'shape', '')}")
