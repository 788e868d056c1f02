"""Separable slow-fast audio-video network with MMTM (paper Figs 5-6, Table 1).

Four pathways: slow/fast audio (2D log-mel + phase at 8 / 32 kHz) and slow/fast video
(8 / 64 frames). Inside the dense residual blocks every convolution is filter- and
channel-separable; video blocks are per-frame (kernel 1 on time). After each block exactly
one full convolution smooths the features: 3×3×3 for video (the only 3D convolution, mixing
time), 3×3 for audio. The fast pathways have fewer channels and 5×5 filters.

Compute: a stride-2 stem halves both axes of audio and height/width of video (never video
time), then each block max-pools by 2 the same way. Full size: 17.3 M parameters, about 7.8 GMAC per window
(video slow 4.4, video fast 2.3, audio slow 0.9, audio fast 0.2).
"""

from __future__ import annotations

import torch

from mvrt.config import ModelConfig
from mvrt.models.blocks import PathwaySpec
from mvrt.models.fusion import AudioVideoNet

_SLOW = dict(growth=(32, 64, 128, 368), out_channels=(64, 128, 256, 512), kernel=3)
_FAST = dict(growth=(8, 16, 32, 64), out_channels=(16, 32, 64, 128), kernel=5)


def _audio(stem: int, kernel: int, **plan) -> PathwaySpec:
    return PathwaySpec(dims=2, in_channels=2, stem_channels=stem, stem_kernel=(kernel, kernel),
                       stem_stride=(2, 2), stem_pool=None, pools=((2, 2),) * 4,
                       transition_kernel=(3, 3), separable=True, kernel=kernel, **plan)


def _video(stem: int, kernel: int, **plan) -> PathwaySpec:
    return PathwaySpec(dims=3, in_channels=3, stem_channels=stem, stem_kernel=(1, kernel, kernel),
                       stem_stride=(1, 2, 2), stem_pool=None, pools=((1, 2, 2),) * 4,
                       transition_kernel=(3, 3, 3), separable=True, kernel=kernel, **plan)


SPECS: dict[str, PathwaySpec] = {
    "audio_slow": _audio(32, **_SLOW),
    "audio_fast": _audio(8, **_FAST),
    "video_slow": _video(32, **_SLOW),
    "video_fast": _video(8, **_FAST),
}
PAIRS = (("audio_slow", "video_slow"), ("audio_fast", "video_fast"))


class SlowFastNet(AudioVideoNet):
    def __init__(self, config: ModelConfig):
        super().__init__(SPECS, PAIRS, config.width, config.mmtm, len(config.classes), config.dropout)

    def forward(self, audio_slow: torch.Tensor, audio_fast: torch.Tensor,
                video_slow: torch.Tensor, video_fast: torch.Tensor) -> torch.Tensor:
        inputs = dict(audio_slow=audio_slow, audio_fast=audio_fast, video_slow=video_slow, video_fast=video_fast)
        return self.classify(inputs)  # (B, classes)
