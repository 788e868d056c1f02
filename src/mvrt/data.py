"""MVED dataset discovery (DESIGN §8): clips of one split, labelled by their class folder.

Two layouts are accepted, with split and class folder names matched case-insensitively:
- `<root>/<split>/<Class>/<clip>.<ext>`: one file with both streams;
- `<root>/<split>/<Class>/{audio,video}/<clip>.<ext>`: the authors' layout, paired by stem.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mvrt.config import CLASSES
from mvrt.errors import UsageError

__all__ = ["Clip", "MEDIA_EXTENSIONS", "SPLIT_ALIASES", "VIDEO_EXTENSIONS", "discover", "find_split_dir",
           "media_files"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | {".m4a", ".mp3", ".wav", ".flac", ".ogg", ".opus", ".aac"}
# Canonical split -> folder names accepted for it (lower case).
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "val", "valid"),
    "test": ("test", "testing"),
}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One labelled clip; `audio_path == video_path` when one file holds both streams."""

    audio_path: Path
    video_path: Path
    label: int
    class_name: str
    split: str
    stem: str


def canonical_split(split: str) -> str:
    """'Val' -> 'validation' etc.; unknown names are a UsageError."""
    key = split.lower()
    for name, aliases in SPLIT_ALIASES.items():
        if key in aliases:
            return name
    raise UsageError(f"unknown split {split!r}; use train, validation (val) or test")


def find_split_dir(root: str | os.PathLike, split: str) -> Path:
    """The folder of `split` under `root` (case-insensitive, aliases such as 'val')."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such data folder")
    aliases = SPLIT_ALIASES[canonical_split(split)]
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in aliases:
            return child
    raise UsageError(f"{root}: no {split!r} split folder (expected one of {', '.join(aliases)}, any case)")


def discover(root: str | os.PathLike, split: str) -> list[Clip]:
    """Every clip of `split` under `root`, in class order then by stem."""
    split_dir = find_split_dir(root, split)
    name = canonical_split(split)
    class_dirs = _class_dirs(split_dir)
    clips: list[Clip] = []
    unpaired = 0
    for label, class_name in enumerate(CLASSES):
        folder = class_dirs.get(class_name.lower())
        if folder is not None:
            found, skipped = _class_clips(folder, label, class_name, name)
            clips.extend(found)
            unpaired += skipped
    if unpaired:
        _log.warning("%s: skipped %d clip(s) with no audio/video partner", split_dir, unpaired)
    if not clips:
        raise UsageError(f"{split_dir}: no media clips found (expected <Class>/<clip>.mp4 or <Class>/{{audio,video}}/<clip>.*)")
    return clips


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    known = {c.lower() for c in CLASSES}
    dirs = {d.name.lower(): d for d in sorted(split_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    unknown = sorted(d.name for key, d in dirs.items() if key not in known)
    if unknown:
        raise UsageError(f"{split_dir}: unknown class folder(s) {', '.join(unknown)}; classes are {', '.join(CLASSES)}")
    return dirs


def _media_files(folder: Path) -> dict[str, Path]:
    """stem -> file for the media files directly in `folder`."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
    return {p.stem: p for p in files}


def _class_clips(folder: Path, label: int, class_name: str, split: str) -> tuple[list[Clip], int]:
    """(clips, unpaired stems skipped) of one class folder."""
    subdirs = {d.name.lower(): d for d in folder.iterdir() if d.is_dir()}
    clips = [Clip(p, p, label, class_name, split, stem) for stem, p in _media_files(folder).items()]
    if "audio" not in subdirs and "video" not in subdirs:
        return clips, 0
    audio = _media_files(subdirs["audio"]) if "audio" in subdirs else {}
    video = _media_files(subdirs["video"]) if "video" in subdirs else {}
    lonely = sorted(set(audio) ^ set(video))
    for stem in lonely:
        _log.warning("%s: %s has no %s partner; skipped", folder, stem, "video" if stem in audio else "audio")
    for stem in sorted(set(audio) & set(video)):
        clips.append(Clip(audio[stem], video[stem], label, class_name, split, stem))
    clips.sort(key=lambda c: c.stem)
    return clips, len(lonely)


def media_files(folder: str | os.PathLike, extensions=MEDIA_EXTENSIONS) -> list[Path]:
    """Files under `folder` with one of `extensions` (recursively, hidden files and folders skipped), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
