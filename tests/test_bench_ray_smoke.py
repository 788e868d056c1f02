"""Smoke run of bench/bench_ray.py --quick, and run_on_ray(address="local") starting and stopping
its own cluster (skipped without ray; MVRT_REQUIRE_RAY=1 fails instead)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("ray") is None:
    if os.environ.get("MVRT_REQUIRE_RAY") == "1":
        pytest.fail("MVRT_REQUIRE_RAY=1 but ray is not installed", pytrace=False)
    pytest.skip("ray is not installed (MVRT_REQUIRE_RAY=1 fails instead)", allow_module_level=True)

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_ray():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import bench_ray

        yield bench_ray
    finally:
        sys.path.remove(str(BENCH_DIR))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache for the module: the quick run's files and model are made once."""
    return tmp_path_factory.mktemp("bench-ray-cache")


def test_quick_run_puts_local_and_ray_side_by_side(bench_ray, cache, tmp_path, capsys):
    pytest.importorskip("torch")
    import ray

    out = tmp_path / "bench.json"
    returned = bench_ray.main(["--quick", "--cache-dir", str(cache), "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(returned))
    names = [r["name"] for r in returned["rows"]]
    assert names == ["local, jobs=1", "local, jobs=2", "ray, 1 worker(s), cold", "ray, 1 worker(s), warm",
                     "ray, 2 worker(s), cold", "ray, 2 worker(s), warm"]
    assert returned["agree"] is True
    assert {r["windows"] for r in returned["rows"]} == {6}  # 3 files of 5 s, 4 s windows: 2 each
    for row in returned["rows"]:
        assert row["windows_per_second"] > 0 and row["max_abs_dp"] <= 1e-5 and row["errors"] == 0
        assert (row["scheduling_cost"] is None) == (row["kind"] == "local")
    assert all(r["cluster_start_seconds"] > 0 for r in returned["rows"] if r["kind"] == "ray")
    assert "| ray, 2 worker(s), warm |" in capsys.readouterr().out
    assert not ray.is_initialized()  # every local cluster was shut down


def test_run_on_ray_local_starts_and_stops_its_cluster(bench_ray, cache):
    pytest.importorskip("torch")
    import ray

    from mvrt.ray_runner import run_on_ray

    quick = bench_ray.QUICK
    files = bench_ray.ensure_files(cache, 1, quick["seconds"], quick["height"])  # the quick run's, if it ran
    onnx = bench_ray.ensure_model(cache, quick["width"])
    results = list(run_on_ray(onnx, files, address="local", num_cpus=1, engine_options={"threads": 1}))
    assert [(r.path, r.ok, len(r.windows)) for r in results] == [(files[0], True, 2)]
    assert not ray.is_initialized()
