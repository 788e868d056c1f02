"""What the runtime is given to read: media files, URLs, and pairs of separate audio and video files.

`MediaPair` is one input whose sound and picture live in two files (the MVED authors' layout,
DESIGN §8): audio from `audio`'s first audio stream, video from `video`'s first video stream.
`expand_inputs` turns the paths a user gives into inputs: a folder stands for every video file
under it, except that a video file in a folder named `video` (any case) whose sibling folder
`audio` holds a media file of the same stem becomes a `MediaPair`; the audio files of such a
layout are never inputs on their own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mvrt.errors import UsageError

log = logging.getLogger(__name__)

_AUDIO_DIR, _VIDEO_DIR = "audio", "video"


@dataclass(frozen=True)
class MediaPair:
    """One input from two files: `audio` gives the sound, `video` the picture (paths as given)."""

    audio: str
    video: str

    def __post_init__(self) -> None:
        for role in ("audio", "video"):
            value = getattr(self, role)
            if isinstance(value, MediaPair) or not isinstance(value, (str, os.PathLike)):
                raise UsageError(f"MediaPair {role} must be a file path, got {value!r}")
            object.__setattr__(self, role, os.fspath(value))
            if not getattr(self, role):
                raise UsageError(f"MediaPair {role} must be a file path, got an empty string")

    def __str__(self) -> str:
        return f"{self.video} + {self.audio}"


InputItem = str | MediaPair


def as_input(item: str | os.PathLike | MediaPair) -> InputItem:
    """A path as a string; a pair as it is."""
    return item if isinstance(item, MediaPair) else os.fspath(item)


def input_name(item: InputItem) -> str:
    """The path results carry for `item`: the video file of a pair."""
    return item.video if isinstance(item, MediaPair) else item


def audio_of(item: InputItem) -> str | None:
    """The separate audio file of `item` (None for one muxed input)."""
    return item.audio if isinstance(item, MediaPair) else None


def item_key(item: InputItem) -> tuple[str, str | None]:
    """(path, audio_path) of an input: equals `events.input_key` of its results."""
    return input_name(item), audio_of(item)


def expand_inputs(items: Sequence[str | os.PathLike | MediaPair]) -> tuple[list[InputItem], list[str]]:
    """(inputs, folders that hold none): folders replaced by their video files and pairs, in order.

    Plain paths, URLs and pairs pass through unchanged. Lonely files of an authors'-layout
    folder (a video with no audio partner, or the reverse) are skipped with a warning.
    """
    inputs: list[InputItem] = []
    empty: list[str] = []
    for item in items:
        item = as_input(item)
        if isinstance(item, MediaPair) or not os.path.isdir(item):
            inputs.append(item)
        elif found := folder_inputs(item):
            inputs.extend(found)
        else:
            empty.append(item)
    return inputs, empty


def folder_inputs(folder: str | os.PathLike) -> list[InputItem]:
    """The inputs a folder stands for (recursively, hidden entries skipped), sorted by video path."""
    from mvrt.data import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS, media_files

    root = Path(folder)
    inputs: list[InputItem] = []
    partnered: set[Path] = set()  # audio files used by a pair
    layouts: dict[Path, dict[str, list[Path]]] = {}  # an authors' `video` folder -> its audio files by stem
    for path in media_files(root, VIDEO_EXTENSIONS):
        if _in_authors_audio_dir(path):
            continue  # the sound of a pair (an audio-only .mp4, say), never an input on its own
        audio_dir = _authors_audio_dir(path.parent)
        if audio_dir is None:
            inputs.append(str(path))
            continue
        stems = layouts.get(path.parent)
        if stems is None:
            stems = layouts[path.parent] = _by_stem(audio_dir, MEDIA_EXTENSIONS)
        partner = _partner(path, stems.get(path.stem, []))
        if partner is None:
            log.warning("%s: no audio file of the same stem in %s; skipped", path, audio_dir)
            continue
        partnered.add(partner)
        inputs.append(MediaPair(str(partner), str(path)))
    _warn_lonely_audio(layouts, partnered)
    return inputs


def _sibling(folder: Path, name: str) -> Path | None:
    """The folder next to `folder` called `name` (any case), if there is one."""
    try:
        return next((d for d in sorted(folder.parent.iterdir()) if d.is_dir() and d.name.lower() == name
                     and d != folder), None)
    except OSError:
        return None


def _authors_audio_dir(folder: Path) -> Path | None:
    """The `audio` folder beside `folder` when `folder` is an authors'-layout `video` folder."""
    return _sibling(folder, _AUDIO_DIR) if folder.name.lower() == _VIDEO_DIR else None


def _in_authors_audio_dir(path: Path) -> bool:
    folder = path.parent
    return folder.name.lower() == _AUDIO_DIR and _sibling(folder, _VIDEO_DIR) is not None


def _by_stem(folder: Path, extensions) -> dict[str, list[Path]]:
    """stem -> the media files directly in `folder` (sorted), hidden ones skipped."""
    stems: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions and not path.name.startswith("."):
            stems.setdefault(path.stem, []).append(path)
    return stems


def _partner(video: Path, candidates: list[Path]) -> Path | None:
    if len(candidates) > 1:
        log.warning("%s: several audio files of the same stem (%s); using %s", video,
                    ", ".join(p.name for p in candidates), candidates[0].name)
    return candidates[0] if candidates else None


def _warn_lonely_audio(layouts: dict[Path, dict[str, list[Path]]], partnered: set[Path]) -> None:
    for video_dir, stems in layouts.items():
        lonely = [p for files in stems.values() for p in files[:1] if p not in partnered]
        for path in lonely:
            log.warning("%s: no video file of the same stem in %s; skipped", path, video_dir)
