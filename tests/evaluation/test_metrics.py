"""Metrics against hand-worked cases and, when importable, scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from mvrt.evaluation.metrics import auc_rank, classification_metrics, roc_curve, softmax

CLASSES3 = ("a", "b", "c")


def test_hand_worked_three_class_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    logits = 2.0 * np.eye(3)[predictions]
    m = classification_metrics(labels, logits, CLASSES3)
    # Confusion rows (true): a -> [1, 1, 0], b -> [0, 2, 0], c -> [1, 0, 1].
    assert m.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m.accuracy == pytest.approx(4 / 6, abs=1e-12)
    # F1 = 2TP / (2TP + FP + FN): a 2/4, b 4/5, c 2/3.
    assert m.f1 == pytest.approx((0.5, 0.8, 2 / 3), abs=1e-12)
    assert m.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-12)


def test_auc_rank_formula_with_ties():
    # Positives 0.9 and 0.5 against negatives 0.5, 0.1, 0.5: 3 + (0.5 + 1 + 0.5) wins of 6 pairs.
    assert auc_rank([1, 1, 0, 0, 0], [0.9, 0.5, 0.5, 0.1, 0.5]) == pytest.approx(5 / 6, abs=1e-12)
    assert auc_rank([1, 0, 0], [0.2, 0.2, 0.2]) == pytest.approx(0.5, abs=1e-12)
    assert auc_rank([1, 1, 0], [0.1, 0.2, 0.3]) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(auc_rank([0, 0], [0.1, 0.2]))


def test_absent_class_has_nan_auc_and_is_left_out_of_the_macro():
    labels = np.array([0, 1, 0, 1])
    logits = np.array([[3.0, 0, 0], [0, 2, 0], [1, 0, 0], [0, 1, 2]])
    m = classification_metrics(labels, logits, CLASSES3)
    assert np.isnan(m.auc[2]) and m.to_dict()["roc_auc"]["c"] is None
    assert m.macro_auc == pytest.approx(np.mean(m.auc[:2]), abs=1e-12)


def test_agrees_with_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 7)
    logits = np.round(rng.normal(size=(42, 6)) + 1.5 * np.eye(6)[labels], 1)  # rounding makes ties
    m = classification_metrics(labels, logits, tuple("abcdef"))
    preds = logits.argmax(1)
    probs = softmax(logits)
    assert m.accuracy == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    assert m.macro_f1 == pytest.approx(skm.f1_score(labels, preds, average="macro", labels=range(6)), abs=1e-12)
    assert np.array_equal(m.confusion, skm.confusion_matrix(labels, preds, labels=range(6)))
    expected_auc = [skm.roc_auc_score(labels == c, probs[:, c]) for c in range(6)]
    assert m.auc == pytest.approx(expected_auc, abs=1e-12)
    assert m.macro_auc == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-12)
    fpr, tpr = roc_curve(labels == 2, probs[:, 2])
    sk_fpr, sk_tpr, _ = skm.roc_curve(labels == 2, probs[:, 2], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
