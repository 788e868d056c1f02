"""`mvrt calibrate`: FP32 ONNX + MVED -> checked Q/DQ INT8 ONNX, its report, optionally a plan.

Steps: draw calibration clips evenly across classes and stack their front-end tensors (cached);
compute FP32 logits on the validation split; per method, collect activation ranges, quantise,
and compare INT8 with FP32 on validation; keep the best; rank layers by sensitivity; check the
INT8 graph (ONNX checker, TensorRT's parser op table), write it with its calibration metadata
and the JSON report; time INT8 against FP32 on ONNX Runtime CPU; build a TensorRT plan if asked.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mvrt.artifacts import CALIBRATION_DETAILS_KEY as DETAILS_KEY, CALIBRATION_KEY, PRECISION_KEY
from mvrt.calibration.compare import Comparison, compare_logits
from mvrt.calibration.notes import calibration_notes, validation_notes
from mvrt.calibration.report import CalibrationReport, write_report
from mvrt.calibration.settings import CalibrationSettings
from mvrt.config import ModelConfig
from mvrt.errors import ModelError, UsageError
from mvrt.evaluation.evaluate import run_logits

__all__ = ["CalibrationResult", "calibrate", "default_int8_path", "report_path_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationResult:
    int8_path: Path
    report_path: Path
    report: CalibrationReport
    engine_path: Path | None = None


@dataclass(frozen=True)
class _Validation:
    """The validation split's cached clips: labels and the entry files, read batch by batch."""

    labels: np.ndarray
    entries: tuple[Path, ...]
    config: ModelConfig
    batch_size: int

    def batches(self):
        from mvrt.clip_cache import load_batch

        for i in range(0, len(self.entries), self.batch_size):
            yield load_batch(self.entries[i : i + self.batch_size], self.config)


def default_int8_path(model: str | os.PathLike) -> Path:
    """`<stem>.int8.onnx` beside the FP32 model."""
    model = Path(model)
    return model.with_name(model.stem + ".int8.onnx")


def report_path_for(int8_path: Path) -> Path:
    """`<int8 stem>.report.json` beside the INT8 model."""
    return int8_path.with_name(int8_path.stem + ".report.json")


def check_model(model: Path, out: Path) -> ModelConfig:
    """The FP32 ONNX model's config; any other input is a one-line error."""
    from mvrt.runtime.model_meta import read_onnx_config, read_onnx_metadata

    if model.suffix.lower() != ".onnx":
        raise UsageError(f"{model}: `mvrt calibrate` takes an FP32 .onnx model; export a checkpoint with `mvrt export` first")
    if not model.is_file():
        raise ModelError(f"{model}: no such model file")
    config = read_onnx_config(model)
    precision = read_onnx_metadata(model).get(PRECISION_KEY, "fp32")
    if precision != "fp32":
        raise UsageError(f"{model}: the graph is {precision}; calibrate the FP32 export (`mvrt export CHECKPOINT`)")
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"--out {out}: the INT8 model must be an .onnx file")
    if out.resolve() == model.resolve():
        raise UsageError(f"--out {out}: would overwrite the FP32 model")
    return config


def calibrate(model: str | os.PathLike, data_root: str | os.PathLike, settings: CalibrationSettings | None = None, *,
              out: str | os.PathLike | None = None, engine: str | os.PathLike | None = None, tensorrt=None,
              progress: bool = True) -> CalibrationResult:
    """Calibrate `model` on `<data_root>/<split>` and report on the validation split."""
    from mvrt.calibration.quantize import collapsed_bias_warnings, require_onnx
    from mvrt.data import discover

    settings = settings or CalibrationSettings()
    require_onnx()
    model, root = Path(model), Path(data_root)
    out = Path(out) if out is not None else default_int8_path(model)
    config = check_model(model, out)
    fp32 = _load_graph(model)  # read once: exclusions and sensitivity both need it
    excluded = _excluded(fp32, model, settings.exclude)  # a pattern that matches nothing fails before any work
    if engine is not None:
        _check_engine_request(out, Path(engine), tensorrt)
    if settings.quantizer == "modelopt":
        from mvrt.calibration.modelopt_backend import require_modelopt

        require_modelopt()
    cache = settings.cache_dir if settings.cache_dir is not None else root / ".mvrt-cache"
    calib = _calibration_set(root, config, settings, cache, progress)
    notes = _warn(calibration_notes(calib.labels, config.classes, settings.methods))
    validation = _validation(discover(root, settings.validation_split), config, settings, cache, progress)
    fp32_logits = _logits(model, validation, settings, "FP32 validation", progress)
    with tempfile.TemporaryDirectory(prefix=".mvrt-calibrate-", dir=_staging_dir(out)) as tmp:
        with collapsed_bias_warnings():  # one summary line for all methods tried
            best, tried, proto = _try_methods(model, calib, validation, fp32_logits, settings, excluded, Path(tmp),
                                              progress)
        sensitivity = _sensitivity(fp32, proto, validation, fp32_logits, settings, progress)
        _finish_proto(proto, calib.sha256, best, excluded, settings, len(calib))
        _write_int8(proto, Path(tmp) / out.name, out)
    notes += _warn(validation_notes(round(tried[best].agreement * tried[best].count), tried[best].count, len(tried)))
    report = _report(model, out, config, settings, calib, best, tried, excluded, proto, sensitivity, notes, progress)
    report_path = write_report(report, report_path_for(out))
    engine_path = _build_engine(out, Path(engine), tensorrt) if engine is not None else None
    return CalibrationResult(out, report_path, report, engine_path)


def _warn(notes: list[str]) -> list[str]:
    """Log each caution as a warning now; the report keeps them too."""
    for note in notes:
        log.warning("%s", note)
    return notes


def _load_graph(model: Path):
    import onnx

    try:
        return onnx.load(str(model))
    except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise many types for a damaged file
        raise ModelError(f"{model}: cannot read the ONNX graph: {' '.join(str(exc).split())}") from None


def _staging_dir(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create its folder: {exc.strerror}") from None
    return out.parent


def _calibration_set(root: Path, config: ModelConfig, settings: CalibrationSettings, cache: Path, progress: bool):
    from mvrt.calibration.dataset import build_calibration_set, select_clips
    from mvrt.data import discover

    clips = select_clips(discover(root, settings.split), settings.samples)
    classes = len({clip.label for clip in clips})
    log.info("calibration: %d %s clips from %d classes", len(clips), settings.split, classes)
    return build_calibration_set(clips, config, cache, progress=progress)


def _validation(clips, config: ModelConfig, settings: CalibrationSettings, cache: Path, progress: bool) -> _Validation:
    from mvrt.clip_cache import FeatureCache

    report = FeatureCache(cache, config).build(clips, progress=progress, desc=f"features {settings.validation_split}")
    if not report.entries:
        raise UsageError(f"no {settings.validation_split} clip could be decoded ({report.failed_count} failed)")
    labels = np.array([clip.label for clip, _ in report.entries])
    return _Validation(labels, tuple(p for _, p in report.entries), config, settings.batch_size)


def _logits(path: Path, validation: _Validation, settings: CalibrationSettings, desc: str, progress: bool) -> np.ndarray:
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(path, providers="cpu", threads=settings.threads) as engine:
        return run_logits(engine, validation.batches(), total=len(validation.labels), desc=desc, progress=progress)


def _try_methods(model: Path, calib, validation: _Validation, fp32_logits: np.ndarray, settings: CalibrationSettings,
                 excluded: tuple[str, ...], tmp: Path, progress: bool):
    """Quantise with each method; returns (best method, {method: Comparison}, best proto)."""
    ranges = _ranges(model, calib, validation.config, settings, progress)
    tried: dict[str, Comparison] = {}
    protos = {}
    for method in settings.methods:
        protos[method] = _quantize(model, calib, validation.config, method, ranges, excluded, tmp)
        path = tmp / f"{method}.onnx"
        path.write_bytes(protos[method].SerializeToString())
        int8_logits = _logits(path, validation, settings, f"INT8 {method} validation", progress)
        tried[method] = compare_logits(validation.labels, fp32_logits, int8_logits, tuple(validation.config.classes))
        log.info("calibration %s: agreement %.4f, mean |dp| %.4f", method, tried[method].agreement, tried[method].mean_abs_dp)
    best = min(tried, key=lambda m: (-tried[m].agreement, tried[m].mean_abs_dp))
    return best, tried, protos[best]


def _excluded(fp32, model: Path, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Node names the `--exclude` patterns name (checked against the FP32 graph)."""
    from mvrt.calibration.quantize import resolve_excludes

    return resolve_excludes(fp32, patterns, str(model)) if patterns else ()


def _ranges(model: Path, calib, config: ModelConfig, settings: CalibrationSettings, progress: bool):
    """One minmax pass, plus one histogram pass when entropy or percentile is asked (None for modelopt)."""
    if settings.quantizer == "modelopt":
        return None
    from mvrt.calibration.quantize import OP_TYPES
    from mvrt.calibration.ranges import collect_ranges

    return collect_ranges(model, lambda: calib.batches(config, settings.batch_size), settings.methods, OP_TYPES,
                          total_samples=len(calib), threads=settings.threads, progress=progress)


def _quantize(model: Path, calib, config: ModelConfig, method: str, ranges, excluded: tuple[str, ...], tmp: Path):
    """The Q/DQ proto of one method."""
    if ranges is None:
        from mvrt.calibration.modelopt_backend import quantize_modelopt

        return quantize_modelopt(model, calib, config, method, excluded, tmp)
    from mvrt.calibration.quantize import quantize_qdq

    return quantize_qdq(model, ranges.tensors_data(method), exclude=excluded)


def _sensitivity(fp32, proto, validation: _Validation, fp32_logits: np.ndarray, settings: CalibrationSettings,
                 progress: bool):
    """Per-layer sensitivity on the first validation clips (None when switched off)."""
    count = min(settings.sensitivity_samples, len(validation.labels))
    if count == 0:
        return None
    from mvrt.calibration.quantize import quantized_nodes
    from mvrt.calibration.sensitivity import measure_sensitivity
    from mvrt.clip_cache import load_batch
    from mvrt.runtime.engines.onnxruntime_engine import physical_cores

    feeds = load_batch(validation.entries[:count], validation.config)
    return measure_sensitivity(fp32, proto, quantized_nodes(proto), feeds, fp32_logits[:count],
                               mode=settings.sensitivity, top=settings.sensitivity_top, batch_size=settings.batch_size,
                               threads=settings.threads or physical_cores(), progress=progress)


def _finish_proto(proto, calibration_sha256: str, method: str, excluded: tuple[str, ...],
                  settings: CalibrationSettings, clips: int) -> None:
    """Record precision and calibration in the metadata (DESIGN §5)."""
    import onnxruntime

    from mvrt.export.onnx_export import add_metadata

    details = {"method": method, "quantizer": settings.quantizer, "onnxruntime": onnxruntime.__version__,
               "clips": clips, "split": settings.split, "symmetric": True, "per_channel_weights": True,
               "excluded_layers": list(excluded)}
    add_metadata(proto, {PRECISION_KEY: "int8", CALIBRATION_KEY: calibration_sha256, DETAILS_KEY: json.dumps(details)})


def _write_int8(proto, staged: Path, out: Path) -> None:
    """Check the graph (TensorRT's parser op table, ONNX checker) and move it into place."""
    from mvrt.export.onnx_export import save_single_file
    from mvrt.export.opcheck import check_tensorrt_ops

    check_tensorrt_ops(proto, where=str(out))
    try:
        save_single_file(proto, staged)
    except ModelError as exc:
        raise ModelError(str(exc).replace(str(staged), str(out))) from None
    os.replace(staged, out)


def _report(model: Path, out: Path, config: ModelConfig, settings: CalibrationSettings, calib, best: str,
            tried: dict, excluded: tuple[str, ...], proto, sensitivity, notes: list[str],
            progress: bool) -> CalibrationReport:
    from mvrt.calibration.latency import cpu_int8_features, measure_latency
    from mvrt.calibration.quantize import quantized_nodes

    latency = ()
    if settings.latency_rounds:
        latency = tuple(measure_latency(model, out, (1, settings.batch_size), rounds=settings.latency_rounds,
                                        threads=settings.threads, progress=progress))
    quantized = len(quantized_nodes(proto))
    return CalibrationReport(
        model, out, best, settings.quantizer, calib.sha256, len(calib), settings.split, settings.validation_split,
        excluded, quantized, tried[best], tried, sensitivity, latency, tuple(cpu_int8_features()),
        {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}, config.trained_on, tuple(notes))


def _check_engine_request(out: Path, engine: Path, tensorrt) -> None:
    """Fail before calibrating when the plan cannot be built."""
    from mvrt.export.pipeline import require_tensorrt

    if engine.resolve() == out.resolve():
        raise UsageError(f"--engine {engine}: would overwrite the INT8 model")
    if tensorrt is not None and tensorrt.precision != "int8":
        raise UsageError(f"TensorRT settings ask for {tensorrt.precision}, but a calibrated graph is int8")
    require_tensorrt()


def _build_engine(onnx_path: Path, engine: Path, tensorrt) -> Path:
    from mvrt.export.build_settings import TensorRTSettings
    from mvrt.export.tensorrt_build import build_engine

    settings = tensorrt or TensorRTSettings(precision="int8")
    log.info("tensorrt: building %s from %s: %s", engine, onnx_path, settings.describe())
    build_engine(onnx_path, engine, settings, source=onnx_path)
    return engine
