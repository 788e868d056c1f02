"""Calibration settings: the sensitivity mode and its top K are validated and described."""

import pytest

from mvrt.calibration.settings import SENSITIVITY_MODES, CalibrationSettings
from mvrt.errors import UsageError


def test_fast_sensitivity_with_sixteen_measured_layers_is_the_default():
    settings = CalibrationSettings()
    assert (settings.sensitivity, settings.sensitivity_top) == ("fast", 16) and SENSITIVITY_MODES == ("fast", "full")
    assert settings.describe().endswith("sensitivity: fast (proxy ranking, the worst 16 measured on 8 clips)")
    assert CalibrationSettings(sensitivity="full").describe_sensitivity() == "full (every layer measured on 8 clips)"
    assert CalibrationSettings(sensitivity_samples=0).describe_sensitivity() == "off"


def test_bad_sensitivity_settings_are_one_line_usage_errors():
    with pytest.raises(UsageError, match=r"^sensitivity 'quick': choose fast \(a proxy ranks the layers, the worst "
                                         r"sensitivity_top are measured\) or full \(every layer measured\)$"):
        CalibrationSettings(sensitivity="quick")
    for value in (0, -3, 2.5, True, "16"):
        with pytest.raises(UsageError, match=rf"^sensitivity_top must be a whole number >= 1, got {value!r}$"):
            CalibrationSettings(sensitivity_top=value)
    assert CalibrationSettings(sensitivity_top=1).sensitivity_top == 1
