"""NVIDIA ModelOpt as the quantiser (`--quantizer modelopt`), when it is installed.

ModelOpt places Q/DQ by TensorRT's own rules and calibrates with `max` (our minmax) or
`entropy`. It takes the calibration tensors as arrays in memory, so the stacked calibration
set is normalised in full here (N x the model's input size in float32). It is an optional
extra (it pins onnx and pulls onnxruntime-gpu and cupy): `pip install nvidia-modelopt[onnx]`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import BackendError, MissingDependencyError, UsageError

__all__ = ["quantize_modelopt"]

_METHODS = {"minmax": "max", "entropy": "entropy"}


def quantize_modelopt(model: Path, calib, config: ModelConfig, method: str, excluded: tuple[str, ...], tmp: Path):
    """The Q/DQ INT8 proto ModelOpt writes for `model` (ONNX Runtime CPU calibrates)."""
    if importlib.util.find_spec("modelopt") is None:
        raise MissingDependencyError("nvidia-modelopt", "modelopt", "--quantizer modelopt")
    if method not in _METHODS:
        raise UsageError(f"--quantizer modelopt calibrates with minmax or entropy, not {method}")
    import onnx
    from modelopt.onnx.quantization import quantize

    batches = list(calib.batches(config, len(calib)))
    data = {name: np.concatenate([b[name] for b in batches]) for name in config.input_names}
    out = tmp / f"modelopt-{method}.onnx"
    try:
        quantize(str(model), quantize_mode="int8", calibration_data=data, calibration_method=_METHODS[method],
                 calibration_eps=["cpu"], nodes_to_exclude=[f"^{name}$" for name in excluded] or None,
                 output_path=str(out), high_precision_dtype="fp32", use_zero_point=False)
    except (RuntimeError, ValueError) as exc:
        raise BackendError(f"{model}: ModelOpt quantisation failed: {' '.join(str(exc).split())}") from None
    if not out.is_file():
        raise BackendError(f"{model}: ModelOpt wrote no model to {out}")
    return onnx.load(str(out))
