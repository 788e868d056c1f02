"""Checkpoints: safetensors weights with the model config in the metadata (DESIGN §5).

Loading never unpickles: weights come from `safetensors.torch.load_file` and the config from
the JSON header. `read_checkpoint_config` needs neither torch nor the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mvrt.config import ModelConfig
from mvrt.errors import MissingDependencyError, ModelError
from mvrt.runtime.model_meta import CONFIG_KEY, read_checkpoint_config, sha256_file

if TYPE_CHECKING:
    import torch

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_config", "sha256_file"]

_LIST_LIMIT = 8  # names shown in a key-mismatch message


def save_checkpoint(model: "torch.nn.Module", config: ModelConfig, path: str | os.PathLike) -> Path:
    """Write `model`'s state dict (parameters and BN statistics) and `config` to `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={CONFIG_KEY: config.to_json(), "format": "pt"})
    return path


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple["torch.nn.Module", ModelConfig]:
    """Rebuild the network from a checkpoint; returns (model in eval mode, config)."""
    config = read_checkpoint_config(path)
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise MissingDependencyError("torch", "torch", "loading a checkpoint") from None
    from mvrt.models import build_model

    try:
        tensors = load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise ModelError(f"{path}: unreadable safetensors checkpoint ({exc})") from None
    model = build_model(config)
    _check_keys(path, set(model.state_dict()), set(tensors))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelError(f"{path}: weights do not fit the {config.arch} network of its config: {detail}") from None
    return model.to(device).eval(), config


def _check_keys(path: str | os.PathLike, expected: set[str], found: set[str]) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        parts = [f"{label} {len(keys)} key(s): {_shorten(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ModelError(f"{path}: checkpoint does not match its config's network; {'; '.join(parts)}")


def _shorten(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... (+{len(keys) - _LIST_LIMIT})" if len(keys) > _LIST_LIMIT else "")
