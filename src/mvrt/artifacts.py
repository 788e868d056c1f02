"""The artifact vocabulary (DESIGN §5): metadata keys, the output name, precisions, file kinds.

Everything that writes or reads a checkpoint, an ONNX model or a TensorRT plan takes these
names from here, so that a writer and its reader cannot drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path

# Metadata keys (safetensors metadata, ONNX metadata_props, plan sidecars).
CONFIG_KEY = "mvrt_config"  # the model config as JSON, in every artifact
CHECKPOINT_SHA_KEY = "checkpoint_sha256"  # ONNX: the checkpoint it was exported from
PRECISION_KEY = "mvrt_precision"  # ONNX: fp32/fp16 (`mvrt export`) or int8 (`mvrt calibrate`)
FP32_OPS_KEY = "mvrt_fp32_ops"  # FP16 ONNX: the op types kept in FP32
CALIBRATION_KEY = "mvrt_calibration_sha256"  # INT8 ONNX and its plans: the calibration set's key
CALIBRATION_DETAILS_KEY = "mvrt_calibration"  # INT8 ONNX: method, quantiser, clips, excluded layers

OUTPUT_NAME = "logits"  # the one graph output, (batch, 6)

PRECISIONS = ("fp32", "fp16", "int8")  # what a graph or a plan can carry
EXPORT_PRECISIONS = ("fp32", "fp16")  # what `mvrt export` writes (INT8 comes from calibration)
TORCH_PRECISIONS = ("fp32", "fp16")  # what the torch backend computes in

CHECKPOINT_SUFFIX = ".safetensors"
ONNX_SUFFIX = ".onnx"
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
BACKEND_BY_SUFFIX = {ONNX_SUFFIX: "onnxruntime", CHECKPOINT_SUFFIX: "torch", **{s: "tensorrt" for s in PLAN_SUFFIXES}}
MODEL_SUFFIXES = tuple(BACKEND_BY_SUFFIX)


def model_suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix of a model file (`.onnx`, `.safetensors`, `.plan`, ...)."""
    return Path(path).suffix.lower()


def backend_for(path: str | os.PathLike) -> str | None:
    """The backend a model file runs on by its suffix, or None for an unknown kind of file."""
    return BACKEND_BY_SUFFIX.get(model_suffix(path))
