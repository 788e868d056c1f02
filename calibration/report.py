"""The calibration report: FP32 against INT8 on the validation split, as a table and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mvrt.calibration.compare import Comparison
from mvrt.calibration.latency import LatencyRow
from mvrt.calibration.sensitivity import SensitivityResult
from mvrt.errors import UsageError

__all__ = ["CalibrationReport", "render_report", "write_report"]

SHOWN_LAYERS = 10


@dataclass(frozen=True)
class CalibrationReport:
    model: Path
    int8_model: Path
    method: str
    quantizer: str
    calibration_sha256: str
    calibration_clips: int
    calibration_split: str
    validation_split: str
    excluded: tuple[str, ...]
    quantized_layers: int
    comparison: Comparison
    tried: dict[str, Comparison] = field(default_factory=dict, repr=False)
    sensitivity: SensitivityResult | None = field(default=None, repr=False)
    latency: tuple[LatencyRow, ...] = ()
    cpu_features: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict, repr=False)
    trained_on: str = ""
    notes: tuple[str, ...] = ()  # cautions (small calibration or validation set), also logged as warnings
    contract: int = 1  # tensor contract of the model's inputs (DESIGN §3)
    input_bytes_per_window: int = 0  # one window's model inputs under that contract
    stored_bytes_per_window: int = 0  # one window in the stacked calibration tensor file

    def to_dict(self) -> dict:
        return {
            "model": str(self.model), "int8_model": str(self.int8_model), "method": self.method,
            "quantizer": self.quantizer, "trained_on": self.trained_on,
            "calibration": {"sha256": self.calibration_sha256, "clips": self.calibration_clips,
                            "split": self.calibration_split, "contract": self.contract,
                            "input_bytes_per_window": self.input_bytes_per_window,
                            "stored_bytes_per_window": self.stored_bytes_per_window},
            "validation_split": self.validation_split, "excluded_layers": list(self.excluded),
            "quantized_layers": self.quantized_layers, "comparison": self.comparison.to_dict(),
            "methods_tried": {name: c.to_dict() for name, c in self.tried.items()},
            "sensitivity": self.sensitivity.to_dict() if self.sensitivity else {"mode": "off", "clips": 0, "layers": []},
            "latency_onnxruntime_cpu": {"cpu_int8_features": list(self.cpu_features),
                                        "rows": [row.to_dict() for row in self.latency]},
            "settings": self.settings,
            "notes": list(self.notes),
        }


def write_report(report: CalibrationReport, path: Path) -> Path:
    try:
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the calibration report: {exc.strerror}") from None
    return path


def render_report(report: CalibrationReport) -> str:
    """The human-readable report: comparison table, methods, sensitive layers, latency."""
    c = report.comparison
    lines = [f"INT8 ({report.method}, {report.quantizer}) against FP32 on {c.count} {report.validation_split} clips; "
             f"calibrated on {report.calibration_clips} {report.calibration_split} clips "
             f"(set sha256 {report.calibration_sha256[:12]}), {report.quantized_layers} layers quantised, "
             f"{len(report.excluded)} kept in FP32",
             "", f"{'':<16}{'FP32':>8}{'INT8':>8}",
             *(f"{name:<16}{getattr(c.fp32, attr):>8.4f}{getattr(c.int8, attr):>8.4f}"
               for name, attr in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"), ("ROC-AUC", "macro_auc"))),
             "", f"top-1 agreement {c.agreement:.4f} ({round(c.agreement * c.count)}/{c.count}), accuracy change "
             f"{-c.accuracy_drop_points:+.2f} points, |Δprobability| max {c.max_abs_dp:.4f} mean {c.mean_abs_dp:.4f}"]
    if len(report.tried) > 1:
        lines += ["", "methods tried (best by agreement, then mean |Δp|):"]
        lines += [f"  {name:<11} agreement {t.agreement:.4f}  accuracy {t.int8.accuracy:.4f}  mean |Δp| {t.mean_abs_dp:.4f}"
                  + ("  <- kept" if name == report.method else "") for name, t in report.tried.items()]
    lines += _sensitivity_lines(report.sensitivity) + _latency_lines(report) + _note_lines(report.notes)
    return "\n".join(lines)


def _sensitivity_lines(result: SensitivityResult | None) -> list[str]:
    if result is None or not result.measured:
        return []
    if result.mode == "full":
        how = f"full: every layer quantised alone on {result.clips} validation clips"
    else:
        how = (f"fast: the {len(result.measured)} layers the proxy ranks worst, each quantised alone on "
               f"{result.clips} validation clips")
    lines = ["", f"most sensitive layers ({how}; keep them in FP32 with --exclude NAME):",
             f"  {'mean|Δp|':>9} {'max|Δp|':>8} {'flips':>5}  layer"]
    lines += [f"  {s.mean_abs_dp:>9.5f} {s.max_abs_dp:>8.5f} {s.flips:>5}  {s.node} ({s.op_type})"
              for s in result.measured[:SHOWN_LAYERS]]
    if result.unmeasured:
        lines.append(f"  the other {result.unmeasured} quantised layers were ranked by the proxy only ("
                     f"{result.describe_proxy()}), not measured on all clips; --sensitivity full measures every layer")
    return lines


def _note_lines(notes: tuple[str, ...]) -> list[str]:
    return ["", "notes:", *(f"  - {note}" for note in notes)] if notes else []


def _latency_lines(report: CalibrationReport) -> list[str]:
    if not report.latency:
        return []
    features = ", ".join(report.cpu_features) or "unknown"
    lines = ["", f"latency on ONNX Runtime CPU (median of alternating calls; CPU int8 features: {features}):"]
    for row in report.latency:
        verdict = "faster" if row.speedup > 1 else "SLOWER"
        lines.append(f"  batch {row.batch_size}: FP32 {row.fp32_ms:.1f} ms, INT8 {row.int8_ms:.1f} ms "
                     f"-> INT8 is {row.speedup:.2f}x ({verdict})")
    if any(row.speedup <= 1 for row in report.latency) and not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(report.cpu_features):
        lines.append("  this CPU has no VNNI, so ONNX Runtime's int8 kernels cannot beat float32 here; the INT8 model "
                     "is meant for TensorRT (--engine) or a VNNI CPU")
    return lines
