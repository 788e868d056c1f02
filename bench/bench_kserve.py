"""KServe V2 round trip per window against local ONNX Runtime, on one machine over loopback.

    PYTHONPATH=src .venv-kserve/bin/python bench/bench_kserve.py [--quick] [--json out.json]

Starts MLServer on 127.0.0.1 (free ports; `tests/kserve_runtime.py` runs the ONNX file on ONNX
Runtime CPU with the same thread count as the local engine), then times, for each batch size,
the same seeded feeds through the local `OnnxRuntimeEngine` and through `KServeEngine` over
gRPC and over HTTP, side by side in one run: per call, per window, the ratio to local, and the
protocol overhead per window (remote minus local). Checks that every path computed the same
probabilities (max |dp| <= 1e-5); a remote path that fails is a row with its error. Either
gives exit status 1. MLServer is found at `--mlserver`, `$MVRT_MLSERVER`, beside this Python,
or on PATH; the client needs `tritonclient[grpc,http]`.

The default model is the seeded random-init slowfast of bench_pipeline.py (`--width`, default
1.0) with full 30 s windows, exported with tensor contract 2 (uint8 `video`: 5.5 MB a window on the
wire; a contract-1 ONNX takes 16.6 MB of float32), cached in bench/.cache/. `--quick`
is a CI smoke run (width 1/16, 2 windows a path, batches 1 and 2). Every loop is bounded, and
the run stops adding measurements after `--max-wall-seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
TESTS_DIR = BENCH_DIR.parent / "tests"
for _folder in (BENCH_DIR, TESTS_DIR):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
from _feeds import random_feeds  # noqa: E402  (bench/ is not a package)
from _machine import bench_parser, fill_defaults, int_list, machine_info  # noqa: E402
from kserve_server import MLServer, ServedModel, mlserver_executable  # noqa: E402  (tests/ helper)

CACHE_DIR = BENCH_DIR / ".cache"
PATHS = ("local", "grpc", "http")
AGREEMENT = 1e-5
FULL = {"width": 1.0, "windows": 8, "batch_sizes": "1,4"}
QUICK = {"width": 0.0625, "windows": 2, "batch_sizes": "1,2"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__.splitlines()[0], "smoke run: width 1/16, 2 windows a path, batches 1,2")
    p.add_argument("--model", type=Path, help="ONNX model (default: the benchmark slowfast of --width, cached)")
    p.add_argument("--width", type=float, help="width of the default slowfast (default 1.0; --quick 0.0625)")
    p.add_argument("--windows", type=int, help="timed windows per path and batch size (default 8; --quick 2)")
    p.add_argument("--batch-sizes", help="comma-separated batch sizes (default 1,4; --quick 1,2)")
    p.add_argument("--protocols", default="grpc,http", help="remote protocols to time (default grpc,http)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads, local and in the server (default: cores)")
    p.add_argument("--mlserver", help="the mlserver executable (default: $MVRT_MLSERVER, beside python, PATH)")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=f"model cache ({CACHE_DIR})")
    p.add_argument("--timeout-seconds", type=float, default=300.0, help="KServeEngine timeout_seconds (300)")
    p.add_argument("--max-wall-seconds", type=float, default=1800.0, help="stop measuring after this long (1800)")
    args = fill_defaults(p.parse_args(argv), QUICK, FULL)
    args.batch_sizes = int_list(p, args.batch_sizes, "--batch-sizes")
    args.protocols = [s.strip() for s in args.protocols.split(",") if s.strip()]
    if min(args.batch_sizes) < 1 or args.windows < 1 or args.width <= 0 or args.max_wall_seconds <= 0:
        p.error("--batch-sizes, --windows, --width and --max-wall-seconds must be positive")
    if not args.protocols or any(s not in ("grpc", "http") for s in args.protocols):
        p.error(f"--protocols takes grpc and/or http, got {','.join(args.protocols) or 'nothing'}")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from mvrt.runtime.engines.onnxruntime_engine import physical_cores

    threads = args.threads or physical_cores()
    executable = args.mlserver or mlserver_executable()
    if executable is None:
        raise SystemExit("bench_kserve: MLServer not found (pip install mlserver, or --mlserver / $MVRT_MLSERVER)")
    onnx_path = args.model or _default_model(args.cache_dir, args.width)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mvrt-bench-kserve-") as folder:
        served = [ServedModel(onnx_path.stem, onnx_path, threads=threads)]
        server = MLServer(Path(folder), served, executable=executable)
        load_before = os.getloadavg()[0]
        with server:
            rows = measure(args, onnx_path, server, threads, started)
        load_after = os.getloadavg()[0]
    result = {
        "machine": {**_machine(executable), "load_average_1min_before": load_before,
                    "load_average_1min_after": load_after},
        "model": _model_info(onnx_path),
        "settings": {"threads": threads, "windows": args.windows, "batch_sizes": args.batch_sizes,
                     "protocols": args.protocols, "quick": args.quick},
        "rows": rows,
        "agreement_limit": AGREEMENT,
        "agree": all(r["max_abs_dp"] is None or r["max_abs_dp"] <= AGREEMENT for r in rows),
        "failed": [f"{r['path']} batch {r['batch']}" for r in rows if "error" in r],
    }
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not result["agree"] or result["failed"]:
        print(f"bench_kserve: {', '.join(result['failed']) or 'nothing'} failed; probabilities within {AGREEMENT} "
              f"of local ONNX Runtime: {result['agree']}", file=sys.stderr)
        raise SystemExit(1)
    return result


def measure(args, onnx_path: Path, server: MLServer, threads: int, started: float) -> list[dict]:
    """One row per batch size and path: local first, then each protocol, on the same feeds."""
    from mvrt.errors import MvrtError
    from mvrt.runtime.engines.kserve_engine import KServeEngine
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    engines = {"local": OnnxRuntimeEngine(onnx_path, providers="cpu", threads=threads)}
    for protocol in args.protocols:
        engines[protocol] = KServeEngine(onnx_path, url=server.url(protocol), protocol=protocol,
                                         timeout_seconds=args.timeout_seconds)
    rows = []
    try:
        for engine in engines.values():
            engine.load()
        for batch in args.batch_sizes:
            calls = max(1, -(-args.windows // batch))  # ceil: at least `windows` windows
            feeds = _feeds(engines["local"].config, batch)
            reference = None
            for path, engine in engines.items():
                if time.monotonic() - started > args.max_wall_seconds:
                    rows.append({"batch": batch, "path": path, "skipped": "max_wall_seconds reached",
                                 "max_abs_dp": None})
                    continue
                try:
                    row, probabilities = _time_path(engine, feeds, calls)
                except MvrtError as exc:  # a remote path that fails is a row, with the server's last words
                    if path == "local":
                        raise
                    print(f"bench_kserve: {path}, batch {batch}: {exc}\n{server.log_tail()}", file=sys.stderr)
                    rows.append({"batch": batch, "path": path, "error": str(exc), "max_abs_dp": None})
                    continue
                reference = probabilities if path == "local" else reference
                row["max_abs_dp"] = None if reference is None or path == "local" else float(
                    np.max(np.abs(probabilities - reference)))
                rows.append({"batch": batch, "path": path, **row})
    finally:
        for engine in engines.values():
            engine.close()
    _add_ratios(rows)
    return rows


def _time_path(engine, feeds: dict[str, np.ndarray], calls: int) -> tuple[dict, np.ndarray]:
    """One untimed warm-up call, then `calls` timed calls of the same batch."""
    batch = next(iter(feeds.values())).shape[0]
    logits = engine.infer(feeds)
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        logits = engine.infer(feeds)
        seconds.append(time.perf_counter() - start)
    per_call = statistics.median(seconds)
    row = {"calls": calls, "windows": calls * batch, "per_call_seconds": per_call,
           "per_window_seconds": per_call / batch, "min_call_seconds": min(seconds),
           "request_mb": sum(a.nbytes for a in feeds.values()) / 1e6}
    if getattr(engine, "protocol", None) == "http":
        row["http_binary_data"] = bool(engine.binary_data)
    return row, _softmax(np.asarray(logits, dtype=np.float64))


def _add_ratios(rows: list[dict]) -> None:
    local = {r["batch"]: r for r in rows if r["path"] == "local" and "per_window_seconds" in r}
    for row in rows:
        base = local.get(row["batch"])
        if base is None or "per_window_seconds" not in row:
            continue
        row["vs_local"] = row["per_window_seconds"] / base["per_window_seconds"]
        row["overhead_per_window_seconds"] = row["per_window_seconds"] - base["per_window_seconds"]


def render(result: dict) -> str:
    m, model = result["machine"], result["model"]
    lines = [
        f"KServe V2 round trip vs local ONNX Runtime: {m['cpu']}, {m['cores']} cores, onnxruntime "
        f"{m['onnxruntime']}, tritonclient {m['tritonclient']}, MLServer {m['mlserver']}, python {m['python']}; "
        f"load average {m['load_average_1min_before']:.2f} -> {m['load_average_1min_after']:.2f}",
        f"model {model['arch']} width {model['width']:g}, {model['window_seconds']:g} s windows, "
        f"{model['window_mb']:.1f} MB a window (tensor contract {model['contract']}: {model['input_dtypes']}); "
        f"{result['settings']['threads']} ORT threads (local and server)",
        "",
        "| batch | path | per call (s) | per window (s) | vs local | overhead / window (s) | request (MB) "
        "| max abs dp |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        if "skipped" in r or "error" in r:
            what = f"skipped: {r['skipped']}" if "skipped" in r else f"failed: {r['error']}"
            lines.append(f"| {r['batch']} | {r['path']} | {what} | | | | | |")
            continue
        path = r["path"] + (" (JSON)" if r.get("http_binary_data") is False else "")
        dp = "" if r["max_abs_dp"] is None else f"{r['max_abs_dp']:.1e}"
        lines.append(f"| {r['batch']} | {path} | {r['per_call_seconds']:.3f} | {r['per_window_seconds']:.3f} | "
                     f"{r.get('vs_local', 1.0):.2f}x | {r.get('overhead_per_window_seconds', 0.0):+.3f} | "
                     f"{r['request_mb']:.1f} | {dp} |")
    return "\n".join(lines)


def _feeds(config, batch: int) -> dict[str, np.ndarray]:
    return random_feeds(config, batch, 0)  # each input of its dtype: uint8 `video` for contract 2


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _default_model(cache_dir: Path, width: float) -> Path:
    from bench_pipeline import ensure_model  # the same seeded benchmark model (needs torch)

    return ensure_model(cache_dir, width)[1]


def _model_info(onnx_path: Path) -> dict:
    from mvrt.runtime.model_meta import input_bytes_per_window, read_onnx_config

    config = read_onnx_config(onnx_path)
    dtypes = ", ".join(f"{name} {dtype}" for name, dtype in config.input_dtypes().items())
    return {"onnx": str(onnx_path), "arch": config.arch, "width": config.width,
            "window_seconds": config.frontend.window_seconds, "contract": config.contract, "input_dtypes": dtypes,
            "window_mb": input_bytes_per_window(config) / 1e6}


def _machine(executable: str) -> dict:
    import onnxruntime

    try:
        from importlib.metadata import version

        tritonclient = version("tritonclient")
    except Exception:  # noqa: BLE001 - a version string for the header only
        tritonclient = "?"
    try:
        answer = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30).stdout
        mlserver = answer.split()[-1] if answer.split() else "?"  # "mlserver, version 1.7.1"
    except (OSError, subprocess.TimeoutExpired):
        mlserver = "?"
    return machine_info(onnxruntime=onnxruntime.__version__, tritonclient=tritonclient, mlserver=mlserver,
                        numpy=np.__version__)


if __name__ == "__main__":
    main()
