"""`mvrt pretrain`: argument definitions and handler."""

from __future__ import annotations

import sys

from mvrt._cli_output import add_progress_options, progress_wanted
from mvrt._cli_train import add_frontend_options, add_network_options, add_schedule_options, frontend_from

EXIT_OK = 0


def add_pretrain(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="unsupervised autoencoder pretraining on unlabelled clips",
        description="Train the paper's autoencoder (the classifier's encoder plus transposed-convolution decoders "
        "with auxiliary outputs, MSE loss) on every media file under CLIPS_DIR, any folder layout. The encoder is "
        "written as a classifier checkpoint to --out; fine-tune it with `mvrt train --init <out>`.")
    p.add_argument("clips_dir", metavar="CLIPS_DIR")
    add_network_options(p)
    add_schedule_options(p, epochs=10)
    add_frontend_options(p)
    p.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default: CLIPS_DIR/.mvrt-cache)")
    p.add_argument("--out", default="pretrained.safetensors", metavar="CKPT",
                   help="encoder checkpoint (default: pretrained.safetensors)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help="where to train (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    add_progress_options(p)
    p.set_defaults(handler=run_pretrain)


def run_pretrain(args) -> int:
    from mvrt.training.pretrain import PretrainSettings, pretrain

    settings = PretrainSettings(
        arch=args.arch, mmtm=args.mmtm, width=args.width, frontend=frontend_from(args),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=progress_wanted(args),
        device=args.device)
    result = pretrain(args.clips_dir, args.out, settings, cache_dir=args.cache)
    print(f"pretrained on {result.clips} clips ({result.skipped_clips} skipped), final reconstruction loss "
          f"{result.epoch_losses[-1]:.4f} -> {result.checkpoint}", file=sys.stderr)
    return EXIT_OK
