"""KServe V2 requests under both tensor contracts: contract 2 sends `video` as UINT8, a quarter of the bytes.

A contract-1 and a contract-2 ONNX of one checkpoint are served by a real MLServer on 127.0.0.1; the
client reaches it through a byte-counting TCP relay, so the bytes per window are measured on the wire
(gRPC framing included), not computed. Both give the same logits on the same decoded media.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from mvrt.errors import ModelError
from mvrt.runtime.engines.kserve_engine import KServeEngine
from mvrt.runtime.model_meta import input_bytes_per_window

from kserve_server import MLServer, ServedModel, require_kserve
from media_factory import window_batch
from model_factory import random_feeds

_RELAY_TIMEOUT_SECONDS = 60.0
_CHUNK_BYTES = 1 << 16


class CountingRelay:
    """127.0.0.1:port -> upstream; counts the bytes the clients send upstream. A context manager."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.sent_bytes = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> "CountingRelay":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for sock in [self._listener, *self._sockets]:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=_RELAY_TIMEOUT_SECONDS)
            client.settimeout(_RELAY_TIMEOUT_SECONDS)
            self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        try:
            while not self._stop.is_set():
                data = source.recv(_CHUNK_BYTES)
                if not data:
                    break
                if count:
                    with self._lock:
                        self.sent_bytes += len(data)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def served(tiny_models, tmp_path_factory):
    """MLServer serving the full-size tiny slowfast as "c1" (contract-1 ONNX) and "c2" (contract-2 ONNX)."""
    exe = require_kserve()
    from mvrt.export.onnx_export import export_onnx

    tm = tiny_models["slowfast"]
    folder = tmp_path_factory.mktemp("kserve-contracts")
    models = {"c1": export_onnx(tm.checkpoint, None, folder / "c1.onnx", contract=1),
              "c2": export_onnx(tm.checkpoint, None, folder / "c2.onnx", contract=2)}
    with MLServer(folder / "mlserver", [ServedModel(n, p) for n, p in models.items()], executable=exe) as server:
        yield server, models


def test_contract_2_sends_uint8_video_a_quarter_of_the_bytes_with_the_same_logits(served, clip_10s):
    server, models = served
    measured, logits = {}, {}
    for name, onnx in models.items():
        with CountingRelay(server.grpc_port) as relay:
            with KServeEngine(onnx, url=f"127.0.0.1:{relay.port}", remote_model=name, timeout_seconds=60) as engine:
                feeds = window_batch(clip_10s, engine.config, count=3)
                sizes = []
                for batch in (1, 3):
                    before = relay.sent_bytes
                    logits[name, batch] = engine.infer({n: a[:batch] for n, a in feeds.items()})
                    sizes.append(relay.sent_bytes - before)
            assert engine.window_bytes == input_bytes_per_window(engine.config)
            per_window = (sizes[1] - sizes[0]) / 2  # the marginal bytes of a window: no call overhead
            measured[name] = per_window
            assert per_window == pytest.approx(engine.window_bytes, rel=0.01), (name, sizes)  # tensors, raw
            assert abs(sizes[0] - engine.window_bytes) < 64 * 1024  # one call's framing, names and shapes
    print(f"\nKServe gRPC bytes per window (tiny slowfast, 4 s windows, 128 px): contract 1 {measured['c1'] / 1e6:.2f} MB, "
          f"contract 2 {measured['c2'] / 1e6:.2f} MB")
    video_c1 = 4 * (3 * 64 * 128 * 128 + 3 * 8 * 128 * 128)  # float32 video_fast + video_slow
    assert measured["c1"] - measured["c2"] == pytest.approx(video_c1 - 3 * 64 * 128 * 128, rel=0.01)
    assert measured["c2"] < 0.25 * measured["c1"]
    for batch in (1, 3):
        np.testing.assert_allclose(logits["c2", batch], logits["c1", batch], atol=1e-5, rtol=0)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_served_contract_2_model_advertises_uint8_video(served, protocol):
    server, models = served
    with KServeEngine(models["c2"], url=server.url(protocol), protocol=protocol, remote_model="c2") as engine:
        assert engine.datatypes == {"audio_slow": "FP32", "audio_fast": "FP32", "video": "UINT8"}
        feeds = random_feeds(engine.config, 1)
        assert engine.infer(feeds).shape == (1, 6)  # HTTP: JSON integers (MLServer takes no binary data)
    with pytest.raises(ModelError, match=r"remote .*video_fast FP32.* vs local .*video UINT8"):
        KServeEngine(models["c2"], url=server.url(protocol), protocol=protocol, remote_model="c1").load()
