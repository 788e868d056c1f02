"""What the CLI writes besides errors: result files that are never left torn, and progress bars.

- Whole documents (table, json, csv) go to a temporary file beside the target and are renamed
  over it only once complete, so a run that fails or is killed keeps the previous result.
- Streams (jsonl) are written line by line straight to the target, each line flushed; if a
  write fails (disk full) the file is cut back to its last complete line.
- Targets that are not regular files (/dev/null, a FIFO, a terminal) are written in place.
- Progress bars appear on a terminal only, unless --progress / --no-progress says otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mvrt.errors import OutputError, UsageError

OUTPUT_PANEL = "Output"

Progress = Annotated[Optional[bool], typer.Option(
    "--progress/--no-progress", rich_help_panel=OUTPUT_PANEL, show_default="only when stderr is a terminal",
    help="show progress bars on stderr")]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="no progress bars (same as --no-progress)")]


def progress_wanted(args) -> bool:
    """Whether to draw progress bars: the flags, else whether stderr is a terminal."""
    if args.quiet and args.progress:
        raise UsageError("--quiet conflicts with --progress; give one of them")
    if args.quiet or args.progress is not None:
        return not args.quiet and bool(args.progress)
    return sys.stderr.isatty()


def check_writable(path: str, flag: str) -> None:
    """Refuse, before any work, an output path that cannot be written (exit 2)."""
    import tempfile

    from mvrt.files import is_regular

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if target.exists() and not is_regular(target):
        return  # a device or FIFO: written in place
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: folder {str(folder)!r} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {str(folder)!r} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


class LineWriter:
    """jsonl output: each line written and flushed whole; the file ends on a line boundary.

    On a failed write (disk full) or an interruption mid-line, a regular file is truncated
    back to its last complete line before the error goes on.
    """

    def __init__(self, path: str | None, *, append: bool = False):
        self.path = path or "stdout"
        self._good = 0  # bytes of complete lines written (in append mode: the file's complete lines)
        self._fd = None if path is None else self._open(path, append)

    def _open(self, path: str, append: bool) -> int:
        try:
            flags = os.O_RDWR | os.O_CREAT if append else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            fd = os.open(path, flags, 0o666)
            if append:  # go on after the last complete line (a run stopped mid-line left a partial one)
                self._good = _complete_bytes(fd)
                os.ftruncate(fd, self._good)
                os.lseek(fd, self._good, os.SEEK_SET)
            return fd
        except OSError as exc:
            raise UsageError(f"--output {path}: cannot write ({exc.strerror})") from None

    @property
    def empty(self) -> bool:
        """Whether nothing is in the output yet (a resumed file already has its model line)."""
        return self._good == 0

    def write_line(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        try:
            if self._fd is None:
                sys.stdout.write(data.decode("utf-8"))
                sys.stdout.flush()
            else:
                from mvrt.files import write_all

                write_all(self._fd, data)
        except OSError as exc:
            self._cut_back()
            raise OutputError(f"{self.path}: cannot write output ({exc.strerror or exc}); "
                              "it ends after the last complete line") from None
        except BaseException:
            self._cut_back()
            raise
        self._good += len(data)

    def _cut_back(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._good)
            except OSError:
                pass  # not a regular file: nothing to cut

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _complete_bytes(fd: int) -> int:
    """The length of the file up to and including its last newline."""
    size = os.lseek(fd, 0, os.SEEK_END)
    position = size
    while position > 0:
        start = max(0, position - 65536)
        os.lseek(fd, start, os.SEEK_SET)
        chunk = os.read(fd, position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def write_document(path: str | None, text: str) -> None:
    """A whole table/json/csv document: to stdout, or atomically to `path`."""
    if path is not None:
        from mvrt.files import write_atomic

        write_atomic(path, text.encode("utf-8"))
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise OutputError(f"stdout: cannot write output ({exc.strerror or exc})") from None
