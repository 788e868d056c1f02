"""`mvrt train` and `mvrt evaluate`: argument definitions and handlers."""

from __future__ import annotations

import sys
from pathlib import Path

from mvrt._cli_output import add_progress_options, progress_wanted
from mvrt._cli_engine import add_engine_options, engine_options, positive_float, positive_int

EXIT_OK = 0


def add_network_options(p) -> None:
    """--arch, --no-mmtm, --width: which network to build (train and pretrain)."""
    p.add_argument("--arch", default="slowfast", choices=("slowfast", "musicvideo"))
    p.add_argument("--no-mmtm", dest="mmtm", action="store_false", help="no MMTM fusion (paper Table 1 ablation)")
    p.add_argument("--width", type=positive_float, default=1.0, metavar="W", help="channel width multiplier (default: 1)")


def add_schedule_options(p, *, epochs: int) -> None:
    """--epochs, --batch-size, --lr: the optimisation schedule (train and pretrain)."""
    p.add_argument("--epochs", type=positive_int, default=epochs, metavar="N")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N")
    p.add_argument("--lr", type=positive_float, default=1e-3, metavar="LR", help="AdamW peak learning rate, cosine decay")


def add_frontend_options(p) -> None:
    """--window, --image-size: the front-end a trained model will expect."""
    p.add_argument("--window", type=positive_float, default=30.0, metavar="SECONDS", help="window length (default: 30)")
    p.add_argument("--image-size", type=positive_int, default=128, metavar="PX", help="frame size (default: 128)")


def frontend_from(args):
    from mvrt.config import FrontendConfig

    return FrontendConfig(window_seconds=args.window, image_size=args.image_size)


def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a network on an MVED-shaped folder",
        description="Train on DATA_ROOT/{train,validation}/<Class>/... (flat or authors' audio/video layout). "
        "Front-end tensors are computed once into a cache; audio normalisation statistics come from the "
        "train split and travel in the checkpoint. The best checkpoint (validation accuracy) is written to "
        "--out and a resumable state to <out>.last.safetensors after every epoch.")
    p.add_argument("data_root", metavar="DATA_ROOT")
    add_network_options(p)
    p.add_argument("--init", default=None, metavar="PRETRAINED", help="load matching weights from this .safetensors")
    add_schedule_options(p, epochs=30)
    p.add_argument("--weight-decay", type=float, default=1e-2, metavar="WD")
    add_frontend_options(p)
    p.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default: DATA_ROOT/.mvrt-cache)")
    p.add_argument("--out", default="model.safetensors", metavar="CKPT", help="best checkpoint (default: model.safetensors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="torch CPU threads")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help="where to train (default: cpu)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="resume", action="store_true", default=True,
                        help="continue from <out>.last.safetensors when it matches (default)")
    resume.add_argument("--restart", dest="resume", action="store_false", help="ignore any saved state")
    add_progress_options(p)
    p.set_defaults(handler=run_train)


def run_train(args) -> int:
    from mvrt.training.train import TrainSettings, train

    settings = TrainSettings(
        arch=args.arch, mmtm=args.mmtm, width=args.width, frontend=frontend_from(args),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        resume=args.resume, init=Path(args.init) if args.init else None, threads=args.threads, progress=progress_wanted(args),
        device=args.device)
    result = train(args.data_root, args.out, settings, cache_dir=args.cache)
    best = next((r for r in result.history if r.epoch == result.best_epoch), None)
    if best is not None:
        print(f"best: epoch {best.epoch}, val acc {best.val_accuracy:.3f}, val loss {best.val_loss:.4f} -> {result.checkpoint}",
              file=sys.stderr)
    return EXIT_OK


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="accuracy, macro-F1, ROC-AUC and confusion matrix on a split",
        description="Run MODEL (checkpoint, ONNX or TensorRT plan) on the cached features of a split and report "
        "accuracy, macro-F1, one-vs-rest ROC-AUC and the confusion matrix; --out-dir gets metrics.json, "
        "confusion.png and roc.png.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data_root", metavar="DATA_ROOT")
    p.add_argument("--split", default="test", help="train, validation (val) or test (default: test)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="write metrics.json, confusion.png, roc.png here")
    p.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default: DATA_ROOT/.mvrt-cache)")
    add_progress_options(p)
    add_engine_options(p)
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from mvrt.evaluate import evaluate

    result = evaluate(args.model, args.data_root, split=args.split, backend=args.backend, batch_size=args.batch_size,
                      out_dir=args.out_dir, cache_dir=args.cache, progress=progress_wanted(args), **engine_options(args))
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
    return EXIT_OK
