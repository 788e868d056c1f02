"""`mvrt export`: checkpoint -> checked ONNX (FP32 / FP16) -> optional TensorRT plan."""

from __future__ import annotations

import sys

from mvrt.errors import UsageError

EXIT_OK = 0
_TENSORRT_FLAGS = ("--batch", "--workspace-gib", "--timing-cache", "--version-compatible", "--dla-core")


def add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to checked ONNX (fp32/fp16) and optionally a TensorRT plan",
        description="Export a .safetensors checkpoint to a single-file ONNX model (opset >= 18, dynamic "
        "batch, config and checkpoint sha256 in its metadata), check it (ONNX checker, every op against "
        "TensorRT's ONNX parser), and print its parity with torch on a seeded random batch run on ONNX "
        "Runtime CPU. --precision fp16 converts the graph itself (sensitive ops stay fp32; inputs and "
        "logits stay fp32). A model that fails a check is not written. INT8 comes from `mvrt calibrate`.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="trained model (.safetensors)")
    p.add_argument("--onnx", default=None, metavar="OUT.onnx",
                   help="ONNX output (default: CHECKPOINT with .onnx, or .fp16.onnx for fp16)")
    p.add_argument("--precision", default="fp32", metavar="fp32|fp16", help="graph precision (default: fp32)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18, the minimum)")
    p.add_argument("--parity-batch", type=int, default=8, metavar="N", help="samples in the parity check (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the parity batch (default: 0)")
    add_tensorrt_options(p, "also build a TensorRT plan (+ OUT.plan.json)")
    p.set_defaults(handler=run_export)


def add_tensorrt_options(p, engine_help: str) -> None:
    """--engine and the builder flags (shared by export and calibrate; flags without --engine are an error)."""
    trt = p.add_argument_group("TensorRT engine (needs pip install 'mvrt[tensorrt]' and a GPU)")
    trt.add_argument("--engine", default=None, metavar="OUT.plan", help=engine_help)
    trt.add_argument("--batch", default=None, metavar="MIN:OPT:MAX",
                     help="optimization profile batch sizes; N means 1:N:N (default: 1:4:8)")
    trt.add_argument("--workspace-gib", type=float, default=None, metavar="GIB", help="builder workspace (default: 1)")
    trt.add_argument("--timing-cache", default=None, metavar="FILE", help="timing cache file, loaded and saved")
    trt.add_argument("--version-compatible", action="store_true", default=None,
                     help="plan that later TensorRT versions can run (lean runtime embedded)")
    trt.add_argument("--dla-core", type=int, default=None, metavar="N",
                     help="build for DLA core N (Jetson; fp16 or int8 graphs)")


def run_export(args) -> int:
    from mvrt.export.pipeline import check_export_request, check_precision, export_model

    precision = args.precision.lower()
    check_precision(precision)
    settings = tensorrt_settings(args, precision)
    check_export_request(args.checkpoint, args.onnx, precision, args.parity_batch, args.engine, settings)
    print(f"mvrt export: {args.checkpoint}: precision {precision}, opset {args.opset}, parity batch "
          f"{args.parity_batch} (seed {args.seed}) on onnxruntime CPU", file=sys.stderr)
    if settings is not None:
        print(f"mvrt export: TensorRT {args.engine}: {settings.describe()}", file=sys.stderr)
    result = export_model(args.checkpoint, args.onnx, precision=precision, opset=args.opset,
                          parity_batch=args.parity_batch, seed=args.seed, engine_path=args.engine, tensorrt=settings)
    for line in result.summary_lines():
        print(f"mvrt export: {line}", file=sys.stderr)
    return EXIT_OK


def tensorrt_settings(args, precision: str):
    """Validated TensorRT settings when --engine is given; TensorRT flags without it are an error."""
    from mvrt.export.settings import DEFAULT_BATCH, make_settings

    given = [flag for flag in _TENSORRT_FLAGS if getattr(args, flag.lstrip("-").replace("-", "_")) is not None]
    settings = make_settings(
        precision, batch=args.batch or DEFAULT_BATCH,
        workspace_gib=1.0 if args.workspace_gib is None else args.workspace_gib,
        timing_cache=args.timing_cache, version_compatible=bool(args.version_compatible), dla_core=args.dla_core,
    )
    if args.engine is None:
        if given:
            raise UsageError(f"{', '.join(given)} only apply when building a TensorRT engine; add --engine OUT.plan")
        return None
    return settings
