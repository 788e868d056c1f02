"""Parity of an exported ONNX model (run on ONNX Runtime CPU) against the torch checkpoint.

Both run the same two sets of inputs, each compared on its own:
- a seeded random batch shaped per the model config (`check_batch`): audio channel 0 ~ N(0, 1)
  (a normalised log-mel), channel 1 uniform in [-pi, pi] (phase), video ~ N(0, 1) for float
  inputs (contract 1) and uniform random frames in 0..255 for contract 2's uint8 `video`;
- real windows (`media_batch`): a stand-in clip (`mvrt.standin`: H.264 + AAC, 64x48 at 15 fps,
  32 kHz, one model window long, so one window) read exactly as inference reads it
  (`iter_input_features`, which calls `window_features`), so the check also sees the value
  ranges of the model's own normalised features, which random samples do not.
Both sets reach torch and the graph as the SAME arrays: the reference is the checkpoint's network
behind `mvrt.models.contract.with_contract`, so for a contract-2 graph torch gets the uint8 frames
too and normalises them itself (as the graph must). Reported per set: max |Δlogits|, that difference relative to the set's logit scale, and top-1
agreement; the check passes when both sets meet the precision's bounds.

The logit scale is the largest centred logit of the reference, max |z - mean_classes(z)|:
softmax ignores a per-sample offset, so the centred spread is what decides the label, and an
untrained model's tiny logits are judged by their own scale. Top-1 agreement counts a sample
as agreeing when the candidate's class is the reference's or is tied with it within the
bound (reference logit within max_relative * scale of the best): random inputs can give
near-ties that no precision bound should fail on.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mvrt.config import CLASSES, ModelConfig
from mvrt.errors import ModelError

if TYPE_CHECKING:
    import torch

CHECK_BATCH = 8
# The generated clip behind the real windows: one model window long (whole frames, so never a
# second window), at most MEDIA_MAX_SECONDS (a longer window is read zero-padded past the clip).
MEDIA_MAX_SECONDS = 40.0
MEDIA_WIDTH, MEDIA_HEIGHT, MEDIA_FPS, MEDIA_SAMPLE_RATE = 64, 48, 15, 32000
# libx264's macroblock tree made the same frames encode differently from run to run (measured,
# with B-frames, at every size tried); without it the clip, and so the check, is reproducible.
MEDIA_VIDEO_OPTIONS = {"x264-params": "mbtree=0"}


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
    """Comparison of candidate logits with the torch FP32 reference on one batch.

    From `onnx_parity` the fields are those of the random batch (`batch` samples) and `real`
    holds the same comparison on the real windows; `passed` needs both.
    """

    precision: str
    batch: int
    max_abs_diff: float
    logit_scale: float
    top1_agreement: float
    tolerance: ParityTolerance
    real: "ParityReport | None" = None

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / self.logit_scale if self.logit_scale > 0 else float("inf")

    @property
    def real_windows(self) -> int:
        """How many real windows were compared (0: random samples only)."""
        return self.real.batch if self.real is not None else 0

    @property
    def passed(self) -> bool:
        own = self.relative_diff <= self.tolerance.max_relative and self.top1_agreement >= self.tolerance.min_top1
        return own and (self.real is None or self.real.passed)

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        text = f"parity {self.precision} vs torch fp32 on {self.batch} random samples: {self._figures()}"
        if self.real is not None:
            windows = f"{self.real.batch} real window{'s' if self.real.batch != 1 else ''}"
            text += f"; on {windows} (generated clip): {self.real._figures()}"
        return f"{text}: {verdict}"

    def _figures(self) -> str:
        return (f"max |Δlogits| {self.max_abs_diff:.2e} ({self.relative_diff:.2e} of logit scale "
                f"{self.logit_scale:.3g}, bound {self.tolerance.max_relative:g}), top-1 agreement "
                f"{self.top1_agreement:.0%} (bound {self.tolerance.min_top1:.0%})")

    def raise_if_failed(self, where: str) -> None:
        if not self.passed:
            raise ModelError(f"{where}: {self.summary()}; the conversion is not trustworthy")


def check_batch(config: ModelConfig, batch: int = CHECK_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random feeds (batch, *shape) for every input of `config`, each of its input's dtype:
    float32 (audio; contract 1's video), or uniform uint8 frames for contract 2's `video`."""
    rng = np.random.default_rng(seed)
    dtypes = config.input_dtypes()
    feeds = {}
    for name, shape in config.input_shapes().items():
        if dtypes[name] == "uint8":
            feeds[name] = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
            continue
        x = rng.standard_normal((batch, *shape), dtype=np.float32)
        if name in config.audio_inputs:
            x[:, 1] = rng.uniform(-np.pi, np.pi, (batch, *shape[1:]))  # phase channel
        feeds[name] = x
    return feeds


def media_batch(config: ModelConfig, seed: int = 0, *, implementation: str = "auto") -> dict[str, np.ndarray]:
    """Network inputs (windows, *shape) of every window of a generated clip, read as inference reads it."""
    with tempfile.TemporaryDirectory(prefix="mvrt-parity-") as folder:
        path = write_media_clip(Path(folder) / "parity.mp4", config, seed)
        return read_windows(path, config, implementation=implementation)


def write_media_clip(path: str | os.PathLike, config: ModelConfig, seed: int = 0) -> Path:
    """The clip behind `media_batch`: a stand-in clip of class CLASSES[seed % 6], seeded by `seed`."""
    from mvrt.standin import write_labelled_clip

    frames = max(1, math.floor(min(config.frontend.window_seconds, MEDIA_MAX_SECONDS) * MEDIA_FPS + 1e-6))
    seconds = frames / MEDIA_FPS
    return write_labelled_clip(path, CLASSES[seed % len(CLASSES)], seconds=seconds, width=MEDIA_WIDTH,
                               height=MEDIA_HEIGHT, fps=MEDIA_FPS, sample_rate=MEDIA_SAMPLE_RATE, seed=seed,
                               options=MEDIA_VIDEO_OPTIONS)


def read_windows(path: str | os.PathLike, config: ModelConfig, *,
                 implementation: str = "auto") -> dict[str, np.ndarray]:
    """Stacked network inputs of every window of a file, from the runtime's reader (as `mvrt infer`)."""
    from mvrt.runtime.window_reader import WindowFeatures, iter_input_features

    items = [event.feeds for event in iter_input_features(path, config, implementation=implementation)
             if isinstance(event, WindowFeatures)]  # a file always has one at least
    return {name: np.stack([item[name] for item in items]) for name in config.input_names}


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
    """Reference logits of a torch module in eval mode (CPU, float32) for feeds of `config`'s contract.

    `model` is the network (contract 1, as checkpoints hold it); for a contract-2 `config` it runs
    behind `with_contract`, which normalises the uint8 `video` feed and takes the slow subset in
    torch. A module that already takes contract-2 inputs (`Uint8VideoInputs`) is used as it is.
    """
    import torch

    from mvrt.models.contract import Uint8VideoInputs, with_contract

    network = model if isinstance(model, Uint8VideoInputs) else with_contract(model, config)
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            inputs = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in config.input_names]
            return network(*inputs).float().cpu().numpy()
    finally:
        network.train(was_training)


def onnxruntime_logits(onnx_path: str | os.PathLike, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Logits of an mvrt ONNX model on ONNX Runtime's CPU provider."""
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(onnx_path, providers="cpu") as engine:
        return engine.infer(feeds)


def onnx_parity(onnx_path: str | os.PathLike, reference: "str | os.PathLike | torch.nn.Module", precision: str, *,
                batch: int = CHECK_BATCH, seed: int = 0, tolerance: ParityTolerance | None = None,
                real_windows: bool = True) -> ParityReport:
    """Run the ONNX model on ONNX Runtime CPU and the torch reference on the same inputs; compare.

    `reference` is the `.safetensors` checkpoint or the torch module the model was exported from.
    The inputs are `batch` seeded random samples and, unless `real_windows` is False, the
    windows of `media_batch(config, seed)`; both sets run as one batch and are compared apart.
    """
    from mvrt.runtime.model_meta import read_onnx_config

    config = read_onnx_config(onnx_path)
    model = _reference_model(reference, config)
    feeds = check_batch(config, batch, seed)
    real = media_batch(config, seed) if real_windows else None
    if real is not None:
        feeds = {name: np.concatenate([feeds[name], real[name]]) for name in config.input_names}
    expected, got = torch_logits(model, config, feeds), onnxruntime_logits(onnx_path, feeds)
    report = compare_logits(expected[:batch], got[:batch], precision, tolerance)
    if real is None:
        return report
    return replace(report, real=compare_logits(expected[batch:], got[batch:], precision, tolerance))


def _reference_model(reference, config: ModelConfig):
    if isinstance(reference, (str, os.PathLike)):
        from mvrt.checkpoint import load_checkpoint

        model, stored = load_checkpoint(reference)
        if stored != config.replace(contract=stored.contract):  # checkpoints hold the network (contract 1)
            raise ModelError(f"{Path(reference)}: checkpoint config differs from the ONNX model's; they are not the same model")
        return model
    return reference
