"""Smoke run of bench/bench_gpu.py on this machine: every row either measured or "not run" with a reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def gpu_bench():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import bench_gpu

        yield bench_gpu
    finally:
        sys.path.remove(str(BENCH_DIR))


@pytest.fixture(scope="module")
def smoke(gpu_bench, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-bench")
    out = tmp / "out.json"
    returned = gpu_bench.main(["--quick", "--height", "144", "--iterations", "1", "--warmup", "0",
                               "--cache-dir", str(tmp / "cache"), "--json", str(out)])
    return returned, json.loads(out.read_text())


def test_the_json_is_what_main_returned(smoke):
    returned, written = smoke
    assert written["targets"] == returned["targets"] and written["engine"] == returned["engine"]


def test_uint8_inputs_are_a_third_of_the_float_bytes(smoke):
    sizes = smoke[1]["input_bytes_per_window"]
    assert sizes["2"] * 2.9 < sizes["1"] < sizes["2"] * 3.1  # 5.5 MB against 16.6 MB at full size


def test_cpu_decode_is_measured_and_nvdec_is_measured_or_says_why(smoke):
    result = smoke[1]
    rows = {(r["what"], r["decoder"]): r for r in result["decode"]}
    assert set(rows) == {(w, d) for w in ("every frame", "window frames") for d in ("cpu", "nvdec")}
    for what in ("every frame", "window frames"):
        assert rows[what, "cpu"]["frames_per_second"] > 0 and rows[what, "cpu"]["real_time_factor"] > 0
    every = rows["every frame", "cpu"]
    assert 0.97 * 34 * 30 <= every["frames"] <= 34 * 30  # every frame up to the last target, each once
    assert rows["window frames", "cpu"]["frames"] < every["frames"]  # inference skips what no target shows
    if not result["machine"]["cuda_devices"]:
        assert "decode='nvdec'" in rows["every frame", "nvdec"]["not_run"]
        assert "not_run" in result["targets"]["nvdec_over_all_cpu_cores"]


def test_both_contracts_run_every_engine_and_the_pipeline_agrees(smoke):
    result = smoke[1]
    measured = [r for r in result["engine"] if "samples_per_second" in r]
    assert {(r["backend"], r["contract"]) for r in measured} >= {("torch", 1), ("torch", 2), ("onnxruntime", 1),
                                                                  ("onnxruntime", 2)}
    e2e = {r["contract"]: r for r in result["end_to_end"]}
    assert e2e[1]["windows"] == e2e[2]["windows"] == 2
    np.testing.assert_allclose(e2e[1]["probabilities"], e2e[2]["probabilities"], atol=1e-4)


def test_the_report_names_what_did_not_run(gpu_bench, smoke):
    text = gpu_bench.format_report(smoke[1])
    assert "| every frame | cpu |" in text and "contract 2 (uint8 video)" in text
    if not smoke[1]["machine"]["cuda_devices"]:
        assert "target torch_fp16_graphs_batch32_uint8: not run" in text
