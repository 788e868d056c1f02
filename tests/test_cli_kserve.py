"""`mvrt infer --backend kserve` against a real KServe V2 server (MLServer) on 127.0.0.1.

Decoding and the front-end run here, batches go to the server: the readings equal a local
ONNX Runtime run of the same file; a server lost mid-run fails the inputs in flight with one
line each and exit status 1. The option checks need no server.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest

from mvrt.cli import main
from mvrt.config import FrontendConfig

from kserve_server import MLServer, ServedModel, free_port, require_kserve

SMALL_FRONTEND = FrontendConfig(window_seconds=4.0, image_size=32, n_mels=32)  # ~1 MB a window
SLOW_SECONDS = 2.0


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    pytest.importorskip("torch")
    from model_factory import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("cli-kserve"), "slowfast", frontend=SMALL_FRONTEND)[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_onnx):
    exe = require_kserve()
    models = [ServedModel(small_onnx.stem, small_onnx), ServedModel("slow", small_onnx, sleep_seconds=SLOW_SECONDS)]
    with MLServer(tmp_path_factory.mktemp("mlserver"), models, executable=exe) as running:
        yield running


def _windows(document: dict) -> dict[tuple[str, int], np.ndarray]:
    return {(video["path"], w["window"]): np.array(list(w["probabilities"].values()))
            for video in document["videos"] for w in video["windows"]}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_on_a_kserve_server_reads_what_the_local_run_reads(capsys, server, small_onnx, clip_10s, protocol):
    code, out, err = run(capsys, "infer", clip_10s, "--model", small_onnx, "--format", "json", "--batch-size", 2)
    assert code == 0, err
    local = json.loads(out)
    code, out, err = run(capsys, "infer", clip_10s, "--model", small_onnx, "--format", "json", "--batch-size", 2,
                         "--backend", "kserve", "--url", server.url(protocol), "--protocol", protocol)
    assert code == 0, err
    remote = json.loads(out)
    assert remote["model"]["backend"] == "kserve"
    want, got = _windows(local), _windows(remote)
    assert sorted(got) == sorted(want) and len(got) == 3
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5)
    assert server.requests_seen(small_onnx.stem) >= 2


def test_a_server_lost_mid_run_fails_the_inputs_in_flight_with_one_line(capsys, tmp_path, small_onnx, clip_10s):
    exe = require_kserve()
    inputs = [shutil.copy(clip_10s, tmp_path / f"clip{i}.mp4") for i in range(2)]
    with MLServer(tmp_path / "repo", [ServedModel("slow", small_onnx, sleep_seconds=SLOW_SECONDS)],
                  executable=exe) as lost:
        def kill_after_first_request():
            deadline = time.monotonic() + 60
            while lost.requests_seen("slow") < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            lost.kill()

        killer = threading.Thread(target=kill_after_first_request, daemon=True)
        killer.start()
        code, out, err = run(capsys, "infer", *inputs, "--model", small_onnx, "--format", "json", "--batch-size", 1,
                             "--backend", "kserve", "--url", lost.grpc_url, "--remote-model", "slow",
                             "--remote-timeout", 30)
        killer.join(timeout=70)
    assert code == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("mvrt: error:")]
    assert errors and all(lost.grpc_url in line for line in errors), err
    videos = json.loads(out)["videos"]
    assert [v["path"] for v in videos] == [str(p) for p in inputs]
    assert not any(v["ok"] for v in videos)  # the first batch in flight, every later one refused


def test_kserve_needs_url_and_its_flags_need_kserve(capsys, tiny_models, clip_10s):
    onnx = tiny_models["slowfast"].onnx
    code, _, err = run(capsys, "infer", clip_10s, "--model", onnx, "--backend", "kserve")
    assert code == 2 and "--backend kserve needs --url HOST:PORT" in err
    code, _, err = run(capsys, "infer", clip_10s, "--model", onnx, "--url", f"127.0.0.1:{free_port()}")
    assert code == 2 and "--url applies to the kserve backend only (--backend kserve), not onnxruntime" in err
    code, _, err = run(capsys, "infer", clip_10s, "--model", onnx, "--backend", "kserve", "--url", "127.0.0.1:1",
                       "--threads", 2)
    assert code == 2 and "--threads applies to a local engine" in err
    code, _, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].checkpoint,
                       "--backend", "kserve", "--url", "127.0.0.1:1")
    assert code == 2 and "--backend kserve needs the model's .onnx file" in err
