"""Autoencoder for unsupervised pretraining (paper "Decoder network", DESIGN §2).

The encoder is the classifier itself (`build_model(config)`, read through `forward_features`),
so its state dict copies into a classifier key for key. Every branch gets a decoder of
transposed convolutions + BN + ReLU back to its input shape; the last layer is plain, and each
of the last few hidden stages also emits an auxiliary reconstruction (1x1 conv head, then
interpolation to the input shape): deep supervision.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mvrt.config import ModelConfig
from mvrt.models import build_model

__all__ = ["AUXILIARY_OUTPUTS", "AutoEncoder", "BranchDecoder", "reconstruction_loss"]

# Auxiliary outputs per branch kind (paper: 4 for video, 3 for audio), capped by hidden stages.
AUXILIARY_OUTPUTS = {2: 3, 3: 4}
_MIN_CHANNELS = 4


class BranchDecoder(nn.Module):
    """Feature map (B, C, *latent) -> [main, aux...] reconstructions (B, in_channels, *target)."""

    def __init__(self, channels: int, latent: tuple[int, ...], target: tuple[int, ...], out_channels: int):
        super().__init__()
        self.target = tuple(target)
        dims = len(target)
        steps = [max(0, math.ceil(math.log2(t / s))) for t, s in zip(target, latent)]  # 2x steps per axis
        count = max(max(steps), 1)
        # Axis `a` is doubled in the last steps[a] stages (cheapest: high resolution comes late).
        strides = [tuple(2 if i >= count - k else 1 for k in steps) for i in range(count)]
        convt = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.hidden = nn.ModuleList()
        c = channels
        for i, stride in enumerate(strides[:-1]):
            c_out = max(channels >> (i + 1), _MIN_CHANNELS)
            self.hidden.append(nn.Sequential(convt(c, c_out, stride, stride), norm(c_out), nn.ReLU(inplace=True)))
            c = c_out
        self.last = convt(c, out_channels, strides[-1], strides[-1])
        aux = min(AUXILIARY_OUTPUTS[dims], len(self.hidden))
        self.aux_from = tuple(range(len(self.hidden) - aux, len(self.hidden)))  # deepest hidden stages
        self.aux_heads = nn.ModuleList(conv(self.hidden[i][0].out_channels, out_channels, 1) for i in self.aux_from)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        aux = []
        for i, stage in enumerate(self.hidden):
            x = stage(x)
            if i in self.aux_from:
                aux.append(self._fit(self.aux_heads[len(aux)](x)))
        return [self._fit(self.last(x)), *aux]

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """Interpolate to the exact input shape when strides overshoot or fall short."""
        if tuple(x.shape[2:]) == self.target:
            return x
        mode = "bilinear" if len(self.target) == 2 else "trilinear"
        return F.interpolate(x, size=self.target, mode=mode, align_corners=False)


class AutoEncoder(nn.Module):
    """Classifier encoder plus one `BranchDecoder` per input; forward returns name -> outputs."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.input_names = tuple(config.network_input_names)
        self.encoder = build_model(config)
        shapes = config.network_input_shapes()
        latents = _latent_shapes(self.encoder, shapes)
        self.decoders = nn.ModuleDict({
            name: BranchDecoder(latents[name][0], latents[name][1:], tuple(shapes[name][1:]), shapes[name][0])
            for name in self.input_names
        })

    def forward(self, *inputs: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        features = self.encoder.forward_features(dict(zip(self.input_names, inputs)))
        return {name: self.decoders[name](features[name]) for name in self.input_names}

    def auxiliary_counts(self) -> dict[str, int]:
        return {name: len(d.aux_from) for name, d in self.decoders.items()}


def reconstruction_loss(outputs: dict[str, list[torch.Tensor]], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the MSE of every output (main and auxiliary) of every branch."""
    losses = [F.mse_loss(o, inputs[name]) for name, outs in outputs.items() for o in outs]
    return torch.stack(losses).mean()


def _latent_shapes(encoder: nn.Module, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """(C, *spatial) of every branch's final feature map, from one dry run at batch 1."""
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        dummy = {name: torch.zeros(1, *shape) for name, shape in shapes.items()}  # (1, C, ...)
        features = encoder.forward_features(dummy)
    encoder.train(was_training)
    return {name: tuple(t.shape[1:]) for name, t in features.items()}
