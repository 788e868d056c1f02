"""Cautions about small calibration and validation sets, and the Wilson interval behind one of them."""

import numpy as np
import pytest

from mvrt.calibration.notes import calibration_notes, validation_notes, wilson_interval

CLASSES = ("Angry", "Exciting", "Fear", "Funny", "Happy", "Sad")


def test_a_dozen_clips_get_a_caution_that_names_the_risks():
    (note,) = calibration_notes(np.repeat(np.arange(6), 2), CLASSES, ("minmax", "entropy", "percentile"))
    assert note.startswith("small calibration set: 12 clips, 2 per class (small means under 100 clips or under 10 "
                           "of a class)")
    assert "so footage that goes further is clipped by INT8" in note
    assert "the entropy and percentile thresholds are cut from the tails of histograms of these few clips" in note
    (minmax_only,) = calibration_notes(np.repeat(np.arange(6), 2), CLASSES, ("minmax",))
    assert "entropy" not in minmax_only and "percentile" not in minmax_only


def test_a_class_with_few_or_no_clips_is_small_even_when_the_total_is_not():
    labels = np.array([0] * 40 + [1] * 40 + [2] * 40 + [3] * 4 + [4] * 30)
    (note,) = calibration_notes(labels, CLASSES, ("minmax",))
    assert "154 clips, 4 to 40 per class, none of Sad" in note
    assert calibration_notes(np.repeat(np.arange(6), 17), CLASSES, ("entropy",)) == []  # 102 clips, 17 a class


def test_the_wilson_interval_matches_reference_values():
    assert wilson_interval(12, 12) == pytest.approx((0.7575, 1.0), abs=1e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_few_validation_clips_make_agreement_a_rough_estimate():
    (note,) = validation_notes(11, 12, methods_tried=3)
    assert note.startswith("small validation set: agreement is measured on 12 clips, so one clip moves it by 8.3 "
                           "points and 11/12 agreeing is consistent with a true agreement anywhere from 65% to 99% "
                           "(95% Wilson interval); auto's choice between methods rests on the same few clips")
    (single,) = validation_notes(60, 60, methods_tried=1)
    assert "from 94% to 100%" in single and "auto" not in single
    assert validation_notes(120, 120, methods_tried=3) == []
