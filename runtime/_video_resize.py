"""The one resize every decoded frame goes through (DESIGN §4, video step 3), whatever decoded it.

The whole frame (no crop) is area-resized to RGB inside `frame.reformat`. A frame NVDEC left in
GPU memory is first copied to system memory by `reformat` itself (PyAV transfers a hardware
frame to its software format, e.g. nv12) and then scaled by the same swscale call as a
software frame.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation

# Area averaging with full-resolution chroma: without the FULL_CHR flags swscale computes the
# chroma of packed RGB output per pair of pixels, bleeding colour between neighbours.
_INTERPOLATION = Interpolation.AREA | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP


def to_rgb(frame: "av.VideoFrame", size: int) -> np.ndarray:
    """Whole frame (no crop) area-resized to uint8 RGB (size, size, 3) inside `reformat`."""
    small = frame.reformat(width=size, height=size, format="rgb24", interpolation=_INTERPOLATION)
    return small.to_ndarray()


class Converter:
    """Resize a frame once, however many targets it is displayed at (`stats.frames_converted` counts)."""

    def __init__(self, size: int, stats):
        self.size, self.stats = size, stats
        self._frame = None
        self._image = None

    def __call__(self, frame: "av.VideoFrame") -> np.ndarray:
        if frame is not self._frame:  # a copy: no FFmpeg frame stays alive behind the image
            self._frame, self._image = frame, to_rgb(frame, self.size).copy()
            self.stats.frames_converted += 1
        return self._image
