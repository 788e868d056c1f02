"""Files written whole or not at all (results, plots, audio): a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from mvrt.errors import OutputError


def is_regular(path: Path) -> bool:
    """Whether `path` is an existing regular file (not a device, FIFO or folder)."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: temp file beside it, fsync, rename."""
    target = Path(path)
    if target.exists() and not is_regular(target):
        _write_in_place(path, data)
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _default_mode(target))
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        kept = "; the previous file is kept" if target.exists() else ""
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc}){kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_audio(path: str | os.PathLike, samples, sample_rate: int, subtype: str) -> Path:
    """Write `samples` ((n,) mono or (n, channels) float32) as WAV or FLAC (by the suffix), whole or not at all.

    Encoded with soundfile in memory, then written by `write_atomic`: a failed or killed write
    leaves no half file.
    """
    import io

    import soundfile

    path = Path(path)
    kind = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if kind is None:
        raise OutputError(f"{path}: audio is written as .wav or .flac, not {path.suffix or 'no suffix'}")
    buffer = io.BytesIO()
    try:
        soundfile.write(buffer, samples, sample_rate, subtype=subtype, format=kind)
    except (RuntimeError, ValueError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise OutputError(f"{path}: cannot encode audio ({exc})") from None
    write_atomic(str(path), buffer.getvalue())
    return path


def _write_in_place(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None


def _default_mode(target: Path) -> int:
    """The existing file's permissions, else what open() would give a new file."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (raises OSError, e.g. ENOSPC)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
