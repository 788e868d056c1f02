"""`mvrt bench`: engine latency percentiles and throughput per batch size."""

from __future__ import annotations

import json
import sys

from mvrt._cli_engine import add_engine_options, engine_options, positive_int


def add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time an engine on synthetic input",
        description="Latency percentiles and throughput of one model on one backend, per batch size, "
        "on seeded synthetic inputs of the model's shapes (no decoding or front-end: see "
        "bench/bench_pipeline.py for the whole pipeline). Times include the copy of the logits "
        "back to the host.",
    )
    p.add_argument("--model", required=True, help=".onnx, .safetensors or .plan")
    add_engine_options(p)
    p.add_argument("--batch-size", type=positive_int, nargs="+", default=[1, 8], metavar="N", help="batch sizes (default: 1 8)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed calls per batch size (default: 3)")
    p.add_argument("--iterations", type=positive_int, default=20, metavar="N", help="timed calls per batch size (default: 20)")
    p.add_argument("--format", default="table", choices=("table", "json"))
    p.set_defaults(handler=run_bench)


def run_bench(args) -> int:
    from mvrt.runtime.benchmark import bench_engine, render_table
    from mvrt.runtime.engines import open_engine

    options = engine_options(args)
    with open_engine(args.model, backend=args.backend, **options) as engine:
        rows = bench_engine(engine, args.batch_size, warmup=args.warmup, iterations=args.iterations)
        setting = {"model": args.model, "backend": engine.name, "arch": engine.config.arch,
                   "width": engine.config.width, **{k: v for k, v in options.items()},
                   "providers": getattr(engine, "providers", None)}
    if args.format == "json":
        print(json.dumps({"settings": setting, "rows": [r.to_dict() for r in rows]}, indent=2, default=str))
    else:
        shown = ", ".join(f"{k}={v}" for k, v in setting.items() if v not in (None, False))
        sys.stdout.write(render_table(rows, f"mvrt bench: {shown}"))
    return 0



