"""`mvrt pretrain`: unsupervised autoencoder pretraining on unlabelled clips."""

import sys
from typing import Annotated, Optional

import typer

from mvrt._cli_output import Progress, Quiet
from mvrt._cli_train import (
    Arch, BatchSize, Epochs, ImageSize, Lr, NoMmtm, Seed, TrainDevice, TrainThreads, Width, Window, loop_settings,
    progress_log,
)
from mvrt._cli_types import Args

EXIT_OK = 0

PRETRAIN_HELP = """Unsupervised autoencoder pretraining on unlabelled clips.

Trains the paper's autoencoder (the classifier's encoder plus transposed-convolution decoders
with auxiliary outputs, MSE loss) on every media file under CLIPS_DIR, any folder layout. The
encoder is written as a classifier checkpoint to --out; fine-tune it with `mvrt train --init`.

Examples:
  # the autoencoder on unlabelled clips, then fine-tune it on labels
  mvrt pretrain clips/ --epochs 10 --out pretrained.safetensors
  mvrt train MVED --init pretrained.safetensors
  # the music-video network at half width, on a GPU
  mvrt pretrain clips/ --arch musicvideo --width 0.5 --device cuda

Exit status: 0 trained, 1 failed, 2 bad usage.
"""


def pretrain(
    clips_dir: Annotated[str, typer.Argument(metavar="CLIPS_DIR", show_default=False,
                                             help="folder of media files (searched recursively)")],
    arch: Arch = "slowfast",
    no_mmtm: NoMmtm = False,
    width: Width = 1.0,
    epochs: Epochs = 10,
    batch_size: BatchSize = 8,
    lr: Lr = 1e-3,
    window: Window = 30.0,
    image_size: ImageSize = 128,
    cache: Annotated[Optional[str], typer.Option("--cache", metavar="DIR", show_default="CLIPS_DIR/.mvrt-cache",
                                                 help="feature cache")] = None,
    out: Annotated[str, typer.Option("--out", metavar="CKPT", help="encoder checkpoint")] = "pretrained.safetensors",
    device: TrainDevice = "cpu",
    threads: TrainThreads = None,
    seed: Seed = 0,
    progress: Progress = None,
    quiet: Quiet = False,
) -> int:
    from mvrt.training.pretrain import pretrain as pretrain_model
    from mvrt.training.settings import PretrainSettings

    settings = PretrainSettings(**loop_settings(Args(locals())))
    with progress_log("pretrain"):
        result = pretrain_model(clips_dir, out, settings, cache_dir=cache)
    print(f"pretrained on {result.clips} clips ({result.skipped_clips} skipped), final reconstruction loss "
          f"{result.epoch_losses[-1]:.4f} -> {result.checkpoint}", file=sys.stderr)
    return EXIT_OK
