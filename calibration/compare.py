"""FP32 against INT8 on the same inputs: agreement, both models' metrics, probability shifts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvrt.errors import UsageError
from mvrt.evaluation.metrics import Metrics, classification_metrics, softmax

__all__ = ["Comparison", "compare_logits", "prob_shift"]


@dataclass(frozen=True)
class Comparison:
    """INT8 against FP32 on `count` clips; probabilities are softmax of the logits."""

    count: int
    agreement: float  # share of clips where both top-1 labels are equal
    max_abs_dp: float  # largest |p_int8 - p_fp32| over clips and classes
    mean_abs_dp: float  # mean over clips of the largest per-class |Δp|
    fp32: Metrics = field(repr=False)
    int8: Metrics = field(repr=False)

    @property
    def accuracy_drop_points(self) -> float:
        """FP32 accuracy minus INT8 accuracy, in percentage points."""
        return 100.0 * (self.fp32.accuracy - self.int8.accuracy)

    def to_dict(self) -> dict:
        return {"clips": self.count, "top1_agreement": self.agreement, "max_abs_dprob": self.max_abs_dp,
                "mean_abs_dprob": self.mean_abs_dp, "accuracy_drop_points": self.accuracy_drop_points,
                "fp32": _summary(self.fp32), "int8": _summary(self.int8)}


def _summary(metrics: Metrics) -> dict:
    full = metrics.to_dict()
    return {k: full[k] for k in ("accuracy", "macro_f1", "macro_roc_auc", "f1", "roc_auc")}


def prob_shift(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> np.ndarray:
    """Per clip, the largest |Δprobability| over classes."""
    return np.abs(softmax(int8_logits) - softmax(fp32_logits)).max(axis=1)


def compare_logits(labels: np.ndarray, fp32_logits: np.ndarray, int8_logits: np.ndarray,
                   classes: tuple[str, ...]) -> Comparison:
    """Agreement, metrics of both models, and probability shifts."""
    if fp32_logits.shape != int8_logits.shape or len(labels) != len(fp32_logits) or not len(labels):
        raise UsageError(f"cannot compare logits {fp32_logits.shape} and {int8_logits.shape} for {len(labels)} labels")
    shift = prob_shift(fp32_logits, int8_logits)
    agreement = float(np.mean(fp32_logits.argmax(axis=1) == int8_logits.argmax(axis=1)))
    return Comparison(len(labels), agreement, float(shift.max()), float(shift.mean()),
                      classification_metrics(labels, fp32_logits, classes),
                      classification_metrics(labels, int8_logits, classes))
