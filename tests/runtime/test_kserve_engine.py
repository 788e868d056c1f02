"""KServeEngine against a real KServe V2 server (MLServer + an ONNX Runtime runtime) on 127.0.0.1.

One server per module serves small test models; tests that kill or limit a server start their
own. Without MLServer or tritonclient the server tests skip (MVRT_REQUIRE_KSERVE=1 fails them).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mvrt.config import FrontendConfig
from mvrt.errors import BackendError, MissingDependencyError, ModelError, UsageError
from mvrt.runtime.engines.kserve_engine import KServeEngine
from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

from kserve_server import MLServer, ServedModel, free_port, require_kserve
from model_factory import random_feeds

PROTOCOLS = ("grpc", "http")
SMALL_FRONTEND = FrontendConfig(window_seconds=4.0, image_size=32, n_mels=32)  # ~1 MB a window
SLOW_SECONDS = 3.0
UVICORN_KEEP_ALIVE_SECONDS = 5.0  # uvicorn's default timeout_keep_alive, which MLServer keeps


@pytest.fixture(scope="module")
def small_models(tmp_path_factory) -> dict[str, Path]:
    """A seeded small slowfast ONNX model (tiny width, 32-pixel frames, 32 mels)."""
    pytest.importorskip("torch")
    from model_factory import make_tiny_model

    return {"slowfast": make_tiny_model(tmp_path_factory.mktemp("kserve-models"), "slowfast",
                                        frontend=SMALL_FRONTEND)[1]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_models, tiny_models):
    """MLServer serving: the small slowfast as its stem "tiny-slowfast", a slow copy of it (each request
    sleeps SLOW_SECONDS), and the full-size tiny slowfast ("big")."""
    exe = require_kserve()
    models = [ServedModel("tiny-slowfast", small_models["slowfast"]),
              ServedModel("slow", small_models["slowfast"], sleep_seconds=SLOW_SECONDS),
              ServedModel("big", tiny_models["slowfast"].onnx)]
    with MLServer(tmp_path_factory.mktemp("mlserver"), models, executable=exe) as running:
        yield running


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def local_logits(onnx: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with OnnxRuntimeEngine(onnx, providers="cpu", threads=1) as engine:
        return engine.infer(feeds)


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# -- readings equal the local run --------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_logits_equal_local_onnxruntime(server, small_models, protocol):
    onnx = small_models["slowfast"]
    with KServeEngine(onnx, url=server.url(protocol), protocol=protocol, timeout_seconds=30) as engine:
        assert engine.remote_model == "tiny-slowfast"  # the file's stem
        for batch in (1, 3):
            feeds = random_feeds(engine.config, batch, seed=batch)
            remote = engine.infer(feeds)
            assert remote.shape == (batch, len(engine.config.classes)) and remote.dtype == np.float32
            assert np.max(np.abs(softmax(remote) - softmax(local_logits(onnx, feeds)))) <= 1e-5
        if protocol == "http":
            assert engine.binary_data is False  # MLServer 1.7 lists no binary_tensor_data extension


@pytest.mark.parametrize(("protocol", "batch"), [("grpc", 2), ("http", 1)])
def test_full_size_windows_cross_the_wire(server, tiny_models, protocol, batch):
    """A full-size tiny window is ~3.5 MB under contract 2 (uint8 video; 14.5 MB as float32): two are over gRPC's
    4 MiB default, and one is a large JSON body over HTTP."""
    onnx = tiny_models["slowfast"].onnx
    with KServeEngine(onnx, url=server.url(protocol), remote_model="big", protocol=protocol,
                      timeout_seconds=60) as engine:
        feeds = random_feeds(engine.config, batch, seed=7)
        assert feeds["video"].dtype == np.uint8 and sum(a.nbytes for a in feeds.values()) > 3 * 2**20 * batch
        remote = engine.infer(feeds)
    assert np.max(np.abs(softmax(remote) - softmax(local_logits(onnx, feeds)))) <= 1e-5


def test_http_client_per_thread(server, small_models):
    """The gevent HTTP client is bound to its thread: a batch from another thread and then from this one."""
    onnx = small_models["slowfast"]
    feeds = random_feeds(KServeEngine(onnx, url=server.http_url).config, 1, seed=3)
    expected = local_logits(onnx, feeds)
    with KServeEngine(onnx, url=server.http_url, protocol="http", timeout_seconds=30) as engine:
        results: dict[str, object] = {}
        worker = threading.Thread(target=lambda: results.setdefault("thread", engine.infer(feeds)))
        worker.start()
        worker.join(timeout=30)
        here = engine.infer(feeds)
    for logits in (results["thread"], here):
        assert np.max(np.abs(softmax(logits) - softmax(expected))) <= 1e-5


def test_http_after_the_server_closed_an_idle_connection(server, small_models):
    """uvicorn (MLServer's HTTP server) closes a kept-alive connection after 5 s idle; the next batch still
    goes through (geventhttpclient drops a pooled connection found closed; should the close race the
    request, the engine sends it once more on a new connection)."""
    onnx = small_models["slowfast"]
    with KServeEngine(onnx, url=server.http_url, protocol="http", timeout_seconds=30) as engine:
        feeds = random_feeds(engine.config, 1, seed=5)
        first = engine.infer(feeds)
        time.sleep(UVICORN_KEEP_ALIVE_SECONDS + 1.5)
        assert np.array_equal(engine.infer(feeds), first)


def test_pipeline_readings_equal_local_run(server, small_models, clip_10s):
    from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
    from mvrt.runtime.results import VideoResult

    onnx = small_models["slowfast"]

    def readings(engine):
        with engine:
            events = run_pipeline(engine, [clip_10s], PipelineConfig(batch_size=2))
            videos = [e for e in events if isinstance(e, VideoResult)]
        assert len(videos) == 1 and videos[0].error is None and videos[0].windows
        return np.stack([w.probabilities for w in videos[0].windows])

    remote = readings(KServeEngine(onnx, url=server.grpc_url, timeout_seconds=30))
    local = readings(OnnxRuntimeEngine(onnx, providers="cpu", threads=1))
    assert remote.shape == local.shape and np.max(np.abs(remote - local)) <= 1e-5


# -- one-line errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_refused(small_models, protocol):
    require_kserve()
    url = f"127.0.0.1:{free_port()}"
    engine = KServeEngine(small_models["slowfast"], url=url, protocol=protocol, timeout_seconds=5)
    refused = rf"^no KServe V2 server at {url} \({protocol}\): connection refused"
    with pytest.raises(BackendError, match=refused) as info:
        engine.load()
    one_line(info)
    assert info.value.setting == "url"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_remote_model(server, small_models, protocol):
    engine = KServeEngine(small_models["slowfast"], url=server.url(protocol), protocol=protocol, remote_model="nope")
    with pytest.raises(ModelError, match=r"has no model 'nope' \(remote_model") as info:
        engine.load()
    assert server.url(protocol) in one_line(info) and info.value.setting == "remote_model"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_remote_model_with_other_input_names(server, tiny_models, protocol):
    engine = KServeEngine(tiny_models["musicvideo"].onnx, url=server.url(protocol), protocol=protocol,
                          remote_model="tiny-slowfast")
    with pytest.raises(ModelError, match=r"does not match .*tiny-musicvideo\.onnx: remote .*audio_slow FP32"
                                         r"\[-1,2,32,63\].* vs local audio FP32\[-1,2,128,173\]") as info:
        engine.load()
    one_line(info)


def test_remote_model_with_other_input_dims(server, tiny_models):
    """The full-size tiny model's file has stem tiny-slowfast; the server's tiny-slowfast has 32-pixel frames."""
    engine = KServeEngine(tiny_models["slowfast"].onnx, url=server.grpc_url)
    with pytest.raises(ModelError, match=r"remote .*video UINT8\[-1,3,64,32,32\].* vs local .*video "
                                         r"UINT8\[-1,3,64,128,128\]") as info:
        engine.load()
    one_line(info)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout_is_one_line(server, small_models, protocol):
    with KServeEngine(small_models["slowfast"], url=server.url(protocol), protocol=protocol, remote_model="slow",
                      timeout_seconds=1) as engine:
        with pytest.raises(BackendError, match=r"did not answer inference of a batch of 1 window within "
                                               r"timeout_seconds=1$") as info:
            engine.infer(random_feeds(engine.config, 1))
    assert server.url(protocol) in one_line(info) and info.value.setting == "timeout_seconds"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_killed_during_and_between_batches(tmp_path, small_models, protocol):
    """The batch in flight when the server dies fails, and so does the next one, each in one line."""
    onnx = small_models["slowfast"]
    served = [ServedModel("tiny-slowfast", onnx), ServedModel("slow", onnx, sleep_seconds=SLOW_SECONDS)]
    with MLServer(tmp_path / "mlserver", served) as own:
        gone = (rf"^the KServe V2 server at {own.url(protocol)} \({protocol}\) went away: "
                r"inference of a batch of 2 windows")
        fast = KServeEngine(onnx, url=own.url(protocol), protocol=protocol, timeout_seconds=10)
        slow = KServeEngine(onnx, url=own.url(protocol), protocol=protocol, remote_model="slow", timeout_seconds=10)
        with fast, slow:
            feeds = random_feeds(fast.config, 2)
            assert fast.infer(feeds).shape == (2, 6)
            in_flight: dict[str, BaseException] = {}
            worker = threading.Thread(target=_infer_into, args=(slow, feeds, in_flight))
            worker.start()
            deadline = time.monotonic() + 10
            while not own.requests_seen("slow") and time.monotonic() < deadline:
                time.sleep(0.05)
            own.kill()
            worker.join(timeout=15)
            assert isinstance(in_flight.get("error"), BackendError), in_flight
            assert re.match(gone, str(in_flight["error"])) and "\n" not in str(in_flight["error"])
            with pytest.raises(BackendError, match=gone + " failed: connection refused$") as info:
                fast.infer(feeds)
            one_line(info)


def _infer_into(engine, feeds, out: dict) -> None:
    try:
        out["logits"] = engine.infer(feeds)
    except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
        out["error"] = exc


def test_model_not_ready(tmp_path, small_models):
    """A model whose runtime reports not ready is a one-line error; the server's other model still serves
    (a V2 server is "not ready" while any of its models is)."""
    onnx = small_models["slowfast"]
    served = [ServedModel("tiny-slowfast", onnx), ServedModel("refusing", onnx, refuse_load=True)]
    with MLServer(tmp_path / "mlserver", served) as own:
        for protocol in PROTOCOLS:
            with KServeEngine(onnx, url=own.url(protocol), protocol=protocol) as engine:
                assert engine.infer(random_feeds(engine.config, 1)).shape == (1, 6)
            engine = KServeEngine(onnx, url=own.url(protocol), protocol=protocol, remote_model="refusing")
            with pytest.raises(BackendError, match=r"^model 'refusing' on the KServe V2 server at .* is not ready "
                                                   r"\(still loading, or it failed to load") as info:
                engine.load()
            assert one_line(info).endswith("the server is not ready either)")


def test_server_message_limit_is_one_line(tmp_path, small_models):
    """A server whose gRPC limit is under the batch's size refuses it; the error says what to change."""
    onnx = small_models["slowfast"]
    with MLServer(tmp_path / "mlserver", [ServedModel("tiny-slowfast", onnx)], grpc_max_message_bytes=2**20) as own:
        with KServeEngine(onnx, url=own.grpc_url) as engine:
            assert engine.window_bytes < 2**20 // 3  # ~0.28 MB a window (uint8 video)
            assert engine.infer(random_feeds(engine.config, 1)).shape == (1, 6)
            with pytest.raises(BackendError, match=r"too large .*lower batch_size or raise the server's gRPC "
                                                   r"message limit") as info:
                engine.infer(random_feeds(engine.config, 5))  # ~1.4 MB
    one_line(info)


# -- settings (no server needed) ----------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "setting"), [
    ({"url": "http://127.0.0.1:8001"}, "url"),
    ({"url": "127.0.0.1"}, "url"),
    ({"url": "127.0.0.1:70000"}, "url"),
    ({"url": "127.0.0.1:8001", "protocol": "rest"}, "protocol"),
    ({"url": "127.0.0.1:8001", "timeout_seconds": 0}, "timeout_seconds"),
    ({"url": "127.0.0.1:8001", "timeout_seconds": float("nan")}, "timeout_seconds"),
    ({"url": "127.0.0.1:8001", "remote_model": "a/b"}, "remote_model"),
    ({"url": "127.0.0.1:8001", "max_batch": 0}, "max_batch"),
])
def test_bad_settings_are_usage_errors(small_models, kwargs, setting):
    with pytest.raises(UsageError, match=rf"^{setting} ") as info:
        KServeEngine(small_models["slowfast"], **kwargs)
    assert info.value.setting == setting


def test_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="missing.onnx"):
        KServeEngine(tmp_path / "missing.onnx", url="127.0.0.1:8001")


def test_grpc_limits_follow_max_batch(small_models):
    engine = KServeEngine(small_models["slowfast"], url="127.0.0.1:8001", max_batch=4)
    assert 4 * engine.window_bytes < engine.grpc_message_bytes < 4 * engine.window_bytes + 2 * 2**20
    assert KServeEngine(small_models["slowfast"], url="127.0.0.1:8001").grpc_message_bytes == 2**31 - 1
    with pytest.raises(UsageError, match="exceeds this engine's maximum batch 4"):
        engine.infer(random_feeds(engine.config, 5))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_missing_tritonclient_names_the_extra(small_models, monkeypatch, protocol):
    monkeypatch.setitem(sys.modules, f"tritonclient.{protocol}", None)  # import of it raises ImportError
    engine = KServeEngine(small_models["slowfast"], url="127.0.0.1:8001", protocol=protocol)
    with pytest.raises(MissingDependencyError, match=r"tritonclient.*pip install 'mvrt\[kserve\]'"):
        engine.load()
