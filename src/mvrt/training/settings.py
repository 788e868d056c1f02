"""The settings of `train` and `pretrain`: one frozen base with the fields both loops share.

Each setting is validated when the dataclass is built; an error names the field as the library
spells it (``batch_size must be at least 1, got 0``, ``setting="batch_size"``). What needs torch or
the file system (a CUDA device, the `init` checkpoint) is checked when a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import UsageError

__all__ = ["LoopSettings", "PretrainSettings", "TrainSettings"]


@dataclass(frozen=True)
class LoopSettings:
    """What every training loop takes: the network, the front-end, AdamW's schedule, where it runs."""

    arch: str = "slowfast"
    mmtm: bool = True
    width: float = 1.0
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    device: str = "cpu"  # "cpu" or "cuda[:N]"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be at least 1, got {value!r}", setting=name)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UsageError(f"lr must be positive, got {self.lr!r}", setting="lr")
        if not isinstance(self.device, str) or (self.device != "cpu" and not self.device.startswith("cuda")):
            raise UsageError(f"device must be cpu or cuda[:N], got {self.device!r}", setting="device")

    def model_config(self, **fields) -> ModelConfig:
        """The network and front-end these settings describe (`fields`: further ModelConfig fields)."""
        return ModelConfig(arch=self.arch, width=self.width, mmtm=self.mmtm, frontend=self.frontend, **fields)


@dataclass(frozen=True)
class TrainSettings(LoopSettings):
    """Everything `train` needs besides the data and the output path."""

    epochs: int = 30
    dropout: float = 0.5
    resume: bool = True
    init: Path | None = None
    # Batches of train data that re-estimate BN statistics before each validation (PySlowFast's
    # precise BN); 0 keeps the running averages.
    precise_bn_batches: int = 200


@dataclass(frozen=True)
class PretrainSettings(LoopSettings):
    """Everything `pretrain` needs besides the clips folder and the output path."""

    epochs: int = 10
