"""Ray with 1 and 2 workers against the plain local run, over the same generated files, on this machine.

    PYTHONPATH=src .venv/bin/python bench/bench_ray.py [--quick] [--json out.json]

Generates (once, cached in bench/.cache/ray/) `--files` short H.264 + AAC clips and a seeded
tiny slowfast exported to ONNX (4 s windows, `--width`), then, side by side in one run: the
plain local run (`mvrt.api`, `jobs` 1 and 2 decoding threads) and `mvrt.ray_runner.run_on_ray`
on a local cluster (loopback only) with 1 and with 2 CPUs ("workers": decoding tasks at a
time; one engine actor), each cluster timed twice: cold (Ray starts the worker processes,
which import mvrt) and warm (the same run again). Each row: wall seconds, windows/s and the
ratio to the local run with jobs=1 (timed after an untimed warm-up); a Ray row's wall time
counts the engine actor's start but not the cluster's (`cluster_start_seconds`, apart). The scheduling cost is the Ray run's time over the
local run's with the same decoding parallelism. Every Ray reading must equal the local one
(max |dp| <= 1e-5), else exit status 1. ONNX Runtime runs with `--threads` (1) everywhere.
Every loop is bounded; `--max-wall-seconds` stops adding runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local clusters on 127.0.0.1 only (read on import)

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
from _machine import bench_parser, fill_defaults, int_list  # noqa: E402  (bench/ is not a package)
from _machine import machine_info as _machine_info  # noqa: E402

TESTS_DIR = BENCH_DIR.parent / "tests"
CACHE_DIR = BENCH_DIR / ".cache" / "ray"
AGREEMENT = 1e-5
FULL = {"files": 20, "seconds": 12.0, "height": 240, "width": 0.25}
QUICK = {"files": 3, "seconds": 5.0, "height": 96, "width": 0.0625}
FPS = 24


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__.splitlines()[0], "smoke run: 3 files of 5 s, 96p, width 1/16")
    p.add_argument("--files", type=int, help="generated files (default 20; --quick 3)")
    p.add_argument("--seconds", type=float, help="length of each file (default 12; --quick 5)")
    p.add_argument("--height", type=int, help="video height, 16:9, even (default 240; --quick 96)")
    p.add_argument("--width", type=float, help="model width multiplier (default 0.25; --quick 1/16)")
    p.add_argument("--batch-size", type=int, default=4, help="engine batch (default 4)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads in every run (default 1)")
    p.add_argument("--workers", default="1,2", help="Ray CPUs to time, comma-separated (default 1,2)")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=f"generated media/model cache ({CACHE_DIR})")
    p.add_argument("--max-wall-seconds", type=float, default=600.0, help="stop adding runs after this long (600)")
    args = fill_defaults(p.parse_args(argv), QUICK, FULL)
    args.workers = int_list(p, args.workers, "--workers")
    if not args.workers or min(args.workers) < 1 or args.files < 1 or args.seconds <= 0 or args.width <= 0:
        p.error("--workers, --files, --seconds and --width must be positive")
    if args.height < 16 or args.height % 2:
        p.error(f"--height must be an even number >= 16, got {args.height}")
    if args.batch_size < 1 or args.threads < 1 or args.max_wall_seconds <= 0:
        p.error("--batch-size, --threads and --max-wall-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    files = ensure_files(args.cache_dir, args.files, args.seconds, args.height)
    onnx = ensure_model(args.cache_dir, args.width)
    result = benchmark(onnx, files, args)
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def ensure_files(cache_dir: Path, count: int, seconds: float, height: int) -> list[str]:
    """`count` seeded clips (H.264 with B-frames + stereo AAC), generated once."""
    from mvrt.standin import write_clip

    folder = cache_dir / f"clips_{seconds:g}s_{height}p"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"clip{i:03d}.mp4"
        if not path.exists():
            partial = folder / f"clip{i:03d}.partial.mp4"
            audio, rate, frames = _content(seconds, height, seed=i)
            write_clip(partial, audio, rate, frames, FPS)
            partial.replace(path)
        paths.append(str(path))
    return paths


def _content(seconds: float, height: int, seed: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Moving colour waves and a swelling chord, different for every seed."""
    rng = np.random.default_rng(seed)
    width = int(round(height * 16 / 9 / 2)) * 2
    count = int(seconds * FPS)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    shift = rng.uniform(0, 2 * np.pi)
    frames = np.empty((count, height, width, 3), np.uint8)  # (T, H, W, 3)
    for t in range(count):
        phase = shift + 6 * np.pi * t / max(count, 1)
        frames[t] = (127 + 120 * np.sin(phase + 6 * x + 3 * y + np.array([0, 2, 4], np.float32))).astype(np.uint8)
    rate = 22050
    tt = np.arange(int(seconds * rate)) / rate
    root = 196.0 * 2 ** (seed % 7 / 12)
    tone = sum(np.sin(2 * np.pi * root * r * tt) for r in (1.0, 1.26, 1.5)) * (0.5 + 0.5 * np.sin(0.6 * tt))
    audio = (0.1 * tone + 0.01 * rng.standard_normal(tt.shape)).astype(np.float32)
    return np.stack([audio, audio]), rate, frames


def ensure_model(cache_dir: Path, width: float) -> Path:
    """A seeded tiny slowfast (4 s windows) at `width`, as ONNX, built once (needs torch)."""
    onnx = cache_dir / f"model_w{width:g}" / "tiny-slowfast.onnx"
    if onnx.exists():
        return onnx
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from model_factory import make_tiny_model  # tests/ helper

    return make_tiny_model(onnx.parent, width=width)[1]


def benchmark(onnx: Path, files: list[str], args: argparse.Namespace) -> dict:
    started = time.monotonic()
    rows, reference = [], None
    time_local(onnx, files[:1], args, 1)  # imports, first session and page cache, untimed
    for jobs in sorted({1, max(args.workers)}):
        if rows and time.monotonic() - started > args.max_wall_seconds:
            break
        seconds, videos = time_local(onnx, files, args, jobs)
        reference = reference or videos
        rows.append(_row(f"local, jobs={jobs}", "local", jobs, seconds, videos, reference))
    for workers in args.workers:
        if time.monotonic() - started > args.max_wall_seconds:
            break
        start_seconds, runs = time_ray(onnx, files, args, workers)
        for run, (seconds, videos) in zip(("cold", "warm"), runs):
            rows.append(_row(f"ray, {workers} worker(s), {run}", "ray", workers, seconds, videos, reference,
                             cluster_start_seconds=start_seconds))
    base = rows[0]["wall_seconds"]
    local_by_jobs = {r["parallel"]: r["wall_seconds"] for r in rows if r["kind"] == "local"}
    for row in rows:
        row["ratio_to_local"] = round(row["wall_seconds"] / base, 3)
        same = local_by_jobs.get(row["parallel"])
        row["scheduling_cost"] = round(row["wall_seconds"] / same, 3) if row["kind"] == "ray" and same else None
    return {"files": len(files), "file_seconds": args.seconds, "height": args.height, "width": args.width,
            "batch_size": args.batch_size, "threads": args.threads, "rows": rows,
            "agree": all(r["max_abs_dp"] <= AGREEMENT and r["errors"] == 0 for r in rows),
            "machine": machine_info()}


def time_local(onnx: Path, files: list[str], args: argparse.Namespace, jobs: int):
    from mvrt.api import load_model
    from mvrt.runtime.pipeline import PipelineConfig
    from mvrt.runtime.results import VideoResult

    start = time.perf_counter()
    with load_model(onnx, threads=args.threads) as model:
        pipeline = PipelineConfig(batch_size=args.batch_size, jobs=jobs)
        videos = [e for e in model.run(files, pipeline) if isinstance(e, VideoResult)]
    return time.perf_counter() - start, videos


def time_ray(onnx: Path, files: list[str], args: argparse.Namespace, workers: int):
    """(cluster start seconds, [(run seconds, results)] * 2) on a local cluster of `workers` CPUs:
    a cold run (Ray starts its worker processes, which import mvrt) and a warm one after it."""
    from mvrt.ray_runner import ray_session, run_on_ray
    from mvrt.runtime.pipeline import PipelineConfig

    start = time.perf_counter()
    with ray_session("local", num_cpus=workers, log_to_driver=False):
        cluster = time.perf_counter() - start
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            videos = list(run_on_ray(onnx, files, PipelineConfig(batch_size=args.batch_size), address=None,
                                     engine_options={"threads": args.threads}))
            runs.append((time.perf_counter() - start, videos))
        return cluster, runs


def _row(name: str, kind: str, parallel: int, seconds: float, videos, reference, **extra) -> dict:
    windows = sum(len(v.windows) for v in videos)
    return {"name": name, "kind": kind, "parallel": parallel, "wall_seconds": round(seconds, 3), "windows": windows,
            "windows_per_second": round(windows / seconds, 2), "errors": sum(not v.ok for v in videos),
            "max_abs_dp": _max_dp(videos, reference), **extra}


def _max_dp(videos, reference) -> float:
    """Largest |dp| of any window against the reference run (inf when the windows differ)."""
    want = {v.path: v for v in reference}
    worst = 0.0
    for video in videos:
        ref = want.get(video.path)
        if ref is None or [w.start_seconds for w in video.windows] != [w.start_seconds for w in ref.windows]:
            return float("inf")
        for got, exp in zip(video.windows, ref.windows):
            worst = max(worst, float(np.abs(got.probabilities - exp.probabilities).max()))
    return worst if len(videos) == len(reference) else float("inf")


def format_report(result: dict) -> str:
    lines = [f"# Ray vs local: {result['files']} files of {result['file_seconds']:g} s, {result['height']}p; "
             f"tiny slowfast width {result['width']:g}, batch {result['batch_size']}, "
             f"ONNX Runtime {result['threads']} thread(s); {result['machine']['cores']} cores",
             "",
             "| run | wall s | windows | windows/s | vs local jobs=1 | scheduling cost | cluster start s | max abs dp |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        cost = "" if r["scheduling_cost"] is None else f"{r['scheduling_cost']:.2f}x"
        start = f"{r['cluster_start_seconds']:.1f}" if "cluster_start_seconds" in r else ""
        lines.append(f"| {r['name']} | {r['wall_seconds']:.2f} | {r['windows']} | {r['windows_per_second']:.1f} | "
                     f"{r['ratio_to_local']:.2f}x | {cost} | {start} | {r['max_abs_dp']:.1e} |")
    lines.append("")
    lines.append("agreement: " + ("every run read the same probabilities (<= 1e-5)" if result["agree"]
                                  else "RUNS DISAGREE or had errors"))
    return "\n".join(lines)


def machine_info() -> dict:
    import onnxruntime
    import ray

    return _machine_info(ray=ray.__version__, onnxruntime=onnxruntime.__version__)


if __name__ == "__main__":
    sys.exit(0 if main()["agree"] else 1)
