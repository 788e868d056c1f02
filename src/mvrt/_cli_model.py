"""`mvrt info` (what a model or media file holds), `mvrt init-model` and `mvrt standin`."""

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mvrt._cli_output import Progress, Quiet, progress_wanted
from mvrt._cli_types import POSITIVE_FLOAT, POSITIVE_INT, Args, choice, split_list
from mvrt.artifacts import MODEL_SUFFIXES
from mvrt.errors import UsageError

EXIT_OK = 0
UNTRAINED = "nothing: random initialisation (predictions are meaningless)"
SPLITS = ("train", "validation", "test")

INFO_HELP = """Show what a model was built from, or a media file's streams.

For a checkpoint, ONNX model or TensorRT plan: architecture, precision (fp32, fp16 or int8),
inputs and output, front-end, normalisation, provenance (trained on), hashes. For an ONNX
model also onnxruntime's execution providers: those installed, the ones a run would use with
their options, and the TensorRT provider's engine and timing cache folder (beside the model,
or the user's cache folder where the model's folder cannot be written) and whether it exists.
For any other file: its audio and video streams, as mvrt reads them.

Examples:
  # architecture, precision, inputs, training data, onnxruntime providers
  mvrt info model.onnx
  # the same as JSON ("precision": "int8" for a calibrated model)
  mvrt info model.int8.onnx --json
  # what a TensorRT plan's sidecar says: GPU, TensorRT version, batch profile
  mvrt info model.plan
  # a media file's streams, duration and frame rate
  mvrt info clip.mp4

Exit status: 0 shown, 1 the file cannot be read, 2 bad usage.
"""


def info(
    file: Annotated[str, typer.Argument(metavar="FILE", show_default=False,
                                        help="model (.onnx, .safetensors, .plan) or media file")],
    as_json: Annotated[bool, typer.Option("--json", show_default=False, help="print JSON")] = False,
) -> int:
    from mvrt.runtime.model_meta import describe_model

    if Path(file).suffix.lower() in MODEL_SUFFIXES:
        shown = describe_model(file)
        if Path(file).suffix.lower() == ".onnx":
            from mvrt.runtime.engines.onnxruntime_engine import describe_providers

            shown["onnxruntime"] = describe_providers(file)
    else:
        from dataclasses import asdict

        from mvrt.runtime.decode import probe

        shown = asdict(probe(file))
        shown["path"] = str(shown["path"])
    if as_json:
        print(json.dumps(shown, indent=2, default=str))
    else:
        runtime = shown.pop("onnxruntime", None)
        for key, value in shown.items():
            print(f"{key:>20}: {value if not isinstance(value, dict) else json.dumps(value)}")
        for key, value in _provider_lines(runtime):
            print(f"{key:>20}: {value}")
    return EXIT_OK


def _provider_lines(runtime: dict | None) -> list[tuple[str, str]]:
    """`mvrt info`'s lines for onnxruntime's providers and the TensorRT provider's caches."""
    if runtime is None:
        return []
    if not runtime.get("installed", True):
        return [("providers", "onnxruntime is not installed")]
    lines = [("providers", ", ".join(runtime["chosen"]) + " (chosen, most preferred first)"),
             ("available providers", f"{', '.join(runtime['available'])} (onnxruntime {runtime['version']})")]
    lines += [(f"{name.removesuffix('ExecutionProvider')} options", json.dumps(options))
              for name, options in runtime["options"].items()]
    cache = runtime["tensorrt_cache"]
    state = (f"{cache['cached_engines']} cached engine file(s)" if cache["cached_engines"]
             else "exists, no engine yet" if cache["exists"] else "not created yet")
    where = "" if cache["beside_model"] else "; the model's folder is not writable: the user's cache folder"
    note = f"; {cache['note']}" if cache.get("note") else ""
    lines.append(("tensorrt cache", f"{cache['root']} ({state}{where}{note})"))
    return lines


INIT_MODEL_HELP = """Create an untrained model, for pipeline checks and benchmarks.

A randomly initialised checkpoint of an architecture, and optionally its ONNX export. Its
predictions are meaningless; every output made with it says so. Needs torch: pip install
'mvrt\\[torch]'.

Examples:
  # a paper-size slowfast, and its ONNX export
  mvrt init-model m.safetensors --onnx m.onnx
  # a tiny one of the same graph (1/16 of the channels)
  mvrt init-model tiny.safetensors --width 0.0625
  # the music-video network without MMTM fusion
  mvrt init-model mv.safetensors --arch musicvideo --no-mmtm

Exit status: 0 written, 1 failed, 2 bad usage.
"""


def init_model(
    output: Annotated[str, typer.Argument(metavar="CHECKPOINT", show_default=False, help="output .safetensors")],
    arch: Annotated[str, typer.Option(
        "--arch", click_type=choice("slowfast", "musicvideo"),
        help="network: the separable slow-fast network, or the plain music-video network (paper)")] = "slowfast",
    width: Annotated[float, typer.Option("--width", click_type=POSITIVE_FLOAT, metavar="W",
                                         help="channel width multiplier")] = 1.0,
    no_mmtm: Annotated[bool, typer.Option("--no-mmtm", show_default="with MMTM",
                                          help="without the MMTM fusion blocks")] = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random initialisation")] = 0,
    onnx: Annotated[Optional[str], typer.Option("--onnx", metavar="OUT.onnx", show_default="no ONNX",
                                                help="also export ONNX here")] = None,
) -> int:
    from mvrt.checkpoint import save_checkpoint
    from mvrt.config import ModelConfig
    from mvrt.models import build_model, seed_everything

    if not output.endswith(".safetensors"):
        raise UsageError(f"{output}: checkpoints are .safetensors files")
    config = ModelConfig(arch=arch, width=width, mmtm=not no_mmtm, trained_on=UNTRAINED)
    seed_everything(seed)
    model = build_model(config).eval()
    save_checkpoint(model, config, output)
    print(f"wrote {output}", file=sys.stderr)
    if onnx:
        from mvrt.export.onnx_export import export_onnx

        export_onnx(output, config, onnx)
        print(f"wrote {onnx}", file=sys.stderr)
    return EXIT_OK


STANDIN_HELP = """Generate an MVED-shaped stand-in data set.

Writes ROOT/<split>/<Class>/<clip>.mp4 (H.264 + AAC) clips whose tempo, mode, loudness,
brightness and motion depend on the class. For tests, demos and smoke-training; it is not MVED.

Examples:
  # six 12 s clips (one per class) to try `mvrt infer` on
  mvrt standin demo --clips-per-class 1 --splits test --seconds 12
  # two splits: comma-separated (or --splits validation --splits test)
  mvrt standin data --clips-per-class 10 --splits validation,test
  # <split>/<Class>/audio/ and video/ files, paired by stem (the authors')
  mvrt standin data --layout authors

Exit status: 0 written, 1 failed, 2 bad usage.
"""


def standin(
    root: Annotated[str, typer.Argument(metavar="ROOT", show_default=False, help="folder to write the splits into")],
    clips_per_class: Annotated[int, typer.Option("--clips-per-class", click_type=POSITIVE_INT, metavar="N",
                                                 help="clips of each class in each split")] = 10,
    seconds: Annotated[float, typer.Option("--seconds", click_type=POSITIVE_FLOAT, metavar="SECONDS",
                                           help="clip length")] = 8.0,
    splits: Annotated[Optional[list[str]], typer.Option(
        "--splits", metavar="SPLIT,...", show_default=",".join(SPLITS),
        help="splits to write: comma-separated, or the option repeated")] = None,
    layout: Annotated[str, typer.Option(
        "--layout", click_type=choice("flat", "authors"),
        help="flat: one muxed .mp4 per clip; authors: separate audio/ and video/ files (the MVED authors')")]
        = "flat",
    seed: Annotated[int, typer.Option("--seed", help="seed of the generated content")] = 0,
    progress: Progress = None,
    quiet: Quiet = False,
) -> int:
    from mvrt.standin import generate_standin

    args = Args(locals())
    chosen = tuple(split_list(splits, "--splits")) or SPLITS
    summary = generate_standin(root, clips_per_class=clips_per_class, seconds=seconds, seed=seed, splits=chosen,
                               layout=layout, progress=progress_wanted(args))
    per_split: dict[str, int] = {}
    for split, _, count in summary.counts:
        per_split[split] = per_split.get(split, 0) + count
    shown = ", ".join(f"{split}: {count}" for split, count in per_split.items())
    print(f"wrote {summary.total_clips} clips to {summary.root} ({shown}) in {summary.elapsed_seconds:.1f} s; "
          f"generated stand-in data, not MVED", file=sys.stderr)
    return EXIT_OK
