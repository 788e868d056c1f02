"""Cautions for the calibration report: what a small calibration or validation set risks.

Both sentences are logged as warnings when they apply and kept in the report's `notes`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["SMALL_CLASS_CLIPS", "SMALL_SET_CLIPS", "calibration_notes", "validation_notes", "wilson_interval"]

SMALL_SET_CLIPS = 100  # below this many clips a set is "small" (calibration or validation)
SMALL_CLASS_CLIPS = 10  # ... or below this many calibration clips of any one class


def calibration_notes(labels: np.ndarray, classes: Sequence[str], methods: Sequence[str]) -> list[str]:
    """A caution when the calibration set has under 100 clips or under 10 of some class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))[: len(classes)]
    total = int(counts.sum())
    if total >= SMALL_SET_CLIPS and counts.min() >= SMALL_CLASS_CLIPS:
        return []
    missing = [name for name, count in zip(classes, counts) if count == 0]
    spread = _per_class(counts) + (f", none of {', '.join(missing)}" if missing else "")
    histogram = [m for m in methods if m in ("entropy", "percentile")]
    tails = (f"; the {' and '.join(histogram)} thresholds are cut from the tails of histograms of these few clips "
             "and move with the choice of clips") if histogram else ""
    return [f"small calibration set: {total} clips, {spread} (small means under {SMALL_SET_CLIPS} clips or under "
            f"{SMALL_CLASS_CLIPS} of a class): the activation ranges only cover what these clips reach, so footage "
            f"that goes further is clipped by INT8{tails}. Calibrate on a few hundred clips covering every class "
            "(samples draws up to that many from the split; default 512) before relying on the INT8 model"]


def _per_class(counts: np.ndarray) -> str:
    present = counts[counts > 0]
    if not present.size:
        return "no class"
    low, high = int(present.min()), int(present.max())
    return f"{low} per class" if low == high else f"{low} to {high} per class"


def validation_notes(agreeing: int, clips: int, methods_tried: int) -> list[str]:
    """A caution when the INT8-vs-FP32 comparison rests on under 100 validation clips."""
    if clips >= SMALL_SET_CLIPS or clips <= 0:
        return []
    low, high = wilson_interval(agreeing, clips)
    chosen = "; auto's choice between methods rests on the same few clips" if methods_tried > 1 else ""
    return [f"small validation set: agreement is measured on {clips} clips, so one clip moves it by "
            f"{100 / clips:.1f} points and {agreeing}/{clips} agreeing is consistent with a true agreement anywhere "
            f"from {100 * low:.0f}% to {100 * high:.0f}% (95% Wilson interval){chosen}. Report on "
            f"{SMALL_SET_CLIPS} or more validation clips to trust the number"]


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for the default z)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
