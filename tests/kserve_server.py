"""A real KServe V2 server for tests: MLServer with `kserve_runtime.OnnxRuntimeModel`, on 127.0.0.1.

MLServer pins protobuf < 7 (and many web packages), so it may live in a venv of its own; the
server is always a subprocess. It is found, in order, at `$MVRT_MLSERVER` (the `mlserver`
executable), beside this interpreter, or on PATH. Without it the tests skip, unless
`MVRT_REQUIRE_KSERVE=1` (CI) makes that a failure. The client side needs `tritonclient`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.2
_RUNTIME = Path(__file__).with_name("kserve_runtime.py")
_REQUEST_LOG_PREFIX = "mvrt-test request for "  # kserve_runtime.REQUEST_LOG_PREFIX (not importable here)


@dataclass(frozen=True)
class ServedModel:
    """One model of the repository: `name` serves the ONNX file `onnx`."""

    name: str
    onnx: Path
    sleep_seconds: float = 0.0
    threads: int = 1
    refuse_load: bool = False  # the runtime's load() answers False: the model stays not ready


def mlserver_executable() -> str | None:
    """The `mlserver` command to start, or None when none is installed."""
    explicit = os.environ.get("MVRT_MLSERVER")
    if explicit:
        return str(Path(explicit).resolve()) if Path(explicit).is_file() else None  # tests change cwd
    beside = Path(sys.executable).with_name("mlserver")
    if beside.is_file():
        return str(beside)
    return shutil.which("mlserver")


def require_kserve() -> str:
    """The mlserver executable; skips (or fails under MVRT_REQUIRE_KSERVE=1) without it or tritonclient."""
    missing = []
    if importlib.util.find_spec("tritonclient") is None:
        missing.append("the client package tritonclient (pip install 'tritonclient[grpc,http]')")
    exe = mlserver_executable()
    if exe is None:
        missing.append("MLServer (pip install mlserver, or set MVRT_MLSERVER to its `mlserver` executable)")
    if missing:
        reason = "KServe V2 tests need " + " and ".join(missing)
        if os.environ.get("MVRT_REQUIRE_KSERVE") == "1":
            pytest.fail(reason + " (MVRT_REQUIRE_KSERVE=1)", pytrace=False)
        pytest.skip(reason)
    return exe


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MLServer:
    """`mlserver start ROOT` serving `models` on free loopback ports; a context manager."""

    def __init__(self, root: Path, models: list[ServedModel], executable: str | None = None,
                 grpc_max_message_bytes: int = 2**31 - 1):
        self.root, self.models = Path(root), list(models)
        self.executable = executable or require_kserve()
        self.http_port, self.grpc_port = free_port(), free_port()
        self.grpc_max_message_bytes = grpc_max_message_bytes
        self.process: subprocess.Popen | None = None
        self.log_path = self.root / "mlserver.log"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    def __enter__(self) -> "MLServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self._write_repository()
        # The server's venv alone: no PYTHONPATH of the tests' venv, no MLSERVER_* settings from outside.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MLSERVER_") and k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen([self.executable, "start", str(self.root)], cwd=self.root, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Ends the server (SIGTERM, then SIGKILL after 10 s); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)

    def kill(self) -> None:
        """Kills the server at once (SIGKILL), as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)

    def requests_seen(self, model: str) -> int:
        """How many requests for `model` the runtime has begun (it logs a line for each)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return text.count(f"{_REQUEST_LOG_PREFIX}{model}\n")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _write_repository(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(_RUNTIME, self.root / _RUNTIME.name)
        settings = {"host": "127.0.0.1", "http_port": self.http_port, "grpc_port": self.grpc_port,
                    "metrics_endpoint": None, "parallel_workers": 0, "debug": False,
                    "grpc_max_message_length": self.grpc_max_message_bytes, "gzip_enabled": False}
        (self.root / "settings.json").write_text(json.dumps(settings))
        for model in self.models:
            folder = self.root / model.name
            folder.mkdir(exist_ok=True)
            model_settings = {
                "name": model.name,
                "implementation": "kserve_runtime.OnnxRuntimeModel",
                "parameters": {"uri": str(Path(model.onnx).resolve()),
                               "extra": {"sleep_seconds": model.sleep_seconds, "threads": model.threads,
                                         "refuse_load": model.refuse_load}},
            }
            (folder / "model-settings.json").write_text(json.dumps(model_settings))

    def _wait_ready(self) -> None:
        """Polls the server's and every model's readiness and the gRPC port, at most READY_TIMEOUT_SECONDS."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        paths = [f"/v2/models/{m.name}/ready" for m in self.models if not m.refuse_load]
        # A V2 server is ready when all its models are: with a refusing model, only live.
        paths.insert(0, "/v2/health/live" if any(m.refuse_load for m in self.models) else "/v2/health/ready")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlserver exited with {self.process.returncode}:\n{self.log_tail()}")
            if all(self._http_ok(p) for p in paths) and _port_open(self.grpc_port):
                return
            time.sleep(_POLL_SECONDS)
        raise RuntimeError(f"mlserver not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail()}")

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
