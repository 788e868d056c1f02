"""Audio-video network skeleton shared by both architectures.

Pathways are grouped into (audio, video) pairs; after every stage an MMTM joins the two
pathways of each pair. The head pools every pathway and classifies the concatenation.
"""

from __future__ import annotations

import torch
from torch import nn

from mvrt.errors import ModelError
from mvrt.models.blocks import MMTM, Head, Pathway, PathwaySpec


class AudioVideoNet(nn.Module):
    """Pathways keyed by input name, paired as (audio, video) for MMTM fusion."""

    def __init__(self, specs: dict[str, PathwaySpec], pairs: tuple[tuple[str, str], ...],
                 width: float, mmtm: bool, classes: int, dropout: float):
        super().__init__()
        self.input_names = tuple(specs)
        self.pairs = pairs
        self.pathways = nn.ModuleDict({name: Pathway(spec, width) for name, spec in specs.items()})
        stages = {len(p.stages) for p in self.pathways.values()}
        if len(stages) != 1:
            raise ModelError(f"every pathway needs the same number of stages, got {sorted(stages)}")
        self.num_stages = stages.pop()
        self.mmtm = nn.ModuleDict()
        if mmtm:
            for audio, video in pairs:
                ca, cv = self.pathways[audio].channels, self.pathways[video].channels
                self.mmtm[_pair_key(audio, video)] = nn.ModuleList(MMTM(a, v) for a, v in zip(ca, cv))
        channels = sum(p.channels[-1] for p in self.pathways.values())
        self.head = Head(channels, classes, dropout)
        self.apply(_init_weights)

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Final feature map of every pathway (the encoder output; autoencoder hook point)."""
        x = {name: self.pathways[name].stem(t) for name, t in inputs.items()}
        for i in range(self.num_stages):
            x = {name: self.pathways[name].stages[i](t) for name, t in x.items()}
            for audio, video in self.pairs:
                key = _pair_key(audio, video)
                if key in self.mmtm:
                    x[audio], x[video] = self.mmtm[key][i](x[audio], x[video])
        return x

    def classify(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        features = self.forward_features(inputs)
        return self.head([features[name] for name in self.input_names])  # (B, classes)


def _init_weights(module: nn.Module) -> None:
    """He initialisation for ReLU networks (convolutions), unit BN."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _pair_key(audio: str, video: str) -> str:
    return f"{audio}__{video}"
