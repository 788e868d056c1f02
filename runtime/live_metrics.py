"""Prometheus metrics for live runs (`--metrics-port`).

Every `Metrics` owns its own `CollectorRegistry` (never prometheus-client's global one), so
several runs, or tests, in one process do not see each other's series. All methods may be
called from any thread: prometheus-client's metric objects are thread-safe.

Metrics (every series has a `source` label: the input as the user named it):

- `mvrt_windows_total{source}` (counter): windows emitted.
- `mvrt_window_latency_seconds{source}` (histogram, buckets 0.01 .. 30 s): emission wall
  time minus the arrival of the window's last needed packet (DESIGN §9 `latency_seconds`).
- `mvrt_decode_errors_total{source}` (counter): undecodable packets skipped.
- `mvrt_gap_seconds_total{source}` (counter): media seconds filled in (silence / held frame).
- `mvrt_reconnects_total{source}` (counter): reconnection attempts.
- `mvrt_queue_depth_windows{source}` (gauge): windows waiting for inference.
- `mvrt_source_up{source}` (gauge): 1 while the source is `connected`, else 0.
- `mvrt_source_events_total{source,state}` (counter): state changes, by new state
  (`connected`, `reconnecting`, `ended`, `lost`).

prometheus-client is imported lazily, only when a `Metrics` is built; without it the
constructor raises `UsageError`. `Metrics.serve(port)` exposes the registry over HTTP on
`127.0.0.1` by default (`/` and `/metrics` both answer).
"""

from __future__ import annotations

import errno
import socket
import socketserver
import threading
from typing import Any

from mvrt.errors import UsageError

__all__ = ["LATENCY_BUCKETS_SECONDS", "SOURCE_STATES", "Metrics", "MetricsServer"]

_MISSING = "Prometheus metrics need prometheus-client: pip install 'mvrt[metrics]'"

#: Histogram bucket upper bounds, seconds (plus the implicit +Inf).
LATENCY_BUCKETS_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

#: Source states (DESIGN §9 source events) and the value `mvrt_source_up` takes in each.
SOURCE_STATES = {"connected": 1, "reconnecting": 0, "ended": 0, "lost": 0}

_JOIN_SECONDS = 5.0


def _prometheus() -> Any:
    """Import prometheus_client, or raise the one-line UsageError saying how to install it."""
    try:
        import prometheus_client
    except ImportError:
        raise UsageError(_MISSING) from None
    return prometheus_client


def _non_negative(value: float, what: str) -> float:
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{what}: must be a non-negative number, got {value!r}")
    return value


class Metrics:
    """The live-run metrics of one mvrt process, in a registry of their own."""

    def __init__(self) -> None:
        pc = _prometheus()
        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        reg = self.registry
        src = ("source",)
        self._windows = pc.Counter("mvrt_windows", "Windows emitted.", src, registry=reg)
        self._latency = pc.Histogram(
            "mvrt_window_latency_seconds",
            "Seconds from the arrival of a window's last needed packet to its emission.",
            src, buckets=LATENCY_BUCKETS_SECONDS, registry=reg)
        self._decode_errors = pc.Counter(
            "mvrt_decode_errors", "Undecodable packets skipped.", src, registry=reg)
        self._gap = pc.Counter(
            "mvrt_gap_seconds", "Media seconds filled in (audio silence, video held frame).",
            src, registry=reg)
        self._reconnects = pc.Counter(
            "mvrt_reconnects", "Reconnection attempts.", src, registry=reg)
        self._queue = pc.Gauge(
            "mvrt_queue_depth_windows", "Windows waiting for inference.", src, registry=reg)
        self._up = pc.Gauge(
            "mvrt_source_up", "1 while the source is connected, else 0.", src, registry=reg)
        self._events = pc.Counter(
            "mvrt_source_events", "Source state changes, by new state.",
            ("source", "state"), registry=reg)

    def window_emitted(self, source: str, latency_seconds: float | None,
                       gap_seconds: float = 0.0) -> None:
        """Count one emitted window; observe its latency (seconds) unless None; add its gap."""
        gap = _non_negative(gap_seconds, "gap_seconds")
        latency = None if latency_seconds is None else _non_negative(latency_seconds, "latency_seconds")
        self._windows.labels(source).inc()
        self._gap.labels(source).inc(gap)
        if latency is not None:
            self._latency.labels(source).observe(latency)

    def decode_errors(self, source: str, count: int) -> None:
        """Add `count` undecodable packets skipped from `source`."""
        self._decode_errors.labels(source).inc(_non_negative(count, "decode error count"))

    def reconnect(self, source: str) -> None:
        """Count one reconnection attempt of `source`."""
        self._reconnects.labels(source).inc()

    def source_state(self, source: str, state: str) -> None:
        """Record that `source` entered `state` (connected/reconnecting/ended/lost)."""
        if state not in SOURCE_STATES:
            raise ValueError(f"source state {state!r}: must be one of {', '.join(SOURCE_STATES)}")
        self._up.labels(source).set(SOURCE_STATES[state])
        self._events.labels(source, state).inc()

    def queue_depth(self, source: str, windows: int) -> None:
        """Set the number of windows of `source` waiting for inference."""
        self._queue.labels(source).set(_non_negative(windows, "queue depth"))

    def text(self) -> str:
        """The Prometheus text exposition of this registry."""
        return self._pc.generate_latest(self.registry).decode("utf-8")

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve this registry over HTTP on host:port (port 0 picks a free one) in a daemon thread."""
        return MetricsServer(self._pc.make_wsgi_app(self.registry), port, host)


def _check_endpoint(port: Any, host: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port {port!r}: must be an integer 0..65535", setting="port")
    if not isinstance(host, str) or not host.strip():
        raise UsageError(f"port {port}: host {host!r} must name an address to listen on", setting="port")


def _family(host: str, port: int) -> socket.AddressFamily:
    """The address family of `host` (IPv6 for '::1' and the like), or a UsageError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"port {port}: cannot resolve host {host!r} ({exc.strerror})", setting="port") from None
    return infos[0][0]


def _make_server(app: Any, port: int, host: str) -> Any:
    """A threading wsgiref server bound to host:port, not yet serving."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class _Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # scrapes are not worth a stderr line each

    class _Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = _family(host, port)

    try:
        httpd = _Server((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port}: cannot listen on {host}:{port} (address in use)", setting="port") from None
        raise UsageError(f"port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})",
                         setting="port") from None
    httpd.set_app(app)
    return httpd


class MetricsServer:
    """An HTTP server answering scrapes in a daemon thread; `close()` (or `with`) stops it.

    `.host` and `.port` are the address actually bound (the chosen port when 0 was asked).
    """

    def __init__(self, app: Any, port: int, host: str = "127.0.0.1") -> None:
        _check_endpoint(port, host)
        self._httpd = _make_server(app, port, host)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"mvrt-metrics-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The scrape URL, e.g. http://127.0.0.1:9100/metrics."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._httpd.shutdown()
        self._thread.join(_JOIN_SECONDS)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
