"""`mvrt infer` with live-source options: flags map to settings, bad ones are one-line usage errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mvrt.cli import main

SENDER = Path(__file__).resolve().parent / "live_sender.py"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flags, message", [
    (["--input-option", "novalue"], "--input-option 'novalue': expected KEY=VALUE"),
    (["--input-format", "nosuchformat"], "input_format 'nosuchformat' (--input-format) is not an input format"),
    (["--reconnect"], "none of the inputs is one"),
    (["--isolate", "--live"], "--isolate reads files only"),
])
def test_bad_live_options_are_one_line_usage_errors(capsys, tiny_models, clip_10s, flags, message):
    code, out, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, *flags)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_a_metrics_port_in_use_is_a_usage_error(capsys, tiny_models, clip_10s):
    pytest.importorskip("prometheus_client")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--metrics-port", port)
    assert code == 2 and f"cannot listen on 127.0.0.1:{port} (address in use)" in err


def test_live_file_with_limits_and_jsonl_by_default_for_a_pipe(tiny_models, clip_10s, tmp_path):
    """--live on a file cuts W every H with no end-aligned window; --duration bounds it."""
    with open(clip_10s, "rb") as media:
        done = subprocess.run(
            [sys.executable, "-m", "mvrt.cli", "infer", "-", "--model", str(tiny_models["slowfast"].onnx),
             "--duration", "9", "--hop", "2"],
            stdin=media, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # jsonl: the default for a live input
    starts = [line["start_seconds"] for line in lines if line["type"] == "window"]
    assert starts == [0.0, 2.0, 4.0]  # 4 s windows every 2 s that end by 9 s
    assert lines[-1]["type"] == "video" and lines[-1]["window_count"] == 3


def test_metrics_count_a_live_runs_windows_and_source_events(tiny_models, clip_10s, tmp_path):
    pytest.importorskip("prometheus_client")
    import mvrt.api
    from mvrt.runtime.live_metrics import Metrics

    fifo = tmp_path / "in.ts"
    os.mkfifo(fifo)
    metrics = Metrics()
    sender = subprocess.Popen([sys.executable, str(SENDER), str(clip_10s), "--to", f"fifo:{fifo}", "--speed", "0",
                               "--max-seconds", "60"], stderr=subprocess.DEVNULL)
    try:
        with mvrt.api.load_model(tiny_models["slowfast"].onnx) as model:
            events = list(model.run([fifo], metrics=metrics))
    finally:
        sender.kill()
        sender.wait()
    windows = sum(type(e).__name__ == "WindowResult" for e in events)
    text = metrics.text()
    source = f'source="{fifo}"'
    assert f"mvrt_windows_total{{{source}}} {float(windows)}" in text and windows == 2
    assert f"mvrt_window_latency_seconds_count{{{source}}} {float(windows)}" in text
    assert f'mvrt_source_events_total{{{source},state="connected"}} 1.0' in text
    assert f'mvrt_source_events_total{{{source},state="ended"}} 1.0' in text
    assert f"mvrt_queue_depth_windows{{{source}}} 0.0" in text
