"""Building blocks shared by both networks: conv units, dense residual block, MMTM, pathway.

Every module works in 2D (audio: B, C, mel, time) or 3D (video: B, C, T, H, W), chosen by
`dims`. Video convolutions named "per-frame" have kernel 1 on the time axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def _conv_cls(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _bn_cls(dims: int) -> type[nn.Module]:
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d


def max_pool(dims: int, kernel: tuple[int, ...]) -> nn.Module:
    """Non-overlapping max-pooling; ceil mode so that a size-1 axis never pools to 0."""
    return (nn.MaxPool2d if dims == 2 else nn.MaxPool3d)(kernel, ceil_mode=True)


def _conv(dims: int, c_in: int, c_out: int, kernel: tuple[int, ...],
          stride: tuple[int, ...] | int = 1, groups: int = 1) -> nn.Module:
    """Bias-free convolution with 'same' padding for odd kernels (BN follows it)."""
    padding = tuple(k // 2 for k in kernel)
    return _conv_cls(dims)(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False)


def conv_bn_relu(dims: int, c_in: int, c_out: int, kernel: tuple[int, ...],
                 stride: tuple[int, ...] | int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(dims, c_in, c_out, kernel, stride), _bn_cls(dims)(c_out), nn.ReLU(inplace=True))


def plain_conv(dims: int, c_in: int, c_out: int, k: int) -> nn.Sequential:
    """A full k×k (2D) or k×k×k (3D) convolution + BN + ReLU (music-video network)."""
    return conv_bn_relu(dims, c_in, c_out, (k,) * dims)


class SeparableConv(nn.Sequential):
    """Filter- and channel-separable convolution (slow-fast network).

    The n×n filter becomes depthwise 1×n then depthwise n×1 (a rank-1 factorisation, so no
    activation between them), then BN + ReLU, then a pointwise 1×1 convolution + BN + ReLU.
    In 3D the kernels are per-frame: (1, 1, n) then (1, n, 1), pointwise (1, 1, 1).
    """

    def __init__(self, dims: int, c_in: int, c_out: int, k: int):
        lead = (1,) * (dims - 2)  # kernel 1 on time for video
        super().__init__(
            _conv(dims, c_in, c_in, (*lead, 1, k), groups=c_in),
            _conv(dims, c_in, c_in, (*lead, k, 1), groups=c_in),
            _bn_cls(dims)(c_in),
            nn.ReLU(inplace=True),
            _conv(dims, c_in, c_out, (1,) * dims),
            _bn_cls(dims)(c_out),
            nn.ReLU(inplace=True),
        )


def make_conv(dims: int, c_in: int, c_out: int, k: int, separable: bool) -> nn.Module:
    return SeparableConv(dims, c_in, c_out, k) if separable else plain_conv(dims, c_in, c_out, k)


class DenseResidualBlock(nn.Module):
    """Two parallel conv branches with max-pooling, added, smoothed, densely joined to the input.

    out = cat([pool(x), smooth(pool(conv(x)) + pool(conv(conv(x))))]) with c_in + growth
    channels.
    """

    def __init__(self, dims: int, c_in: int, growth: int, k: int, pool: tuple[int, ...], separable: bool):
        super().__init__()
        self.branch_a = nn.Sequential(make_conv(dims, c_in, growth, k, separable), max_pool(dims, pool))
        self.branch_b = nn.Sequential(
            make_conv(dims, c_in, growth, k, separable),
            make_conv(dims, growth, growth, k, separable),
            max_pool(dims, pool),
        )
        self.smooth = make_conv(dims, growth, growth, 3, separable)
        self.shortcut = max_pool(dims, pool)
        self.out_channels = c_in + growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.smooth(self.branch_a(x) + self.branch_b(x))
        return torch.cat([self.shortcut(x), y], dim=1)  # (B, c_in + growth, *pooled)


class MMTM(nn.Module):
    """Multimodal transfer module (Joze et al., CVPR 2020) between an audio and a video map."""

    def __init__(self, c_audio: int, c_video: int):
        super().__init__()
        c_z = max(1, (c_audio + c_video) // 4)
        self.squeeze = nn.Linear(c_audio + c_video, c_z)
        self.excite_audio = nn.Linear(c_z, c_audio)
        self.excite_video = nn.Linear(c_z, c_video)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.cat([global_pool(a), global_pool(v)], dim=1)  # (B, C_a + C_v)
        z = torch.relu(self.squeeze(s))  # (B, C_z)
        gate_a = 2.0 * torch.sigmoid(self.excite_audio(z))  # (B, C_a)
        gate_v = 2.0 * torch.sigmoid(self.excite_video(z))  # (B, C_v)
        return a * _expand(gate_a, a.dim()), v * _expand(gate_v, v.dim())


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling over every axis after channels: (B, C, ...) -> (B, C)."""
    return x.mean(dim=tuple(range(2, x.dim())))


def _expand(gate: torch.Tensor, dim: int) -> torch.Tensor:
    for _ in range(dim - 2):
        gate = gate.unsqueeze(-1)  # (B, C) -> (B, C, 1, ...) broadcastable to the map
    return gate


@dataclass(frozen=True)
class PathwaySpec:
    """Channel and kernel plan of one branch (audio or video, slow or fast)."""

    dims: int  # 2 = audio (B, C, mel, time), 3 = video (B, C, T, H, W)
    in_channels: int
    stem_channels: int
    stem_kernel: tuple[int, ...]
    stem_stride: tuple[int, ...]
    stem_pool: tuple[int, ...] | None  # max-pool after the stem (early down-sampling)
    growth: tuple[int, ...]  # new channels of each dense residual block
    out_channels: tuple[int, ...]  # channels after each block's transition conv
    kernel: int  # n of the n×n filters inside the blocks
    pools: tuple[tuple[int, ...], ...]  # max-pool of each block
    transition_kernel: tuple[int, ...]  # the one full conv after each block
    separable: bool


def scale(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Pathway(nn.Module):
    """Stem, then per stage: a dense residual block and one full transition conv."""

    def __init__(self, spec: PathwaySpec, width: float):
        super().__init__()
        c = scale(spec.stem_channels, width)
        stem = [conv_bn_relu(spec.dims, spec.in_channels, c, spec.stem_kernel, spec.stem_stride)]
        if spec.stem_pool is not None:
            stem.append(max_pool(spec.dims, spec.stem_pool))
        self.stem = nn.Sequential(*stem)
        self.stages = nn.ModuleList()
        self.channels: list[int] = []
        for growth, c_out, pool in zip(spec.growth, spec.out_channels, spec.pools):
            block = DenseResidualBlock(spec.dims, c, scale(growth, width), spec.kernel, pool, spec.separable)
            c_out = scale(c_out, width)
            transition = conv_bn_relu(spec.dims, block.out_channels, c_out, spec.transition_kernel)
            self.stages.append(nn.Sequential(block, transition))
            self.channels.append(c_out)
            c = c_out


class Head(nn.Module):
    """Global average pooling of every branch, concatenation, dropout, Linear -> logits."""

    def __init__(self, channels: int, classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, classes)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        pooled = torch.cat([global_pool(m) for m in maps], dim=1)  # (B, sum of C)
        return self.fc(self.dropout(pooled))  # (B, classes)
