"""isolate=True: decoding in a worker process gives the same inputs, and a dying worker fails one input."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mvrt.errors import MediaError, UsageError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.isolate import IsolatedSource
from mvrt.runtime.pipeline import FileDone, FileStarted, LocalSource, PipelineConfig, run_pipeline
from mvrt.runtime.results import VideoResult, WindowResult

pytest.importorskip("torch")


def _workers() -> list[int]:
    """PIDs of this process's isolate workers (children running the worker module)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"mvrt.runtime._isolate_worker" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("contract", [1, 2])
def test_the_worker_computes_bit_identical_inputs(tiny_models, clip_10s, contract):
    config = tiny_models["slowfast"].config.replace(contract=contract)
    dtypes = {"audio_slow": np.float32, "audio_fast": np.float32, **(
        {"video": np.uint8} if contract == 2 else {"video_slow": np.float32, "video_fast": np.float32})}
    pipeline = PipelineConfig(hop_seconds=2.5)
    local = list(LocalSource(config, pipeline).file_events(str(clip_10s)))
    source = IsolatedSource(config, pipeline)
    try:
        isolated = list(source.file_events(str(clip_10s)))
    finally:
        source.close()
    assert [type(e) for e in isolated] == [type(e) for e in local]
    assert isolated[0] == FileStarted(str(clip_10s), 4) and isolated[-1] == FileDone(str(clip_10s), None, 0)
    for a, b in zip(local[1:-1], isolated[1:-1]):
        assert a.window == b.window and a.gap_seconds == b.gap_seconds == 0.0
        assert b.ready_monotonic is not None and b.ready_monotonic <= time.monotonic()  # one clock for both
        assert set(b.feeds) == set(dtypes)
        for name, value in a.feeds.items():  # contract 2: the uint8 frames cross the pipe unchanged
            assert b.feeds[name].dtype == value.dtype == dtypes[name] and np.array_equal(b.feeds[name], value), name
    assert not _workers()  # closed: no worker left behind


def test_a_worker_killed_by_a_signal_fails_its_input_and_the_next_one_runs(tiny_models, clip_40s, clip_10s):
    config = PipelineConfig(isolate=True, batch_size=1, queue_windows=1)
    killed = []
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        events = []
        for event in run_pipeline(engine, [clip_40s, clip_10s], config):
            events.append(event)
            if isinstance(event, FileStarted) and event.path == str(clip_40s):
                (pid,) = _workers()  # blocked sending its first window: the queue holds one
                os.kill(pid, signal.SIGSEGV)  # what a decoder crash on hostile media looks like
                killed.append(pid)
    videos = [e for e in events if isinstance(e, VideoResult)]
    assert len(killed) == 1
    assert [v.path for v in videos] == [str(clip_40s), str(clip_10s)]
    crashed, good = videos
    assert not crashed.ok and isinstance(crashed.exception, MediaError)
    assert "decoder process died (killed by SIGSEGV)" in crashed.error and str(clip_40s) in crashed.error
    assert "\n" not in crashed.error
    assert good.ok and len(good.windows) == 3
    local = [e for e in run_pipeline_local(tiny_models, clip_10s) if isinstance(e, WindowResult)]
    np.testing.assert_array_equal([w.logits for w in good.windows], [w.logits for w in local])
    assert not _workers()


def run_pipeline_local(tiny_models, path):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        return list(run_pipeline(engine, [path], PipelineConfig(batch_size=1)))


def test_the_error_class_crosses_the_process_boundary(tiny_models, tmp_path):
    missing = tmp_path / "missing.mp4"
    source = IsolatedSource(tiny_models["slowfast"].config, PipelineConfig())
    try:
        (done,) = source.file_events(str(missing))
    finally:
        source.close()
    assert type(done.error) is MediaError and "missing.mp4: no such file" in str(done.error)


def test_a_bad_hop_is_a_usage_error_in_the_worker_too(tiny_models, clip_10s):
    source = IsolatedSource(tiny_models["slowfast"].config, PipelineConfig(hop_seconds=-1.0))
    try:
        (done,) = source.file_events(str(clip_10s))
    finally:
        source.close()
    assert type(done.error) is UsageError and "hop_seconds must be positive" in str(done.error)


def test_closing_the_pipeline_ends_the_worker(tiny_models, clip_40s):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        events = run_pipeline(engine, [clip_40s], PipelineConfig(isolate=True, queue_windows=1))
        assert isinstance(next(events), FileStarted)
        assert len(_workers()) == 1
        events.close()
    deadline = time.monotonic() + 10
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _workers()
    assert not [t for t in threading.enumerate() if t.name.startswith("mvrt-")]
