"""Music-video network: plain 2D (audio) / 3D (video) convolutions, MMTM (paper Figs 3-4).

One audio pathway (log-mel + phase at 22.05 kHz) and one video pathway (64 frames), five
dense residual blocks each, MMTM after every block. Each block is followed by one full
3×3 (audio) / 3×3×3 (video) convolution that smooths its output. A stride-2 stem and a
max-pool down-sample early; every block then max-pools by 2 on every axis (video time too).
Full size: 23.3 M parameters, about 4.0 GMAC per window.
"""

from __future__ import annotations

import torch

from mvrt.config import ModelConfig
from mvrt.models.blocks import PathwaySpec
from mvrt.models.fusion import AudioVideoNet

_GROWTH = (16, 32, 64, 128, 256)
_OUT = (32, 64, 128, 256, 384)

SPECS: dict[str, PathwaySpec] = {
    "audio": PathwaySpec(dims=2, in_channels=2, stem_channels=16, stem_kernel=(3, 3), stem_stride=(2, 2),
                         stem_pool=(2, 2), growth=_GROWTH, out_channels=_OUT, kernel=3,
                         pools=((2, 2),) * 5, transition_kernel=(3, 3), separable=False),
    "video": PathwaySpec(dims=3, in_channels=3, stem_channels=16, stem_kernel=(3, 3, 3), stem_stride=(1, 2, 2),
                         stem_pool=(1, 2, 2), growth=_GROWTH, out_channels=_OUT, kernel=3,
                         pools=((2, 2, 2),) * 5, transition_kernel=(3, 3, 3), separable=False),
}
PAIRS = (("audio", "video"),)


class MusicVideoNet(AudioVideoNet):
    def __init__(self, config: ModelConfig):
        super().__init__(SPECS, PAIRS, config.width, config.mmtm, len(config.classes), config.dropout)

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.classify(dict(audio=audio, video=video))  # (B, classes)
