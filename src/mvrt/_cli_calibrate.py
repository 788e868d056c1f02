"""`mvrt calibrate`: FP32 ONNX + MVED -> symmetric INT8 Q/DQ ONNX, a report, optionally a TensorRT plan."""

from __future__ import annotations

import argparse
import json
import sys

from mvrt._cli_engine import positive_int
from mvrt.errors import UsageError

EXIT_OK = 0
_TENSORRT_FLAGS = ("--batch", "--workspace-gib", "--timing-cache", "--version-compatible", "--dla-core")


def _count(text: str) -> int:
    """A whole number >= 0 (0 switches a measurement off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="INT8-quantise an FP32 ONNX model on MVED clips and report what it costs",
        description="Draw calibration clips evenly across the six classes from DATA_ROOT/<split>, compute their "
        "front-end tensors (cached and resumable), and write a symmetric INT8 Q/DQ ONNX model (per-channel "
        "weights, zero points 0; Conv/Gemm/MatMul inputs quantised, the rest FP32) that TensorRT 10/11 and "
        "ONNX Runtime both run. The report compares INT8 with FP32 on the validation split (top-1 agreement, "
        "accuracy, macro-F1, ROC-AUC, |Δprobability|), ranks layers by sensitivity (keep the worst in FP32 "
        "with --exclude), and times INT8 against FP32 on ONNX Runtime CPU.",
        epilog="example: mvrt calibrate model.onnx --data MVED --method auto --exclude '/stem/*' --engine model.int8.plan")
    p.add_argument("model", metavar="MODEL.onnx", help="FP32 ONNX model from `mvrt export`")
    p.add_argument("--data", required=True, metavar="DATA_ROOT", help="MVED-shaped folder with train/validation splits")
    p.add_argument("--split", default="train", help="split to calibrate on (default: train)")
    p.add_argument("--validation-split", default="validation", metavar="SPLIT",
                   help="split the report is measured on (default: validation)")
    p.add_argument("--samples", type=positive_int, default=512, metavar="N", help="calibration clips, even across classes (default: 512)")
    p.add_argument("--method", default="auto", metavar="minmax|entropy|percentile|auto",
                   help="activation range method; auto tries all and keeps the best by agreement (default: auto)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="LAYER",
                   help="node names (or globs like '/stem/*') to keep in FP32; the report lists the sensitive ones")
    p.add_argument("--out", default=None, metavar="OUT.onnx", help="INT8 model (default: MODEL with .int8.onnx)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="clips per run (default: 8)")
    p.add_argument("--sensitivity-samples", type=_count, default=8, metavar="N",
                   help="validation clips for the per-layer sensitivity list; 0 skips it (default: 8)")
    p.add_argument("--latency-rounds", type=_count, default=5, metavar="N",
                   help="alternating timed calls, INT8 against FP32 on ONNX Runtime CPU; 0 skips (default: 5)")
    p.add_argument("--quantizer", default="onnxruntime", choices=("onnxruntime", "modelopt"),
                   help="who inserts the Q/DQ nodes (default: onnxruntime; modelopt needs nvidia-modelopt)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="ONNX Runtime threads (default: physical cores)")
    p.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default: DATA_ROOT/.mvrt-cache)")
    p.add_argument("--format", default="table", choices=("table", "json"), help="report on stdout (default: table)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    trt = p.add_argument_group("TensorRT engine (needs pip install 'mvrt[tensorrt]' and a GPU)")
    trt.add_argument("--engine", default=None, metavar="OUT.plan", help="also build a TensorRT plan from the INT8 model")
    trt.add_argument("--batch", default=None, metavar="MIN:OPT:MAX", help="optimization profile (default: 1:4:8)")
    trt.add_argument("--workspace-gib", type=float, default=None, metavar="GIB", help="builder workspace (default: 1)")
    trt.add_argument("--timing-cache", default=None, metavar="FILE", help="timing cache file, loaded and saved")
    trt.add_argument("--version-compatible", action="store_true", default=None, help="plan later TensorRT versions can run")
    trt.add_argument("--dla-core", type=int, default=None, metavar="N", help="build for DLA core N (Jetson)")
    p.set_defaults(handler=run_calibrate)


def run_calibrate(args) -> int:
    from pathlib import Path

    from mvrt.calibration.pipeline import calibrate
    from mvrt.calibration.report import render_report
    from mvrt.calibration.settings import CalibrationSettings

    settings = CalibrationSettings(
        split=args.split, validation_split=args.validation_split, samples=args.samples, method=args.method.lower(),
        exclude=tuple(args.exclude), batch_size=args.batch_size, sensitivity_samples=args.sensitivity_samples,
        latency_rounds=args.latency_rounds, quantizer=args.quantizer, threads=args.threads,
        cache_dir=Path(args.cache) if args.cache else None)
    tensorrt = _tensorrt_settings(args)
    print(f"mvrt calibrate: {args.model}: {settings.describe()}", file=sys.stderr)
    result = calibrate(args.model, args.data, settings, out=args.out, engine=args.engine, tensorrt=tensorrt,
                       progress=not args.quiet)
    if args.format == "json":
        print(json.dumps(result.report.to_dict(), indent=2))
    else:
        print(render_report(result.report))
    print(f"mvrt calibrate: wrote {result.int8_path} and {result.report_path}", file=sys.stderr)
    if result.engine_path is not None:
        print(f"mvrt calibrate: wrote {result.engine_path} and {result.engine_path.name}.json", file=sys.stderr)
    return EXIT_OK


def _tensorrt_settings(args):
    """Validated INT8 TensorRT settings when --engine is given; TensorRT flags without it are an error."""
    from mvrt.export.settings import DEFAULT_BATCH, make_settings

    given = [flag for flag in _TENSORRT_FLAGS if getattr(args, flag.lstrip("-").replace("-", "_")) is not None]
    if args.engine is None:
        if given:
            raise UsageError(f"{', '.join(given)} only apply when building a TensorRT engine; add --engine OUT.plan")
        return None
    return make_settings("int8", batch=args.batch or DEFAULT_BATCH,
                         workspace_gib=1.0 if args.workspace_gib is None else args.workspace_gib,
                         timing_cache=args.timing_cache, version_compatible=bool(args.version_compatible),
                         dla_core=args.dla_core)
