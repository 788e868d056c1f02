"""`mvrt calibrate` settings: one frozen, validated dataclass; each CLI option is one field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mvrt.calibration.ranges import METHODS
from mvrt.errors import UsageError

QUANTIZERS = ("onnxruntime", "modelopt")
SENSITIVITY_MODES = ("fast", "full")


@dataclass(frozen=True)
class CalibrationSettings:
    """What to calibrate with and what to measure.

    `method` is one of minmax / entropy / percentile, or `auto` (try each, keep the one whose
    INT8 model agrees best with FP32 on the validation split; ties go to the smaller mean
    probability shift). `sensitivity_samples` validation clips rank the quantised layers (0
    skips it): `sensitivity` "fast" ranks every layer with a one-pass proxy (the quantisation
    SQNR of its inputs and weights) and measures only the `sensitivity_top` worst exactly (each
    quantised alone); "full" measures every layer exactly. `latency_rounds` alternating timed
    calls compare INT8 and FP32 on ONNX Runtime CPU (0 skips it).
    """

    split: str = "train"
    validation_split: str = "validation"
    samples: int = 512
    method: str = "auto"
    exclude: tuple[str, ...] = ()
    batch_size: int = 8
    sensitivity_samples: int = 8
    sensitivity: str = "fast"
    sensitivity_top: int = 16
    latency_rounds: int = 5
    quantizer: str = "onnxruntime"
    threads: int | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, "auto"):
            raise UsageError(f"method {self.method!r}: choose one of {', '.join(METHODS)} or auto", setting="method")
        if self.quantizer not in QUANTIZERS:
            raise UsageError(f"quantizer {self.quantizer!r}: choose one of {', '.join(QUANTIZERS)}", setting="quantizer")
        if self.quantizer == "modelopt" and self.method == "percentile":
            raise UsageError("quantizer='modelopt' calibrates with minmax or entropy, not percentile", setting="quantizer")
        if self.sensitivity not in SENSITIVITY_MODES:
            raise UsageError(f"sensitivity {self.sensitivity!r}: choose fast (a proxy ranks the layers, the worst "
                             "sensitivity_top are measured) or full (every layer measured)",
                             setting=("sensitivity", "sensitivity_top"))
        for name, low in (("samples", 1), ("batch_size", 1), ("sensitivity_samples", 0), ("sensitivity_top", 1),
                          ("latency_rounds", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be a whole number >= {low}, got {value!r}", setting=name)
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}", setting="threads")
        if self.split.lower() == self.validation_split.lower():
            raise UsageError(f"split and validation_split are both {self.split!r}: calibrate on one split "
                             "and report on another, or the report flatters INT8", setting=("split", "validation_split"))

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods to try: all three for auto (modelopt: minmax and entropy)."""
        if self.method != "auto":
            return (self.method,)
        return ("minmax", "entropy") if self.quantizer == "modelopt" else METHODS

    def describe(self) -> str:
        excluded = ", ".join(self.exclude) or "none"
        return (f"{self.quantizer} quantiser, method {self.method}, up to {self.samples} {self.split} clips, report on "
                f"{self.validation_split}, symmetric int8 (per-channel weights, zero points 0), excluded: {excluded}, "
                f"sensitivity: {self.describe_sensitivity()}")

    def describe_sensitivity(self) -> str:
        """One phrase: what the layer-sensitivity step does with these settings."""
        if not self.sensitivity_samples:
            return "off"
        if self.sensitivity == "full":
            return f"full (every layer measured on {self.sensitivity_samples} clips)"
        return f"fast (proxy ranking, the worst {self.sensitivity_top} measured on {self.sensitivity_samples} clips)"
