"""FP32-vs-INT8 comparison numbers, checked by hand."""

import numpy as np
import pytest

from mvrt.calibration.compare import compare_logits
from mvrt.config import CLASSES
from mvrt.errors import UsageError


def test_agreement_accuracy_and_probability_shift():
    labels = np.array([0, 1, 2, 3])
    fp32 = np.eye(6)[[0, 1, 2, 4]] * 5.0  # three right, one wrong
    int8 = fp32.copy()
    int8[1] = np.eye(6)[5] * 5.0  # flips a correct clip
    int8[0, 0] = 4.0  # same label, smaller confidence
    c = compare_logits(labels, fp32, int8, CLASSES)
    assert c.count == 4 and c.agreement == 0.75
    assert c.fp32.accuracy == 0.75 and c.int8.accuracy == 0.5 and c.accuracy_drop_points == pytest.approx(25.0)
    p_hi = np.exp(5) / (np.exp(5) + 5)
    p_lo = np.exp(4) / (np.exp(4) + 5)
    assert c.max_abs_dp == pytest.approx(p_hi - 1 / (np.exp(5) + 5))  # the flipped clip
    assert c.mean_abs_dp == pytest.approx((p_hi - p_lo + c.max_abs_dp) / 4)
    doc = c.to_dict()
    assert doc["top1_agreement"] == 0.75 and doc["int8"]["accuracy"] == 0.5 and "macro_roc_auc" in doc["fp32"]


def test_mismatched_shapes_are_an_error():
    with pytest.raises(UsageError, match="cannot compare logits"):
        compare_logits(np.zeros(2), np.zeros((2, 6)), np.zeros((3, 6)), CLASSES)
