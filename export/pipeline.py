"""`mvrt export`: checkpoint -> checked ONNX (FP32 or FP16) -> optional TensorRT plan.

Steps: trace the checkpoint to FP32 ONNX (`export_onnx`, under tensor contract 2 by default:
uint8 `video` normalised in the graph; contract 1 for the float inputs older mvrt versions and
other tools feed), convert to FP16 if asked, record
the precision in the metadata (`mvrt_precision`, plus `mvrt_fp32_ops` for FP16), check every
op against TensorRT's ONNX parser, run the ONNX checker (full), measure parity against torch
on ONNX Runtime CPU, and only then move the file into place: a model that fails a check is
never written. With an engine path, the TensorRT builder runs last.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mvrt.artifacts import EXPORT_PRECISIONS, FP32_OPS_KEY, PRECISION_KEY
from mvrt.config import CONTRACTS
from mvrt.errors import MissingDependencyError, ModelError, UsageError
from mvrt.export.fp16 import Fp16Conversion
from mvrt.export.opcheck import OpCheckReport
from mvrt.export.parity import CHECK_BATCH, ParityReport
from mvrt.export.build_settings import TensorRTSettings

log = logging.getLogger(__name__)

DEFAULT_CONTRACT = 2
_CONTRACT_INPUTS = {1: "float32 video per pathway, as older mvrt versions and other tools feed", 2: "uint8 video"}


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and measured."""

    checkpoint: Path
    onnx_path: Path
    precision: str
    opset: int
    opcheck: OpCheckReport
    parity: ParityReport
    fp16: Fp16Conversion | None = None
    engine_path: Path | None = None
    engine_sidecar: dict | None = None
    contract: int = DEFAULT_CONTRACT

    def summary_lines(self) -> list[str]:
        lines = [f"wrote {self.onnx_path} ({self.precision}, opset {self.opset}, from {self.checkpoint.name})",
                 f"inputs: contract {self.contract} ({_CONTRACT_INPUTS[self.contract]})"]
        if self.fp16 is not None:
            kept = ", ".join(self.fp16.kept_ops) or "none"
            inputs = "float32 graph inputs" if self.contract == 1 else "float32 audio inputs, the uint8 video input"
            lines.append(f"fp16: {self.fp16.fp16_nodes} nodes in float16, {self.fp16.kept_nodes} kept in float32 "
                         f"({kept}), {self.fp16.casts_inserted} casts; {inputs} and float32 logits are kept")
        lines += [self.opcheck.summary(), self.parity.summary()]
        if self.engine_path is not None:
            lines.append(f"wrote {self.engine_path} and {self.engine_path.name}.json")
        return lines


def default_onnx_path(checkpoint: str | os.PathLike, precision: str) -> Path:
    """`<stem>.onnx` beside the checkpoint, `<stem>.fp16.onnx` for FP16."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + (".fp16.onnx" if precision == "fp16" else ".onnx"))


def export_model(checkpoint: str | os.PathLike, onnx_path: str | os.PathLike | None = None, *,
                 precision: str = "fp32", opset: int = 18, parity_batch: int = CHECK_BATCH, seed: int = 0,
                 engine_path: str | os.PathLike | None = None,
                 tensorrt: TensorRTSettings | None = None, contract: int = DEFAULT_CONTRACT) -> ExportResult:
    """Export `checkpoint` to a checked ONNX model (and a TensorRT plan when `engine_path` is given).

    `contract` is the tensor contract of the graph's inputs (DESIGN §3): 2 (default) takes the
    frames as uint8 `video` and normalises them in the graph; 1 takes float32 video per pathway.
    """
    checkpoint = Path(checkpoint)
    out = check_export_request(checkpoint, onnx_path, precision, parity_batch, engine_path, tensorrt, contract)
    log.info("export %s -> %s: precision %s, opset %d, tensor contract %d, parity batch %d (seed %d)", checkpoint, out,
             precision, opset, contract, parity_batch, seed)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"onnx_path {out}: cannot create its folder: {exc.strerror}", setting="onnx_path") from None
    with tempfile.TemporaryDirectory(prefix=".mvrt-export-", dir=out.parent) as tmp:  # same file system
        staged = Path(tmp) / out.name
        opcheck, fp16 = _stage(checkpoint, staged, out, precision, opset, contract)
        from mvrt.export.parity import onnx_parity

        parity = onnx_parity(staged, checkpoint, precision, batch=parity_batch, seed=seed)
        log.info("%s", parity.summary())
        parity.raise_if_failed(str(out))
        os.replace(staged, out)
    result = ExportResult(checkpoint, out, precision, opset, opcheck, parity, fp16, contract=contract)
    if engine_path is None:
        return result
    sidecar = _build_engine(out, Path(engine_path), tensorrt or TensorRTSettings(precision=precision), checkpoint)
    return ExportResult(checkpoint, out, precision, opset, opcheck, parity, fp16, Path(engine_path), sidecar, contract)


def check_contract(contract: object) -> int:
    """The tensor contract to export (1 or 2); anything else is a one-line UsageError."""
    if isinstance(contract, bool) or contract not in CONTRACTS:
        raise UsageError(f"contract {contract!r}: choose 2 (uint8 video, the default) or 1 (float32 video per "
                         "pathway, for older mvrt versions and other tools)", setting="contract")
    return int(contract)


def check_precision(precision: str) -> None:
    """fp32 or fp16; int8 points to `mvrt calibrate`."""
    if precision == "int8":
        raise UsageError("precision='int8' needs calibration data: run `mvrt calibrate` (it writes the Q/DQ ONNX) instead",
                         setting="precision")
    if precision not in EXPORT_PRECISIONS:
        raise UsageError(f"precision {precision!r}: choose fp32 or fp16 (INT8 comes from `mvrt calibrate`)",
                         setting="precision")


def check_export_request(checkpoint: str | os.PathLike, onnx_path: str | os.PathLike | None, precision: str,
                         parity_batch: int = CHECK_BATCH, engine_path: str | os.PathLike | None = None,
                         tensorrt: TensorRTSettings | None = None, contract: int = DEFAULT_CONTRACT) -> Path:
    """Validate an export request without doing it (TensorRT must be importable for an engine); returns the ONNX path."""
    checkpoint = Path(checkpoint)
    check_contract(contract)
    out = Path(onnx_path) if onnx_path is not None else default_onnx_path(checkpoint, precision)
    _check_request(checkpoint, out, precision, parity_batch, engine_path, tensorrt)
    _require_export_packages()
    if engine_path is not None:
        require_tensorrt()
    return out


def _check_request(checkpoint: Path, out: Path, precision: str, parity_batch: int, engine_path, tensorrt) -> None:
    check_precision(precision)
    if checkpoint.suffix.lower() != ".safetensors":
        raise UsageError(f"{checkpoint}: `mvrt export` takes a .safetensors checkpoint{_checkpoint_hint(checkpoint)}")
    if not checkpoint.is_file():
        raise ModelError(f"{checkpoint}: no such checkpoint")
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"onnx_path {out}: the output must be an .onnx file", setting="onnx_path")
    _refuse_bundled_output(out)
    if parity_batch < 1:
        raise UsageError(f"the parity batch must be at least 1, got {parity_batch}")
    if engine_path is not None and Path(engine_path).resolve() in (out.resolve(), checkpoint.resolve()):
        raise UsageError(f"engine_path {engine_path}: would overwrite the ONNX model or the checkpoint",
                         setting="engine_path")
    if tensorrt is not None and tensorrt.precision != precision:
        raise UsageError(f"TensorRT settings ask for {tensorrt.precision} but the graph is exported as {precision}")


def _require_export_packages() -> None:
    """torch traces the network and onnx checks the graph: both before any work (`pip install 'mvrt[torch]'`)."""
    for package in ("torch", "onnx"):
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, "torch", "`mvrt export`")


def _refuse_bundled_output(out: Path) -> None:
    """The bundled demo model is part of the installation: an export never writes over it."""
    from mvrt.bundled import default_model_path

    bundled = default_model_path()
    if out.resolve().parent == bundled.resolve().parent:
        raise UsageError(f"onnx_path {out}: would write into mvrt's bundled models ({bundled.parent}); "
                         f"give an output of your own, e.g. onnx_path={bundled.stem + '.onnx'!r}", setting="onnx_path")


def _checkpoint_hint(given: Path) -> str:
    """For an .onnx: export the checkpoint it came from; the bundled demo's ships beside it."""
    if given.suffix.lower() != ".onnx":
        return ""
    from mvrt.bundled import default_checkpoint_path

    bundled = default_checkpoint_path()
    return (f", not the ONNX it writes; export the checkpoint the model came from (for the bundled demo model: "
            f"`mvrt export {shlex.quote(str(bundled))} --onnx {bundled.stem}.onnx`)")


def require_tensorrt() -> None:
    """Fail before the export when no TensorRT builder can run."""
    if importlib.util.find_spec("tensorrt") is None:
        raise MissingDependencyError("tensorrt", "tensorrt", "building a TensorRT engine")
    try:
        importlib.import_module("mvrt.export.tensorrt_build")
    except ModuleNotFoundError as exc:
        if exc.name not in ("mvrt.export.tensorrt_build", "tensorrt", "cuda"):
            raise
        raise MissingDependencyError("tensorrt", "tensorrt", "building a TensorRT engine") from None


def _stage(checkpoint: Path, staged: Path, out: Path, precision: str,
           opset: int, contract: int = DEFAULT_CONTRACT) -> tuple[OpCheckReport, Fp16Conversion | None]:
    """Write the checked model to `staged` (errors name `out`); returns the op check and the FP16 conversion."""
    import onnx

    from mvrt.export.onnx_export import add_metadata, export_onnx, save_single_file
    from mvrt.export.opcheck import check_tensorrt_ops

    export_onnx(checkpoint, None, staged, opset=opset, contract=contract)
    proto = onnx.load(str(staged))
    meta = {PRECISION_KEY: precision}
    fp16 = None
    if precision == "fp16":
        from mvrt.export.fp16 import convert_to_fp16

        fp16 = convert_to_fp16(proto)
        if fp16.clamped_values:
            log.warning("fp16: %d weight value(s) beyond +-65504 were clipped to the float16 range", fp16.clamped_values)
        proto = fp16.model
        meta[FP32_OPS_KEY] = json.dumps(list(fp16.kept_ops))
    add_metadata(proto, meta)
    opcheck = check_tensorrt_ops(proto, where=str(out))
    try:
        save_single_file(proto, staged)  # runs the full ONNX checker
    except ModelError as exc:
        raise ModelError(str(exc).replace(str(staged), str(out))) from None
    return opcheck, fp16


def _build_engine(onnx_path: Path, engine_path: Path, settings: TensorRTSettings, checkpoint: Path) -> dict:
    from mvrt.export.tensorrt_build import build_engine

    log.info("tensorrt: building %s from %s: %s", engine_path, onnx_path, settings.describe())
    return build_engine(onnx_path, engine_path, settings, source=checkpoint)
