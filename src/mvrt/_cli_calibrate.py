"""`mvrt calibrate`: FP32 ONNX + MVED -> symmetric INT8 Q/DQ ONNX, a report, optionally a TensorRT plan."""

from __future__ import annotations

import json
import sys

from mvrt._cli_output import add_progress_options, progress_wanted
from mvrt._cli_engine import non_negative_int, positive_int
from mvrt._cli_export import add_tensorrt_options, tensorrt_settings

EXIT_OK = 0


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
    p.add_argument("--sensitivity-samples", type=non_negative_int, default=8, metavar="N",
                   help="validation clips for the per-layer sensitivity list; 0 skips it (default: 8)")
    p.add_argument("--latency-rounds", type=non_negative_int, default=5, metavar="N",
                   help="alternating timed calls, INT8 against FP32 on ONNX Runtime CPU; 0 skips (default: 5)")
    p.add_argument("--quantizer", default="onnxruntime", choices=("onnxruntime", "modelopt"),
                   help="who inserts the Q/DQ nodes (default: onnxruntime; modelopt needs nvidia-modelopt)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="ONNX Runtime threads (default: physical cores)")
    p.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default: DATA_ROOT/.mvrt-cache)")
    p.add_argument("--format", default="table", choices=("table", "json"), help="report on stdout (default: table)")
    add_progress_options(p)
    add_tensorrt_options(p, "also build a TensorRT plan from the INT8 model (+ OUT.plan.json)")
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
    tensorrt = tensorrt_settings(args, "int8")
    print(f"mvrt calibrate: {args.model}: {settings.describe()}", file=sys.stderr)
    result = calibrate(args.model, args.data, settings, out=args.out, engine=args.engine, tensorrt=tensorrt,
                       progress=progress_wanted(args))
    if args.format == "json":
        print(json.dumps(result.report.to_dict(), indent=2))
    else:
        print(render_report(result.report))
    print(f"mvrt calibrate: wrote {result.int8_path} and {result.report_path}", file=sys.stderr)
    if result.engine_path is not None:
        print(f"mvrt calibrate: wrote {result.engine_path} and {result.engine_path.name}.json", file=sys.stderr)
    return EXIT_OK
