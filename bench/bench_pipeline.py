"""Benchmark mvrt against a naive baseline on a generated music video (CPU, ONNX Runtime FP32).

    PYTHONPATH=src .venv/bin/python bench/bench_pipeline.py [--quick] [--json out.json]

Generates (once, cached in bench/.cache/) an H.264 (B-frames) + AAC video and a seeded
random-init slowfast model exported to ONNX, then times decode, front-end, engine and
end-to-end for mvrt and for the naive baseline of `_baseline.py`, checks that both computed
the same thing, and prints a Markdown table (optionally JSON). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _baseline  # noqa: E402  (sibling modules; bench/ is not a package)
from _feeds import random_feeds  # noqa: E402
from _machine import bench_parser, fill_defaults, machine_info as _machine_info  # noqa: E402
from _media import SEED, StageTimes, VideoSpec, check_height, ensure_video  # noqa: E402

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
ROWS = ("decode", "front-end", "engine", "end-to-end")
FLOOR_TARGET_RATIO = 1.25  # files: end-to-end / (decode every frame once + engine), the issue's target
QUICK = {"seconds": 40.0, "height": 480, "width": 0.25}
FULL = {"seconds": 180.0, "height": 720, "width": 1.0}


@dataclass(frozen=True)
class MvrtRun(StageTimes):
    """Stage times (seconds) of one staged mvrt run and its end-to-end pipeline run."""

    # The same pipeline with isolate=True (decoding and front-end in a worker process).
    isolated_end_to_end_seconds: float
    # The floor's decode: every packet of both streams decoded once, no conversion (`decode_floor`).
    floor_decode_seconds: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__.splitlines()[0], "smoke run: 40 s 480p video, width 0.25")
    p.add_argument("--seconds", type=float, help="video length (default 180; --quick 40)")
    p.add_argument("--height", type=int, help="video height, 16:9 (default 720; --quick 480)")
    p.add_argument("--fps", type=int, default=30, help="video frame rate (default 30)")
    p.add_argument("--width", type=float, help="model width multiplier (default 1.0; --quick 0.25)")
    p.add_argument("--batch-size", type=int, default=4, help="mvrt engine batch (default 4, as the pipeline)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs; the median is reported (default 1)")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=f"generated video/model cache ({CACHE_DIR})")
    args = fill_defaults(p.parse_args(argv), QUICK, FULL)
    if args.repeat < 1 or args.batch_size < 1 or args.seconds <= 0 or args.fps < 1 or args.width <= 0:
        p.error("--repeat, --batch-size, --seconds, --fps and --width must be positive")
    check_height(p, args.height)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the results dict that --json writes."""
    args = parse_args(argv)
    spec = VideoSpec(seconds=args.seconds, height=args.height, fps=args.fps)
    video, generation_seconds = ensure_video(args.cache_dir, spec)
    print(f"video: {video} ({'generated in %.1f s' % generation_seconds if generation_seconds else 'cached'})")
    checkpoint, onnx_path, export_seconds = ensure_model(args.cache_dir, args.width)
    print(f"model: {onnx_path} ({'exported in %.1f s' % export_seconds if export_seconds else 'cached'})")
    result = benchmark(video, checkpoint, onnx_path, args)
    result["video"] |= {"generation_seconds": round(generation_seconds, 2)}
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def ensure_model(cache_dir: Path, width: float) -> tuple[Path, Path, float]:
    """Seeded random-init slowfast (MMTM) checkpoint and its FP32 ONNX export, cached."""
    from mvrt.checkpoint import save_checkpoint
    from mvrt.config import ModelConfig
    from mvrt.export.onnx_export import export_onnx
    from mvrt.models import build_model

    stem = f"slowfast_w{width:g}_mmtm_seed{SEED}"
    checkpoint, onnx_path = cache_dir / f"{stem}.safetensors", cache_dir / f"{stem}.onnx"
    if checkpoint.exists() and onnx_path.exists():
        return checkpoint, onnx_path, 0.0
    import torch

    start = time.perf_counter()
    config = ModelConfig(arch="slowfast", width=width, mmtm=True, trained_on=f"nothing: random init seed {SEED} (benchmark)")
    torch.manual_seed(SEED)
    model = build_model(config)
    _randomise_batchnorm(model)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial_checkpoint, partial_onnx = cache_dir / f"{stem}.partial.safetensors", cache_dir / f"{stem}.partial.onnx"
    save_checkpoint(model.eval(), config, partial_checkpoint)
    partial_checkpoint.replace(checkpoint)
    export_onnx(checkpoint, config, partial_onnx)
    partial_onnx.replace(onnx_path)
    return checkpoint, onnx_path, time.perf_counter() - start


def _randomise_batchnorm(model) -> None:
    """Non-trivial BN statistics, so that BN folding in the export is really exercised."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))


def benchmark(video: Path, checkpoint: Path, onnx_path: Path, args: argparse.Namespace) -> dict:
    """Time both paths `args.repeat` times (medians) and check that they agree."""
    from mvrt.checkpoint import load_checkpoint
    from mvrt.runtime.engines import open_engine
    from mvrt.runtime.spectrogram import native_available
    from mvrt.runtime.window_reader import file_windows
    from mvrt.runtime.probe import probe

    path = str(video)
    spec = VideoSpec(seconds=args.seconds, height=args.height, fps=args.fps)
    info = probe(path, require_streams=True)
    implementation = "native" if native_available() else "numpy"
    model, config = load_checkpoint(checkpoint)
    windows = file_windows(path, config)
    _read_through(video)  # page cache warm for both paths alike
    load_before = os.getloadavg()[0]
    mvrt_runs, base_runs = [], []
    with open_engine(onnx_path, backend="onnxruntime", providers="cpu", threads=args.threads) as engine:
        _warm_up(engine, model, config)
        for _ in range(args.repeat):  # mvrt feeds the ONNX's own contract; the baseline feeds the network
            run, mvrt_feeds0, mvrt_audio0, mvrt_frames0, ort_logits = time_mvrt(
                path, windows, engine.config, engine, args.batch_size, implementation)
            mvrt_runs.append(run)
            base_runs.append(_baseline.run_baseline(path, windows, config, model))
        torch_logits0 = _torch_logits(model, engine.config, mvrt_feeds0)
        threads = engine.threads or _intra_threads()
    base = base_runs[-1]
    load = {"load_average_1min_before": round(load_before, 2), "load_average_1min_after": round(os.getloadavg()[0], 2)}
    agreement = _baseline.check_agreement(path, mvrt_audio0, mvrt_frames0, mvrt_feeds0, base, config,
                                          ort_logits, torch_logits0)
    return {
        "machine": machine_info() | load,
        "video": {"path": path, **asdict(spec), "width": spec.width,
                  "duration_seconds": round(info.duration_seconds, 3), "windows": len(windows),
                  "decoded_frames": base.decoded_frames, "b_frames": base.b_frames},
        "model": {"arch": config.arch, "width": config.width, "mmtm": config.mmtm, "onnx": str(onnx_path),
                  "parameters": sum(p.numel() for p in model.parameters())},
        "options": {"batch_size": args.batch_size, "ort_threads": threads, "repeat": args.repeat,
                    "frontend": implementation, "torch_threads": _torch_threads()},
        **summarise(mvrt_runs, base_runs, info.duration_seconds),
        "agreement": agreement,
    }


def time_mvrt(path, windows, config, engine, batch_size: int, implementation: str):
    """Stage-by-stage mvrt run, then the real pipeline end to end (threads overlapping)."""
    from mvrt.runtime.decode import iter_window_audio, iter_window_frames
    from mvrt.runtime.network_inputs import window_features
    from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
    from mvrt.runtime.results import VideoResult

    fe = config.frontend
    t0 = time.perf_counter()
    audio = list(iter_window_audio(path, windows, sorted(set(config.audio_inputs.values())), fe.window_seconds))
    t1 = time.perf_counter()
    frames = list(iter_window_frames(path, windows, frames=fe.frames, size=fe.image_size))
    t2 = time.perf_counter()
    feeds = [window_features(a, f, config, implementation=implementation) for a, f in zip(audio, frames)]
    t3 = time.perf_counter()
    logits = []
    for i in range(0, len(feeds), batch_size):
        batch = {name: np.stack([f[name] for f in feeds[i:i + batch_size]]) for name in config.input_names}  # (B, ...)
        logits.append(engine.infer(batch))
    t4 = time.perf_counter()
    video_result = None
    for event in run_pipeline(engine, [path], PipelineConfig(batch_size=batch_size, frontend=implementation)):
        video_result = event if isinstance(event, VideoResult) else video_result
    t5 = time.perf_counter()
    isolated = None
    for event in run_pipeline(engine, [path], PipelineConfig(batch_size=batch_size, frontend=implementation,
                                                             isolate=True)):
        isolated = event if isinstance(event, VideoResult) else isolated
    t6 = time.perf_counter()
    decode_floor(path)
    t7 = time.perf_counter()
    for result in (video_result, isolated):
        if result is None or not result.ok:
            raise RuntimeError(f"mvrt pipeline failed on {path}: {getattr(result, 'error', 'no result')}")
    run = MvrtRun(t2 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)
    pipeline_logits = np.stack([w.logits for w in video_result.windows])
    return run, feeds[0], audio[0], frames[0], {"staged": np.concatenate(logits), "pipeline": pipeline_logits,
                                                "isolated": np.stack([w.logits for w in isolated.windows])}


def decode_floor(path: str) -> int:
    """The files floor's decode: one PyAV pass over every packet of the first video and audio
    streams, threaded video decoding, frames discarded unconverted. Returns the frames decoded."""
    import av

    frames = 0
    with av.open(path) as container:
        video, audio = next(iter(container.streams.video), None), next(iter(container.streams.audio), None)
        if video is not None:
            video.thread_type = "AUTO"  # frame + slice threads, as mvrt's own video decoder
        streams = [s for s in (video, audio) if s is not None]
        for packet in container.demux(streams):
            for _ in packet.decode():  # the demuxer's final empty packets flush each decoder
                frames += 1
    return frames


def _warm_up(engine, model, config) -> None:
    """Untimed: one batch-1 inference on each engine (first-call allocations), librosa imports."""
    import torch

    engine.infer(random_feeds(engine.config, 1, SEED))  # the ONNX's contract (uint8 video for contract 2)
    _baseline.warm_up()
    feeds = random_feeds(config, 1, SEED, network=True)  # the network's own float inputs
    with torch.inference_mode():
        model(*[torch.from_numpy(feeds[n]) for n in config.network_input_names])


def _torch_logits(model, config, feeds: dict) -> np.ndarray:
    """The network on one window of `config`'s contract (contract 2: normalised in torch, as in the graph)."""
    import torch

    from mvrt.models.contract import with_contract

    with torch.inference_mode():
        return with_contract(model, config)(*[torch.from_numpy(feeds[n][None]) for n in config.input_names])[0].numpy()


def summarise(mvrt_runs: list[MvrtRun], base_runs: list, media_seconds: float) -> dict:
    """Median of each stage over the repeats, speed-ups and real-time factors."""
    fields = {"decode": "decode_seconds", "front-end": "frontend_seconds", "engine": "engine_seconds",
              "end-to-end": "end_to_end_seconds"}
    rows = {}
    for row, attr in fields.items():
        base = statistics.median(getattr(r, attr) for r in base_runs)
        mvrt = statistics.median(getattr(r, attr) for r in mvrt_runs)
        rows[row] = {"baseline_seconds": round(base, 4), "mvrt_seconds": round(mvrt, 4), "speedup": round(base / mvrt, 2)}
    details = {
        "baseline_audio_decode_seconds": statistics.median(r.audio_decode_seconds for r in base_runs),
        "baseline_video_decode_seconds": statistics.median(r.video_decode_seconds for r in base_runs),
        "mvrt_audio_decode_seconds": statistics.median(r.audio_decode_seconds for r in mvrt_runs),
        "mvrt_video_decode_seconds": statistics.median(r.video_decode_seconds for r in mvrt_runs),
    }
    rtf = {side: round(media_seconds / rows["end-to-end"][f"{side}_seconds"], 2) for side in ("baseline", "mvrt")}
    runs = {"mvrt": [_rounded(asdict(r)) for r in mvrt_runs],
            "baseline": [_rounded({f: getattr(r, f) for f in asdict(mvrt_runs[0]) if hasattr(r, f)}) for r in base_runs]}
    return {"rows": rows, "rtf": rtf, "stage_details": _rounded(details), "runs": runs,
            "isolation": _isolation(mvrt_runs), "floor": _floor(mvrt_runs)}


def _floor(mvrt_runs: list[MvrtRun]) -> dict:
    """Files floor = decoding every frame once (no conversion) + the engine's own time for the same
    windows; end-to-end / floor per run, median over the runs."""
    floors = [r.floor_decode_seconds + r.engine_seconds for r in mvrt_runs]
    ratios = [r.end_to_end_seconds / f for r, f in zip(mvrt_runs, floors)]
    ratio = statistics.median(ratios)
    return {"decode_seconds": round(statistics.median(r.floor_decode_seconds for r in mvrt_runs), 4),
            "engine_seconds": round(statistics.median(r.engine_seconds for r in mvrt_runs), 4),
            "floor_seconds": round(statistics.median(floors), 4),
            "end_to_end_seconds": round(statistics.median(r.end_to_end_seconds for r in mvrt_runs), 4),
            "ratio": round(ratio, 3), "target_ratio": FLOOR_TARGET_RATIO, "met": ratio <= FLOOR_TARGET_RATIO}


def _isolation(mvrt_runs: list[MvrtRun]) -> dict:
    """isolate=True against the in-process pipeline, each run's pair side by side (median ratio)."""
    ratios = [r.isolated_end_to_end_seconds / r.end_to_end_seconds for r in mvrt_runs]
    return {"in_process_seconds": round(statistics.median(r.end_to_end_seconds for r in mvrt_runs), 4),
            "isolated_seconds": round(statistics.median(r.isolated_end_to_end_seconds for r in mvrt_runs), 4),
            "ratio": round(statistics.median(ratios), 3)}


def _rounded(values: dict) -> dict:
    return {k: round(v, 4) for k, v in values.items()}


def format_report(result: dict) -> str:
    m, v, mo, o = result["machine"], result["video"], result["model"], result["options"]
    lines = [
        f"CPU: {m['cpu']} ({m['cores']} logical cores); onnxruntime {m['onnxruntime']}, torch {m['torch']}, "
        f"av {m['av']} (libavcodec {m['libavcodec']}), librosa {m['librosa']}, python {m['python']}; load average "
        f"{m['load_average_1min_before']:g} before, {m['load_average_1min_after']:g} after",
        f"video: {v['duration_seconds']:g} s {v['width']}x{v['height']} {v['fps']} fps H.264 ({v['preset']}, crf "
        f"{v['crf']}, bf {v['bframes']}, gop {v['gop']}; {v['b_frames']}/{v['decoded_frames']} B-frames) + AAC "
        f"{v['audio_channels']} ch {v['audio_rate']} Hz; {v['windows']} windows of 30 s",
        f"model: {mo['arch']} width {mo['width']:g} MMTM, {mo['parameters']:,} parameters, random init, ONNX FP32; "
        f"mvrt: ORT CPU {o['ort_threads']} threads, batch {o['batch_size']}, {o['frontend']} front-end; "
        f"baseline: torch eager {o['torch_threads']} threads, batch 1; median of {o['repeat']} run(s)",
        "",
        "| stage | baseline (s) | mvrt (s) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for row in ROWS:
        r = result["rows"][row]
        lines.append(f"| {row} | {r['baseline_seconds']:.2f} | {r['mvrt_seconds']:.2f} | {r['speedup']:.1f}x |")
    rtf = result["rtf"]
    lines.append(f"| real-time factor (media s / wall s) | {rtf['baseline']:.1f} | {rtf['mvrt']:.1f} | |")
    fl = result["floor"]
    lines.append(f"| files: end-to-end vs floor, target <= {fl['target_ratio']:g}x | | {fl['ratio']:.2f}x | "
                 f"{'met' if fl['met'] else 'MISSED'} |")
    lines += ["", f"floor = decode every frame once, no conversion ({fl['decode_seconds']:.2f} s: one threaded PyAV "
              f"pass over all video and audio packets) + engine ({fl['engine_seconds']:.2f} s) = "
              f"{fl['floor_seconds']:.2f} s; end-to-end {fl['end_to_end_seconds']:.2f} s = {fl['ratio']:.3f}x floor"]
    iso = result["isolation"]
    lines += ["", f"isolation (isolate=True, decoding in a worker process): end-to-end {iso['isolated_seconds']:.2f} s "
              f"vs {iso['in_process_seconds']:.2f} s in process, {iso['ratio']:.3f}x"]
    a = result["agreement"]
    lines += ["", f"agreement ({'OK' if a['ok'] else 'FAILED'}): "
              + ", ".join(f"{k} {a['measured'][k]:.3g} (tol {a['tolerance'][k]:g})" for k in a["measured"])]
    lines.append(f"isolate=True vs in-process logits: max |d| {a['logits_isolated_vs_pipeline_max_abs']:.3g} "
                 f"(tol {_baseline.ISOLATED_TOLERANCE:g})")
    lines.append(f"logits: ORT vs torch max |d| {a['logits_ort_vs_torch_max_abs']:.3g} (|logits| up to "
                 f"{a['logits_abs_max']:.3g}); mvrt vs baseline end to end {a['logits_mvrt_vs_baseline_all_windows_max_abs']:.3g}")
    return "\n".join(lines)


def machine_info() -> dict:
    import av
    import librosa
    import onnxruntime
    import torch

    return _machine_info(
        onnxruntime=onnxruntime.__version__,
        torch=torch.__version__,
        av=av.__version__,
        libavcodec=".".join(map(str, av.library_versions.get("libavcodec", ()))) or "?",
        librosa=librosa.__version__,
        numpy=np.__version__,
    )


def _read_through(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 22):
            pass


def _intra_threads() -> int:
    from mvrt.runtime.engines.onnxruntime_engine import physical_cores

    return physical_cores()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["agreement"]["ok"] else 1)
