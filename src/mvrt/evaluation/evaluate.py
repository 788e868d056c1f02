"""`mvrt evaluate`: any backend on the cached features of a split; metrics, plots, JSON.

Features come from the feature cache (computed once per front-end) and are normalised with
the evaluated model's own config, so a checkpoint, its ONNX export and a TensorRT plan all see
the inputs inference would give them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from mvrt.errors import MissingDependencyError, UsageError
from mvrt.evaluation.metrics import Metrics, classification_metrics, roc_curve, softmax

__all__ = ["Evaluation", "evaluate", "plot_confusion", "plot_roc", "run_logits"]


@dataclass(frozen=True)
class Evaluation:
    model: Path
    backend: str
    split: str
    metrics: Metrics
    labels: np.ndarray = field(repr=False)
    logits: np.ndarray = field(repr=False)
    skipped: int = 0
    written: tuple[Path, ...] = ()

    def to_dict(self) -> dict:
        return {"model": str(self.model), "backend": self.backend, "split": self.split,
                "skipped_clips": self.skipped, **self.metrics.to_dict()}


def evaluate(model_path: str | os.PathLike, data_root: str | os.PathLike, *, split: str = "test",
             backend: str = "auto", batch_size: int = 8, out_dir: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True, **engine_options) -> Evaluation:
    """Evaluate `model_path` on `<data_root>/<split>`; writes metrics.json and PNGs to `out_dir`."""
    from mvrt.data import discover
    from mvrt.clip_cache import FeatureCache, load_batch
    from mvrt.runtime.engines import open_engine

    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}", setting="batch_size")
    root = Path(data_root)
    clips = discover(root, split)
    with open_engine(model_path, backend=backend, **engine_options) as engine:
        config = engine.config
        report = FeatureCache(cache_dir if cache_dir is not None else root / ".mvrt-cache", config).build(
            clips, progress=progress, desc=f"features {split}")
        if not report.entries:
            raise UsageError(f"{root}: no {split} clip could be decoded ({report.failed_count} failed)")
        step = min(batch_size, engine.max_batch or batch_size)
        paths = [p for _, p in report.entries]
        batches = (load_batch(paths[i : i + step], config) for i in range(0, len(paths), step))
        logits = run_logits(engine, batches, total=len(paths), desc="evaluate", progress=progress)
        name = engine.name
    labels = np.array([clip.label for clip, _ in report.entries])
    metrics = classification_metrics(labels, logits, tuple(config.classes))
    result = Evaluation(Path(model_path), name, split, metrics, labels, logits, report.failed_count)
    if out_dir is None:
        return result
    return _write_outputs(result, Path(out_dir), config.trained_on)


def run_logits(engine, batches: Iterable[dict[str, np.ndarray]], *, total: int, desc: str,
               progress: bool = True) -> np.ndarray:
    """Logits of an open engine over batches, with a progress bar counted in clips."""
    from tqdm import tqdm

    chunks = []
    with tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, disable=not progress) as bar:
        for feeds in batches:
            chunks.append(engine.infer(feeds))
            bar.update(len(chunks[-1]))
    return np.concatenate(chunks)


def _write_outputs(result: Evaluation, out_dir: Path, trained_on: str) -> Evaluation:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = out_dir / "metrics.json"
        metrics_path.write_text(json.dumps({**result.to_dict(), "trained_on": trained_on}, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"out_dir {out_dir}: cannot write: {exc.strerror}", setting="out_dir") from None
    note = f"{result.model.name} ({result.backend}), {result.split} split; trained on: {trained_on or 'unknown'}"
    written = (metrics_path,
               plot_confusion(result.metrics, out_dir / "confusion.png", note),
               plot_roc(result.metrics, result.labels, result.logits, out_dir / "roc.png", note))
    return Evaluation(result.model, result.backend, result.split, result.metrics, result.labels, result.logits,
                      result.skipped, written)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "drawing evaluation plots") from None
    return plt


def plot_confusion(metrics: Metrics, path: Path, note: str = "") -> Path:
    """Row-normalised confusion matrix with counts (paper Fig. 9 style)."""
    plt = _pyplot()
    matrix = metrics.confusion
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    n = len(metrics.classes)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{share[i, j]:.2f}\n({matrix[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), metrics.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), metrics.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}\n{note}", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_roc(metrics: Metrics, labels: np.ndarray, logits: np.ndarray, path: Path, note: str = "") -> Path:
    """One-vs-rest ROC curve per class with its AUC (paper Fig. 10 style)."""
    plt = _pyplot()
    scores = softmax(logits)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for c, name in enumerate(metrics.classes):
        if np.isnan(metrics.auc[c]):
            continue
        fpr, tpr = roc_curve(labels == c, scores[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc[c]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"one-vs-rest ROC, macro AUC {metrics.macro_auc:.3f}\n{note}", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write plot: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return path
