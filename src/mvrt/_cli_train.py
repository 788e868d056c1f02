"""`mvrt train` and `mvrt evaluate`, and the network / schedule / front-end options pretrain shares."""

import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mvrt._cli_engine_options import engine_group, engine_options
from mvrt._cli_output import Progress, Quiet, progress_wanted
from mvrt._cli_types import POSITIVE_FLOAT, POSITIVE_INT, Args, choice, with_options

EXIT_OK = 0
NETWORK_PANEL = "Network and schedule"

Arch = Annotated[str, typer.Option(
    "--arch", click_type=choice("slowfast", "musicvideo"), rich_help_panel=NETWORK_PANEL,
    help="network: the separable slow-fast network, or the plain music-video network (paper)")]
NoMmtm = Annotated[bool, typer.Option("--no-mmtm", rich_help_panel=NETWORK_PANEL, show_default="with MMTM",
                                      help="no MMTM fusion (paper Table 1 ablation)")]
Width = Annotated[float, typer.Option("--width", click_type=POSITIVE_FLOAT, metavar="W", rich_help_panel=NETWORK_PANEL,
                                      help="channel width multiplier")]
Epochs = Annotated[int, typer.Option("--epochs", click_type=POSITIVE_INT, metavar="N", rich_help_panel=NETWORK_PANEL,
                                     help="passes over the training clips")]
BatchSize = Annotated[int, typer.Option("--batch-size", click_type=POSITIVE_INT, metavar="N",
                                        rich_help_panel=NETWORK_PANEL, help="clips per optimisation step")]
Lr = Annotated[float, typer.Option("--lr", click_type=POSITIVE_FLOAT, metavar="LR", rich_help_panel=NETWORK_PANEL,
                                   help="AdamW peak learning rate (cosine decay)")]
Window = Annotated[float, typer.Option("--window", click_type=POSITIVE_FLOAT, metavar="SECONDS",
                                       help="window length the trained model will expect")]
ImageSize = Annotated[int, typer.Option("--image-size", click_type=POSITIVE_INT, metavar="PX",
                                        help="frame size (square) the trained model will expect")]
TrainDevice = Annotated[str, typer.Option("--device", metavar="cpu|cuda", help="where to train (cuda:N for a GPU)")]
TrainThreads = Annotated[Optional[int], typer.Option("--threads", click_type=POSITIVE_INT, metavar="N",
                                                     show_default="torch's choice", help="torch CPU threads")]
Cache = Annotated[Optional[str], typer.Option("--cache", metavar="DIR", show_default="DATA_ROOT/.mvrt-cache",
                                              help="feature cache")]
Seed = Annotated[int, typer.Option("--seed", help="seed of initialisation, shuffling and augmentation")]

TRAIN_HELP = """Train a network on an MVED-shaped folder.

DATA_ROOT/{train,validation}/<Class>/... (flat or the authors' audio/video layout). Front-end
tensors are computed once into a cache; audio normalisation statistics come from the train split
and travel in the checkpoint. The best checkpoint (validation accuracy) is written to --out and a
resumable state to <out>.last.safetensors after every epoch. Needs torch.

Examples:
  # stand-in clips, then a small network on them
  mvrt standin data --clips-per-class 10 --seconds 8
  mvrt train data --width 0.25 --window 8 --epochs 12 --out m.safetensors
  # the paper's network on MVED, on a GPU
  mvrt train MVED --device cuda --batch-size 16 --lr 2e-3
  # fine-tune an encoder from `mvrt pretrain`
  mvrt train MVED --init pretrained.safetensors

Exit status: 0 trained, 1 failed, 2 bad usage, 130 Ctrl-C (the last epoch is kept).
"""


def train(
    data_root: Annotated[str, typer.Argument(metavar="DATA_ROOT", show_default=False,
                                             help="folder with train and validation splits")],
    arch: Arch = "slowfast",
    no_mmtm: NoMmtm = False,
    width: Width = 1.0,
    init: Annotated[Optional[str], typer.Option("--init", metavar="PRETRAINED", rich_help_panel=NETWORK_PANEL,
                                                show_default="random",
                                                help="load matching weights from this .safetensors")] = None,
    epochs: Epochs = 30,
    batch_size: BatchSize = 8,
    lr: Lr = 1e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", metavar="WD", rich_help_panel=NETWORK_PANEL,
                                                help="AdamW weight decay")] = 1e-2,
    window: Window = 30.0,
    image_size: ImageSize = 128,
    cache: Cache = None,
    out: Annotated[str, typer.Option("--out", metavar="CKPT", help="best checkpoint")] = "model.safetensors",
    seed: Seed = 0,
    threads: TrainThreads = None,
    device: TrainDevice = "cpu",
    resume: Annotated[bool, typer.Option(
        "--resume/--restart",
        help="continue from <out>.last.safetensors when it matches, or ignore any saved state")] = True,
    progress: Progress = None,
    quiet: Quiet = False,
) -> int:
    from mvrt.training.settings import TrainSettings
    from mvrt.training.train import train as train_model

    settings = TrainSettings(**loop_settings(Args(locals())), weight_decay=weight_decay, resume=resume,
                             init=Path(init) if init else None)
    with progress_log("train"):
        result = train_model(data_root, out, settings, cache_dir=cache)
    best = next((r for r in result.history if r.epoch == result.best_epoch), None)
    if best is not None:
        print(f"best: epoch {best.epoch}, val acc {best.val_accuracy:.3f}, val loss {best.val_loss:.4f} -> "
              f"{result.checkpoint}", file=sys.stderr)
    return EXIT_OK


def loop_settings(args) -> dict:
    """The settings `train` and `pretrain` share (`LoopSettings` fields), from their parsed options."""
    from mvrt.config import FrontendConfig

    return dict(arch=args.arch, mmtm=not args.no_mmtm, width=args.width,
                frontend=FrontendConfig(window_seconds=args.window, image_size=args.image_size), epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads, device=args.device,
                progress=progress_wanted(args))


class _StderrLines(logging.Handler):
    """Each record as one line `mvrt COMMAND: message` on the current stderr; the settings a record
    names (`extra={"setting": ...}`, as errors do) are shown as the command's flags."""

    def __init__(self, name: str, flags: dict):
        super().__init__()
        self.prefix = f"mvrt {name}: "
        self.flags = flags

    def emit(self, record: logging.LogRecord) -> None:
        from mvrt._cli_flags import settings_of, with_flags

        try:
            message = with_flags(record.getMessage(), settings_of(record), self.flags)
            sys.stderr.write(self.prefix + message + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports, never raises
            self.handleError(record)


@contextlib.contextmanager
def progress_log(name: str):
    """Inside the block, the `mvrt.training` loggers' INFO lines go to stderr as `mvrt NAME: ...`
    (the flags are those of the click command running, if any)."""
    import click

    from mvrt._cli_flags import command_flags

    context = click.get_current_context(silent=True)
    logger = logging.getLogger("mvrt.training")
    handler = _StderrLines(name, command_flags(context.command) if context is not None else {})
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.propagate = False  # the root handler (`mvrt: INFO: ...` under -v) would print each line again
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


EVALUATE_HELP = """Accuracy, macro-F1, ROC-AUC and the confusion matrix of a model on a split.

Runs MODEL (checkpoint, ONNX or TensorRT plan) on the cached features of a split and reports
accuracy, macro-F1, one-vs-rest ROC-AUC and the confusion matrix; --out-dir gets metrics.json,
confusion.png and roc.png.

Examples:
  # the test split, with torch
  mvrt evaluate m.safetensors data
  # the validation split on ONNX Runtime, metrics.json and plots written
  mvrt evaluate m.onnx MVED --split validation --out-dir report/
  # what INT8 costs, on the test split
  mvrt evaluate m.int8.onnx MVED --threads 4

Exit status: 0 evaluated, 1 failed, 2 bad usage.
"""


@with_options(engine_group)
def evaluate(
    model: Annotated[str, typer.Argument(metavar="MODEL", show_default=False,
                                         help="checkpoint (.safetensors), ONNX model or TensorRT plan")],
    data_root: Annotated[str, typer.Argument(metavar="DATA_ROOT", show_default=False, help="MVED-shaped folder")],
    split: Annotated[str, typer.Option("--split", metavar="SPLIT",
                                       help="train, validation (val) or test")] = "test",
    batch_size: Annotated[int, typer.Option("--batch-size", click_type=POSITIVE_INT, metavar="N",
                                            help="clips per engine call")] = 8,
    out_dir: Annotated[Optional[str], typer.Option("--out-dir", metavar="DIR", show_default="nothing written",
                                                   help="write metrics.json, confusion.png, roc.png here")] = None,
    cache: Cache = None,
    progress: Progress = None,
    quiet: Quiet = False,
    **shared,
) -> int:
    from mvrt.evaluation.evaluate import evaluate as evaluate_model

    args = Args(locals())
    result = evaluate_model(model, data_root, split=split, backend=args.backend, batch_size=batch_size, out_dir=out_dir,
                            cache_dir=cache, progress=progress_wanted(args), **engine_options(args))
    _print_metrics(result)
    return EXIT_OK


def _print_metrics(result) -> None:
    m = result.metrics
    print(f"{result.model} ({result.backend}) on {result.split}: {m.count} clips"
          + (f" ({result.skipped} skipped: undecodable)" if result.skipped else ""))
    print(f"accuracy {m.accuracy:.4f}  macro-F1 {m.macro_f1:.4f}  macro ROC-AUC {m.macro_auc:.4f}")
    width = max(len(c) for c in m.classes)
    print(" " * (width + 2) + " ".join(f"{c[:6]:>6}" for c in m.classes) + "   F1     AUC")
    for i, name in enumerate(m.classes):
        row = " ".join(f"{v:6d}" for v in m.confusion[i])
        print(f"{name:<{width}}  {row}  {m.f1[i]:.3f}  {m.auc[i]:.3f}")
    for path in result.written:
        print(f"wrote {path}", file=sys.stderr)
