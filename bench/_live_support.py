"""Helpers of bench_live.py: loopback senders (tests/live_sender.py), latency statistics, memory, CPU.

Every sender is a subprocess listening on 127.0.0.1 (`--to tcp-listen:...`); `senders()` starts
them, waits (bounded) until each is listening, and kills them all in a finally. Waiting reads
/proc/net/tcp instead of connecting, since the listener takes the first connection as its reader.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

SENDER = Path(__file__).resolve().parents[1] / "tests" / "live_sender.py"
LISTEN_TIMEOUT_SECONDS = 60.0
_TCP_LISTEN = "0A"  # the LISTEN state in /proc/net/tcp
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port: int) -> bool:
    """Whether some socket listens on 127.0.0.1:`port` (read from /proc/net/tcp, no connection made)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f, None)
            return any(parts[1] == wanted and parts[3] == _TCP_LISTEN for parts in (line.split() for line in f))
    except OSError:
        return False


@dataclass
class Sender:
    """One running live_sender.py process and where its report goes."""

    port: int
    process: subprocess.Popen
    log_path: Path
    report: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/PID/stat), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _start(clip: Path, port: int, speed: float, loops: int, max_seconds: float, folder: Path,
           listen: bool = True) -> Sender:
    log_path = folder / f"sender-{port}.log"
    to = f"tcp-listen:127.0.0.1:{port}" if listen else f"tcp:127.0.0.1:{port}"
    command = [sys.executable, str(SENDER), str(clip), "--to", to, "--speed", f"{speed:g}",
               "--loops", str(loops), "--max-seconds", f"{max_seconds:g}"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    return Sender(port, process, log_path)


def _wait_listening(started: Sequence[Sender], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    for _ in range(100_000):
        waiting = [s for s in started if not is_listening(s.port)]
        if not waiting:
            return
        dead = [s for s in waiting if s.process.poll() is not None]
        if dead:
            text = dead[0].log_path.read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"live sender on port {dead[0].port} exited early: {text[-1] if text else 'no output'}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"live sender on port {waiting[0].port} not listening after {timeout_seconds:g} s")
        time.sleep(0.05)


def _stop(sender: Sender) -> None:
    """Record its CPU time, end it (terminate, then kill), read its JSON report line."""
    sender.cpu_seconds = _process_cpu_seconds(sender.process.pid)
    if sender.process.poll() is None:
        sender.process.terminate()
        try:
            sender.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sender.process.kill()
            sender.process.wait(timeout=5)
    with contextlib.suppress(OSError):
        for line in reversed(sender.log_path.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    sender.report = json.loads(line)
                break


@contextlib.contextmanager
def senders(clip: Path, count: int, *, speed: float, loops: int, max_seconds: float) -> Iterator[list[Sender]]:
    """`count` senders of `clip` (MPEG-TS over TCP, paced at `speed`), listening when this yields."""
    running: list[Sender] = []
    with tempfile.TemporaryDirectory(prefix="mvrt-bench-live-") as folder:
        try:
            for _ in range(count):
                running.append(_start(clip, free_port(), speed, loops, max_seconds, Path(folder)))
            _wait_listening(running, LISTEN_TIMEOUT_SECONDS)
            yield running
        finally:
            for sender in running:
                _stop(sender)


@contextlib.contextmanager
def staggered_senders(clip: Path, count: int, spread_seconds: float, *, speed: float, loops: int,
                      max_seconds: float) -> Iterator[list[Sender]]:
    """`count` senders that connect to readers listening on 127.0.0.1 (`Sender.url` + `?listen=1`),
    sender i started `i * spread_seconds / count` seconds after this yields (a thread starts them;
    the sender retries refused connections until its reader listens). All are killed on the way out."""
    ports = [free_port() for _ in range(count)]
    running: list[Sender] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="mvrt-bench-live-") as folder:
        def start_all() -> None:
            begin = time.monotonic()
            for i, port in enumerate(ports):
                if stop.wait(max(0.0, begin + i * spread_seconds / count - time.monotonic())):
                    return
                running.append(_start(clip, port, speed, loops, max_seconds, Path(folder), listen=False))

        starter = threading.Thread(target=start_all, name="bench-senders", daemon=True)
        placeholders = [Sender(port, None, Path(folder) / f"sender-{port}.log") for port in ports]  # type: ignore[arg-type]
        try:
            starter.start()
            yield placeholders
        finally:
            stop.set()
            starter.join(timeout=10)
            for sender in running:
                _stop(sender)
            for placeholder, sender in zip(placeholders, running):
                placeholder.report, placeholder.cpu_seconds = sender.report, sender.cpu_seconds


def latency_stats(values: Sequence[float]) -> dict:
    """p50 / p99 / max / mean of latencies (seconds), and their count; NaN when empty."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not data.size:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan, "mean": math.nan}
    return {"count": int(data.size), "p50": round(float(np.percentile(data, 50)), 4),
            "p99": round(float(np.percentile(data, 99)), 4), "max": round(float(data.max()), 4),
            "mean": round(float(data.mean()), 4)}


def memory_kib() -> dict:
    """This process's peak (VmHWM) and current (VmRSS) resident memory, KiB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    return {"vm_hwm_kib": values.get("VmHWM", 0), "vm_rss_kib": values.get("VmRSS", 0)}


class CpuMeter:
    """This process's CPU time over a stretch of wall time: cores used = CPU seconds / wall seconds."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.monotonic(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def read(self) -> dict:
        wall, cpu = time.monotonic() - self.wall, self._cpu() - self.cpu
        return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                "cores_used": round(cpu / wall, 2) if wall > 0 else math.nan}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)
