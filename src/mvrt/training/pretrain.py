"""`mvrt pretrain`: unsupervised autoencoder pretraining on unlabelled clips (paper "Decoder network").

Clips are found anywhere under a folder (any layout; `audio/` + `video/` sibling folders pair by
stem), featurised with the shared front-end cache, and reconstructed by `AutoEncoder` with
AdamW on the mean MSE of every output. The encoder is written as a classifier checkpoint (head at
initialisation), so `mvrt train --init <out>` starts from it via `load_matching_weights`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mvrt.config import ModelConfig
from mvrt.data import MEDIA_EXTENSIONS, Clip, media_files
from mvrt.errors import UsageError
from mvrt.training.loop import adamw, batches, epoch_start, require_torch, start_run, torch_threads
from mvrt.training.settings import PretrainSettings

if TYPE_CHECKING:
    import torch

__all__ = ["PretrainResult", "PretrainSettings", "encoder_classifier", "find_unlabelled_clips", "pretrain"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainResult:
    checkpoint: Path
    config: ModelConfig = field(repr=False)
    epoch_losses: tuple[float, ...]  # mean reconstruction loss of each epoch
    clips: int
    skipped_clips: int


def find_unlabelled_clips(root: str | os.PathLike) -> list[Clip]:
    """Every media file under `root` (recursively, hidden files and folders skipped) as an unlabelled clip."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such clips folder")
    clips = []
    for path in media_files(root):
        audio = _audio_partner(path)
        if path.parent.name.lower() == "audio" and _video_partner(path) is not None:
            continue  # taken with its video file
        clips.append(Clip(audio or path, path, label=-1, class_name="", split="unlabelled", stem=path.stem))
    if not clips:
        raise UsageError(f"{root}: no media files ({', '.join(sorted(MEDIA_EXTENSIONS))})")
    return clips


def _audio_partner(path: Path) -> Path | None:
    """The authors' layout: `<x>/video/<stem>.*` pairs with `<x>/audio/<stem>.*`."""
    return _sibling(path, "video", "audio")


def _video_partner(path: Path) -> Path | None:
    return _sibling(path, "audio", "video")


def _sibling(path: Path, own: str, other: str) -> Path | None:
    if path.parent.name.lower() != own:
        return None
    for folder in path.parent.parent.iterdir():
        if folder.is_dir() and folder.name.lower() == other:
            match = sorted(p for p in folder.glob(f"{path.stem}.*") if p.suffix.lower() in MEDIA_EXTENSIONS)
            if match:
                return match[0]
    return None


def pretrain(clips_dir: str | os.PathLike, out: str | os.PathLike, settings: PretrainSettings,
             cache_dir: str | os.PathLike | None = None) -> PretrainResult:
    """Pretrain the autoencoder on every clip under `clips_dir`; write the encoder to `out`."""
    start = start_run(settings, clips_dir, out, cache_dir, command="pretrain")
    report = start.features(find_unlabelled_clips(start.root), "unlabelled")
    paths = [path for _, path in report.entries]
    config = start.final_config(paths, f"autoencoder pretraining (unlabelled): {start.root.resolve().name}")
    with torch_threads(settings.threads):
        losses = _fit(config, settings, paths, start.out)
    return PretrainResult(start.out, config, losses, len(paths), report.failed_count)


def _fit(config: ModelConfig, settings: PretrainSettings, paths: list[Path], out: Path) -> tuple[float, ...]:
    """Every epoch over `paths`, then the encoder to `out`; the mean reconstruction loss of each epoch."""
    from mvrt.checkpoint import save_checkpoint
    from mvrt.models import count_parameters, seed_everything
    from mvrt.models.autoencoder import AutoEncoder

    seed_everything(settings.seed)
    model = AutoEncoder(config).to(settings.device)
    log.info("%s autoencoder (width %g): %s parameters, %d clips, auxiliary outputs %s", config.arch, config.width,
             f"{count_parameters(model):,}", len(paths), model.auxiliary_counts())
    optimizer = adamw(model, settings)
    losses = []
    for epoch in range(1, settings.epochs + 1):
        lr, order = epoch_start(optimizer, settings, epoch, len(paths))
        losses.append(_run_epoch(model, optimizer, [paths[i] for i in order], settings, epoch))
        log.info("epoch %d/%d: reconstruction loss %.4f, lr %.2e", epoch, settings.epochs, losses[-1], lr)
    save_checkpoint(encoder_classifier(model), config, out)
    log.info("encoder -> %s", out)
    return tuple(losses)


def _run_epoch(model, optimizer, paths: list[Path], settings: PretrainSettings, epoch: int) -> float:
    """One pass over `paths`; the mean reconstruction loss per clip."""
    torch = require_torch()
    from tqdm import tqdm

    from mvrt.clip_cache import load_batch
    from mvrt.models.autoencoder import reconstruction_loss

    model.train()
    total = 0.0
    for batch in tqdm(batches(paths, settings.batch_size), desc=f"epoch {epoch} pretrain", unit="batch", file=sys.stderr,
                      disable=not settings.progress, leave=False):
        feeds = load_batch(batch, model.config)
        inputs = {n: torch.from_numpy(feeds[n]).to(settings.device) for n in model.input_names}
        loss = reconstruction_loss(model(*inputs.values()), inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    return total / len(paths)


def encoder_classifier(model: "torch.nn.Module") -> "torch.nn.Module":
    """A fresh classifier (`build_model`) holding the autoencoder's encoder weights, on the CPU."""
    from mvrt.models import build_model

    classifier = build_model(model.config)
    encoder = {k: v for k, v in model.encoder.state_dict().items() if not k.startswith("head.")}
    classifier.load_state_dict({k: v.detach().cpu() for k, v in encoder.items()}, strict=False)
    return classifier

