"""Parity of an exported ONNX model (run on ONNX Runtime CPU) against the torch checkpoint.

Both run the same seeded random batch shaped per the model config: audio channel 0 ~ N(0, 1)
(a normalised log-mel), channel 1 uniform in [-pi, pi] (phase), video ~ N(0, 1). Reported:
max |Δlogits|, that difference relative to the logit scale, and top-1 agreement.

The logit scale is the largest centred logit of the reference, max |z - mean_classes(z)|:
softmax ignores a per-sample offset, so the centred spread is what decides the label, and an
untrained model's tiny logits are judged by their own scale. Top-1 agreement counts a sample
as agreeing when the candidate's class is the reference's or is tied with it within the
bound (reference logit within max_relative * scale of the best): random inputs can give
near-ties that no precision bound should fail on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import ModelError

if TYPE_CHECKING:
    import torch

CHECK_BATCH = 8


@dataclass(frozen=True)
class ParityTolerance:
    """Bounds a conversion must meet on the check batch."""

    max_relative: float  # max |Δlogits| / logit scale
    min_top1: float  # fraction of samples whose top-1 class agrees with torch


# FP32: ONNX Runtime and torch differ only in summation order (measured <= 1.1e-6 relative).
FP32_TOLERANCE = ParityTolerance(max_relative=1e-4, min_top1=1.0)
# FP16: measured 0.9-1.5e-3 (ORT CPU) and 1.4-2.3e-3 (torch CUDA half) on the full-size
# networks, ~1e-3 on the tiny ones; flipping the sign of one conv weight tensor of the
# full-size graphs moved the logits by 0.039-0.22 of their scale (README).
FP16_TOLERANCE = ParityTolerance(max_relative=1e-2, min_top1=1.0)
TOLERANCES = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE}


@dataclass(frozen=True)
class ParityReport:
    """Comparison of candidate logits with the torch FP32 reference on one batch."""

    precision: str
    batch: int
    max_abs_diff: float
    logit_scale: float
    top1_agreement: float
    tolerance: ParityTolerance

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / self.logit_scale if self.logit_scale > 0 else float("inf")

    @property
    def passed(self) -> bool:
        return self.relative_diff <= self.tolerance.max_relative and self.top1_agreement >= self.tolerance.min_top1

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"parity {self.precision} vs torch fp32 on {self.batch} random samples: max |Δlogits| "
                f"{self.max_abs_diff:.2e} ({self.relative_diff:.2e} of logit scale {self.logit_scale:.3g}, bound "
                f"{self.tolerance.max_relative:g}), top-1 agreement {self.top1_agreement:.0%} (bound "
                f"{self.tolerance.min_top1:.0%}): {verdict}")

    def raise_if_failed(self, where: str) -> None:
        if not self.passed:
            raise ModelError(f"{where}: {self.summary()}; the conversion is not trustworthy")


def check_batch(config: ModelConfig, batch: int = CHECK_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random float32 feeds (batch, *shape) for every input of `config`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in config.input_shapes().items():
        x = rng.standard_normal((batch, *shape), dtype=np.float32)
        if name in config.audio_inputs:
            x[:, 1] = rng.uniform(-np.pi, np.pi, (batch, *shape[1:]))  # phase channel
        feeds[name] = x
    return feeds


def compare_logits(reference: np.ndarray, candidate: np.ndarray, precision: str,
                   tolerance: ParityTolerance | None = None) -> ParityReport:
    """Compare (B, classes) logits; `tolerance` defaults to the precision's own."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ModelError(f"parity: logits of shape {candidate.shape} cannot be compared with {reference.shape}")
    tolerance = tolerance or TOLERANCES[precision]
    scale = float(np.abs(reference - reference.mean(axis=1, keepdims=True)).max())
    finite = bool(np.isfinite(candidate).all())
    picked = np.take_along_axis(reference, candidate.argmax(axis=1)[:, None], axis=1)[:, 0]
    agrees = picked >= reference.max(axis=1) - tolerance.max_relative * scale  # ties within the bound agree
    return ParityReport(
        precision=precision, batch=reference.shape[0],
        max_abs_diff=float(np.abs(candidate - reference).max()) if finite else float("inf"),
        logit_scale=scale, top1_agreement=float(np.mean(agrees)) if finite else 0.0, tolerance=tolerance,
    )


def torch_logits(model: "torch.nn.Module", config: ModelConfig, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Reference logits of a torch module in eval mode (CPU, float32)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            inputs = [torch.from_numpy(feeds[name]) for name in config.input_names]
            return model(*inputs).float().cpu().numpy()
    finally:
        model.train(was_training)


def onnxruntime_logits(onnx_path: str | os.PathLike, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Logits of an mvrt ONNX model on ONNX Runtime's CPU provider."""
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(onnx_path, providers="cpu") as engine:
        return engine.infer(feeds)


def onnx_parity(onnx_path: str | os.PathLike, reference: "str | os.PathLike | torch.nn.Module", precision: str, *,
                batch: int = CHECK_BATCH, seed: int = 0, tolerance: ParityTolerance | None = None) -> ParityReport:
    """Run the ONNX model on ONNX Runtime CPU and the torch reference on the same batch; compare.

    `reference` is the `.safetensors` checkpoint or the torch module the model was exported from.
    """
    from mvrt.runtime.model_meta import read_onnx_config

    config = read_onnx_config(onnx_path)
    model = _reference_model(reference, config)
    feeds = check_batch(config, batch, seed)
    return compare_logits(torch_logits(model, config, feeds), onnxruntime_logits(onnx_path, feeds), precision, tolerance)


def _reference_model(reference, config: ModelConfig):
    if isinstance(reference, (str, os.PathLike)):
        from mvrt.checkpoint import load_checkpoint

        model, stored = load_checkpoint(reference)
        if stored != config:
            raise ModelError(f"{Path(reference)}: checkpoint config differs from the ONNX model's; they are not the same model")
        return model
    return reference
