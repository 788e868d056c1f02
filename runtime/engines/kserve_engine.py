"""KServe V2 client engine: the local `.onnx` file supplies the config, a V2 server runs the graph.

Decoding and the front-end stay on this machine; each batch of feeds goes to a KServe V2
inference server (Triton, MLServer, KServe) over gRPC or HTTP with `tritonclient`, imported
only when this engine loads. On load the engine checks that the server is live, that the remote
model is known and ready, and that its metadata (input names, datatypes: FP32, and UINT8 for a
contract-2 `video`, dims with a -1 batch axis, and the `logits` output) matches the local model. Every failure is one line: a `BackendError`
naming the server (refused, timed out, gone away) or a `ModelError` (unknown or mismatched model).

gRPC: the channel's send/receive limits fit the largest batch (`max_batch` windows, or the
2 GiB gRPC maximum). HTTP: binary tensor data where the server lists the `binary_tensor_data`
extension (Triton), JSON otherwise (MLServer 1.7 accepts JSON only; slow for video windows).
The HTTP client (gevent) is bound to the thread that made it, so each thread gets its own.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvrt.artifacts import OUTPUT_NAME
from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.model_meta import read_onnx_config
from mvrt.runtime.probe import one_line

log = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http")
DEFAULT_TIMEOUT_SECONDS = 60.0
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC's own ceiling (a signed 32-bit length)
_MESSAGE_OVERHEAD_BYTES = 1 << 20  # names, shapes and framing around the tensors
_URL = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_LOST_STATUSES = ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED")
_LOST_WORDS = ("connection closed", "socket closed", "connection reset", "broken pipe")
V2_DATATYPES = {"float32": "FP32", "uint8": "UINT8"}  # numpy dtype name -> KServe V2 datatype


class KServeEngine(Engine):
    """Runs `path`'s model on a KServe V2 server at `url` ("HOST:PORT") as `remote_model`.

    `remote_model` defaults to the file's stem; `protocol` is "grpc" or "http";
    `timeout_seconds` bounds every call (health checks and each batch); `max_batch` caps the
    batch size (and sizes the gRPC message limits); `model_version` "" lets the server choose.
    """

    name = "kserve"

    def __init__(self, path: str | os.PathLike, *, url: str, remote_model: str | None = None,
                 protocol: str = "grpc", timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 max_batch: int | None = None, model_version: str = ""):
        super().__init__(path, read_onnx_config(path), max_batch=_check_max_batch(max_batch))
        self.url = _check_url(url)
        self.protocol = _check_protocol(protocol)
        self.timeout_seconds = _check_timeout(timeout_seconds)
        self.remote_model = _check_remote_model(self.path.stem if remote_model is None else remote_model)
        self.model_version = str(model_version)
        self.datatypes = {name: V2_DATATYPES[dtype.name] for name, dtype in self.input_dtypes.items()}
        # bytes of one window's tensors on the wire (contract 2: 1 byte a video pixel, not 4)
        self.window_bytes = sum(self.input_dtypes[n].itemsize * math.prod(s) for n, s in self.input_shapes.items())
        self.binary_data: bool | None = None  # HTTP: whether tensors travel as binary, set on load
        self._module = None  # tritonclient.grpc or tritonclient.http
        self._errors = _ClientErrors()  # what the client's calls raise, set on load
        self._grpc_client = None
        self._local = threading.local()  # HTTP: this thread's client
        self._http_clients: list = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"KServeEngine(path={str(self.path)!r}, url={self.url!r}, remote_model={self.remote_model!r}, "
                f"protocol={self.protocol!r}, loaded={self._loaded})")

    @property
    def server(self) -> str:
        """How errors name the server: "KServe V2 server at HOST:PORT (grpc)"."""
        return f"KServe V2 server at {self.url} ({self.protocol})"

    @property
    def grpc_message_bytes(self) -> int:
        """The gRPC send/receive limit: the largest batch plus framing, at most 2 GiB."""
        if self.max_batch is None:
            return GRPC_MAX_MESSAGE_BYTES
        return min(GRPC_MAX_MESSAGE_BYTES, self.max_batch * self.window_bytes + _MESSAGE_OVERHEAD_BYTES)

    # -- lifecycle ---------------------------------------------------------------------------

    def _load(self) -> None:
        self._module, self._errors = _import_client(self.protocol)
        try:
            self._check_server()
            self._check_model()
            if self.protocol == "http":
                self.binary_data = self._takes_binary_data()
        except BaseException:
            self._release()
            raise
        log.info("kserve: %s serves %r for %s", self.server, self.remote_model, self.path.name)

    def _release(self) -> None:
        clients = [self._grpc_client, *self._http_clients]
        self._grpc_client, self._http_clients, self._local = None, [], threading.local()
        for client in clients:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - a client of an ended thread or a dead server
                    pass

    def _client(self):
        if self.protocol == "grpc":
            if self._grpc_client is None:
                limit = self.grpc_message_bytes
                options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
                           ("grpc.keepalive_time_ms", 2**31 - 1), ("grpc.keepalive_timeout_ms", 20000)]
                self._grpc_client = self._module.InferenceServerClient(self.url, channel_args=options)
            return self._grpc_client
        client = getattr(self._local, "client", None)
        if client is None:
            timeout = self.timeout_seconds
            client = self._module.InferenceServerClient(self.url, connection_timeout=timeout, network_timeout=timeout)
            self._local.client = client
            with self._lock:
                self._http_clients.append(client)
        return client

    # -- checks on load ----------------------------------------------------------------------

    def _check_server(self) -> None:
        """The server must be live; its readiness is asked only when the model is not ready (a server is
        "not ready" while any of its models is, which need not concern this one)."""
        if not self._call("the liveness check", self._client().is_server_live, **self._timeout_kw()):
            raise BackendError(f"the {self.server} is not live", setting="url")

    def _check_model(self) -> None:
        try:
            metadata = self._metadata()
        except _NotFound:
            raise ModelError(f"the {self.server} has no model {self.remote_model!r} (remote_model; by default "
                             f"the model file's stem, {self.path.stem!r})", setting="remote_model") from None
        ready = self._call("the model readiness check", self._client().is_model_ready, self.remote_model,
                           self.model_version, **self._timeout_kw())
        if not ready:
            server_ready = self._call("the readiness check", self._client().is_server_ready, **self._timeout_kw())
            state = "ready" if server_ready else "not ready either"
            raise BackendError(f"model {self.remote_model!r} on the {self.server} is not ready (still loading, or "
                               f"it failed to load: see the server's log; the server is {state})",
                               setting="remote_model")
        self._check_signature(metadata)

    def _metadata(self) -> dict:
        kwargs = {"as_json": True, **self._timeout_kw()} if self.protocol == "grpc" else {}
        try:
            return dict(self._client().get_model_metadata(self.remote_model, self.model_version, **kwargs))
        except self._errors.caught as exc:
            if _status(exc) in ("StatusCode.NOT_FOUND", "400", "404") and "not found" in _message(exc).lower():
                raise _NotFound from None
            raise self._backend_error("the model metadata request", exc) from None

    def _check_signature(self, metadata: dict) -> None:
        local_inputs = {n: (self.datatypes[n], (-1, *self.input_shapes[n])) for n in self.config.input_names}
        remote_inputs = _tensors(metadata.get("inputs", []))
        remote_output = _tensors(metadata.get("outputs", [])).get(OUTPUT_NAME)
        classes = len(self.config.classes)
        output_ok = remote_output is not None and remote_output[0] == "FP32" and remote_output[1] in (
            (-1, classes), (-1, -1))
        if remote_inputs != local_inputs or not output_ok:
            local = {**local_inputs, OUTPUT_NAME: ("FP32", (-1, classes))}
            remote = {**remote_inputs, **({OUTPUT_NAME: remote_output} if remote_output else {})}
            raise ModelError(f"remote model {self.remote_model!r} on the {self.server} does not match {self.path}: "
                             f"remote {_describe(remote)} vs local {_describe(local)} (serve this file's graph, or "
                             "set remote_model)", setting="remote_model")

    def _takes_binary_data(self) -> bool:
        """HTTP: whether the server lists the binary tensor data extension (Triton does, MLServer 1.7 not)."""
        metadata = self._call("the server metadata request", self._client().get_server_metadata)
        binary = "binary_tensor_data" in (metadata.get("extensions") or [])
        if not binary:
            log.warning("kserve: the %s takes no binary tensor data; tensors travel as JSON (slow for video "
                        "windows; protocol='grpc' avoids it)", self.server)
        return binary

    # -- inference ---------------------------------------------------------------------------

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        batch = next(iter(feeds.values())).shape[0]
        what = f"inference of a batch of {batch} window{'s' * (batch != 1)}"
        if self.protocol == "grpc":
            self._check_message_size(batch)
        binary = bool(self.binary_data)
        inputs = []
        for name, array in feeds.items():
            tensor = self._module.InferInput(name, list(array.shape), self.datatypes[name])
            if self.protocol == "grpc":
                tensor.set_data_from_numpy(array)
            else:
                tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        output = (self._module.InferRequestedOutput(OUTPUT_NAME) if self.protocol == "grpc"
                  else self._module.InferRequestedOutput(OUTPUT_NAME, binary_data=binary))
        result = self._call(what, self._send, inputs, output)
        logits = result.as_numpy(OUTPUT_NAME)
        if logits is None:
            raise BackendError(f"the {self.server} answered the {what} without a {OUTPUT_NAME!r} output")
        return logits

    def _send(self, inputs: list, output) -> Any:
        """One infer call. HTTP: once more if the server had closed the kept-alive connection (uvicorn, under
        MLServer, does after 5 s idle; geventhttpclient never resends a POST itself). Inference is idempotent."""
        def call():
            return self._client().infer(self.remote_model, inputs, model_version=self.model_version, outputs=[output],
                                        **self._timeout_kw())

        if self.protocol == "grpc":
            return call()
        try:
            return call()
        except self._errors.stale as exc:
            log.debug("kserve: %s closed the connection (%s); sending again on a new one", self.server, exc)
        return call()

    def _check_message_size(self, batch: int) -> None:
        size = batch * self.window_bytes + _MESSAGE_OVERHEAD_BYTES
        if size > self.grpc_message_bytes:
            most = max(1, (self.grpc_message_bytes - _MESSAGE_OVERHEAD_BYTES) // self.window_bytes)
            raise UsageError(f"a batch of {batch} windows is {size / 2**20:.0f} MiB, over the gRPC message limit "
                             f"of {self.grpc_message_bytes / 2**20:.0f} MiB; use batch_size {most} or less",
                             setting="batch_size")

    # -- errors ------------------------------------------------------------------------------

    def _timeout_kw(self) -> dict:
        return {"client_timeout": self.timeout_seconds} if self.protocol == "grpc" else {}

    def _call(self, what: str, function, *args, **kwargs) -> Any:
        """`function(*args, **kwargs)`, with every client or network failure as one BackendError."""
        try:
            return function(*args, **kwargs)
        except self._errors.caught as exc:
            raise self._backend_error(what, exc) from None

    def _backend_error(self, what: str, exc: BaseException) -> BackendError:
        status, message = _status(exc), _message(exc)
        lowered = message.lower()
        if status == "StatusCode.DEADLINE_EXCEEDED" or isinstance(exc, self._errors.timeouts) or (
                "timed out" in lowered):
            return BackendError(f"the {self.server} did not answer {what} within timeout_seconds="
                                f"{self.timeout_seconds:g}", setting="timeout_seconds")
        refused = "refused" in lowered or "failed to connect" in lowered
        if refused and not self._loaded:
            reason = "connection refused" if "refused" in lowered else _one_line(message)
            return BackendError(f"no {self.server}: {reason} (start the server, or check url and protocol)",
                                setting="url")
        if refused or isinstance(exc, self._errors.lost) or status in _LOST_STATUSES or any(
                word in lowered for word in _LOST_WORDS):
            reason = "connection refused" if "refused" in lowered else _one_line(message)
            verb = "went away" if self._loaded else "cannot be reached"
            return BackendError(f"the {self.server} {verb}: {what} failed: {reason}", setting="url")
        if status == "StatusCode.RESOURCE_EXHAUSTED":
            return BackendError(f"the {self.server} refused {what} as too large ({_one_line(message)}); lower "
                                "batch_size or raise the server's gRPC message limit", setting="batch_size")
        return BackendError(f"the {self.server} failed {what}: {_one_line(message)}")


@dataclass(frozen=True)
class _ClientErrors:
    """What a tritonclient call raises: the server's answers, lost connections, timeouts."""

    server: tuple[type[BaseException], ...] = ()
    lost: tuple[type[BaseException], ...] = ()  # OSError (refused, reset, ...), geventhttpclient parse errors
    stale: tuple[type[BaseException], ...] = ()  # HTTP: a kept-alive connection the server had closed
    timeouts: tuple[type[BaseException], ...] = (TimeoutError,)  # socket timeouts, gevent.Timeout

    @property
    def caught(self) -> tuple[type[BaseException], ...]:
        return (*self.server, *self.lost, *self.timeouts)


class _NotFound(Exception):
    """The server does not know the remote model."""


def _import_client(protocol: str):
    """tritonclient.grpc or tritonclient.http, and what its calls raise: (server errors, lost connections, timeouts)."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        from tritonclient.utils import InferenceServerException
    except ImportError:
        raise MissingDependencyError("tritonclient", "kserve", f"the kserve backend ({protocol})") from None
    lost, timeouts = _http_errors() if protocol == "http" else ((), ())
    stale = (*lost, ConnectionResetError, BrokenPipeError) if protocol == "http" else ()
    return module, _ClientErrors((InferenceServerException,), (OSError, *lost), stale, (TimeoutError, *timeouts))


def _http_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """geventhttpclient's parse errors (a server gone mid-answer or a closed keep-alive connection: "connection
    closed") and gevent's Timeout."""
    lost: tuple[type[BaseException], ...] = ()
    timeouts: tuple[type[BaseException], ...] = ()
    try:
        from geventhttpclient.response import HTTPParseError

        lost = (HTTPParseError,)
    except ImportError:  # pragma: no cover - older geventhttpclient
        pass
    try:
        import gevent

        timeouts = (gevent.Timeout,)
    except ImportError:  # pragma: no cover - tritonclient.http needs gevent
        pass
    return lost, timeouts


def _tensors(entries) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Metadata tensors (dicts from JSON, shapes as ints or strings) as name -> (datatype, dims)."""
    tensors = {}
    for entry in entries or []:
        try:
            dims = tuple(int(d) for d in entry.get("shape", []))
            tensors[str(entry["name"])] = (str(entry.get("datatype", "")), dims)
        except (KeyError, TypeError, ValueError):
            continue
    return tensors


def _describe(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> str:
    return ", ".join(f"{name} {dtype}[{','.join(map(str, dims))}]" for name, (dtype, dims) in tensors.items()) or "none"


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    try:
        return str(status() if callable(status) else status or "")
    except Exception:  # noqa: BLE001
        return ""


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    try:
        text = message() if callable(message) else message
    except Exception:  # noqa: BLE001
        text = None
    return str(text or exc or type(exc).__name__)


def _one_line(text: str, limit: int = 300) -> str:
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not _URL.match(url.strip()) or not 0 < int(url.strip().rsplit(":", 1)[1]) < 65536:
        raise UsageError(f"url must be HOST:PORT (e.g. 127.0.0.1:8001, no scheme), got {url!r}", setting="url")
    return url.strip()


def _check_protocol(protocol: object) -> str:
    if protocol not in PROTOCOLS:
        raise UsageError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}", setting="protocol")
    return str(protocol)


def _check_timeout(seconds: object) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"timeout_seconds must be a positive number, got {seconds!r}", setting="timeout_seconds")
    return float(seconds)


def _check_remote_model(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/?#\\ "):
        raise UsageError(f"remote_model must be a model name (no spaces, '/', '?', '#'), got {name!r}",
                         setting="remote_model")
    return name


def _check_max_batch(max_batch: object) -> int | None:
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise UsageError(f"max_batch must be a positive integer or None, got {max_batch!r}", setting="max_batch")
    return max_batch
