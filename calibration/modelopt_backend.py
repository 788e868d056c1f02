"""NVIDIA ModelOpt as the quantiser (`--quantizer modelopt`), when it is installed.

ModelOpt places Q/DQ by TensorRT's own rules and calibrates with `max` (our minmax) or
`entropy`. It takes the calibration tensors as arrays in memory, so the stacked calibration
set is normalised in full here (N x the model's input size: 16.6 MB per clip for the bundled
model's float32 inputs under tensor contract 1, 5.5 MB under contract 2, whose `video` stays uint8). ModelOpt rewrites its input file, so it gets a copy. It is an optional
extra (it pins onnx and pulls onnxruntime-gpu and cupy): `pip install 'mvrt[modelopt]'`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import shutil
from pathlib import Path

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import BackendError, MissingDependencyError, UsageError

__all__ = ["quantize_modelopt", "require_modelopt"]

_METHODS = {"minmax": "max", "entropy": "entropy"}


def quantize_modelopt(model: Path, calib, config: ModelConfig, method: str, excluded: tuple[str, ...], tmp: Path):
    """The Q/DQ INT8 proto ModelOpt writes for `model` (ONNX Runtime CPU calibrates)."""
    require_modelopt()
    if method not in _METHODS:
        raise UsageError(f"quantizer='modelopt' calibrates with minmax or entropy, not {method}", setting="quantizer")
    import onnx

    out = tmp / f"modelopt-{method}.onnx"
    # ModelOpt rewrites its input in place (shape inference via infer_shapes_path): give it a copy.
    source = tmp / f"modelopt-{method}-fp32.onnx"
    shutil.copyfile(model, source)
    data = _in_memory(calib, config)
    with _modelopt_logging():
        quantize = _import_quantize()
        try:
            quantize(str(source), quantize_mode="int8", calibration_data=data,
                     calibration_method=_METHODS[method], calibration_eps=["cpu"], output_path=str(out),
                     nodes_to_exclude=[f"^{name}$" for name in excluded] or None, high_precision_dtype="fp32",
                     use_zero_point=False, log_level="WARNING")
        except Exception as exc:  # noqa: BLE001 - ModelOpt and the onnx tools under it raise many types
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise BackendError(f"{model}: ModelOpt quantisation failed: {reason}") from None
    if not out.is_file():
        raise BackendError(f"{model}: ModelOpt wrote no model to {out}")
    proto = onnx.load(str(out))
    _keep_metadata(onnx.load(str(model), load_external_data=False), proto)
    return proto


def require_modelopt() -> None:
    if importlib.util.find_spec("modelopt") is None:
        raise MissingDependencyError("nvidia-modelopt", "modelopt", "quantizer='modelopt'", setting="quantizer")


def _import_quantize():
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as exc:  # installed but broken, e.g. a CUDA-only dependency
        raise BackendError(f"nvidia-modelopt is installed but cannot be imported: {exc}; reinstall it with "
                           "`pip install --force-reinstall 'mvrt[modelopt]'`") from None
    return quantize


def _in_memory(calib, config: ModelConfig, batch_size: int = 8) -> dict[str, np.ndarray]:
    """The calibration set as one array per input (its contract's dtype: float32, or uint8 `video`), batch by batch."""
    shapes, dtypes = config.input_shapes(), config.input_dtypes()
    data = {name: np.empty((len(calib), *shapes[name]), np.dtype(dtypes[name])) for name in config.input_names}
    start = 0
    for batch in calib.batches(config, batch_size):
        count = len(batch[config.input_names[0]])
        for name in config.input_names:
            data[name][start : start + count] = batch[name]
        start += count
    return data


@contextlib.contextmanager
def _modelopt_logging():
    """ModelOpt's warnings through mvrt's log only.

    ModelOpt adds its own handler on stdout (which would break `--format json`) besides
    propagating every record, and logs an ERROR when NVML is missing although it then
    calibrates on the CPU as asked: that record is dropped, the stdout copies go nowhere.
    """
    log = logging.getLogger("modelopt.onnx")
    log.addFilter(_not_nvml_probe)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.removeFilter(_not_nvml_probe)
        for handler in log.handlers[:]:
            log.removeHandler(handler)


def _not_nvml_probe(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Failed to get GPU count")


def _keep_metadata(fp32, proto) -> None:
    """Copy the FP32 model's metadata (mvrt_config, stats) that ModelOpt does not carry over."""
    have = {p.key for p in proto.metadata_props}
    proto.metadata_props.extend(p for p in fp32.metadata_props if p.key not in have)
