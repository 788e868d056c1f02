"""Worker processes of the fuzz harness and the parent's watch over them.

Each worker (started with the `spawn` context) loads the model once with `mvrt.api.load_model` and runs
`model.classify(path)` on every input it is sent, reporting `ok`, `clean error` (an `MvrtError` with a
one-line message) or `unexpected exception`. The parent classifies a worker that dies as a `crash` (with the
signal), one that takes longer than the timeout on an input as a `hang`, and one whose resident memory goes
over the limit as `memory` (a `MemoryError` in the worker counts as memory too); it kills such a worker,
starts a fresh one and goes on. A worker's stderr (FFmpeg messages, faulthandler tracebacks) goes to a log
file, from which the parent takes the part written while the failing input ran.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Iterable

OK, CLEAN, UNEXPECTED, HANG, CRASH, MEMORY = "ok", "clean error", "unexpected exception", "hang", "crash", "memory"
OUTCOMES = (OK, CLEAN, UNEXPECTED, HANG, CRASH, MEMORY)
FAILURES = (UNEXPECTED, HANG, CRASH, MEMORY)
Hook = Callable[[int, str], None]


class HarnessError(RuntimeError):
    """The harness itself cannot go on (a worker that cannot even start)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one input."""

    outcome: str
    error_type: str = ""  # exception class, or the signal of a crash
    message: str = ""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0  # the largest resident size the parent saw while the input ran
    detail: str = ""  # traceback, or the worker's log while the input ran


@dataclass(frozen=True)
class PoolConfig:
    model: str
    workers: int
    timeout_seconds: float
    memory_mib: float
    work_dir: Path
    hook: str | None = None  # "module:function", called as function(index, path) before each classify
    start_timeout_seconds: float = 300.0
    poll_seconds: float = 0.05


def hook_name(hook: Hook | str | None) -> str | None:
    """'module:function' for a module-level callable (or such a name, unchanged)."""
    if hook is None or isinstance(hook, str):
        return hook
    return f"{hook.__module__}:{hook.__qualname__}"


def _resolve_hook(name: str | None) -> Hook | None:
    if name is None:
        return None
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


# ---------------------------------------------------------------- in the worker process
class _LastTraceback(logging.Handler):
    """Keeps the traceback the pipeline logs (at debug level) when it wraps an unexpected exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.text = "".join(traceback.format_exception(*record.exc_info))[-4000:]


def _log_to(log_path: str) -> None:
    import faulthandler

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def worker_main(conn, model_path: str, hook: str | None, log_path: str) -> None:
    """Entry point of a worker: load the model once, then classify (index, path) tasks until None."""
    _log_to(log_path)
    from mvrt.api import load_model

    tracebacks = _LastTraceback()
    logger = logging.getLogger("mvrt")
    logger.addHandler(tracebacks)
    logger.setLevel(logging.DEBUG)
    hook_fn = _resolve_hook(hook)
    with load_model(model_path, batch_size=1) as model:
        conn.send(("ready", os.getpid()))
        while (task := conn.recv()) is not None:
            index, path = task
            print(f"=== input {index} {path}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            outcome = classify_input(model, index, path, hook_fn, tracebacks)
            conn.send((index, replace(outcome, seconds=time.perf_counter() - start)))


def _first_line(text: str, limit: int = 500) -> str:
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ""


def classify_input(model, index: int, path: str, hook: Hook | None = None, tracebacks=None) -> Outcome:
    """Run `model.classify(path)` (after `hook(index, path)`, if any) and say how it ended."""
    from mvrt.errors import MvrtError

    if tracebacks is not None:
        tracebacks.text = ""
    try:
        if hook is not None:
            hook(index, path)
        model.classify(path)
    except MemoryError as exc:
        return Outcome(MEMORY, "MemoryError", _first_line(str(exc)), detail=traceback.format_exc()[-4000:])
    except MvrtError as exc:
        return mvrt_outcome(exc, path, tracebacks.text if tracebacks is not None else "")
    except Exception as exc:  # noqa: BLE001 - anything else is what the harness looks for
        return Outcome(UNEXPECTED, type(exc).__name__, _first_line(str(exc)), detail=traceback.format_exc()[-4000:])
    return Outcome(OK)


def mvrt_outcome(exc: Exception, path: str, detail: str = "") -> Outcome:
    """A clean error, unless it wraps an exception the pipeline did not expect (an `UnexpectedError`, or
    the message "PATH: unexpected TYPE: ...") or its message is not one non-empty line."""
    import mvrt.errors

    message = str(exc)
    wrapped = f"{path}: unexpected "
    unexpected = getattr(mvrt.errors, "UnexpectedError", ())  # absent from older mvrt versions
    if message.startswith(wrapped) or isinstance(exc, unexpected):
        kind, _, text = message[len(wrapped) :].partition(": ")
        if not message.startswith(wrapped) or not text:
            kind, text = type(exc).__name__, message
        return Outcome(MEMORY if kind == "MemoryError" else UNEXPECTED, kind, _first_line(text), detail=detail)
    if not message.strip() or "\n" in message or "\r" in message:
        return Outcome(UNEXPECTED, f"{type(exc).__name__} (message not one line)", _first_line(message),
                       detail=repr(message[:2000]))
    return Outcome(CLEAN, type(exc).__name__, message)


# ---------------------------------------------------------------- in the parent
def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (0 when it is gone or /proc is missing)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class _Slot:
    """One worker process and the input it is working on."""

    def __init__(self, number: int, config: PoolConfig, ctx) -> None:
        self.number, self.config, self.ctx = number, config, ctx
        self.log_path = config.work_dir / f"worker-{number}.log"
        self.process = self.conn = None
        self.ready = False
        self.task: tuple[int, float, int] | None = None  # index, start time, log offset
        self.peak_mib = 0.0
        self.started = 0.0

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.process = self.ctx.Process(target=worker_main, name=f"fuzz-worker-{self.number}", daemon=True,
                                        args=(child, self.config.model, self.config.hook, str(self.log_path)))
        self.process.start()
        child.close()
        self.conn, self.ready, self.started = parent, False, time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
        self.process, self.ready = None, False

    def send(self, index: int, path: str) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.task, self.peak_mib = (index, time.monotonic(), offset), 0.0
        self.conn.send((index, path))

    def log_since(self, offset: int, limit: int = 6000) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def check_start(self) -> None:
        if self.conn.poll():
            try:
                self.ready = self.conn.recv()[0] == "ready"
                return
            except (EOFError, OSError):
                pass
        timed_out = time.monotonic() - self.started > self.config.start_timeout_seconds
        if timed_out or not self.process.is_alive():
            self.stop(kill=True)
            reason = "did not start in time" if timed_out else "exited while starting"
            raise HarnessError(f"fuzz worker {self.number} {reason}; its log:\n{self.log_since(0)[-3000:]}")

    def check(self) -> tuple[int, Outcome] | None:
        """The finished task's (index, outcome), if it finished; kills and restarts a failed worker."""
        if self.conn.poll():
            try:
                index, outcome = self.conn.recv()
                self.task = None
                return index, replace(outcome, peak_rss_mib=max(self.peak_mib, outcome.peak_rss_mib))
            except (EOFError, OSError):
                self.process.join(1)
        index, started, offset = self.task
        elapsed = time.monotonic() - started
        if not self.process.is_alive():
            return index, self._fail(self._crash(), elapsed, offset)
        rss = rss_mib(self.process.pid)
        self.peak_mib = max(self.peak_mib, rss)
        if rss > self.config.memory_mib:
            message = f"resident memory {rss:.0f} MiB over the limit of {self.config.memory_mib:g} MiB"
            return index, self._fail(Outcome(MEMORY, "RSS", message), elapsed, offset, dump=True)
        if elapsed > self.config.timeout_seconds:
            message = f"no result after {self.config.timeout_seconds:g} s"
            return index, self._fail(Outcome(HANG, "timeout", message), elapsed, offset, dump=True)
        return None

    def _crash(self) -> Outcome:
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return Outcome(CRASH, name, f"worker killed by {name}")
        return Outcome(CRASH, f"exit {code}", f"worker exited with status {code}")

    def _fail(self, outcome: Outcome, elapsed: float, offset: int, dump: bool = False) -> Outcome:
        if dump and self.process.is_alive():  # the worker's threads' stacks, into its log
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(0.3)
        self.stop(kill=True)
        detail = self.log_since(offset)
        self.task = None
        self.start()
        return replace(outcome, seconds=elapsed, peak_rss_mib=self.peak_mib, detail=detail)


def run_inputs(config: PoolConfig, indices: Iterable[int], prepare: Callable[[int, int], str],
               report: Callable[[int, Outcome], None]) -> None:
    """Classify every input in worker processes: `prepare(index, worker)` writes input `index` and returns
    its path; `report(index, outcome)` is called once per input as it finishes, in any order."""
    ctx = multiprocessing.get_context("spawn")
    config.work_dir.mkdir(parents=True, exist_ok=True)
    slots = [_Slot(n, config, ctx) for n in range(config.workers)]
    pending = deque(indices)
    try:
        for slot in slots:
            slot.start()
        while pending or any(slot.task for slot in slots):
            for slot in slots:
                if not slot.ready:
                    slot.check_start()
                elif slot.task is None and not slot.process.is_alive():  # died while idle: replace it
                    slot.stop(kill=True)
                    slot.start()
                    continue
                if slot.ready and slot.task is None and pending:
                    index = pending.popleft()
                    slot.send(index, prepare(index, slot.number))
            wait([s.conn for s in slots] + [s.process.sentinel for s in slots], timeout=config.poll_seconds)
            for slot in slots:
                finished = slot.check() if slot.task is not None else None
                if finished is not None:
                    report(*finished)
    finally:
        for slot in slots:
            slot.stop()
