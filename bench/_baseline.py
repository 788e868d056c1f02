"""The naive baseline the benchmark compares mvrt against, and the agreement checks.

Baseline, deliberately the obvious way (DESIGN §4 semantics, none of mvrt's code):
- video: PyAV with its default threading decodes every frame, converts each to a full-size
  RGB ndarray, keeps the frame displayed at each target time (last PTS <= t_k, first frame if
  none), then area-resizes it to 128x128 in numpy (exact box/area weights, float32);
- audio: decoded once with PyAV, down-mixed, `librosa.resample` (default soxr_hq) per rate;
- front-end: `librosa.stft` + `librosa.filters.mel` (log-mel power in dB + mel phase);
- engine: torch eager, `torch.inference_mode()`, batch 1, default threads.
Everything runs sequentially; `run_baseline` times each stage and the whole run.
`check_agreement` compares what both paths computed (a benchmark of different computations
is worthless).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from _media import StageTimes


@dataclass(frozen=True)
class BaselineRun(StageTimes):
    """Stage times (seconds) of one sequential baseline run, plus what window 0 looked like."""

    decoded_frames: int
    b_frames: int
    audio0: dict = field(repr=False)  # sample rate -> samples of window 0
    frames0: np.ndarray = field(repr=False)  # uint8 (64, 128, 128, 3) of window 0
    picks0: np.ndarray = field(repr=False)  # decoded-frame index shown at each target of window 0
    feeds0: dict = field(repr=False)  # input name -> features of window 0
    logits: np.ndarray = field(repr=False)  # (windows, classes)


def run_baseline(path: str, windows: list, config, model) -> BaselineRun:
    """Decode, front-end and infer every window of `path` sequentially, timing each stage."""
    import torch

    fe = config.frontend
    start = time.perf_counter()
    audio = decode_audio_naive(path, windows, sorted(set(config.audio_inputs.values())), fe.window_seconds)
    t_audio = time.perf_counter()
    frames, picks, decoded, b_frames = decode_frames_naive(path, windows, fe.frames, fe.image_size)
    t_video = time.perf_counter()
    feeds = [features_naive(a, f, config) for a, f in zip(audio, frames)]
    t_frontend = time.perf_counter()
    logits = []
    with torch.inference_mode():
        for feed in feeds:
            tensors = [torch.from_numpy(feed[name][None]) for name in config.network_input_names]  # (1, ...) each
            logits.append(model(*tensors)[0].numpy())
    end = time.perf_counter()
    return BaselineRun(
        decode_seconds=t_video - start,
        audio_decode_seconds=t_audio - start,
        video_decode_seconds=t_video - t_audio,
        frontend_seconds=t_frontend - t_video,
        engine_seconds=end - t_frontend,
        end_to_end_seconds=end - start,
        decoded_frames=decoded,
        b_frames=b_frames,
        audio0=audio[0],
        frames0=frames[0],
        picks0=picks[0],
        feeds0=feeds[0],
        logits=np.stack(logits),
    )

def warm_up() -> None:
    """Untimed: librosa loads its submodules lazily on first use (seconds on a cold start)."""
    import librosa

    y = np.zeros(4096, np.float32)
    librosa.resample(y, orig_sr=44100, target_sr=8000)
    librosa_log_mel_phase(y, 8000, 2048, 512, 128)


# --- decode -----------------------------------------------------------------------------


def decode_audio_naive(path: str, windows: list, rates: list[int], window_seconds: float) -> list[dict]:
    """Per window, sample rate -> mono float32 samples (whole track decoded, then resampled)."""
    import av
    import librosa

    with av.open(path) as container:
        stream = container.streams.audio[0]
        chunks, first_seconds = [], None
        for frame in container.decode(stream):
            if first_seconds is None and frame.time is not None:
                first_seconds = float(frame.time)
            chunks.append(_mono(frame))
        source_rate = stream.rate
    mono = np.concatenate(chunks)
    offset = first_seconds or 0.0
    per_rate = {rate: librosa.resample(mono, orig_sr=source_rate, target_sr=rate) for rate in rates}
    out = []
    for window in windows:
        samples = {}
        for rate, signal in per_rate.items():
            begin = int(round((window.start_seconds - offset) * rate))
            length = int(round(window_seconds * rate))
            piece = signal[max(begin, 0): max(begin, 0) + length]
            samples[rate] = np.pad(piece, (0, length - piece.size)).astype(np.float32)
        out.append(samples)
    return out


def _mono(frame) -> np.ndarray:
    """Float32 mono (mean of channels) of one decoded audio frame."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T  # (channels, samples)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return data.astype(np.float32).mean(axis=0)


def decode_frames_naive(path: str, windows: list, frames: int, size: int) -> tuple[list[np.ndarray], np.ndarray, int, int]:
    """Per window uint8 (frames, size, size, 3); the decoded-frame index each target took
    (windows, frames); the decoded and B-frame counts."""
    import av

    targets = sorted((t, w, k) for w, window in enumerate(windows) for k, t in enumerate(window.frame_times(frames)))
    out = [np.zeros((frames, size, size, 3), dtype=np.uint8) for _ in windows]
    picks = np.zeros((len(windows), frames), dtype=np.int64)
    prev, prev_small, j, decoded, b_frames = None, None, 0, 0, 0
    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            b_frames += frame.pict_type == av.video.frame.PictureType.B
            rgb = frame.to_ndarray(format="rgb24")  # full size, every frame (the naive part)
            while j < len(targets) and targets[j][0] < frame.time:
                if prev is None:  # target before the first frame: take the first frame
                    prev, prev_small = (rgb, decoded), None
                if prev_small is None:
                    prev_small = area_resize(prev[0], size)
                _, w, k = targets[j]
                out[w][k], picks[w, k] = prev_small, prev[1]
                j += 1
            prev, prev_small = (rgb, decoded), None
            decoded += 1
    for _, w, k in targets[j:]:
        prev_small = area_resize(prev[0], size) if prev_small is None else prev_small
        out[w][k], picks[w, k] = prev_small, prev[1]
    return out, picks, decoded, b_frames


def area_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Area (box-average) resize of uint8 (H, W, 3) to (size, size, 3)."""
    rows, cols = _area_weights(rgb.shape[0], size), _area_weights(rgb.shape[1], size)
    height, width = rgb.shape[:2]
    tall = rows @ rgb.reshape(height, width * 3).astype(np.float32)  # (size, W*3)
    tall = tall.reshape(size, width, 3).transpose(0, 2, 1)  # (size, 3, W)
    small = (tall @ cols.T).transpose(0, 2, 1)  # (size, 3, size) -> (size, size, 3)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: overlap of each input pixel with each output cell, rows sum to 1."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(lo + scale, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / scale).astype(np.float32)


# --- front-end --------------------------------------------------------------------------


def features_naive(audio: dict, frames: np.ndarray, config) -> dict[str, np.ndarray]:
    """The PyTorch network's inputs of one window (contract 1: float32 video per pathway) with librosa
    and numpy, as `window_features` computes them for a contract-1 model."""
    from mvrt.config import VIDEO_INPUTS

    fe = config.frontend
    feeds = {}
    for name, rate in config.audio_inputs.items():
        spec = librosa_log_mel_phase(audio[rate], rate, fe.n_fft, fe.hop_length, fe.n_mels)
        norm = config.norm_for(name)
        mean = np.asarray(norm.mean, dtype=np.float32)[:, None, None]  # (2, 1, 1)
        std = np.asarray(norm.std, dtype=np.float32)[:, None, None]  # (2, 1, 1)
        feeds[name] = ((spec - mean) / std).astype(np.float32)
    video = (frames.astype(np.float32) / 255.0 - fe.video_mean) / fe.video_std
    video = np.ascontiguousarray(video.transpose(3, 0, 1, 2))  # (T, H, W, 3) -> (3, T, H, W)
    for name, count in VIDEO_INPUTS[config.arch].items():  # the network's pathways, whatever the contract
        idx = np.round(np.linspace(0, fe.frames - 1, count)).astype(np.int64)
        feeds[name] = video if count == fe.frames else np.ascontiguousarray(video[:, idx])
    return feeds


def librosa_log_mel_phase(y: np.ndarray, rate: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """(2, n_mels, frames): 10*log10(max(M|S|^2, 1e-10)) and angle(M S), librosa defaults."""
    import librosa

    stft = librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant")  # (bins, frames)
    mel = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)  # (n_mels, bins)
    power = mel @ (np.abs(stft) ** 2)
    phase = np.angle(mel @ stft)
    return np.stack([10.0 * np.log10(np.maximum(power, 1e-10)), phase]).astype(np.float32)


# --- agreement --------------------------------------------------------------------------

# Agreement tolerances (see README): window-0 inputs and engine logits.
TOLERANCE = {
    "audio_samples_max_abs": 1e-4,
    "db_loud_max_rel": 1e-3,
    "phase_loud_p99_abs": 1e-2,
    "frames_wrong_picks": 0,
    # uint8 levels: swscale's scaled yuv420p -> rgb24 path (mvrt) and FFmpeg's full-size
    # conversion (baseline) round differently (about +1 level on every channel); a wrong
    # resize (geometry, crop, interpolation) costs far more.
    "frames_luma_mean_abs": 2.0,
    "frames_mean_abs": 3.0,
    "logits_max_abs_rel": 1e-3,
}


def compare_audio(mvrt: np.ndarray, naive: np.ndarray, floor_db: float = 80.0) -> dict[str, float]:
    """Differences of two (2, n_mels, frames) inputs.

    dB: max |diff| over all bins, and over bins within `floor_db` of the window's peak
    (where float rounding no longer dominates), also relative to the dB range there.
    Phase: wrapped difference over the same loud bins.
    """
    db_a, db_b = mvrt[0].astype(np.float64), naive[0].astype(np.float64)
    loud = np.maximum(db_a, db_b) > max(db_a.max(), db_b.max()) - floor_db
    diff_db = np.abs(db_a - db_b)
    span = float(np.ptp(db_b[loud])) or 1.0
    phase = np.abs(np.angle(np.exp(1j * (mvrt[1].astype(np.float64) - naive[1].astype(np.float64)))))
    return {
        "db_max_abs": float(diff_db.max()),
        "db_loud_max_abs": float(diff_db[loud].max()),
        "db_loud_max_rel": float(diff_db[loud].max() / span),
        "phase_loud_max_abs": float(phase[loud].max()),
        "phase_loud_p99_abs": float(np.quantile(phase[loud], 0.99)),
    }


def compare_frames(mvrt: np.ndarray, naive: np.ndarray) -> dict[str, float]:
    """uint8 RGB frame differences (max, mean, worst frame) and the mean luma difference."""
    diff = np.abs(mvrt.astype(np.int16) - naive.astype(np.int16))
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 Y' weights
    return {
        "max_abs": int(diff.max()),
        "mean_abs": float(diff.mean()),
        "worst_frame_mean_abs": float(diff.reshape(diff.shape[0], -1).mean(axis=1).max()),
        "luma_mean_abs": float(np.abs(mvrt.astype(np.float32) @ luma - naive.astype(np.float32) @ luma).mean()),
        "mean_signed_rgb": [round(float(v), 3) for v in (mvrt.astype(np.float32) - naive).reshape(-1, 3).mean(axis=0)],
    }


def count_wrong_picks(path: str, mvrt_frames: np.ndarray, picks: np.ndarray) -> int:
    """Targets where mvrt did not show the frame the baseline picked (untimed check).

    The resize differs between the paths (mvrt scales YUV inside swscale, the baseline
    averages full-size RGB), so the baseline's picks are re-converted the mvrt way and must
    then be bit-identical.
    """
    import av

    from mvrt.runtime.decode import to_rgb

    wanted = {int(i) for i in picks}
    converted = {}
    with av.open(path) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index in wanted:
                converted[index] = to_rgb(frame, mvrt_frames.shape[1])
            if index >= max(wanted):
                break
    return sum(not np.array_equal(mvrt_frames[k], converted[int(i)]) for k, i in enumerate(picks))


# isolate=True computes the same inputs; logits differ only by how windows were batched.
ISOLATED_TOLERANCE = 1e-4


def check_agreement(path: str, mvrt_audio0, mvrt_frames0, mvrt_feeds0, base, config, ort_logits, torch_logits0) -> dict:
    """Window-0 inputs of both paths, and ORT vs torch logits on identical inputs."""
    samples = max(float(np.abs(mvrt_audio0[r] - base.audio0[r]).max()) for r in mvrt_audio0)
    audio = {name: compare_audio(mvrt_feeds0[name], base.feeds0[name]) for name in config.audio_inputs}
    frames = compare_frames(mvrt_frames0, base.frames0)
    scale = max(1.0, float(np.abs(torch_logits0).max()))
    engine_diff = float(np.abs(ort_logits["staged"][0] - torch_logits0).max())
    measured = {
        "audio_samples_max_abs": samples,
        "db_loud_max_rel": max(a["db_loud_max_rel"] for a in audio.values()),
        "phase_loud_p99_abs": max(a["phase_loud_p99_abs"] for a in audio.values()),
        "frames_wrong_picks": count_wrong_picks(path, mvrt_frames0, base.picks0),
        "frames_luma_mean_abs": frames["luma_mean_abs"],
        "frames_mean_abs": frames["mean_abs"],
        "logits_max_abs_rel": engine_diff / scale,
    }
    # Batches are filled with what is ready, so the two runs may batch windows differently.
    isolated_diff = float(np.abs(ort_logits["isolated"] - ort_logits["pipeline"]).max())
    return {
        "ok": all(measured[k] <= TOLERANCE[k] for k in TOLERANCE) and isolated_diff < ISOLATED_TOLERANCE,
        "logits_isolated_vs_pipeline_max_abs": isolated_diff,
        "measured": measured,
        "tolerance": TOLERANCE,
        "audio_inputs": audio,
        "frames": frames,
        "logits_ort_vs_torch_max_abs": engine_diff,
        "logits_abs_max": float(np.abs(torch_logits0).max()),
        "logits_pipeline_vs_staged_max_abs": float(np.abs(ort_logits["pipeline"] - ort_logits["staged"]).max()),
        "logits_mvrt_vs_baseline_all_windows_max_abs": float(np.abs(ort_logits["pipeline"] - base.logits).max()),
    }
