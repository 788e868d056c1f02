"""The paper's networks in PyTorch (needs the `torch` extra).

`build_model(config)` returns a module whose forward takes the inputs positionally in
`config.network_input_names` order and returns logits (B, len(config.classes)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mvrt.config import ModelConfig
from mvrt.errors import MissingDependencyError

if TYPE_CHECKING:
    import torch

# Parameter counts reported in the paper (Table 1), keyed by (arch, mmtm).
PAPER_PARAMETERS: dict[tuple[str, bool], int] = {
    ("slowfast", True): 17_118_864,
    ("slowfast", False): 16_930_880,
    ("musicvideo", True): 23_078_854,
    ("musicvideo", False): 23_034_214,
}


def build_model(config: ModelConfig) -> "torch.nn.Module":
    """A freshly initialised network for `config` (train mode, CPU)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError("torch", "torch", "building a network") from None
    if config.arch == "slowfast":
        from mvrt.models.slowfast import SlowFastNet

        return SlowFastNet(config)
    from mvrt.models.musicvideo import MusicVideoNet

    return MusicVideoNet(config)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random generators."""
    import random

    import numpy as np

    from mvrt.errors import MissingDependencyError

    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch", "building a network") from None

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_parameters(model: "torch.nn.Module") -> int:
    """Trainable parameters (BN running statistics excluded, as in Keras' trainable count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
