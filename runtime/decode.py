"""Decoding media with PyAV for the front-end (DESIGN §4): the public entry points.

- `probe(path)` describes a file; `require_streams=True` insists on audio and video.
- `iter_window_audio(path, windows, sample_rates, window_seconds)` yields, per window,
  mono float32 samples at each rate (one decode pass, soxr HQ streaming resampling).
- `iter_window_frames(path, windows, frames, size)` yields, per window, the uint8 RGB frames
  displayed at its target instants (one threaded forward pass, index-guided seeks).
- `decode_audio(path, sample_rate)` decodes a whole file's audio (tools and tests).

Both iterators stream: memory holds only the windows in flight, never the whole file.
Every problem with a file (missing, unreadable, no such stream, corrupt or truncated data)
is a one-line `MediaError` naming the file. A truncated file whose index survives (a
faststart MP4 or Matroska cut short) decodes until the cut; if a window needs media from
past the cut, the iterator raises instead of inventing frames or silence.
"""

from __future__ import annotations

from mvrt.runtime._audio_decode import decode_audio, frame_to_mono, iter_window_audio
from mvrt.runtime._video_decode import MIN_SKIP_SECONDS, VideoDecodeStats, iter_window_frames, to_rgb
from mvrt.runtime.probe import MediaInfo, open_media, probe

__all__ = [
    "MIN_SKIP_SECONDS",
    "MediaInfo",
    "VideoDecodeStats",
    "decode_audio",
    "frame_to_mono",
    "iter_window_audio",
    "iter_window_frames",
    "open_media",
    "probe",
    "to_rgb",
]
