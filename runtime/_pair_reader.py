"""Reading a `MediaPair` (sound and picture in two files) as the file that muxes both would be read.

Each file is opened once and decoded by a thread of its own. The pair lasts as long as the
longer file (`pair_duration`); its time 0 is the earlier positive start of the two (`pair_origin`).
`window_reader` plans the windows and turns each decoded window into network inputs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Iterator

from mvrt.config import ModelConfig
from mvrt.errors import MediaError
from mvrt.runtime._audio_decode import AudioFeed, first_audio_stream, window_audio
from mvrt.runtime._threads import prefetch
from mvrt.runtime._video_decode import first_video_stream, window_frames
from mvrt.runtime.decode import probe
from mvrt.runtime.inputs import MediaPair
from mvrt.runtime.probe import ends_disagree, open_media, stated_duration_seconds
from mvrt.runtime.windows import Window

log = logging.getLogger(__name__)

# Audio and video files of one pair whose durations differ by more than this are reported.
PAIR_MISMATCH_SECONDS = 1.0


@contextlib.contextmanager
def open_pair(pair: MediaPair, timeout: float | None) -> Iterator[tuple[tuple, tuple]]:
    """((audio container, its first audio stream), (video container, its first video stream)) of a pair."""
    with open_media(pair.audio, read_timeout_seconds=timeout) as sound_file, \
            open_media(pair.video, read_timeout_seconds=timeout) as picture_file:
        yield ((sound_file, first_audio_stream(sound_file, pair.audio)),
               (picture_file, first_video_stream(picture_file, pair.video)))


def _file_duration(container, stream, path: str, timeout: float | None) -> float:
    """A file's duration as for a muxed file: the container's, else the stream's, else measured."""
    stated = stated_duration_seconds(container, (stream,))
    return stated if stated is not None else probe(path, read_timeout_seconds=timeout).duration_seconds


def pair_duration(pair: MediaPair, sound, picture, timeout: float | None) -> float:
    """The longer of the two files' durations; wildly different ones are damage (as in one file)."""
    audio_end = _file_duration(*sound, pair.audio, timeout)
    video_end = _file_duration(*picture, pair.video, timeout)
    short, long = sorted((audio_end, video_end))
    if ends_disagree(audio_end, video_end):
        raise MediaError(f"{pair}: the audio file lasts {audio_end:.2f} s but the video file {video_end:.2f} s; "
                         "they are not two halves of one clip (or their timestamps are damaged)")
    if long - short > PAIR_MISMATCH_SECONDS:
        log.warning("%s: the audio file lasts %.2f s and the video file %.2f s; the shorter one is padded "
                    "(silence or its last frame)", pair, audio_end, video_end)
    return long


def pair_origin(*containers) -> float:
    """Time 0 of a pair: the earlier of the files' start times when positive, else 0 (as when muxed)."""
    starts = [c.start_time / 1e6 if c.start_time is not None else 0.0 for c in containers]
    return max(0.0, min(starts))


def decode_pair(pair: MediaPair, sound, picture, windows: list[Window], config: ModelConfig, timeout: float | None,
                counts, stop: threading.Event | None, decode: str = "auto",
                ) -> Iterator[tuple[Window, dict, object, float]]:
    """(window, {rate: mono samples}, uint8 frames, ready time) of each window of an open pair.

    Audio and video are each decoded from their own file in a thread of their own; `counts`
    (a `window_reader.DecodeCounts`) gathers what both decoders skipped; `decode` picks the
    video decoder (`hw_decode`).
    """
    fe = config.frontend
    origin = pair_origin(sound[0], picture[0])
    rates = sorted(set(config.audio_inputs.values()))
    samples = prefetch(window_audio(*sound, windows, pair.audio, rates, fe.window_seconds, stats=counts.audio,
                                    timeout=timeout, feed=AudioFeed(origin=origin)), depth=2, name="mvrt-audio")
    frames = prefetch(window_frames(*picture, windows, pair.video, fe.frames, fe.image_size, origin,
                                    stats=counts.video, timeout=timeout, decode=decode), depth=2, name="mvrt-video")
    try:
        for window in windows:
            if stop is not None and stop.is_set():
                return
            try:
                audio_part, video_part = next(samples), next(frames)
            except StopIteration:
                raise MediaError(f"{pair}: decoding ended before window {window.index}") from None
            yield window, audio_part, video_part, time.monotonic()  # both halves decoded
    finally:
        samples.close()
        frames.close()
