"""(Re)build only the TensorRT plan of an mvrt ONNX graph: `mvrt export MODEL.onnx --engine OUT.plan`.

For graphs mvrt already wrote and checked (`mvrt export`, or the INT8 Q/DQ graph of `mvrt
calibrate`): no re-export and no parity check, the graph is used as it is. Its precision is the
graph's (metadata `mvrt_precision`), and its metadata must hold an mvrt model config. This is what
a plan's sidecar names as the rebuild command for plans built from an `.onnx`
(runtime/engines/sidecar.py `rebuild_command`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mvrt.artifacts import PRECISION_KEY, PRECISIONS
from mvrt.errors import ModelError, UsageError
from mvrt.export.build_settings import TensorRTSettings
from mvrt.runtime.model_meta import read_model_config, read_onnx_metadata

log = logging.getLogger(__name__)


def graph_precision(onnx_path: str | os.PathLike) -> str:
    """The precision an mvrt ONNX graph was written in (ModelError when it is not an mvrt model)."""
    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise UsageError(f"{onnx_path}: a TensorRT plan is built from an .onnx model")
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such ONNX model")
    read_model_config(onnx_path)  # ModelError unless its metadata holds an mvrt model config
    precision = read_onnx_metadata(onnx_path).get(PRECISION_KEY, "fp32")
    if precision not in PRECISIONS:
        raise ModelError(f"{onnx_path}: unknown {PRECISION_KEY} {precision!r} in its metadata "
                         f"(expected {', '.join(PRECISIONS)})")
    return precision


def check_rebuild_request(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                          settings: TensorRTSettings | None = None) -> TensorRTSettings:
    """Validate a plan-only build without TensorRT; returns the settings (default: the graph's precision)."""
    from mvrt.export.tensorrt_build import prepare

    precision = graph_precision(onnx_path)
    settings = settings if settings is not None else TensorRTSettings(precision=precision)
    prepare(onnx_path, engine_path, settings)  # precision, batch, workspace, DLA core, paths
    return settings


def build_plan_from_onnx(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                         settings: TensorRTSettings | None = None, source: str | os.PathLike | None = None,
                         device: int = 0) -> dict:
    """Build `engine_path` (+ sidecar) from the mvrt graph `onnx_path`; returns the sidecar dict.

    `settings` default to the graph's precision and the builder's defaults; their precision must be
    the graph's. `source` is recorded in the sidecar (default: `onnx_path`, so the rebuild command
    is this same build). Every check runs before TensorRT is looked for.
    """
    from mvrt.export.pipeline import require_tensorrt

    settings = check_rebuild_request(onnx_path, engine_path, settings)
    require_tensorrt()
    from mvrt.export.tensorrt_build import build_engine

    log.info("tensorrt: building %s from %s (the graph as it is, no re-export): %s", engine_path, onnx_path,
             settings.describe())
    return build_engine(onnx_path, engine_path, settings, source=source if source is not None else onnx_path,
                        device=device)
