"""Live-source benchmarks of mvrt: latency, capacity and memory soak over loopback TCP (CPU, ORT FP32).

    PYTHONPATH=src .venv/bin/python bench/bench_live.py latency|capacity|soak [--quick] [--json out.json]

Each mode sends a generated H.264 + AAC clip (bench/_media.py, cached in bench/.cache/) as
MPEG-TS over TCP on 127.0.0.1 with tests/live_sender.py (one process per source, paced by DTS at
`--speed`), reads it live with mvrt, and prints the machine header and a Markdown table:
- latency: one 1280x720 source at real time, `Model.stream`, hop 5 s: p50/p99/max latency.
- capacity: N real-time 854x480 sources in one `Model.run`, hop 30 s, N = 4, 8, 16, 24 (stops
  at the first N not sustained): latency, its growth, CPU; the largest N sustained.
- soak: 1,000 windows (hop 1 s) of one looped source sent at 8x: peak and current RSS at
  window 100 and at window 1,000, and their ratio.
See bench/README.md ("Live sources").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _live_modes import measure_capacity, measure_latency, measure_soak  # noqa: E402  (bench/ is not a package)
from _feeds import random_feeds  # noqa: E402
from _live_support import load_average  # noqa: E402
from _media import VideoSpec, check_height, ensure_video  # noqa: E402

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
MODES = ("latency", "capacity", "soak")
LATENCY_TARGET_SECONDS = 1.0  # p99, one source (the target)
CAPACITY_TARGET_SOURCES = 16
SOAK_TARGET_RATIO = 1.05
# Per mode: clip height and length (s), hop (s), speed, windows (per source), model width.
DEFAULTS = {
    "latency": {"height": 720, "seconds": 180.0, "hop": 5.0, "speed": 1.0, "windows": 31, "width": 1.0},
    "capacity": {"height": 480, "seconds": 60.0, "hop": 30.0, "speed": 1.0, "windows": 3, "width": 1.0},
    "soak": {"height": 480, "seconds": 60.0, "hop": 1.0, "speed": 8.0, "windows": 1000, "width": 1.0},
}
QUICK = {
    "latency": {"height": 480, "seconds": 60.0, "windows": 6, "width": 0.25},
    "capacity": {"height": 480, "seconds": 60.0, "hop": 15.0, "windows": 2, "width": 0.25, "sources": "2,4"},
    "soak": {"windows": 200, "width": 0.25, "sample_at": "50"},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=MODES)
    p.add_argument("--quick", action="store_true", help="short development run (width 0.25, fewer windows)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=f"generated clip/model cache ({CACHE_DIR})")
    p.add_argument("--model", type=Path, help="ONNX model to run (default: the benchmark slowfast of --width)")
    p.add_argument("--width", type=float, help="width of the default slowfast model (default 1.0)")
    p.add_argument("--height", type=int, help="clip height, 16:9 (latency 720, capacity and soak 480)")
    p.add_argument("--seconds", type=float, help="clip length in media seconds, looped as needed (180 / 60 / 60)")
    p.add_argument("--fps", type=int, default=30, help="clip frame rate (default 30)")
    p.add_argument("--hop", type=float, help="seconds between window starts (latency 5, capacity 30, soak 1)")
    p.add_argument("--speed", type=float, help="media seconds sent per wall second (latency, capacity 1; soak 8)")
    p.add_argument("--windows", type=int, help="windows per source (latency 31, capacity 3, soak 1000)")
    p.add_argument("--sources", help="capacity: comma-separated source counts (default 4,8,16,24)")
    p.add_argument("--batch-size", type=int, default=4, help="engine batch (default 4)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--latency-bound", type=float, default=5.0, help="capacity: p99 latency bound in s (default 5)")
    p.add_argument("--growth-bound", type=float, default=1.0,
                   help="capacity: allowed growth, first to last window, of latency and real-time lag, s (default 1)")
    p.add_argument("--stagger", action="store_true",
                   help="capacity: start the sources spread evenly over one hop (mvrt listens, senders connect) "
                        "instead of all at once")
    p.add_argument("--sample-at", help="soak: window counts at which memory is read, besides the last (default 100)")
    p.add_argument("--max-wall-seconds", type=float,
                   help="stop a run after this long (default: 2 x media time at --speed, soak at least 1 s a window, + 120)")
    return _complete(p, p.parse_args(argv))


def _complete(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    settings = DEFAULTS[args.mode] | {"sources": "4,8,16,24", "sample_at": "100"}
    if args.quick:
        settings |= QUICK[args.mode]
    for key, value in settings.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.sources = [int(n) for n in str(args.sources).split(",")]
        args.sample_at = [int(n) for n in str(args.sample_at).split(",")]
    except ValueError:
        p.error(f"--sources {args.sources!r} / --sample-at {args.sample_at!r}: expected comma-separated integers")
    if min(args.sources) < 1 or min(args.sample_at) < 1:
        p.error("--sources and --sample-at must be positive")
    if args.windows < 1 or args.batch_size < 1 or args.hop <= 0 or args.speed <= 0 or args.seconds <= 0:
        p.error("--windows, --batch-size, --hop, --speed and --seconds must be positive")
    check_height(p, args.height)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run one mode; returns the results dict that --json writes."""
    import bench_pipeline
    import mvrt.api

    args = parse_args(argv)
    spec = VideoSpec(seconds=args.seconds, height=args.height, fps=args.fps)
    clip, generated = ensure_video(args.cache_dir, spec)
    print(f"clip: {clip} ({'generated in %.1f s' % generated if generated else 'cached'})", flush=True)
    onnx_path = args.model or bench_pipeline.ensure_model(args.cache_dir, args.width)[1]
    with mvrt.api.load_model(onnx_path, backend="onnxruntime", providers="cpu", threads=args.threads,
                             batch_size=args.batch_size) as model:
        window_seconds = model.config.frontend.window_seconds
        if args.max_wall_seconds is None:
            needed = window_seconds + (args.windows - 1) * args.hop
            per_window = 1.0 if args.mode == "soak" else 0.0  # the soak outruns real time: allow 1 s a window
            args.max_wall_seconds = (max(2 * needed / args.speed, per_window * args.windows) + 120
                                     + (2 * max(args.sources) if args.mode == "capacity" else 0))
        engine = _warm_up(model)
        load_before = load_average()
        measure = {"latency": measure_latency, "capacity": measure_capacity, "soak": measure_soak}[args.mode]
        measured = measure(args, model, clip, spec.seconds, window_seconds)
    result = {
        "mode": args.mode,
        "machine": bench_pipeline.machine_info() | {"load_average_1min_before": load_before,
                                                   "load_average_1min_after": load_average()},
        "clip": {"path": str(clip), "width": spec.width, "height": spec.height, "fps": spec.fps,
                 "seconds": spec.seconds, "preset": spec.preset, "bframes": spec.bframes, "gop": spec.gop},
        "model": {"onnx": str(onnx_path), "arch": model.config.arch, "width": model.config.width,
                  "window_seconds": window_seconds, "engine_batch1_seconds": engine},
        "options": {"hop_seconds": args.hop, "speed": args.speed, "windows": args.windows,
                    "batch_size": args.batch_size, "ort_threads": args.threads or bench_pipeline._intra_threads(), "transport": "MPEG-TS over TCP 127.0.0.1",
                    "max_wall_seconds": args.max_wall_seconds},
        "results": measured,
    }
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _warm_up(model) -> float:
    """Untimed first inferences (ORT's first-call allocations); returns the median batch-1 engine seconds."""
    import statistics
    import time

    engine = model._engine  # the benchmark times the engine alone once; the API does not expose it
    feeds = random_feeds(model.config, 1, 0)  # of the model's contract: uint8 `video` for contract 2
    engine.infer(feeds)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        engine.infer(feeds)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)


def _header(result: dict) -> list[str]:
    m, c, mo, o = result["machine"], result["clip"], result["model"], result["options"]
    return [
        f"CPU: {m['cpu']} ({m['cores']} logical cores); onnxruntime {m['onnxruntime']}, av {m['av']} (libavcodec "
        f"{m['libavcodec']}), python {m['python']}; load average {m['load_average_1min_before']:g} before, "
        f"{m['load_average_1min_after']:g} after",
        f"clip: {c['width']}x{c['height']} {c['fps']} fps H.264 ({c['preset']}, bf {c['bframes']}, gop {c['gop']}) + AAC, "
        f"{c['seconds']:g} s looped; {o['transport']} at {o['speed']:g}x real time (tests/live_sender.py)",
        f"model: {mo['arch']} width {mo['width']:g}, {mo['window_seconds']:g} s windows every {o['hop_seconds']:g} s; "
        f"ORT CPU {o['ort_threads']} threads, batch {o['batch_size']}; engine alone "
        f"{mo['engine_batch1_seconds'] * 1000:.0f} ms per batch-1 window",
        "",
    ]


def _ms(value) -> str:
    return "n/a" if value is None or value != value else f"{value * 1000:.0f}"


def format_report(result: dict) -> str:
    r = result["results"]
    lines = _header(result)
    if result["mode"] == "latency":
        s = r["latency_seconds"]
        lines += ["| hop (s) | windows | p50 (ms) | p99 (ms) | max (ms) | first window (ms) | real-time lag growth (s) |",
                  "|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {result['options']['hop_seconds']:g} | {r['windows']}/{r['windows_asked']} | {_ms(s['p50'])} | "
                  f"{_ms(s['p99'])} | {_ms(s['max'])} | {_ms(r['first_window_latency_seconds'])} | "
                  f"{r['lag_growth_seconds'] if r['lag_growth_seconds'] is not None else 'n/a'} |",
                  "", _verdict("p99 latency", s["p99"], LATENCY_TARGET_SECONDS, "s", low=True),
                  f"mvrt process CPU: {r['cpu']['cores_used']:g} cores over {r['cpu']['wall_seconds']:g} s"]
    elif result["mode"] == "capacity":
        lines += _capacity_table(r)
    else:
        lines += _soak_table(r)
    return "\n".join(lines)


def _capacity_table(r: dict) -> list[str]:
    lines = ["| sources | windows (min per source) | p50 (ms) | p99 (ms) | max (ms) | latency first -> last (ms) | "
             "lag growth (s) | mvrt CPU (cores) | senders CPU (cores) | sustained |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for step in r["steps"]:
        s = step["latency_seconds"]
        lines.append(
            f"| {step['sources']} | {step['windows']} ({step['windows_per_source_min']}/{step['windows_per_source_asked']}) "
            f"| {_ms(s['p50'])} | {_ms(s['p99'])} | {_ms(s['max'])} | {_ms(step['first_window_latency_median_seconds'])}"
            f" -> {_ms(step['last_window_latency_median_seconds'])} | {step['lag_growth_median_seconds']:g} | "
            f"{step['cpu']['cores_used']:g} | {step['senders_cores_used']} | {'yes' if step['sustained'] else 'NO'} |")
    lines += ["", ("sources started spread evenly over one hop (mvrt listens, each sender connects)" if r["staggered"]
                   else "sources started together: their windows complete at the same moment (worst case)"),
              f"sustained = every source delivered its windows, p99 latency <= {r['latency_bound_seconds']:g} s, "
              f"and neither latency nor real-time lag grew by more than {r['growth_bound_seconds']:g} s first -> last",
              _verdict("largest N sustained", r["largest_sustained"], CAPACITY_TARGET_SOURCES, " sources", low=False)
              + (" (every N tried was sustained: try larger ones)" if r["steps"] and r["steps"][-1]["sustained"] else "")]
    return lines


def _soak_table(r: dict) -> list[str]:
    lines = ["| at window | wall (s) | VmHWM (MiB) | VmRSS (MiB) |", "|---:|---:|---:|---:|"]
    for mark, m in sorted(r["memory_kib"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {mark} | {m['wall_seconds']:g} | {m['vm_hwm_kib'] / 1024:.1f} | {m['vm_rss_kib'] / 1024:.1f} |")
    s = r["latency_seconds"]
    lines += [f"| ratio last / {r['first_mark']} | | {r['hwm_ratio']} | {r['rss_ratio']} |", "",
              f"{r['windows']}/{r['windows_asked']} windows ({r['media_seconds']:g} s of media) at "
              f"{r['windows_per_second']} windows/s; latency p50 {_ms(s['p50'])} ms, p99 {_ms(s['p99'])} ms; "
              f"mvrt CPU {r['cpu']['cores_used']:g} cores",
              _verdict("peak RSS ratio", r["hwm_ratio"], SOAK_TARGET_RATIO, "", low=True)]
    return lines


def _verdict(name: str, value, target, unit: str, *, low: bool) -> str:
    if value is None or value != value:
        return f"{name}: not measured (target {'<=' if low else '>='} {target:g}{unit})"
    met = value <= target if low else value >= target
    return (f"{name}: {value:g}{unit}, target {'<=' if low else '>='} {target:g}{unit}: "
            + ("met" if met else f"MISSED by {abs(value - target):.3g}{unit}"))


if __name__ == "__main__":
    main()
