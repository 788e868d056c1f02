"""mvrt.ray_runner on a real local Ray cluster (2 CPUs, loopback): the same readings as a local run.

Without Ray the module skips; MVRT_REQUIRE_RAY=1 (CI) turns the skip into a failure. The
cluster is started once for the module (ray.init costs seconds) and the runs use it
(`address=None`); bench/bench_ray.py's smoke test covers `address="local"` starting and stopping one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

import numpy as np
import pytest

from mvrt.errors import MissingDependencyError, ModelError, OutputError, UsageError
from mvrt.output_formats import jsonl_line
from mvrt.runtime.inputs import expand_inputs
from mvrt.runtime.pipeline import PipelineConfig
from mvrt.runtime.results import VideoResult

if importlib.util.find_spec("ray") is None:
    if os.environ.get("MVRT_REQUIRE_RAY") == "1":
        pytest.fail("MVRT_REQUIRE_RAY=1 but ray is not installed", pytrace=False)
    pytest.skip("ray is not installed (pip install 'mvrt[ray]'; MVRT_REQUIRE_RAY=1 fails instead)",
                allow_module_level=True)

from mvrt.ray_runner import done_inputs, ray_session, run_on_ray, wants_gpu  # noqa: E402

CLIP_SECONDS = (6.0, 9.0, 5.0)  # 4 s windows: 2, 3 and 2 of them (the last end-aligned)


@pytest.fixture(scope="module")
def cluster():
    with ray_session("local", num_cpus=2, log_to_driver=False) as ray:
        yield ray


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A folder of three short real clips and one garbage file named .mp4."""
    from shared_fixtures import _moving_clip

    folder = tmp_path_factory.mktemp("archive")
    for i, seconds in enumerate(CLIP_SECONDS):
        _moving_clip(folder / f"clip{i}.mp4", seconds, seed=i)
    (folder / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return folder


@pytest.fixture(scope="module")
def local_results(tiny_models, archive) -> dict[str, VideoResult]:
    """The plain local run (mvrt.api) over the same inputs, by path."""
    from mvrt.api import load_model

    items, _ = expand_inputs([str(archive), str(archive / "gone.mp4")])
    with load_model(tiny_models["slowfast"].onnx, threads=1) as model:
        return {e.path: e for e in model.run(items) if isinstance(e, VideoResult)}


def test_ray_run_gives_the_local_readings_and_one_error_row(cluster, tiny_models, archive, local_results):
    started = time.monotonic()
    results = list(run_on_ray(tiny_models["slowfast"].onnx, [archive, archive / "gone.mp4"],
                              PipelineConfig(batch_size=2), address=None, engine_options={"threads": 1}))
    assert time.monotonic() - started < 30
    by_path = {r.path: r for r in results}
    assert len(results) == 5 and set(by_path) == set(local_results)
    for name in ("bad.mp4", "gone.mp4"):  # garbage bytes, a missing file: the local run's error rows
        bad = by_path.pop(str(archive / name))
        assert not bad.ok and bad.windows == () and "\n" not in bad.error
        assert bad.error == local_results[bad.path].error and bad.error.startswith(f"{bad.path}: ")
        assert type(bad.exception) is type(local_results[bad.path].exception)
    for path, got in by_path.items():
        want = local_results[path]
        assert got.ok and got.label == want.label and got.audio_path is None
        assert [w.start_seconds for w in got.windows] == [w.start_seconds for w in want.windows]
        assert [w.index for w in got.windows] == [w.index for w in want.windows]
        assert [w.label for w in got.windows] == [w.label for w in want.windows]
        for g, w in zip(got.windows, want.windows):
            np.testing.assert_allclose(g.probabilities, w.probabilities, atol=1e-5, rtol=0)
            np.testing.assert_allclose(g.logits, w.logits, atol=1e-4, rtol=0)
            assert g.path == path and g.latency_seconds is not None and g.latency_seconds >= 0
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5, rtol=0)
        assert json.loads(jsonl_line(got)).keys() == json.loads(jsonl_line(want)).keys()
    assert sorted(len(r.windows) for r in by_path.values()) == [2, 2, 3]


def test_skip_leaves_inputs_out(cluster, tiny_models, archive):
    skip = {str(archive / "clip0.mp4"), str(archive / "bad.mp4")}
    results = list(run_on_ray(tiny_models["slowfast"].onnx, [archive], address=None, skip=skip,
                              engine_options={"threads": 1}))
    assert sorted(r.path for r in results) == [str(archive / "clip1.mp4"), str(archive / "clip2.mp4")]
    assert all(r.ok for r in results)
    assert list(run_on_ray(tiny_models["slowfast"].onnx, [archive / "clip0.mp4"], address=None, skip=skip)) == []


def test_stopping_the_consumer_cancels_the_rest(cluster, tiny_models, archive):
    """Closing the generator early cancels outstanding tasks and ends the actors: the CPUs come back."""
    run = run_on_ray(tiny_models["slowfast"].onnx, [archive] * 3, address=None, max_inputs_in_flight=4,
                     engine_options={"threads": 1})
    first = next(run)
    run.close()
    assert isinstance(first, VideoResult)
    deadline = time.monotonic() + 15
    while cluster.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.available_resources().get("CPU", 0) == 2
    again = list(run_on_ray(tiny_models["slowfast"].onnx, [archive / "clip2.mp4"], address=None))
    assert [r.ok for r in again] == [True]  # the session is still usable


def test_options_are_checked_before_any_task(cluster, tiny_models, archive, tmp_path):
    onnx = tiny_models["slowfast"].onnx
    with pytest.raises(UsageError, match="live source"):
        list(run_on_ray(onnx, ["udp://127.0.0.1:5000"], address=None))
    with pytest.raises(UsageError, match="isolate=True is not needed"):
        list(run_on_ray(onnx, [archive], PipelineConfig(isolate=True), address=None))
    with pytest.raises(UsageError, match="engine_actors must be a positive integer"):
        list(run_on_ray(onnx, [archive], address=None, engine_actors=0))
    with pytest.raises(UsageError, match="window_seconds 3 does not match"):
        list(run_on_ray(onnx, [archive], PipelineConfig(window_seconds=3.0), address=None))
    with pytest.raises(ModelError, match="no such model file"):
        list(run_on_ray(tmp_path / "missing.onnx", [archive], address=None))
    with pytest.raises(UsageError, match="already initialised"):
        with ray_session("local", num_cpus=1):
            pass


def test_missing_ray_is_a_missing_dependency(monkeypatch, tiny_models, archive):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"needs the 'ray' package.*mvrt\[ray\]"):
        with ray_session("local"):
            pass
    with pytest.raises(MissingDependencyError, match="Ray cluster"):
        run_on_ray(tiny_models["slowfast"].onnx, [archive])  # raised by the call, before any iteration


def test_engine_actors_ask_for_a_gpu_only_for_cuda_engines(tiny_models):
    from mvrt.runtime.engines import open_engine

    onnx = tiny_models["slowfast"].onnx
    assert not wants_gpu(open_engine(onnx, threads=1), {"threads": 1})
    options = {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    assert wants_gpu(open_engine(onnx, **options), options)  # not loaded: no CUDA needed to ask
    assert wants_gpu(open_engine(tiny_models["slowfast"].checkpoint, device="cuda:0"), {"device": "cuda:0"})


def test_done_inputs_reads_video_records_and_tolerates_a_cut_last_line(tmp_path, local_results):
    out = tmp_path / "out.jsonl"
    lines = [json.dumps({"type": "model", "path": "m.onnx"})]
    for video in local_results.values():
        lines += [jsonl_line(w) for w in video.windows] + [jsonl_line(video)]
    lines.append(jsonl_line(next(v for v in local_results.values() if v.ok).windows[0])[:25])  # cut short
    out.write_text("\n".join(lines))
    assert done_inputs(out) == set(local_results) and len(local_results) == 5
    assert done_inputs(out, include_errors=False) == {p for p, v in local_results.items() if v.ok}
    assert done_inputs(tmp_path / "none-yet.jsonl") == set()
    out.write_text("\n".join([lines[0], "{not json", *lines[1:3]]) + "\n")
    with pytest.raises(OutputError, match=r"out.jsonl: line 2 is not JSON"):
        done_inputs(out)


_CTRL_C = """
import os, signal, sys
import ray
from mvrt.ray_runner import run_on_ray
try:
    with run_on_ray(sys.argv[1], sys.argv[2:], address="local", num_cpus=1, log_to_driver=False,
                    engine_options={"threads": 1}) as run:
        for video in run:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the other inputs are still on the cluster
            for _ in range(100):
                ray.get([], timeout=0.1)  # the interrupt lands here, in the consumer's loop
except KeyboardInterrupt:
    print("interrupted; ray still initialised:", ray.is_initialized())
"""


def test_ctrl_c_in_the_consumer_shuts_a_local_cluster_down(tiny_models, archive):
    import subprocess
    import sys

    clips = [str(archive / f"clip{i}.mp4") for i in range(3)] * 2
    done = subprocess.run([sys.executable, "-c", _CTRL_C, str(tiny_models["slowfast"].onnx), *clips],
                          capture_output=True, text=True, timeout=90)
    assert "interrupted; ray still initialised: False" in done.stdout, done.stderr[-2000:]
