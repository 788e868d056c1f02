"""`mvrt train`: fit a network on cached front-end features of an MVED-shaped folder.

The best checkpoint (validation accuracy, ties by lower loss) goes to `out`; a resumable
state (model, AdamW moments and step per parameter, torch RNG, epoch and best metric in the
metadata; no pickle) goes to `<out stem>.last.safetensors` after every epoch. Progress is
logged at INFO on the `mvrt.training` loggers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mvrt.config import ModelConfig
from mvrt.errors import ModelError, UsageError
from mvrt.training.loop import adamw, audio_norm_stats, batches, epoch_start, require_torch, start_run, torch_threads
from mvrt.training.settings import TrainSettings

if TYPE_CHECKING:
    import torch

__all__ = ["EpochRecord", "TrainResult", "TrainSettings", "audio_norm_stats", "last_state_path",
           "load_matching_weights", "train"]

log = logging.getLogger(__name__)

# File a stand-in generator leaves at the data root (see report); its presence changes `trained_on`.
STANDIN_MARKERS = ("mvrt-standin.json", "STANDIN.txt")
_STATE_FORMAT = "mvrt-train-state-1"
_SPLITS = ("train", "validation")

Items = tuple[tuple[Path, int], ...]  # (cache entry, label) of each usable clip


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float

    def summary(self, epochs: int) -> str:
        return (f"epoch {self.epoch}/{epochs}: train loss {self.train_loss:.4f} acc {self.train_accuracy:.3f}, "
                f"val loss {self.val_loss:.4f} acc {self.val_accuracy:.3f}, lr {self.lr:.2e}")


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    last_state: Path
    config: ModelConfig = field(repr=False)
    history: tuple[EpochRecord, ...]
    best_epoch: int
    resumed_from_epoch: int
    skipped_clips: int


@dataclass(frozen=True)
class _Splits:
    """The usable clips of the train and validation splits, and how many failed to decode."""

    train: Items
    validation: Items
    skipped_clips: int

    def data_key(self) -> str:
        """What a saved state must have been trained on to be resumed (entry names and labels)."""
        text = json.dumps({"train": [(Path(p).name, label) for p, label in self.train],
                           "validation": [(Path(p).name, label) for p, label in self.validation]})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Run:
    """One training run's fixed inputs: what every epoch and every saved state reads."""

    config: ModelConfig
    settings: TrainSettings
    splits: _Splits
    out: Path
    data_key: str

    @property
    def last_state(self) -> Path:
        return last_state_path(self.out)


@dataclass(frozen=True)
class _Best:
    """The best epoch so far: higher validation accuracy wins, then lower validation loss."""

    accuracy: float = -1.0
    loss: float = math.inf
    epoch: int = 0

    def beaten_by(self, record: EpochRecord) -> bool:
        return (record.val_accuracy, -record.val_loss) > (self.accuracy, -self.loss)


@dataclass(frozen=True)
class _Saved:
    """A resumable state read back: the last finished epoch, the best one, the history, torch's RNG."""

    epoch: int
    best: _Best
    history: tuple[EpochRecord, ...]
    rng: "torch.Tensor"


def last_state_path(out: str | os.PathLike) -> Path:
    """`ckpt.safetensors` -> `ckpt.last.safetensors`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.last{out.suffix or '.safetensors'}")


def trained_on(data_root: Path) -> str:
    """Provenance line for the config: says so when the data is the generated stand-in."""
    root = data_root.resolve()
    if any((root / name).exists() for name in STANDIN_MARKERS):
        return f"stand-in data (generated, not MVED): {root.name}"
    return str(root)


def train(data_root: str | os.PathLike, out: str | os.PathLike, settings: TrainSettings,
          cache_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train on `<data_root>/{train,validation}`; see the module docstring for the outputs."""
    from mvrt.data import discover

    start = start_run(settings, data_root, out, cache_dir, command="train", dropout=settings.dropout)
    if settings.init is not None and not Path(settings.init).is_file():
        raise UsageError(f"init {settings.init}: no such checkpoint", setting="init")
    reports = [start.features(discover(start.root, split), split) for split in _SPLITS]
    train_items, val_items = (tuple((path, clip.label) for clip, path in r.entries) for r in reports)
    splits = _Splits(train_items, val_items, sum(r.failed_count for r in reports))
    config = start.final_config([p for p, _ in splits.train], trained_on(start.root))
    with torch_threads(settings.threads):
        return _train_model(_Run(config, settings, splits, start.out, splits.data_key()))


def _train_model(run: _Run) -> TrainResult:
    from mvrt.models import build_model, count_parameters, seed_everything

    settings, config = run.settings, run.config
    seed_everything(settings.seed)
    model = build_model(config)
    if settings.init is not None:
        loaded, missing = load_matching_weights(model, settings.init)
        log.info("init %s: loaded %d tensor(s), %d left at initialisation", settings.init, loaded, missing,
                 extra={"setting": "init"})
    model.to(settings.device)
    log.info("%s (%s MMTM, width %g): %s parameters; %d train / %d val clips", config.arch,
             "with" if config.mmtm else "without", config.width, f"{count_parameters(model):,}",
             len(run.splits.train), len(run.splits.validation))
    optimizer = adamw(model, settings)
    saved = _resume(run, model, optimizer) if settings.resume else None
    return _fit(run, model, optimizer, saved)


def _fit(run: _Run, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer", saved: _Saved | None) -> TrainResult:
    """The epochs after `saved` (all of them without): keep the best checkpoint, save the state after each."""
    from mvrt.checkpoint import save_checkpoint

    history = list(saved.history) if saved else []
    first = saved.epoch if saved else 0
    best = saved.best if saved else _Best()
    if saved:
        require_torch().set_rng_state(saved.rng)
        log.info("resuming after epoch %d (best val acc %.3f at epoch %d)", first, best.accuracy, best.epoch)
    for epoch in range(first + 1, run.settings.epochs + 1):
        record = _epoch(run, model, optimizer, epoch)
        history.append(record)
        log.info("%s", record.summary(run.settings.epochs))
        if best.beaten_by(record):
            best = _Best(record.val_accuracy, record.val_loss, epoch)
            save_checkpoint(model, run.config, run.out)
        _save_state(run, model, optimizer, epoch, best, history)
    return TrainResult(run.out, run.last_state, run.config, tuple(history), best.epoch, first, run.splits.skipped_clips)


def _epoch(run: _Run, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer", epoch: int) -> EpochRecord:
    """Train on the shuffled train split, re-estimate BN statistics, validate."""
    lr, order = epoch_start(optimizer, run.settings, epoch, len(run.splits.train))
    shuffled = [run.splits.train[i] for i in order]
    train_loss, train_accuracy = _run_epoch(model, shuffled, run, epoch, optimizer)
    _precise_bn(model, shuffled, run)
    val_loss, val_accuracy = _run_epoch(model, list(run.splits.validation), run, epoch)
    return EpochRecord(epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr)


def _run_epoch(model: "torch.nn.Module", items: list[tuple[Path, int]], run: _Run, epoch: int,
               optimizer: "torch.optim.Optimizer | None" = None) -> tuple[float, float]:
    """Mean loss and accuracy over `items` [(path, label)]; trains when `optimizer` is given."""
    torch = require_torch()
    from tqdm import tqdm

    settings = run.settings
    training = optimizer is not None
    model.train(training)
    total_loss, correct = 0.0, 0
    desc = f"epoch {epoch} {'train' if training else 'val'}"
    for batch in tqdm(batches(items, settings.batch_size), desc=desc, unit="batch", file=sys.stderr,
                      disable=not settings.progress, leave=False):
        inputs = _inputs(batch, run.config, settings.device)
        labels = torch.tensor([label for _, label in batch], device=settings.device)
        with torch.set_grad_enabled(training):
            logits = model(*inputs)
            loss = torch.nn.functional.cross_entropy(logits, labels)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total_loss += float(loss.detach()) * len(batch)
        correct += int((logits.argmax(1) == labels).sum())
    return total_loss / len(items), correct / len(items)


def _inputs(batch: list[tuple[Path, int]], config: ModelConfig, device: str) -> list:
    torch = require_torch()
    from mvrt.clip_cache import load_batch

    feeds = load_batch([p for p, _ in batch], config)
    return [torch.from_numpy(feeds[name]).to(device, non_blocking=True) for name in config.network_input_names]


def _precise_bn(model: "torch.nn.Module", items: list[tuple[Path, int]], run: _Run) -> None:
    """Replace BN running statistics by their average over up to `precise_bn_batches` train batches."""
    torch = require_torch()
    settings = run.settings
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if settings.precise_bn_batches < 1 or not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for batch in batches(items, settings.batch_size)[: settings.precise_bn_batches]:
            model(*_inputs(batch, run.config, settings.device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def load_matching_weights(model: "torch.nn.Module", path: str | os.PathLike) -> tuple[int, int]:
    """Copy tensors of `path` whose name and shape match `model`'s; (loaded, missing) counts.

    Errors name `path` as the `init` setting (what `train` passes here).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"init {path}: cannot read safetensors weights ({' '.join(str(exc).split())})",
                         setting="init") from None
    own = model.state_dict()
    matching = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ModelError(f"init {path}: no tensor matches the {len(own)} of this network (different architecture?)",
                         setting="init")
    model.load_state_dict(matching, strict=False)
    return len(matching), len(own) - len(matching)


def _save_state(run: _Run, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer", epoch: int, best: _Best,
                history: list[EpochRecord]) -> None:
    torch = require_torch()
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, param_state in optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": _STATE_FORMAT, "mvrt_config": run.config.to_json(), "data_key": run.data_key,
            "epoch": str(epoch), "best_accuracy": repr(best.accuracy), "best_loss": repr(best.loss),
            "best_epoch": str(best.epoch), "history": json.dumps([r.__dict__ for r in history])}
    path = run.last_state
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _resume(run: _Run, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer") -> _Saved | None:
    """Restore model and optimizer from the run's last state when it matches this run; None otherwise."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = run.last_state
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if (meta.get("format") != _STATE_FORMAT or meta.get("mvrt_config") != run.config.to_json()
            or meta.get("data_key") != run.data_key):
        log.info("%s: saved state is for another configuration or data; starting afresh (resume=False to silence)",
                 path, extra={"setting": "resume"})
        return None
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optim["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(optim)
    best = _Best(float(meta["best_accuracy"]), float(meta["best_loss"]), int(meta["best_epoch"]))
    history = tuple(EpochRecord(**r) for r in json.loads(meta["history"]))
    return _Saved(int(meta["epoch"]), best, history, tensors["rng.torch"])
