"""Tiny models for tests: the real architectures at a small width and a short window."""

from __future__ import annotations

from pathlib import Path

from mvrt.config import FrontendConfig, ModelConfig

TEST_WINDOW_SECONDS = 4.0


def tiny_config(arch: str = "slowfast", **changes) -> ModelConfig:
    base = ModelConfig(
        arch=arch,
        width=1 / 16,
        frontend=FrontendConfig(window_seconds=TEST_WINDOW_SECONDS),
        trained_on="nothing: random initialisation (test model)",
    )
    return base.replace(**changes)


def make_tiny_model(folder: Path, arch: str = "slowfast", seed: int = 0, **changes) -> tuple[Path, Path, ModelConfig]:
    """Write a seeded tiny checkpoint and its ONNX export; returns (checkpoint, onnx, config)."""
    import torch

    from mvrt.checkpoint import save_checkpoint
    from mvrt.export.onnx_export import export_onnx
    from mvrt.models import build_model

    config = tiny_config(arch, **changes)
    torch.manual_seed(seed)
    model = build_model(config)
    _warm_batchnorm(model, config, seed)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / f"tiny-{arch}.safetensors"
    onnx_path = folder / f"tiny-{arch}.onnx"
    save_checkpoint(model, config, ckpt)
    export_onnx(ckpt, config, onnx_path)
    return ckpt, onnx_path, config


def _warm_batchnorm(model, config: ModelConfig, seed: int) -> None:
    """Give BN layers data-driven running statistics (a few train-mode passes on noise)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shapes = config.input_shapes()  # name -> shape without batch, in forward() order
    model.train()
    with torch.no_grad():
        for _ in range(3):
            inputs = [torch.randn((2, *shape), generator=gen) for shape in shapes.values()]
            model(*inputs)


def random_feeds(config: ModelConfig, batch: int, seed: int = 0, *, phase: bool = False) -> dict:
    """Seeded inputs of `config`'s tensor contract (`engine_timing.synthetic_feeds`): float32 normal
    noise, uint8 frames 0..255 for contract 2's `video`; (batch, ...) each. `phase=True`: each audio
    input's channel 1 uniform in [-pi, pi], as the front-end's phase is."""
    import numpy as np

    from mvrt.runtime.engine_timing import synthetic_feeds

    feeds = synthetic_feeds(config.input_shapes(), batch, seed, config.input_dtypes())
    if phase:
        rng = np.random.default_rng(seed)
        for name in config.audio_inputs:
            feeds[name][:, 1] = rng.uniform(-np.pi, np.pi, feeds[name][:, 1].shape)  # (B, F, T) of (B, 2, F, T)
    return feeds
