"""mvrt.runtime.live_metrics: real HTTP scrapes on 127.0.0.1, parsed with prometheus-client's parser."""

from __future__ import annotations

import socket
import sys
import threading
import urllib.request

import pytest

from mvrt.errors import UsageError

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from mvrt.runtime.live_metrics import LATENCY_BUCKETS_SECONDS, Metrics  # noqa: E402

TIMEOUT_SECONDS = 5.0


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """GET the exposition text and index every sample by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        body = resp.read().decode("utf-8")
    return parse(body)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def src(name: str, **extra: str) -> tuple:
    return tuple(sorted({"source": name, **extra}.items()))


def record_some(m: Metrics) -> None:
    m.source_state("cam", "connected")
    m.window_emitted("cam", 0.2, gap_seconds=0.5)
    m.window_emitted("cam", 1.5)
    m.window_emitted("cam", None, gap_seconds=0.25)
    m.window_emitted("rtsp://b", 40.0)
    m.decode_errors("cam", 3)
    m.decode_errors("cam", 2)
    m.reconnect("rtsp://b")
    m.source_state("rtsp://b", "connected")
    m.source_state("rtsp://b", "reconnecting")
    m.source_state("rtsp://b", "connected")
    m.source_state("cam", "ended")
    m.queue_depth("cam", 4)
    m.queue_depth("cam", 2)


def test_scrape_over_http_reports_recorded_values():
    m = Metrics()
    record_some(m)
    with m.serve(0) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        got = scrape(server.url)
    assert got[("mvrt_windows_total", src("cam"))] == 3
    assert got[("mvrt_windows_total", src("rtsp://b"))] == 1
    # the window without a latency is counted but not observed
    assert got[("mvrt_window_latency_seconds_count", src("cam"))] == 2
    assert got[("mvrt_window_latency_seconds_sum", src("cam"))] == pytest.approx(1.7)
    assert got[("mvrt_window_latency_seconds_bucket", src("cam", le="0.25"))] == 1
    assert got[("mvrt_window_latency_seconds_bucket", src("cam", le="2.5"))] == 2
    assert got[("mvrt_window_latency_seconds_bucket", src("rtsp://b", le="30.0"))] == 0
    assert got[("mvrt_window_latency_seconds_bucket", src("rtsp://b", le="+Inf"))] == 1
    assert got[("mvrt_gap_seconds_total", src("cam"))] == pytest.approx(0.75)
    assert got[("mvrt_gap_seconds_total", src("rtsp://b"))] == 0
    assert got[("mvrt_decode_errors_total", src("cam"))] == 5
    assert got[("mvrt_reconnects_total", src("rtsp://b"))] == 1
    assert ("mvrt_reconnects_total", src("cam")) not in got
    assert got[("mvrt_queue_depth_windows", src("cam"))] == 2
    assert got[("mvrt_source_up", src("cam"))] == 0
    assert got[("mvrt_source_up", src("rtsp://b"))] == 1
    assert got[("mvrt_source_events_total", src("rtsp://b", state="connected"))] == 2
    assert got[("mvrt_source_events_total", src("rtsp://b", state="reconnecting"))] == 1
    assert got[("mvrt_source_events_total", src("cam", state="ended"))] == 1


def test_histogram_buckets_span_10ms_to_30s():
    m = Metrics()
    m.window_emitted("a", 0.005)
    les = sorted(float(dict(k[1])["le"]) for k in parse(m.text())
                 if k[0] == "mvrt_window_latency_seconds_bucket")
    assert les[0] == 0.01 and les[-2] == 30.0 and les[-1] == float("inf")
    assert tuple(les[:-1]) == LATENCY_BUCKETS_SECONDS


def test_registries_are_separate_and_not_global():
    import prometheus_client

    a, b = Metrics(), Metrics()  # a second Metrics must not clash on names
    a.reconnect("x")
    assert ("mvrt_reconnects_total", src("x")) not in parse(b.text())
    assert "mvrt_reconnects" not in prometheus_client.generate_latest().decode()


def test_concurrent_updates_are_all_counted():
    m = Metrics()
    threads = [threading.Thread(target=lambda: [m.window_emitted("s", 0.1) for _ in range(500)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    got = parse(m.text())
    assert got[("mvrt_windows_total", src("s"))] == 2000
    assert got[("mvrt_window_latency_seconds_count", src("s"))] == 2000


def test_bad_values_are_rejected():
    m = Metrics()
    with pytest.raises(ValueError, match="source state 'dead': must be one of connected"):
        m.source_state("s", "dead")
    with pytest.raises(ValueError, match="gap_seconds: must be a non-negative"):
        m.window_emitted("s", 0.1, gap_seconds=-1.0)
    with pytest.raises(ValueError, match="latency_seconds: must be a non-negative"):
        m.window_emitted("s", float("nan"))
    assert ("mvrt_windows_total", src("s")) not in parse(m.text())


def test_port_in_use_is_a_usage_error():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        with pytest.raises(UsageError, match=rf"^port {port}: cannot listen on "
                                             rf"127\.0\.0\.1:{port} \(address in use\)$"):
            Metrics().serve(port)


def test_close_frees_the_port_for_a_second_server():
    m = Metrics()
    first = m.serve(0)
    port = first.port
    with pytest.raises(UsageError, match="address in use"):
        m.serve(port)
    first.close()
    first.close()  # idempotent
    with m.serve(port) as second:
        assert second.port == port
        m.reconnect("z")
        assert scrape(f"http://127.0.0.1:{port}/")[("mvrt_reconnects_total", src("z"))] == 1


@pytest.mark.parametrize("port", [-1, 65536, "9100", True])
def test_invalid_port_is_a_usage_error(port):
    with pytest.raises(UsageError, match="^port .*: must be an integer 0..65535$"):
        Metrics().serve(port)


def test_empty_host_is_refused_rather_than_binding_everywhere():
    with pytest.raises(UsageError, match="host '' must name an address"):
        Metrics().serve(0, host="")


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(UsageError) as info:
        Metrics()
    assert str(info.value) == "Prometheus metrics need prometheus-client: pip install 'mvrt[metrics]'"


def test_module_imports_without_prometheus_client(monkeypatch):
    import importlib

    import mvrt.runtime
    import mvrt.runtime.live_metrics as original

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "mvrt.runtime.live_metrics")
    monkeypatch.setattr(mvrt.runtime, "live_metrics", original)  # restored after the re-import
    module = importlib.import_module("mvrt.runtime.live_metrics")
    assert module.LATENCY_BUCKETS_SECONDS[0] == 0.01
