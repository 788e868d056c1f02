"""`mvrt bench`: engine latency percentiles and throughput per batch size."""

import json
import sys
from typing import Annotated, Optional

import typer

from mvrt._cli_engine_options import engine_group, engine_options, run_precision
from mvrt._cli_types import NON_NEGATIVE_INT, POSITIVE_INT, Args, choice, int_list, with_options

DEFAULT_BATCH_SIZES = [1, 8]

BENCH_HELP = """Time an engine on synthetic input.

Latency percentiles and throughput of one model on one backend, per batch size, on seeded
synthetic inputs of the model's shapes and types (no decoding or front-end: see bench/bench_pipeline.py
for the whole pipeline). Times include the copy of the logits back to the host. For ONNX
models the header and the JSON name the execution provider that ran, and with onnxruntime-gpu's
TensorRT provider the cache folder beside the model (the first start builds engines there).

Examples:
  # ONNX Runtime on the CPU, batches of 1 and 8
  mvrt bench --model m.onnx
  # three batch sizes (comma-separated or repeated), four threads
  mvrt bench --model m.onnx --batch-size 1,4,16 --threads 4
  # torch on a GPU in fp16 (add --cuda-graphs to replay a captured graph)
  mvrt bench --model m.safetensors --device cuda --precision fp16
  # a TensorRT plan, the numbers as JSON
  mvrt bench --model m.plan --format json > bench.json

Exit status: 0 measured, 1 the model failed, 2 bad usage.
"""


@with_options(engine_group)
def bench(
    model: Annotated[str, typer.Option("--model", metavar="FILE", show_default=False,
                                       help="model to time: .onnx, .safetensors or .plan")],
    batch_size: Annotated[Optional[list[str]], typer.Option(
        "--batch-size", metavar="N,...", show_default="1,8",
        help="batch sizes: comma-separated, or the option repeated")] = None,
    warmup: Annotated[int, typer.Option("--warmup", click_type=NON_NEGATIVE_INT, metavar="N",
                                        help="untimed calls per batch size")] = 3,
    iterations: Annotated[int, typer.Option("--iterations", click_type=POSITIVE_INT, metavar="N",
                                            help="timed calls per batch size")] = 20,
    format: Annotated[str, typer.Option("--format", click_type=choice("table", "json"),
                                        help="table for people, json (settings and rows) for programs")] = "table",
    **shared,
) -> int:
    return run_bench(Args(locals()))


def run_bench(args) -> int:
    from mvrt.runtime.engine_timing import bench_engine, render_table, settings_title
    from mvrt.runtime.engines import open_engine

    sizes = int_list(args.batch_size, "--batch-size", DEFAULT_BATCH_SIZES)
    options = engine_options(args)
    with open_engine(args.model, backend=args.backend, **options) as engine:
        rows = bench_engine(engine, sizes, warmup=args.warmup, iterations=args.iterations)
        setting = {"model": args.model, "backend": engine.name,
                   "precision": run_precision(args.model, engine.name, options), "arch": engine.config.arch,
                   "width": engine.config.width, **options, "contract": engine.config.contract,
                   **engine_settings(engine)}
    if args.format == "json":
        print(json.dumps({"settings": setting, "rows": [r.to_dict() for r in rows]}, indent=2, default=str))
    else:
        sys.stdout.write(render_table(rows, settings_title(setting)))
    return 0


def engine_settings(engine) -> dict:
    """What the loaded engine actually uses: onnxruntime's providers (the first is the one that runs), their
    options and the TensorRT EP's cache folder; a fixed batch size."""
    providers = getattr(engine, "providers", None)
    return {"provider": providers[0] if providers else None, "providers": providers,
            "provider_options": getattr(engine, "provider_options", None),
            "cache_dir": getattr(engine, "cache_dir", None), "fixed_batch": getattr(engine, "fixed_batch", None)}
