"""Classification metrics in numpy (no sklearn at runtime): accuracy, macro-F1, ROC-AUC.

ROC-AUC is one-vs-rest per class via the rank (Mann-Whitney) formula with average ranks for
ties; a class with no positive or no negative sample has AUC NaN and is left out of the
macro mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvrt.errors import UsageError
from mvrt.runtime.results import softmax  # the runtime's own: evaluation scores what inference reports

__all__ = ["Metrics", "accuracy", "auc_rank", "classification_metrics", "confusion_matrix", "f1_per_class",
           "roc_curve", "softmax"]


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float(np.mean(labels == predictions)) if labels.size else float("nan")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts; rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def f1_per_class(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class from a confusion matrix; 0 where precision and recall are both undefined/0."""
    tp = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2TP + FP + FN
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def auc_rank(positive: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC-AUC by the rank formula, ties get average ranks; NaN if one class is absent."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], values.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores, hits = np.asarray(scores)[order], positive[order]
    cut = np.r_[np.flatnonzero(np.diff(sorted_scores)), hits.size - 1]  # last index of each threshold
    tps, fps = np.cumsum(hits)[cut], np.cumsum(~hits)[cut]
    tpr = np.r_[0.0, tps / max(int(hits.sum()), 1)]
    fpr = np.r_[0.0, fps / max(int((~hits).sum()), 1)]
    return fpr, tpr


@dataclass(frozen=True)
class Metrics:
    """Evaluation of N samples over C classes."""

    classes: tuple[str, ...]
    count: int
    accuracy: float
    macro_f1: float
    f1: tuple[float, ...]
    auc: tuple[float, ...]
    macro_auc: float
    confusion: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        def clean(x: float):
            return None if np.isnan(x) else float(x)

        return {
            "classes": list(self.classes),
            "count": self.count,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "f1": dict(zip(self.classes, map(clean, self.f1))),
            "roc_auc": dict(zip(self.classes, map(clean, self.auc))),
            "macro_roc_auc": clean(self.macro_auc),
            "confusion": self.confusion.tolist(),
        }


def classification_metrics(labels: np.ndarray, logits: np.ndarray, classes: tuple[str, ...]) -> Metrics:
    """Accuracy, macro-F1, one-vs-rest ROC-AUC (on softmax scores) and the confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape != (labels.size, len(classes)):
        raise UsageError(f"logits must be (N={labels.size}, C={len(classes)}), got {logits.shape}")
    predictions = logits.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(classes))
    f1 = f1_per_class(matrix)
    scores = softmax(logits)
    auc = np.array([auc_rank(labels == c, scores[:, c]) for c in range(len(classes))])
    macro_auc = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
    return Metrics(tuple(classes), int(labels.size), accuracy(labels, predictions), float(f1.mean()),
                   tuple(map(float, f1)), tuple(map(float, auc)), macro_auc, matrix)
