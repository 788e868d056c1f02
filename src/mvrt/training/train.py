"""`mvrt train`: fit a network on cached front-end features of an MVED-shaped folder.

The best checkpoint (validation accuracy, ties by lower loss) goes to `out`; a resumable
state (model, AdamW moments and step per parameter, torch RNG, epoch and best metric in the
metadata; no pickle) goes to `<out stem>.last.safetensors` after every epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mvrt.config import AudioNorm, FrontendConfig, ModelConfig
from mvrt.errors import MissingDependencyError, ModelError, UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["EpochRecord", "TrainResult", "TrainSettings", "audio_norm_stats", "last_state_path",
           "load_matching_weights", "train"]

# File a stand-in generator leaves at the data root (see report); its presence changes `trained_on`.
STANDIN_MARKERS = ("mvrt-standin.json", "STANDIN.txt")
_STATE_FORMAT = "mvrt-train-state-1"


@dataclass(frozen=True)
class TrainSettings:
    """Everything `train` needs besides the data and the output path."""

    arch: str = "slowfast"
    mmtm: bool = True
    width: float = 1.0
    dropout: float = 0.5
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0
    resume: bool = True
    init: Path | None = None
    threads: int | None = None
    progress: bool = True
    device: str = "cpu"  # "cpu" or "cuda[:N]"
    # Batches of train data that re-estimate BN statistics before each validation (PySlowFast's
    # precise BN); 0 keeps the running averages.
    precise_bn_batches: int = 200


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


def audio_norm_stats(paths: Sequence[Path], config: ModelConfig) -> tuple[tuple[str, AudioNorm], ...]:
    """Per audio input, per channel mean/std (population) over the raw cached features."""
    from mvrt.clip_cache import load_entry

    sums = {name: np.zeros((2, 3)) for name in config.audio_inputs}  # (channel, [n, sum, sum of squares])
    for path in paths:
        raw = load_entry(path)
        for name, acc in sums.items():
            x = raw[name].astype(np.float64).reshape(2, -1)  # (2, n_mels * frames)
            acc += np.stack([np.full(2, x.shape[1]), x.sum(1), np.square(x).sum(1)], axis=1)
    norms = []
    for name, (count, total, squares) in ((n, a.T) for n, a in sums.items()):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std = np.where(std > 1e-8, std, 1.0)
        norms.append((name, AudioNorm(tuple(map(float, mean)), tuple(map(float, std)))))
    return tuple(sorted(norms))


def train(data_root: str | os.PathLike, out: str | os.PathLike, settings: TrainSettings,
          cache_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train on `<data_root>/{train,validation}`; see the module docstring for the outputs."""
    require_torch()
    from mvrt.data import discover
    from mvrt.clip_cache import FeatureCache

    _check_settings(settings)
    root, out = Path(data_root), Path(out)
    base = ModelConfig(arch=settings.arch, width=settings.width, mmtm=settings.mmtm, dropout=settings.dropout,
                       frontend=settings.frontend)
    cache = FeatureCache(cache_dir if cache_dir is not None else root / ".mvrt-cache", base)
    splits = {}
    skipped = 0
    for split in ("train", "validation"):
        report = cache.build(discover(root, split), progress=settings.progress, desc=f"features {split}")
        _say(f"{split}: {report.summary()}")
        skipped += report.failed_count
        splits[split] = [(path, clip.label) for clip, path in report.entries]
        if not splits[split]:
            raise UsageError(f"{root}: no usable {split} clips (all failed to decode)")
    config = base.replace(audio_norm=audio_norm_stats([p for p, _ in splits["train"]], base), trained_on=trained_on(root))
    with torch_threads(settings.threads):
        return _train_model(config, settings, splits, out, skipped)


def _train_model(config: ModelConfig, settings: TrainSettings, splits: dict, out: Path, skipped: int) -> TrainResult:
    torch = require_torch()
    from mvrt.models import build_model, count_parameters, seed_everything

    seed_everything(settings.seed)
    model = build_model(config)
    if settings.init is not None:
        loaded, missing = load_matching_weights(model, settings.init)
        _say(f"--init {settings.init}: loaded {loaded} tensor(s), {missing} left at initialisation")
    model.to(settings.device)
    _say(f"{config.arch} ({'with' if config.mmtm else 'without'} MMTM, width {config.width:g}): "
         f"{count_parameters(model):,} parameters; {len(splits['train'])} train / {len(splits['validation'])} val clips")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    data_key = _data_key(splits)
    state = _resume(last_state_path(out), model, optimizer, config, data_key) if settings.resume else None
    return _fit(model, optimizer, config, settings, splits, out, data_key, state, skipped)


def _fit(model, optimizer, config, settings, splits, out, data_key, state, skipped) -> TrainResult:
    torch = require_torch()
    from mvrt.checkpoint import save_checkpoint

    history = list(state["history"]) if state else []
    start = state["epoch"] if state else 0
    best = (state["best_accuracy"], -state["best_loss"], state["best_epoch"]) if state else (-1.0, -math.inf, 0)
    if state:
        torch.set_rng_state(state["rng"])
        _say(f"resuming after epoch {start} (best val acc {best[0]:.3f} at epoch {best[2]})")
    for epoch in range(start + 1, settings.epochs + 1):
        lr = set_cosine_lr(optimizer, settings.lr, epoch, settings.epochs)
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(splits["train"]))
        train_loss, train_acc = _run_epoch(model, config, [splits["train"][i] for i in order], settings, optimizer, epoch)
        _precise_bn(model, config, [splits["train"][i] for i in order], settings)
        val_loss, val_acc = _run_epoch(model, config, splits["validation"], settings, None, epoch)
        record = EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, lr)
        history.append(record)
        _say(record.summary(settings.epochs))
        if (val_acc, -val_loss) > best[:2]:
            best = (val_acc, -val_loss, epoch)
            save_checkpoint(model, config, out)
        _save_state(last_state_path(out), model, optimizer, config, data_key, epoch, best, history)
    return TrainResult(out, last_state_path(out), config, tuple(history), best[2], start, skipped)


def _run_epoch(model, config, items, settings, optimizer, epoch) -> tuple[float, float]:
    """Mean loss and accuracy over `items` [(path, label)]; trains when `optimizer` is given."""
    torch = require_torch()
    from tqdm import tqdm

    training = optimizer is not None
    model.train(training)
    total_loss, correct = 0.0, 0
    desc = f"epoch {epoch} {'train' if training else 'val'}"
    for batch in tqdm(batches(items, settings.batch_size), desc=desc, unit="batch", file=sys.stderr,
                      disable=not settings.progress, leave=False):
        inputs = _inputs(batch, config, settings.device)
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


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _inputs(batch, config, device: str) -> list:
    torch = require_torch()
    from mvrt.clip_cache import load_batch

    feeds = load_batch([p for p, _ in batch], config)
    return [torch.from_numpy(feeds[name]).to(device, non_blocking=True) for name in config.input_names]


def _precise_bn(model, config, items, settings) -> None:
    """Replace BN running statistics by their average over up to `precise_bn_batches` train batches."""
    torch = require_torch()
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
            model(*_inputs(batch, config, settings.device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def load_matching_weights(model: "torch.nn.Module", path: str | os.PathLike) -> tuple[int, int]:
    """Copy tensors of `path` whose name and shape match `model`'s; (loaded, missing) counts."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"--init {path}: cannot read safetensors weights ({' '.join(str(exc).split())})") from None
    own = model.state_dict()
    matching = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ModelError(f"--init {path}: no tensor matches the {len(own)} of this network (different architecture?)")
    model.load_state_dict(matching, strict=False)
    return len(matching), len(own) - len(matching)


def _save_state(path: Path, model, optimizer, config, data_key, epoch, best, history) -> None:
    torch = require_torch()
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, param_state in optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": _STATE_FORMAT, "mvrt_config": config.to_json(), "data_key": data_key, "epoch": str(epoch),
            "best_accuracy": repr(best[0]), "best_loss": repr(-best[1]), "best_epoch": str(best[2]),
            "history": json.dumps([r.__dict__ for r in history])}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _resume(path: Path, model, optimizer, config, data_key) -> dict | None:
    """Restore model and optimizer from `path` when it matches this run; None otherwise."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != _STATE_FORMAT or meta.get("mvrt_config") != config.to_json() or meta.get("data_key") != data_key:
        _say(f"{path}: saved state is for another configuration or data; starting afresh (--restart to silence)")
        return None
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optim["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(optim)
    history = tuple(EpochRecord(**r) for r in json.loads(meta["history"]))
    return {"epoch": int(meta["epoch"]), "best_accuracy": float(meta["best_accuracy"]), "best_loss": float(meta["best_loss"]),
            "best_epoch": int(meta["best_epoch"]), "history": history, "rng": tensors["rng.torch"]}


def _data_key(splits: dict) -> str:
    text = json.dumps({s: [(Path(p).name, label) for p, label in items] for s, items in splits.items()})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_optimisation(settings, command: str) -> None:
    """Epochs, batch size, lr and device of a `train`/`pretrain` run (`command` names it in messages)."""
    if settings.epochs < 1 or settings.batch_size < 1 or not settings.lr > 0:
        raise UsageError(f"epochs, batch size and lr must be positive (got {settings.epochs}, {settings.batch_size}, {settings.lr})")
    if settings.device != "cpu" and not settings.device.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got {settings.device!r}")
    if settings.device.startswith("cuda") and not require_torch().cuda.is_available():
        raise UsageError(f"--device {settings.device}: torch sees no CUDA device; {command} with --device cpu")


def set_cosine_lr(optimizer, peak_lr: float, epoch: int, epochs: int) -> float:
    """Set and return the cosine-decayed learning rate of 1-based `epoch` out of `epochs`."""
    lr = peak_lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Use `threads` torch CPU threads inside the block (a process-wide setting), then restore."""
    torch = require_torch()
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_settings(settings: TrainSettings) -> None:
    check_optimisation(settings, "train")
    if settings.init is not None and not Path(settings.init).is_file():
        raise UsageError(f"--init {settings.init}: no such checkpoint")


def require_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch", "training") from None
    return torch


def _say(message: str) -> None:
    print(f"mvrt train: {message}", file=sys.stderr)
