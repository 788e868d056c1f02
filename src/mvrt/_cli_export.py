"""`mvrt export`: checkpoint -> checked ONNX (FP32 / FP16) -> optional TensorRT plan."""

import sys
from typing import Annotated, Optional

import typer

from mvrt._cli_triton import TritonRepo, check_triton_repo, write_triton_repo
from mvrt._cli_types import Args, choice, with_options
from mvrt.errors import UsageError

EXIT_OK = 0
TENSORRT_PANEL = "TensorRT engine (needs pip install 'mvrt\\[tensorrt]' and a GPU)"
_TENSORRT_FLAGS = ("--batch", "--workspace-gib", "--timing-cache", "--version-compatible", "--dla-core")

Engine = Annotated[Optional[str], typer.Option(
    "--engine", metavar="OUT.plan", rich_help_panel=TENSORRT_PANEL, show_default="no plan",
    help="also build a TensorRT plan (+ OUT.plan.json)")]
Batch = Annotated[Optional[str], typer.Option(
    "--batch", metavar="MIN:OPT:MAX", rich_help_panel=TENSORRT_PANEL, show_default="1:4:8",
    help="optimization profile batch sizes; N means 1:N:N")]
WorkspaceGib = Annotated[Optional[float], typer.Option(
    "--workspace-gib", metavar="GIB", rich_help_panel=TENSORRT_PANEL, show_default="1", help="builder workspace")]
TimingCache = Annotated[Optional[str], typer.Option(
    "--timing-cache", metavar="FILE", rich_help_panel=TENSORRT_PANEL, show_default="none",
    help="timing cache file, loaded and saved")]
VersionCompatible = Annotated[bool, typer.Option(
    "--version-compatible", rich_help_panel=TENSORRT_PANEL, show_default=False,
    help="plan that later TensorRT versions can run (lean runtime embedded)")]
DlaCore = Annotated[Optional[int], typer.Option(
    "--dla-core", metavar="N", rich_help_panel=TENSORRT_PANEL, show_default="GPU",
    help="build for DLA core N (Jetson; fp16 or int8 graphs)")]


def tensorrt_group(
    engine: Engine = None,
    batch: Batch = None,
    workspace_gib: WorkspaceGib = None,
    timing_cache: TimingCache = None,
    version_compatible: VersionCompatible = False,
    dla_core: DlaCore = None,
    triton_repo: TritonRepo = None,
) -> None:
    """The TensorRT build and Triton repository options export and calibrate share (`with_options(tensorrt_group)`)."""


EXPORT_HELP = """Export a checkpoint to checked ONNX (fp32/fp16), and optionally a TensorRT plan.

A single-file ONNX model (opset >= 18, dynamic batch, config and checkpoint sha256 in its metadata),
checked (ONNX checker, every op against TensorRT's ONNX parser), with its parity with torch printed
(a seeded random batch run on ONNX Runtime CPU). --precision fp16 converts the graph itself
(sensitive ops stay fp32; inputs keep their types and logits stay fp32). A model that fails a
check is not written. INT8 comes from `mvrt calibrate`. Given an mvrt .onnx model instead (one
`mvrt export` or `mvrt calibrate` wrote), only its TensorRT plan is built, at the graph's precision.

Inputs follow tensor contract 2 by default: the 64 frames enter as uint8 `video` and the graph
normalises them and takes the slow subset itself. --contract 1 writes the float32 inputs
(`video_slow`/`video_fast` for slowfast) that older mvrt versions and other tools feed.

Examples:
  # -> model.onnx (fp32), checked, parity with torch printed
  mvrt export model.safetensors
  # -> model.fp16.onnx and a TensorRT plan for batches 1 to 8
  mvrt export model.safetensors --precision fp16 --engine m.plan --batch 1:4:8
  # only the plan of a graph written before (e.g. `mvrt calibrate`'s INT8)
  mvrt export model.int8.onnx --engine m.plan --batch 1:4:8
  # the bundled demo's trained weights
  c=$(python -c 'import mvrt.bundled as b;print(b.default_checkpoint_path())')
  mvrt export "$c" --onnx demo.onnx
  # float32 inputs, for an older mvrt or another runtime
  mvrt export model.safetensors --contract 1 --onnx model.v1.onnx

Exit status: 0 written, 1 a check or the build failed, 2 bad usage.
"""


@with_options(tensorrt_group)
def export(
    checkpoint: Annotated[str, typer.Argument(metavar="CHECKPOINT", show_default=False,
                                              help="trained model (.safetensors), or an mvrt .onnx to build "
                                              "only its TensorRT plan")],
    onnx: Annotated[Optional[str], typer.Option(
        "--onnx", metavar="OUT.onnx", show_default="CHECKPOINT with .onnx, or .fp16.onnx for fp16",
        help="ONNX output")] = None,
    precision: Annotated[str, typer.Option("--precision", metavar="fp32|fp16", help="graph precision")] = "fp32",
    opset: Annotated[int, typer.Option("--opset", metavar="N", help="ONNX opset (18 is the minimum)")] = 18,
    parity_batch: Annotated[int, typer.Option(
        "--parity-batch", metavar="N",
        help="random samples in the parity check (one window of a generated clip is compared as well)")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="seed of the parity batch")] = 0,
    contract: Annotated[str, typer.Option(
        "--contract", click_type=choice("2", "1"), metavar="2|1",
        help="tensor contract of the graph's inputs: 2 (default) takes the frames as uint8 video and normalises "
             "them in the graph (5.5 MB a window instead of 16.6); 1 takes the float32 inputs older mvrt versions "
             "and other tools feed")] = "2",
    **shared,
) -> int:
    return run_export(Args(locals()))


def run_export(args) -> int:
    if str(args.checkpoint).lower().endswith(".onnx"):
        return run_plan_only(args)
    from mvrt.export.pipeline import check_export_request, check_precision, export_model

    precision = args.precision.lower()
    check_precision(precision)
    settings = tensorrt_settings(args, precision)
    contract = int(args.contract)
    check_export_request(args.checkpoint, args.onnx, precision, args.parity_batch, args.engine, settings, contract)
    check_triton_repo(args.triton_repo)
    print(f"mvrt export: {args.checkpoint}: precision {precision}, opset {args.opset}, tensor contract {contract}, "
          f"parity batch {args.parity_batch} (seed {args.seed}) on onnxruntime CPU", file=sys.stderr)
    if settings is not None:
        print(f"mvrt export: TensorRT {args.engine}: {settings.describe()}", file=sys.stderr)
    result = export_model(args.checkpoint, args.onnx, precision=precision, opset=args.opset,
                          parity_batch=args.parity_batch, seed=args.seed, engine_path=args.engine, tensorrt=settings,
                          contract=contract)
    for line in result.summary_lines():
        print(f"mvrt export: {line}", file=sys.stderr)
    write_triton_repo(args.triton_repo, "export", result.onnx_path, result.engine_path)
    return EXIT_OK


def tensorrt_settings(args, precision: str):
    """Validated TensorRT settings when --engine is given; TensorRT flags without it are an error."""
    from mvrt.export.build_settings import DEFAULT_BATCH, make_settings

    given = [flag for flag in _TENSORRT_FLAGS if getattr(args, flag.lstrip("-").replace("-", "_")) not in (None, False)]
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


# Options that write or check an ONNX export: (parameter name, flag); refused with an .onnx argument.
_CHECKPOINT_ONLY = (("onnx", "--onnx"), ("precision", "--precision"), ("opset", "--opset"), ("contract", "--contract"),
                    ("parity_batch", "--parity-batch"), ("seed", "--seed"))


def run_plan_only(args) -> int:
    """`mvrt export MODEL.onnx --engine OUT.plan`: only the TensorRT plan of an mvrt graph, at its precision."""
    from pathlib import Path

    from mvrt.export.pipeline import require_tensorrt
    from mvrt.export.rebuild import build_plan_from_onnx, check_rebuild_request, graph_precision

    given = _given_options(args, _CHECKPOINT_ONLY)
    if given:
        raise UsageError(f"{args.checkpoint}: {', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} when "
                         "exporting a checkpoint; given an .onnx model, `mvrt export` builds only its TensorRT plan, at "
                         "the graph's precision")
    if args.engine is None:
        raise UsageError(f"{args.checkpoint}: is an ONNX model already; add --engine OUT.plan to build its TensorRT "
                         f"plan, or {_export_again_hint(args.checkpoint)}")
    settings = tensorrt_settings(args, graph_precision(args.checkpoint))
    check_rebuild_request(args.checkpoint, args.engine, settings)
    require_tensorrt()
    check_triton_repo(args.triton_repo)
    print(f"mvrt export: TensorRT {args.engine} from {args.checkpoint} (the graph as it is): {settings.describe()}",
          file=sys.stderr)
    build_plan_from_onnx(args.checkpoint, args.engine, settings)
    print(f"mvrt export: wrote {args.engine} and {Path(args.engine).name}.json", file=sys.stderr)
    write_triton_repo(args.triton_repo, "export", Path(args.checkpoint), Path(args.engine))
    return EXIT_OK


def _export_again_hint(onnx_path: str) -> str:
    """How to export the model again: the bundled demo's own checkpoint, named, for the bundled ONNX."""
    import shlex
    from pathlib import Path

    from mvrt.bundled import default_checkpoint_path, default_model_path

    try:
        bundled = Path(onnx_path).resolve() == default_model_path().resolve()
    except OSError:
        bundled = False
    if not bundled:
        return "give the .safetensors checkpoint to export it again"
    checkpoint = default_checkpoint_path()
    return (f"export the bundled checkpoint again with `mvrt export {shlex.quote(str(checkpoint))} --onnx "
            f"{shlex.quote(checkpoint.stem + '.onnx')}`")


def _given_options(args, options) -> list[str]:
    """The flags of `options` given on the command line (outside the CLI: those not None)."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return [flag for name, flag in options if getattr(args, name, None) is not None]
    default = click.core.ParameterSource.DEFAULT
    return [flag for name, flag in options if ctx.get_parameter_source(name) not in (None, default)]
