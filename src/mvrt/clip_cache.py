"""On-disk cache of the front-end tensors of every clip, so that epochs never decode again.

Layout: `<cache>/<frontend key>/<clip fingerprint>.npz`, one window per clip (the clip's
first window, `window_at(source, config, 0.0)`: the window inference reads first, from a
file or from a pair of audio and video files alike). Each entry holds, exactly as the
front-end computes them:

- `frames`: uint8 (frames, size, size, 3) RGB, turned into the model's video inputs at load time by
  `mvrt.runtime.network_inputs.video_feeds` (as at inference: normalised float32 pathways for tensor
  contract 1, the uint8 frames as (3, T, H, W) `video` for contract 2; one cache serves both);
- one float32 (2, n_mels, T) array per audio input, NOT normalised: the model's `audio_norm`
  is applied at load time with the same arithmetic as `mvrt.runtime.network_inputs.audio_input`.

The frontend key hashes `FrontendConfig`, the architecture's audio rates and frame counts and
`FRONTEND_VERSION`. The clip fingerprint is sha256 over (size, mtime_ns, first MiB, last MiB)
of its file(s): fast on multi-MB videos, and any rewrite changes mtime; a rewrite that keeps
size, mtime and both ends would go unnoticed (delete the entry, or the cache, then).
Entries are written atomically (temp file + rename), so an interrupted build resumes.

Entries are checked before they are trusted (a cache folder may come from anywhere): the zip
end record and directory (member names, compression, uncompressed sizes), then each member's
`.npy` header (dtype, shape) against what the window needs, all before any array data is
decompressed; a member is read only up to the bytes its checked header promises. `build`
deletes and recomputes a bad entry (with a warning); `load_entry`/`load_batch` delete it and
raise a one-line MvrtError saying to run the build again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import struct
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mvrt.config import (AUDIO_INPUTS, MAX_FRAMES, MAX_IMAGE_SIZE, MAX_N_MELS, MAX_WINDOW_ELEMENTS, VIDEO_INPUTS,
                         ModelConfig)
from mvrt.data import Clip
from mvrt.errors import MvrtError, UsageError
from mvrt.runtime.network_inputs import audio_input, normalize_audio, video_feeds
from mvrt.runtime.windows import Window

__all__ = ["FRONTEND_VERSION", "CacheReport", "FeatureCache", "clip_fingerprint", "entry_problem", "expected_arrays",
           "frontend_key", "load_batch", "load_entry"]

# Bump when the front-end's output for the same parameters changes (invalidates caches).
# 2: a pair of files shorter than a window spans the longer file (the runtime's `window_at`), not the video's.
FRONTEND_VERSION = 2
_MIB = 1 << 20
_log = logging.getLogger(__name__)
_NPY_HEADER_BYTES = 10_016  # magic, length and the header text numpy reads at most (max_header_size 10000)
_ZIP_END = struct.Struct("<4s4H2LH")  # end of central directory record, no comment (np.savez writes none)
_MAX_CENTRAL_DIRECTORY_BYTES = 64 * 1024
_MAX_MEMBERS = 8


def frontend_params(config: ModelConfig) -> dict:
    """Everything the cached tensors depend on besides the clip itself."""
    return {
        "frontend": dataclasses.asdict(config.frontend),
        "audio_inputs": config.audio_inputs,
        # the architecture's pathways, not the artifact's inputs: entries hold raw frames, which serve
        # both tensor contracts alike (the key of a contract-1 config is unchanged)
        "video_inputs": dict(VIDEO_INPUTS[config.arch]),
        "frontend_version": FRONTEND_VERSION,
    }


def frontend_key(config: ModelConfig) -> str:
    """Short hex key of `frontend_params(config)`."""
    text = json.dumps(frontend_params(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clip_fingerprint(clip: Clip) -> str:
    """sha256 of (size, mtime_ns, first MiB, last MiB) of the clip's file(s)."""
    digest = hashlib.sha256()
    for path in dict.fromkeys((clip.audio_path, clip.video_path)):
        stat = os.stat(path)
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
        with open(path, "rb") as f:
            digest.update(f.read(_MIB))
            if stat.st_size > _MIB:
                f.seek(max(_MIB, stat.st_size - _MIB))
                digest.update(f.read(_MIB))
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheReport:
    """What `FeatureCache.build` did; `failed` holds (clip, one-line error)."""

    computed: int
    cached: int
    failed: tuple[tuple[Clip, str], ...] = field(default=(), repr=False)
    entries: tuple[tuple[Clip, Path], ...] = field(default=(), repr=False)

    @property
    def failed_count(self) -> int:
        return len(self.failed)

    def summary(self) -> str:
        return f"{self.computed} computed, {self.cached} cached, {self.failed_count} failed"


class FeatureCache:
    """The cached front-end tensors of clips for one model config's front-end."""

    def __init__(self, root: str | os.PathLike, config: ModelConfig, *, implementation: str = "auto"):
        self.config = config
        self.folder = Path(root) / frontend_key(config)
        self.implementation = implementation

    def path_for(self, clip: Clip) -> Path:
        return self.folder / f"{clip_fingerprint(clip)}.npz"

    def build(self, clips: Sequence[Clip], *, progress: bool = True, desc: str = "features") -> CacheReport:
        """Compute every clip not cached yet; a clip that fails is recorded, logged (a warning) and skipped."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._prepare_folder()
        computed = cached = 0
        failed, entries = [], []
        with tqdm(clips, desc=desc, unit="clip", file=sys.stderr, disable=not progress) as bar, \
                logging_redirect_tqdm():  # log lines above the bar, not through it
            for clip in bar:
                try:
                    path = self.path_for(clip)
                    if path.is_file() and not self._discard_if_bad(path):
                        cached += 1
                    else:
                        _write_atomic(path, compute_clip_arrays(clip, self.config, self.implementation))
                        computed += 1
                except (MvrtError, OSError) as exc:
                    message = " ".join(str(exc).split())
                    failed.append((clip, message))
                    _log.warning("skipped %s: %s", clip.video_path, message)
                    continue
                entries.append((clip, path))
        return CacheReport(computed, cached, tuple(failed), tuple(entries))

    def _discard_if_bad(self, path: Path) -> bool:
        """Delete the entry (True) when its directory or array headers do not fit this cache's config."""
        problem = entry_problem(path, self.config)
        if problem is None:
            return False
        _log.warning("%s: discarded a bad feature-cache entry (%s); recomputing it", path, problem)
        path.unlink(missing_ok=True)
        return True

    def _prepare_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            params = self.folder / "frontend.json"
            if not params.is_file():
                params.write_text(json.dumps(frontend_params(self.config), indent=2, sort_keys=True))
        except OSError as exc:
            raise UsageError(f"{self.folder}: cannot create the feature cache: {exc.strerror}") from None


def expected_arrays(config: ModelConfig) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Member name -> (dtype, shape) of a cache entry for `config`: what `compute_clip_arrays` writes."""
    fe = config.frontend
    spec = {name: (np.dtype(np.float32), (2, fe.n_mels, fe.audio_frames(sr))) for name, sr in config.audio_inputs.items()}
    spec["frames"] = (np.dtype(np.uint8), (fe.frames, fe.image_size, fe.image_size, 3))
    return spec


def entry_problem(path: str | os.PathLike, config: ModelConfig | None = None) -> str | None:
    """Why a cache entry cannot be used, or None: from its zip directory and `.npy` headers only.

    With `config` every member must have exactly the dtype and shape `expected_arrays(config)` says;
    without, the members must be those of one architecture with the right dtypes and plausible shapes.
    """
    try:
        _read_entry(Path(path), config, read_data=False)
    except _BadEntry as exc:
        return str(exc)
    return None


def load_entry(path: str | os.PathLike, config: ModelConfig | None = None) -> dict[str, np.ndarray]:
    """The raw arrays of one cache entry (no pickle), checked as `entry_problem` says, data included.

    A bad entry is deleted and raised as a one-line MvrtError: building the cache again recomputes it.
    """
    try:
        return _read_entry(Path(path), config, read_data=True)
    except _BadEntry as exc:
        try:
            Path(path).unlink(missing_ok=True)
            fix = "it was deleted; build the cache again (rerun the command) to recompute it"
        except OSError:
            fix = "delete it, then build the cache again (rerun the command) to recompute it"
        raise MvrtError(f"{path}: bad feature-cache entry ({exc}); {fix}") from None


def entry_features(raw: dict[str, np.ndarray], config: ModelConfig) -> dict[str, np.ndarray]:
    """Network inputs (no batch axis) from raw cached arrays, normalised with `config`."""
    feeds = {name: normalize_audio(raw[name], name, config) for name in config.audio_inputs}
    feeds.update(video_feeds(raw["frames"], config))
    return feeds


def load_batch(paths: Sequence[str | os.PathLike], config: ModelConfig) -> dict[str, np.ndarray]:
    """Stacked normalised inputs (B, ...) of several cache entries."""
    items = [entry_features(load_entry(p, config), config) for p in paths]
    return {name: np.stack([item[name] for item in items]) for name in config.input_names}


def compute_clip_arrays(clip: Clip, config: ModelConfig, implementation: str = "auto") -> dict[str, np.ndarray]:
    """Raw arrays of the clip's first window: uint8 frames and un-normalised audio inputs."""
    from mvrt.runtime.decode import iter_window_audio, iter_window_frames

    fe = config.frontend
    window = clip_window(clip, config)
    rates = sorted(set(config.audio_inputs.values()))
    samples = _first(iter_window_audio(clip.audio_path, [window], rates, fe.window_seconds), clip.audio_path)
    frames = _first(iter_window_frames(clip.video_path, [window], frames=fe.frames, size=fe.image_size), clip.video_path)
    raw_config = config.replace(audio_norm=())  # mean 0, std 1: the exact log-mel/phase
    arrays = {name: audio_input(samples, sr, name, raw_config, implementation) for name, sr in config.audio_inputs.items()}
    arrays["frames"] = np.ascontiguousarray(frames, dtype=np.uint8)
    return arrays


def clip_window(clip: Clip, config: ModelConfig) -> Window:
    """The clip's first window, as inference cuts it (`window_at`): a pair of files lasts as long as the longer."""
    from mvrt.runtime.inputs import MediaPair
    from mvrt.runtime.window_reader import window_at

    source = clip.video_path if clip.audio_path == clip.video_path else MediaPair(clip.audio_path, clip.video_path)
    return window_at(source, config, 0.0)


def _first(iterator, path) -> np.ndarray | dict:
    from mvrt.errors import MediaError

    try:
        return next(iterator)
    except StopIteration:
        raise MediaError(f"{path}: decoding produced no window") from None
    finally:
        iterator.close()


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cache entries are shareable like any output
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- checked reading of an entry ----------------------------------------------------------------

class _BadEntry(Exception):
    """A cache entry that is not what mvrt writes (message: the problem, one line)."""


def _read_entry(path: Path, config: ModelConfig | None, read_data: bool) -> dict[str, np.ndarray]:
    spec = expected_arrays(config) if config is not None else None
    try:
        size = path.stat().st_size
        if spec is not None:
            limit = sum(math.prod(shape) * dtype.itemsize + _NPY_HEADER_BYTES for dtype, shape in spec.values())
            if size > limit + _MAX_CENTRAL_DIRECTORY_BYTES:
                raise _BadEntry(f"{size} bytes, more than the {limit} its arrays need")
        _check_end_record(path, size)
        with zipfile.ZipFile(path) as archive:
            infos = _check_members(archive.infolist(), spec)
            return {name: _read_member(archive, info, name, spec, read_data) for name, info in infos.items()}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, TypeError, RecursionError,
            NotImplementedError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise _BadEntry(f"unreadable: {detail if len(detail) <= 200 else detail[:197] + '...'}") from None


def _check_end_record(path: Path, size: int) -> None:
    """Bound what zipfile will parse: a plain end record, few members, a small central directory."""
    if size < _ZIP_END.size:
        raise _BadEntry(f"not a zip file ({size} bytes)")
    with open(path, "rb") as f:
        f.seek(size - _ZIP_END.size)
        signature, _, _, _, members, directory_bytes, _, comment = _ZIP_END.unpack(f.read(_ZIP_END.size))
    if signature != b"PK\x05\x06" or comment:
        raise _BadEntry("not a zip file written by mvrt (no plain end-of-directory record)")
    if members > _MAX_MEMBERS or directory_bytes > _MAX_CENTRAL_DIRECTORY_BYTES:
        raise _BadEntry(f"its zip directory lists {members} member(s) in {directory_bytes} bytes")


def _check_members(infos: list[zipfile.ZipInfo], spec: dict | None) -> dict[str, zipfile.ZipInfo]:
    """Array name -> member; exactly the expected names, stored or deflated, unencrypted."""
    names = [info.filename.removesuffix(".npy") for info in infos]
    if any(not info.filename.endswith(".npy") for info in infos) or len(set(names)) != len(names):
        raise _BadEntry(f"members {_names([i.filename for i in infos])} are not distinct .npy arrays")
    if spec is not None:
        allowed = [set(spec)]
    else:
        allowed = [{"frames", *inputs} for inputs in AUDIO_INPUTS.values()]
    if set(names) not in allowed:
        wanted = min(allowed, key=lambda a: len(a ^ set(names)))
        missing, extra = sorted(wanted - set(names)), sorted(set(names) - wanted)
        raise _BadEntry("; ".join(f"{label} member(s) {_names(items)}" for label, items in
                                  (("missing", missing), ("unexpected", extra)) if items))
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise _BadEntry(f"member {info.filename!r} is encrypted or uses compression type {info.compress_type}")
    return dict(zip(names, infos))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, spec: dict | None,
                 read_data: bool) -> np.ndarray | None:
    """Check the member's size and `.npy` header, then (read_data) read exactly the promised bytes."""
    if spec is not None:
        dtype, shape = spec[name]
        if info.file_size > math.prod(shape) * dtype.itemsize + _NPY_HEADER_BYTES:
            raise _BadEntry(f"member {info.filename!r} inflates to {info.file_size} bytes, more than a "
                            f"{dtype} array of shape {shape} needs")
    with archive.open(info) as f:
        found_shape, fortran, found_dtype = _read_npy_header(f, name)
        _check_array(name, found_dtype, found_shape, spec)
        nbytes = math.prod(found_shape) * found_dtype.itemsize
        if info.file_size != f.tell() + nbytes:
            raise _BadEntry(f"member {info.filename!r} is {info.file_size} bytes, its header promises "
                            f"{f.tell() + nbytes}")
        if not read_data:
            return None
        buffer = bytearray(nbytes)
        view, filled = memoryview(buffer), 0
        while filled < nbytes:
            count = f.readinto(view[filled:])
            if not count:
                raise _BadEntry(f"member {info.filename!r} ends after {filled} of {nbytes} data bytes")
            filled += count
    return np.frombuffer(buffer, found_dtype).reshape(found_shape, order="F" if fortran else "C")


def _read_npy_header(f, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    if version == (1, 0):
        return npy.read_array_header_1_0(f)
    if version == (2, 0):
        return npy.read_array_header_2_0(f)
    raise _BadEntry(f"member {name!r} has .npy format version {version}")


def _check_array(name: str, dtype: np.dtype, shape: tuple[int, ...], spec: dict | None) -> None:
    if spec is not None:
        want_dtype, want_shape = spec[name]
        if dtype != want_dtype or tuple(shape) != want_shape:
            raise _BadEntry(f"{name!r} is {dtype} {tuple(shape)}, this model's front-end needs {want_dtype} {want_shape}")
        return
    if name == "frames":
        ok = (dtype == np.uint8 and len(shape) == 4 and shape[3] == 3 and shape[1] == shape[2]
              and 0 < shape[0] <= MAX_FRAMES and 0 < shape[1] <= MAX_IMAGE_SIZE)
        expected = "uint8 (frames, size, size, 3)"
    else:
        ok = (dtype == np.float32 and len(shape) == 3 and shape[0] == 2 and 0 < shape[1] <= MAX_N_MELS
              and 0 < shape[2] and math.prod(shape) <= MAX_WINDOW_ELEMENTS)
        expected = "float32 (2, n_mels, frames)"
    if not ok:
        raise _BadEntry(f"{name!r} is {dtype} {tuple(shape)}, not {expected}")


def _names(items: list[str]) -> str:
    shown = ", ".join(repr(i[:40]) for i in items[:4])
    return shown + (f", ... (+{len(items) - 4})" if len(items) > 4 else "")
