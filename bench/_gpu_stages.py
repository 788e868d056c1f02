"""The stages bench_gpu.py times: decode, front-end, engines and end-to-end, each row a dict.

A row a machine cannot run carries `not_run` (the reason) instead of numbers.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

WINDOW_ROW_TARGETS = 64  # frames per window (DESIGN §4)


def cuda_devices() -> list[str]:
    """Names of the CUDA devices torch sees (empty without CUDA or torch)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def median_seconds(call, warmup: int, iterations: int) -> float:
    """Median wall seconds of `call()` over `iterations` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- decode -------------------------------------------------------------------------------------

def decode_rows(video: Path, duration_seconds: float) -> list[dict]:
    """Every frame once, and mvrt's window frames, per decoder (cpu with all cores; nvdec)."""
    from mvrt.config import ModelConfig
    from mvrt.runtime.window_reader import file_windows

    windows = file_windows(video, ModelConfig())
    rows = []
    for decoder in ("cpu", "nvdec"):
        rows.append(_timed(lambda d=decoder: {"frames": decode_every_frame(video, windows, d)}, "every frame", decoder,
                           duration_seconds, len(windows)))
        rows.append(_timed(lambda d=decoder: {"frames": decode_windows(video, windows, d)}, "window frames", decoder,
                           duration_seconds, len(windows)))
    return rows


def _timed(run, what: str, decoder: str, duration_seconds: float, windows: int) -> dict:
    from mvrt.errors import MvrtError

    row = {"what": what, "decoder": decoder}
    start = time.perf_counter()
    try:
        done = run()
    except MvrtError as exc:
        return row | {"not_run": str(exc)}
    seconds = time.perf_counter() - start
    return row | {"seconds": round(seconds, 4), "frames": done["frames"], "frames_per_second": done["frames"] / seconds,
                  "windows_per_second": windows / seconds, "real_time_factor": duration_seconds / seconds}


def decode_every_frame(video: Path, windows, decoder: str) -> int:
    """Every frame up to the last target decoded (no seeking, no packet skipped), the targets' frames converted;
    frames decoded. cpu: FFmpeg's frame + slice threads on all usable cores; nvdec: frames stay on the
    GPU and only the targets' frames are copied to system memory."""
    from mvrt.runtime.decode import VideoDecodeStats, iter_window_frames

    stats = VideoDecodeStats()
    for _ in iter_window_frames(str(video), windows, decode=decoder, seek=False, skip_nonref=False, stats=stats):
        pass
    return stats.frames_decoded


def decode_windows(video: Path, windows, decoder: str) -> int:
    """mvrt's window frames as inference reads them (seeking, non-reference frames no target shows
    skipped); frames decoded."""
    from mvrt.runtime.decode import VideoDecodeStats, iter_window_frames

    stats = VideoDecodeStats()
    for _ in iter_window_frames(str(video), windows, decode=decoder, stats=stats):
        pass
    return stats.frames_decoded


# ---- front-end ----------------------------------------------------------------------------------

def frontend_row(video: Path, models: dict) -> dict:
    """Audio spectrograms (every audio pathway) of the first window, per second."""
    from mvrt.runtime.decode import iter_window_audio
    from mvrt.runtime.model_meta import read_model_config
    from mvrt.runtime.network_inputs import audio_input
    from mvrt.runtime.spectrogram import native_available
    from mvrt.runtime.window_reader import file_windows

    config = read_model_config(models[2])
    windows = file_windows(video, config)[:1]
    rates = sorted(set(config.audio_inputs.values()))
    audio = next(iter(iter_window_audio(str(video), windows, rates, config.frontend.window_seconds)))
    implementation = "native" if native_available() else "numpy"
    seconds = median_seconds(lambda: [audio_input(audio, sr, name, config, implementation)
                                      for name, sr in config.audio_inputs.items()], 1, 5)
    return {"implementation": implementation, "seconds": round(seconds, 5), "windows_per_second": 1.0 / seconds}


# ---- engines ------------------------------------------------------------------------------------

def window_inputs(video: Path, models: dict) -> dict[int, dict[str, np.ndarray]]:
    """The first window's inputs under each contract (no batch axis), read the inference way."""
    from mvrt.runtime.model_meta import read_model_config
    from mvrt.runtime.window_reader import file_windows, iter_file_features

    out = {}
    for contract in (1, 2):
        config = read_model_config(models[contract])
        windows = file_windows(video, config)[:1]
        _, feeds = next(iter(iter_file_features(str(video), config, windows)))
        out[contract] = feeds
    return out


def engine_configs(devices: list[str]) -> list[dict]:
    """(backend, device, precision, cuda_graphs) rows to time, each under both contracts."""
    rows = [dict(backend="torch", device="cpu", precision="fp32", cuda_graphs=False)]
    if devices:
        rows += [dict(backend="torch", device="cuda", precision=p, cuda_graphs=g)
                 for p in ("fp32", "fp16") for g in (False, True)]
    import onnxruntime

    available = onnxruntime.get_available_providers()
    rows += [dict(backend="onnxruntime", device=name, precision="fp32", cuda_graphs=False)
             for name in ("CPUExecutionProvider", "CUDAExecutionProvider") if name in available]
    return rows


def engine_rows(models: dict, inputs: dict, batch_sizes: list[int], warmup: int, iterations: int,
                devices: list[str]) -> list[dict]:
    """Every engine setting under both contracts; with a GPU, the CPU rows only at the smallest batch
    (they are the slow reference, and a full-size batch of 32 takes minutes there)."""
    rows = []
    for setting in engine_configs(devices):
        on_cpu = setting["device"] in ("cpu", "CPUExecutionProvider")
        sizes = [min(batch_sizes)] if devices and on_cpu else batch_sizes
        for contract in (1, 2):
            rows += _engine_rows(setting, contract, models, inputs[contract], sizes, warmup, iterations)
    return rows


def _engine_rows(setting: dict, contract: int, models: dict, one: dict, batch_sizes, warmup, iterations) -> list[dict]:
    from mvrt.errors import MvrtError

    base = setting | {"contract": contract}
    try:
        engine = _open(setting, contract, models)
        rows = []
        with engine:
            for batch in batch_sizes:
                feeds = {name: np.ascontiguousarray(np.broadcast_to(a, (batch, *a.shape))) for name, a in one.items()}
                seconds = median_seconds(lambda: engine.infer(feeds), warmup, iterations)
                rows.append(base | {"batch": batch, "ms_per_call": seconds * 1e3, "samples_per_second": batch / seconds,
                                    "input_bytes": int(sum(a.nbytes for a in feeds.values()))})
        return rows
    except MvrtError as exc:
        return [base | {"batch": b, "not_run": str(exc)} for b in batch_sizes]


def _open(setting: dict, contract: int, models: dict):
    from mvrt.runtime.engines import open_engine

    if setting["backend"] == "torch":
        return open_engine(models["checkpoint"], backend="torch", device=setting["device"],
                           precision=setting["precision"], cuda_graphs=setting["cuda_graphs"], contract=contract)
    provider = "cuda" if setting["device"].startswith("CUDA") else "cpu"
    return open_engine(models[contract], backend="onnxruntime", providers=provider)


# ---- end to end ---------------------------------------------------------------------------------

def end_to_end_rows(video: Path, models: dict, batch: int, duration_seconds: float) -> list[dict]:
    """`run_pipeline` over the file with each contract's ONNX on ONNX Runtime (best provider), decode auto."""
    from mvrt.runtime.engines import open_engine
    from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
    from mvrt.runtime.results import VideoResult

    rows = []
    for contract in (1, 2):
        with open_engine(models[contract], backend="onnxruntime") as engine:
            start = time.perf_counter()
            result = None
            for event in run_pipeline(engine, [os.fspath(video)], PipelineConfig(batch_size=batch)):
                result = event if isinstance(event, VideoResult) else result
            seconds = time.perf_counter() - start
            if result is None or not result.ok:
                raise RuntimeError(f"the pipeline failed on {video}: {getattr(result, 'error', 'no result')}")
            rows.append({"engine": f"onnxruntime {engine.providers[0]}", "contract": contract, "seconds": round(seconds, 3),
                         "windows": len(result.windows), "windows_per_second": len(result.windows) / seconds,
                         "real_time_factor": duration_seconds / seconds,
                         "probabilities": [round(float(p), 5) for p in result.probabilities]})
    return rows
