"""`mvrt calibrate`: FP32 ONNX + MVED -> checked Q/DQ INT8 ONNX, its report, optionally a plan.

Steps: draw calibration clips evenly across classes and stack their front-end tensors (cached);
compute FP32 logits on the validation split; per method, collect activation ranges, quantise,
and compare INT8 with FP32 on validation; keep the best; rank layers by sensitivity; check the
INT8 graph (ONNX checker, TensorRT's parser op table), write it with its calibration metadata
and the JSON report; time INT8 against FP32 on ONNX Runtime CPU; build a TensorRT plan if asked.

The request is resolved and checked once into a `_Run` (before any work); each step reads it
and hands on a small frozen result (`_Validation`, `_Quantised`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from mvrt.artifacts import CALIBRATION_DETAILS_KEY as DETAILS_KEY, CALIBRATION_KEY, PRECISION_KEY
from mvrt.calibration.compare import Comparison, compare_logits
from mvrt.calibration.notes import calibration_notes, validation_notes
from mvrt.calibration.report import CalibrationReport, write_report
from mvrt.calibration.settings import CalibrationSettings
from mvrt.config import ModelConfig
from mvrt.errors import ModelError, UsageError
from mvrt.evaluation.evaluate import run_logits

if TYPE_CHECKING:
    import onnx

    from mvrt.calibration.dataset import CalibrationSet
    from mvrt.calibration.ranges import RangeSet
    from mvrt.calibration.sensitivity import SensitivityResult
    from mvrt.export.build_settings import TensorRTSettings

__all__ = ["CalibrationResult", "calibrate", "default_int8_path", "report_path_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationResult:
    int8_path: Path
    report_path: Path
    report: CalibrationReport
    engine_path: Path | None = None


@dataclass(frozen=True)
class _Run:
    """One calibration request, resolved and checked before any work: what every step reads."""

    model: Path  # the FP32 ONNX model
    out: Path  # the INT8 ONNX model to write
    root: Path  # the data root, with the calibration and validation splits
    config: ModelConfig  # the FP32 model's
    settings: CalibrationSettings
    fp32: "onnx.ModelProto" = field(repr=False)  # read once: exclusions and sensitivity both need it
    excluded: tuple[str, ...]  # node names kept in FP32
    cache: Path  # the feature cache
    progress: bool
    engine: Path | None = None  # the TensorRT plan to build, if any
    tensorrt: "TensorRTSettings | None" = None


@dataclass(frozen=True)
class _Validation:
    """The validation split's cached clips (labels, entry files) and the FP32 model's logits on them."""

    labels: np.ndarray
    entries: tuple[Path, ...]
    fp32_logits: np.ndarray


@dataclass(frozen=True)
class _Quantised:
    """Every method tried (its comparison with FP32 on validation) and the kept one's Q/DQ graph."""

    method: str
    tried: dict[str, Comparison]
    proto: "onnx.ModelProto" = field(repr=False)

    @property
    def comparison(self) -> Comparison:
        return self.tried[self.method]


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
        raise UsageError(f"out {out}: the INT8 model must be an .onnx file", setting="out")
    if out.resolve() == model.resolve():
        raise UsageError(f"out {out}: would overwrite the FP32 model", setting="out")
    return config


def calibrate(model: str | os.PathLike, data_root: str | os.PathLike, settings: CalibrationSettings | None = None, *,
              out: str | os.PathLike | None = None, engine: str | os.PathLike | None = None,
              tensorrt: "TensorRTSettings | None" = None, progress: bool = True) -> CalibrationResult:
    """Calibrate `model` on `<data_root>/<split>` and report on the validation split."""
    from mvrt.calibration.quantize import collapsed_bias_warnings

    run = _resolve(model, data_root, settings or CalibrationSettings(), out, engine, tensorrt, progress)
    calib = _calibration_set(run)
    notes = _warn(calibration_notes(calib.labels, run.config.classes, run.settings.methods))
    validation = _validation(run)
    with tempfile.TemporaryDirectory(prefix=".mvrt-calibrate-", dir=_staging_dir(run.out)) as tmp:
        with collapsed_bias_warnings():  # one summary line for all methods tried
            kept = _try_methods(run, calib, validation, Path(tmp))
        sensitivity = _sensitivity(run, kept.proto, validation)
        _finish_proto(run, kept, calib)
        _write_int8(kept.proto, Path(tmp) / run.out.name, run.out)
    best = kept.comparison
    notes += _warn(validation_notes(round(best.agreement * best.count), best.count, len(kept.tried)))
    report = _report(run, calib, kept, sensitivity, notes)
    report_path = write_report(report, report_path_for(run.out))
    engine_path = _build_engine(run) if run.engine is not None else None
    return CalibrationResult(run.out, report_path, report, engine_path)


def _resolve(model: str | os.PathLike, data_root: str | os.PathLike, settings: CalibrationSettings,
             out: str | os.PathLike | None, engine: str | os.PathLike | None, tensorrt: "TensorRTSettings | None",
             progress: bool) -> _Run:
    """Every check that can fail before calibrating, in the order a user meets them."""
    from mvrt.calibration.quantize import require_onnx

    require_onnx()
    model_path, root = Path(model), Path(data_root)
    out_path = Path(out) if out is not None else default_int8_path(model_path)
    config = check_model(model_path, out_path)
    fp32 = _load_graph(model_path)
    excluded = _excluded(fp32, model_path, settings.exclude)  # a pattern that matches nothing fails before any work
    engine_path = Path(engine) if engine is not None else None
    if engine_path is not None:
        _check_engine_request(out_path, engine_path, tensorrt)
    if settings.quantizer == "modelopt":
        from mvrt.calibration.modelopt_backend import require_modelopt

        require_modelopt()
    cache = settings.cache_dir if settings.cache_dir is not None else root / ".mvrt-cache"
    return _Run(model=model_path, out=out_path, root=root, config=config, settings=settings, fp32=fp32,
                excluded=excluded, cache=cache, progress=progress, engine=engine_path, tensorrt=tensorrt)


def _warn(notes: list[str]) -> list[str]:
    """Log each caution as a warning now; the report keeps them too."""
    for note in notes:
        log.warning("%s", note)
    return notes


def _load_graph(model: Path) -> "onnx.ModelProto":
    import onnx

    try:
        return onnx.load(str(model))
    except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise many types for a damaged file
        raise ModelError(f"{model}: cannot read the ONNX graph: {' '.join(str(exc).split())}") from None


def _staging_dir(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"out {out}: cannot create its folder: {exc.strerror}", setting="out") from None
    return out.parent


def _calibration_set(run: _Run) -> "CalibrationSet":
    from mvrt.calibration.dataset import build_calibration_set, select_clips
    from mvrt.data import discover

    clips = select_clips(discover(run.root, run.settings.split), run.settings.samples)
    from mvrt.calibration.dataset import input_bytes_per_window

    classes = len({clip.label for clip in clips})
    log.info("calibration: %d %s clips from %d classes; tensor contract %d, %d input bytes per window",
             len(clips), run.settings.split, classes, run.config.contract, input_bytes_per_window(run.config))
    return build_calibration_set(clips, run.config, run.cache, progress=run.progress)


def _validation(run: _Run) -> _Validation:
    """The validation split's clips through the feature cache, and the FP32 logits on them."""
    from mvrt.clip_cache import FeatureCache
    from mvrt.data import discover

    split = run.settings.validation_split
    clips = discover(run.root, split)
    report = FeatureCache(run.cache, run.config).build(clips, progress=run.progress, desc=f"features {split}")
    if not report.entries:
        raise UsageError(f"no {split} clip could be decoded ({report.failed_count} failed)")
    labels = np.array([clip.label for clip, _ in report.entries])
    entries = tuple(p for _, p in report.entries)
    return _Validation(labels, entries, _logits(run, run.model, entries, "FP32 validation"))


def _batches(run: _Run, entries: tuple[Path, ...]) -> Iterator[dict[str, np.ndarray]]:
    """The network inputs of `entries`, `batch_size` clips at a time."""
    from mvrt.clip_cache import load_batch

    size = run.settings.batch_size
    for i in range(0, len(entries), size):
        yield load_batch(entries[i : i + size], run.config)


def _logits(run: _Run, path: Path, entries: tuple[Path, ...], desc: str) -> np.ndarray:
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(path, providers="cpu", threads=run.settings.threads) as engine:
        return run_logits(engine, _batches(run, entries), total=len(entries), desc=desc, progress=run.progress)


def _try_methods(run: _Run, calib: "CalibrationSet", validation: _Validation, tmp: Path) -> _Quantised:
    """Quantise with each method and compare it with FP32 on validation; keep the one that agrees best."""
    ranges = _ranges(run, calib)
    tried: dict[str, Comparison] = {}
    protos = {}
    for method in run.settings.methods:
        protos[method] = _quantize(run, calib, method, ranges, tmp)
        path = tmp / f"{method}.onnx"
        path.write_bytes(protos[method].SerializeToString())
        int8_logits = _logits(run, path, validation.entries, f"INT8 {method} validation")
        tried[method] = compare_logits(validation.labels, validation.fp32_logits, int8_logits,
                                       tuple(run.config.classes))
        log.info("calibration %s: agreement %.4f, mean |dp| %.4f", method, tried[method].agreement, tried[method].mean_abs_dp)
    best = min(tried, key=lambda m: (-tried[m].agreement, tried[m].mean_abs_dp))
    return _Quantised(best, tried, protos[best])


def _excluded(fp32: "onnx.ModelProto", model: Path, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Node names the `exclude` patterns name (checked against the FP32 graph)."""
    from mvrt.calibration.quantize import resolve_excludes

    return resolve_excludes(fp32, patterns, str(model)) if patterns else ()


def _ranges(run: _Run, calib: "CalibrationSet") -> "RangeSet | None":
    """One minmax pass, plus one histogram pass when entropy or percentile is asked (None for modelopt)."""
    settings = run.settings
    if settings.quantizer == "modelopt":
        return None
    from mvrt.calibration.quantize import OP_TYPES
    from mvrt.calibration.ranges import collect_ranges

    return collect_ranges(run.model, lambda: calib.batches(run.config, settings.batch_size), settings.methods, OP_TYPES,
                          total_samples=len(calib), threads=settings.threads, progress=run.progress)


def _quantize(run: _Run, calib: "CalibrationSet", method: str, ranges: "RangeSet | None",
              tmp: Path) -> "onnx.ModelProto":
    """The Q/DQ proto of one method."""
    if ranges is None:
        from mvrt.calibration.modelopt_backend import quantize_modelopt

        return quantize_modelopt(run.model, calib, run.config, method, run.excluded, tmp)
    from mvrt.calibration.quantize import quantize_qdq

    return quantize_qdq(run.model, ranges.tensors_data(method), exclude=run.excluded)


def _sensitivity(run: _Run, proto: "onnx.ModelProto", validation: _Validation) -> "SensitivityResult | None":
    """Per-layer sensitivity on the first validation clips (None when switched off)."""
    settings = run.settings
    count = min(settings.sensitivity_samples, len(validation.labels))
    if count == 0:
        return None
    from mvrt.calibration.quantize import quantized_nodes
    from mvrt.calibration.sensitivity import measure_sensitivity
    from mvrt.clip_cache import load_batch
    from mvrt.runtime.engines.onnxruntime_engine import physical_cores

    feeds = load_batch(validation.entries[:count], run.config)
    return measure_sensitivity(run.fp32, proto, quantized_nodes(proto), feeds, validation.fp32_logits[:count],
                               mode=settings.sensitivity, top=settings.sensitivity_top, batch_size=settings.batch_size,
                               threads=settings.threads or physical_cores(), progress=run.progress)


def _finish_proto(run: _Run, kept: _Quantised, calib: "CalibrationSet") -> None:
    """Record precision and calibration in the kept graph's metadata (DESIGN §5)."""
    import onnxruntime

    from mvrt.export.onnx_export import add_metadata

    details = {"method": kept.method, "quantizer": run.settings.quantizer, "onnxruntime": onnxruntime.__version__,
               "clips": len(calib), "split": run.settings.split, "symmetric": True, "per_channel_weights": True,
               "excluded_layers": list(run.excluded)}
    add_metadata(kept.proto, {PRECISION_KEY: "int8", CALIBRATION_KEY: calib.sha256, DETAILS_KEY: json.dumps(details)})


def _write_int8(proto: "onnx.ModelProto", staged: Path, out: Path) -> None:
    """Check the graph (TensorRT's parser op table, ONNX checker) and move it into place."""
    from mvrt.export.onnx_export import save_single_file
    from mvrt.export.opcheck import check_tensorrt_ops

    check_tensorrt_ops(proto, where=str(out))
    try:
        save_single_file(proto, staged)
    except ModelError as exc:
        raise ModelError(str(exc).replace(str(staged), str(out))) from None
    os.replace(staged, out)


def _report(run: _Run, calib: "CalibrationSet", kept: _Quantised, sensitivity: "SensitivityResult | None",
            notes: list[str]) -> CalibrationReport:
    from mvrt.calibration.dataset import input_bytes_per_window
    from mvrt.calibration.latency import cpu_int8_features, measure_latency
    from mvrt.calibration.quantize import quantized_nodes

    settings = run.settings
    latency = ()
    if settings.latency_rounds:
        latency = tuple(measure_latency(run.model, run.out, (1, settings.batch_size), rounds=settings.latency_rounds,
                                        threads=settings.threads, progress=run.progress))
    return CalibrationReport(
        model=run.model, int8_model=run.out, method=kept.method, quantizer=settings.quantizer,
        calibration_sha256=calib.sha256, calibration_clips=len(calib), calibration_split=settings.split,
        validation_split=settings.validation_split, excluded=run.excluded,
        quantized_layers=len(quantized_nodes(kept.proto)), comparison=kept.comparison, tried=kept.tried,
        sensitivity=sensitivity, latency=latency, cpu_features=tuple(cpu_int8_features()),
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        trained_on=run.config.trained_on, notes=tuple(notes), contract=run.config.contract,
        input_bytes_per_window=input_bytes_per_window(run.config), stored_bytes_per_window=calib.stored_bytes_per_window)


def _check_engine_request(out: Path, engine: Path, tensorrt: "TensorRTSettings | None") -> None:
    """Fail before calibrating when the plan cannot be built."""
    from mvrt.export.pipeline import require_tensorrt

    if engine.resolve() == out.resolve():
        raise UsageError(f"engine {engine}: would overwrite the INT8 model", setting="engine")
    if tensorrt is not None and tensorrt.precision != "int8":
        raise UsageError(f"TensorRT settings ask for {tensorrt.precision}, but a calibrated graph is int8")
    require_tensorrt()


def _build_engine(run: _Run) -> Path:
    from mvrt.export.build_settings import TensorRTSettings
    from mvrt.export.tensorrt_build import build_engine

    settings = run.tensorrt or TensorRTSettings(precision="int8")
    log.info("tensorrt: building %s from %s: %s", run.engine, run.out, settings.describe())
    build_engine(run.out, run.engine, settings, source=run.out)
    return run.engine
