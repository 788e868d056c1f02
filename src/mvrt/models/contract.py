"""Tensor contract 2 in front of a network (DESIGN §3): uint8 frames in, normalised in the graph.

The networks themselves take contract 1 (float32 video per pathway). `Uint8VideoInputs` wraps
one so its forward takes the audio inputs and one uint8 `video` (B, 3, T, H, W), and does in
the graph what the runtime does for contract 1: `(x/255 - mean)/std` (DESIGN §4 video step 4,
as `x * scale - offset` in float32, exactly like `network_inputs.normalize_frames`) and the
slow pathway's frame subset (step 2) as a constant-index gather.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mvrt.config import VIDEO_INPUTS, ModelConfig
from mvrt.runtime.windows import slow_indices


class Uint8VideoInputs(nn.Module):
    """forward(*audio, video_uint8) -> network(*audio, *video pathways): logits (B, classes)."""

    def __init__(self, network: nn.Module, config: ModelConfig):
        super().__init__()
        fe = config.frontend
        # The network's children are this module's own, so parameter and node names stay those of
        # the plain network (`pathways.audio_slow...`, not `network.pathways...`) in both contracts.
        if next(network.parameters(recurse=False), None) is not None or next(network.buffers(recurse=False), None) is not None:
            raise ValueError("Uint8VideoInputs wraps networks whose parameters all live in child modules")
        for name, child in network.named_children():
            self.add_module(name, child)
        self._network = (network,)  # a tuple: not registered a second time
        self.audio_count = len(config.audio_inputs)
        self.register_buffer("scale", torch.tensor(np.float32(1.0 / (255.0 * fe.video_std))), persistent=False)
        self.register_buffer("offset", torch.tensor(np.float32(fe.video_mean / fe.video_std)), persistent=False)
        fast = self.fast_frames = max(VIDEO_INPUTS[config.arch].values())
        self.pathway_frames = tuple(VIDEO_INPUTS[config.arch].values())
        for i, count in enumerate(self.pathway_frames):
            self.register_buffer(f"frames_{i}", torch.from_numpy(slow_indices(fast, count)), persistent=False)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        audio, video = inputs[:self.audio_count], inputs[self.audio_count]  # video: (B, 3, T, H, W) uint8
        x = video.to(torch.float32) * self.scale - self.offset  # (B, 3, T, H, W)
        pathways = [x if count == self.fast_frames else x.index_select(2, getattr(self, f"frames_{i}"))  # (B, 3, count, H, W)
                    for i, count in enumerate(self.pathway_frames)]
        return self._network[0](*audio, *pathways)


def with_contract(network: nn.Module, config: ModelConfig) -> nn.Module:
    """`network` (contract 1) as a module taking `config`'s contract's inputs."""
    return Uint8VideoInputs(network, config) if config.contract == 2 else network
