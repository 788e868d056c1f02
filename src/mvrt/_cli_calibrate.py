"""`mvrt calibrate`: FP32 ONNX + MVED -> symmetric INT8 Q/DQ ONNX, a report, optionally a TensorRT plan."""

import json
import sys
from typing import Annotated, Optional

import typer

from mvrt._cli_export import tensorrt_group, tensorrt_settings
from mvrt._cli_triton import check_triton_repo, write_triton_repo
from mvrt._cli_output import Progress, Quiet, progress_wanted
from mvrt._cli_types import NON_NEGATIVE_INT, POSITIVE_INT, Args, choice, with_options

EXIT_OK = 0
REPORT_PANEL = "What the report measures"

CALIBRATE_HELP = """INT8-quantise an FP32 ONNX model on MVED clips and report what it costs.

Draws calibration clips evenly across the six classes from DATA_ROOT/<split>, computes their
front-end tensors (cached and resumable), and writes a symmetric INT8 Q/DQ ONNX model
(per-channel weights, zero points 0; Conv/Gemm/MatMul inputs quantised, the rest FP32) that
TensorRT 10/11 and ONNX Runtime both run. The report compares INT8 with FP32 on the validation
split (top-1 agreement, accuracy, macro-F1, ROC-AUC, |Δprobability|), ranks layers by
sensitivity (keep the worst in FP32 with --exclude), and times INT8 against FP32 on ONNX
Runtime CPU.

Examples:
  # -> model.int8.onnx and model.int8.report.json, the report on stdout
  mvrt calibrate model.onnx --data MVED
  # one range method, the stem kept in FP32
  mvrt calibrate model.onnx --data MVED --method entropy --exclude '/stem/*'
  # measure every layer's sensitivity (slow), and build a TensorRT plan
  mvrt calibrate model.onnx --data MVED --sensitivity full --engine m.plan
  # the bundled demo model, on stand-in clips
  mvrt standin cal --clips-per-class 2 --splits train,validation
  onnx=$(python -c 'import mvrt.bundled as b; print(b.default_model_path())')
  mvrt calibrate "$onnx" --data cal --out demo.int8.onnx

Exit status: 0 written, 1 a model, clip or build failed, 2 bad usage.
"""


@with_options(tensorrt_group)
def calibrate(
    model: Annotated[str, typer.Argument(metavar="MODEL.onnx", show_default=False,
                                         help="FP32 ONNX model from `mvrt export`")],
    data: Annotated[str, typer.Option("--data", metavar="DATA_ROOT", show_default=False,
                                      help="MVED-shaped folder with train/validation splits")],
    split: Annotated[str, typer.Option("--split", metavar="SPLIT", help="split to calibrate on")] = "train",
    validation_split: Annotated[str, typer.Option(
        "--validation-split", metavar="SPLIT", rich_help_panel=REPORT_PANEL,
        help="split the report is measured on")] = "validation",
    samples: Annotated[int, typer.Option("--samples", click_type=POSITIVE_INT, metavar="N",
                                         help="calibration clips, even across classes")] = 512,
    method: Annotated[str, typer.Option(
        "--method", metavar="minmax|entropy|percentile|auto",
        help="activation range method; auto tries all and keeps the best by agreement")] = "auto",
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", metavar="LAYER", show_default="none",
        help="node name (or glob like '/stem/*') to keep in FP32; repeatable; the report lists the sensitive "
        "ones")] = None,
    out: Annotated[Optional[str], typer.Option("--out", metavar="OUT.onnx", show_default="MODEL with .int8.onnx",
                                               help="INT8 model")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", click_type=POSITIVE_INT, metavar="N",
                                            help="clips per run")] = 8,
    sensitivity: Annotated[str, typer.Option(
        "--sensitivity", click_type=choice("fast", "full"), rich_help_panel=REPORT_PANEL,
        help="fast: rank layers with a one-pass proxy, then measure the top --sensitivity-top; "
        "full: measure every layer (slow)")] = "fast",
    sensitivity_top: Annotated[int, typer.Option(
        "--sensitivity-top", click_type=POSITIVE_INT, metavar="N", rich_help_panel=REPORT_PANEL,
        help="layers measured after the fast ranking")] = 16,
    sensitivity_samples: Annotated[int, typer.Option(
        "--sensitivity-samples", click_type=NON_NEGATIVE_INT, metavar="N", rich_help_panel=REPORT_PANEL,
        help="validation clips for the per-layer sensitivity list; 0 skips it")] = 8,
    latency_rounds: Annotated[int, typer.Option(
        "--latency-rounds", click_type=NON_NEGATIVE_INT, metavar="N", rich_help_panel=REPORT_PANEL,
        help="alternating timed calls, INT8 against FP32 on ONNX Runtime CPU; 0 skips")] = 5,
    quantizer: Annotated[str, typer.Option(
        "--quantizer", click_type=choice("onnxruntime", "modelopt"),
        help="who inserts the Q/DQ nodes (modelopt needs nvidia-modelopt)")] = "onnxruntime",
    threads: Annotated[Optional[int], typer.Option("--threads", click_type=POSITIVE_INT, metavar="N",
                                                   show_default="physical cores",
                                                   help="ONNX Runtime threads")] = None,
    cache: Annotated[Optional[str], typer.Option("--cache", metavar="DIR", show_default="DATA_ROOT/.mvrt-cache",
                                                 help="feature cache")] = None,
    format: Annotated[str, typer.Option("--format", click_type=choice("table", "json"),
                                        help="the report on stdout")] = "table",
    progress: Progress = None,
    quiet: Quiet = False,
    **shared,
) -> int:
    return run_calibrate(Args(locals()))


def _settings(args):
    """The CalibrationSettings of the flags (each flag one field)."""
    from pathlib import Path

    from mvrt.calibration.settings import CalibrationSettings

    return CalibrationSettings(
        split=args.split, validation_split=args.validation_split, samples=args.samples, method=args.method.lower(),
        exclude=tuple(args.exclude or ()), batch_size=args.batch_size, sensitivity_samples=args.sensitivity_samples,
        sensitivity=args.sensitivity, sensitivity_top=args.sensitivity_top, latency_rounds=args.latency_rounds,
        quantizer=args.quantizer, threads=args.threads, cache_dir=Path(args.cache) if args.cache else None)


def run_calibrate(args) -> int:
    from mvrt.calibration.pipeline import calibrate as calibrate_model
    from mvrt.calibration.report import render_report

    settings = _settings(args)
    tensorrt = tensorrt_settings(args, "int8")
    check_triton_repo(args.triton_repo)
    print(f"mvrt calibrate: {args.model}: {settings.describe()}", file=sys.stderr)
    result = calibrate_model(args.model, args.data, settings, out=args.out, engine=args.engine, tensorrt=tensorrt,
                             progress=progress_wanted(args))
    if args.format == "json":
        print(json.dumps(result.report.to_dict(), indent=2))
    else:
        print(render_report(result.report))
    print(f"mvrt calibrate: wrote {result.int8_path} and {result.report_path}", file=sys.stderr)
    if result.engine_path is not None:
        print(f"mvrt calibrate: wrote {result.engine_path} and {result.engine_path.name}.json", file=sys.stderr)
    write_triton_repo(args.triton_repo, "calibrate", result.int8_path, result.engine_path)
    return EXIT_OK
