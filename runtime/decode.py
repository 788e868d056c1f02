"""Decoding media with PyAV for the front-end (DESIGN §4): the public entry points.

- `probe(path)` describes a file; `require_streams=True` insists on audio and video.
- `iter_window_audio(path, windows, sample_rates, window_seconds)` yields, per window,
  mono float32 samples at each rate (one decode pass, soxr HQ streaming resampling).
- `iter_window_frames(path, windows, frames, size)` yields, per window, the uint8 RGB frames
  displayed at its target instants (one threaded forward pass, index-guided seeks);
  `decode="auto" | "cpu" | "nvdec" | "v4l2"` picks the decoder (`hw_decode`), never the frames.
- `decode_audio(path, sample_rate)` decodes a whole file's audio (tools and tests).

Each opens the file for its own stream (the feature cache reads split audio/video files this
way); `window_reader` reads both streams of one input from one demux pass instead, through
their cores `window_audio` / `window_frames`, which also take endless (live) windows.

Both iterators stream: memory holds only the windows in flight, never the whole file, and
each decoded frame once however many overlapping windows show it.
Every problem with a file (missing, unreadable, no such stream, corrupt or truncated data)
is a one-line `MediaError` naming the file. A truncated file whose index survives (a
faststart MP4 or Matroska cut short) decodes until the cut; if a window needs media from
past the cut, the iterator raises instead of inventing frames or silence.

Hostile media: packets are decoded one at a time; empty ones are never sent to a decoder and
isolated undecodable ones are skipped and counted (`AudioDecodeStats`, `VideoDecodeStats`),
32 in a row end the stream. An audio stream whose sample rate or channel layout changes, a
frame whose planes do not match its layout, and a stream without a decoder are MediaErrors.
Every entry point takes `read_timeout_seconds` (default 30, None: wait for ever): a source
that delivers no data for that long (a stalled network read, a FIFO nobody writes) is a
MediaError instead of a hang.
"""

from __future__ import annotations

from mvrt.runtime._audio_decode import AudioDecodeStats, decode_audio, frame_to_mono, iter_window_audio
from mvrt.runtime._video_decode import MIN_SKIP_SECONDS, VideoDecodeStats, iter_window_frames
from mvrt.runtime._video_resize import to_rgb
from mvrt.runtime.probe import DEFAULT_READ_TIMEOUT_SECONDS, MediaInfo, open_media, probe

__all__ = [
    "DEFAULT_READ_TIMEOUT_SECONDS",
    "MIN_SKIP_SECONDS",
    "AudioDecodeStats",
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
