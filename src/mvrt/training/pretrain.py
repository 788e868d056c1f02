"""`mvrt pretrain`: unsupervised autoencoder pretraining on unlabelled clips (paper "Decoder network").

Clips are found anywhere under a folder (any layout; `audio/` + `video/` sibling folders pair by
stem), featurised with the shared front-end cache, and reconstructed by `AutoEncoder` with
AdamW on the mean MSE of every output. The encoder is written as a classifier checkpoint (head at
initialisation), so `mvrt train --init <out>` starts from it via `load_matching_weights`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.data import MEDIA_EXTENSIONS, Clip, media_files
from mvrt.errors import UsageError
from mvrt.training.train import (
    audio_norm_stats,
    batches,
    check_optimisation,
    require_torch,
    set_cosine_lr,
    torch_threads,
)

if TYPE_CHECKING:
    import torch

__all__ = ["PretrainResult", "PretrainSettings", "encoder_classifier", "find_unlabelled_clips", "pretrain"]


@dataclass(frozen=True)
class PretrainSettings:
    """Everything `pretrain` needs besides the clips folder and the output path."""

    arch: str = "slowfast"
    mmtm: bool = True
    width: float = 1.0
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    device: str = "cpu"  # "cpu" or "cuda[:N]"


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
    from mvrt.clip_cache import FeatureCache

    require_torch()
    check_optimisation(settings, "pretrain")
    root, out = Path(clips_dir), Path(out)
    base = ModelConfig(arch=settings.arch, width=settings.width, mmtm=settings.mmtm, frontend=settings.frontend)
    cache = FeatureCache(cache_dir if cache_dir is not None else root / ".mvrt-cache", base)
    report = cache.build(find_unlabelled_clips(root), progress=settings.progress, desc="features unlabelled")
    _say(f"clips: {report.summary()}")
    paths = [path for _, path in report.entries]
    if not paths:
        raise UsageError(f"{root}: no usable clips (all failed to decode)")
    config = base.replace(audio_norm=audio_norm_stats(paths, base),
                          trained_on=f"autoencoder pretraining (unlabelled): {root.resolve().name}")
    with torch_threads(settings.threads):
        losses = _fit(config, settings, paths, out)
    return PretrainResult(out, config, losses, len(paths), report.failed_count)


def _fit(config: ModelConfig, settings: PretrainSettings, paths: list[Path], out: Path) -> tuple[float, ...]:
    torch = require_torch()
    from mvrt.checkpoint import save_checkpoint
    from mvrt.models import count_parameters, seed_everything
    from mvrt.models.autoencoder import AutoEncoder

    seed_everything(settings.seed)
    model = AutoEncoder(config).to(settings.device)
    _say(f"{config.arch} autoencoder (width {config.width:g}): {count_parameters(model):,} parameters, "
         f"{len(paths)} clips, auxiliary outputs {model.auxiliary_counts()}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    losses = []
    for epoch in range(1, settings.epochs + 1):
        lr = set_cosine_lr(optimizer, settings.lr, epoch, settings.epochs)
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(paths))
        losses.append(_run_epoch(model, optimizer, [paths[i] for i in order], settings, epoch))
        _say(f"epoch {epoch}/{settings.epochs}: reconstruction loss {losses[-1]:.4f}, lr {lr:.2e}")
    save_checkpoint(encoder_classifier(model), config, out)
    _say(f"encoder -> {out}")
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



def _say(message: str) -> None:
    print(f"mvrt pretrain: {message}", file=sys.stderr)
