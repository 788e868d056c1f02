"""Both tensor contracts (DESIGN §3) through the runtime on the same media: the torch engine's `contract`
option, the pipeline, and `mvrt infer` on a contract-1 and a contract-2 ONNX of one checkpoint.

Contract 2 moves the normalisation and the slow-frame subset into the graph; on the same decoded frames
it must give the logits contract 1 gives (the arithmetic is the same float32 `x * scale - offset`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvrt.cli import main
from mvrt.errors import UsageError
from mvrt.runtime.engines import open_engine
from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
from mvrt.runtime.results import VideoResult

from media_factory import window_batch

pytest.importorskip("torch")

ATOL = 1e-5  # same float32 arithmetic, other kernels (ORT vs torch) at most reorder sums


@pytest.fixture(scope="module")
def both_onnx(tiny_models, tmp_path_factory):
    """The tiny slowfast checkpoint exported under contract 1 and under contract 2."""
    from mvrt.export.onnx_export import export_onnx

    tm = tiny_models["slowfast"]
    folder = tmp_path_factory.mktemp("contracts")
    return (export_onnx(tm.checkpoint, None, folder / "c1.onnx", contract=1),
            export_onnx(tm.checkpoint, None, folder / "c2.onnx", contract=2))


def test_torch_contract_2_on_cpu_equals_contract_1_on_the_same_media(tiny_models, clip_10s):
    tm = tiny_models["slowfast"]
    with open_engine(tm.checkpoint) as c1, open_engine(tm.checkpoint, contract=2) as c2:
        assert (c1.config.contract, c2.config.contract) == (1, 2)
        assert c2.config == tm.config.replace(contract=2) and c2.config.input_names == ("audio_slow", "audio_fast", "video")
        assert c2.input_dtypes["video"] == np.uint8 and c1.input_dtypes["video_fast"] == np.float32
        float_feeds, uint8_feeds = window_batch(clip_10s, c1.config), window_batch(clip_10s, c2.config)
        assert uint8_feeds["video"].dtype == np.uint8 and uint8_feeds["video"].nbytes * 4 == float_feeds["video_fast"].nbytes
        want, got = c1.infer(float_feeds), c2.infer(uint8_feeds)
    assert got.shape == (2, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    assert np.abs(want[0] - want[1]).max() > 1e-3  # the two windows differ: the check could fail


def test_torch_contract_2_matches_the_contract_2_onnx(tiny_models, both_onnx, clip_10s):
    with open_engine(tiny_models["slowfast"].checkpoint, contract=2) as torch_engine, open_engine(both_onnx[1]) as ort:
        assert ort.config == torch_engine.config
        feeds = window_batch(clip_10s, ort.config, count=1)
        np.testing.assert_allclose(torch_engine.infer(feeds), ort.infer(feeds), atol=1e-4, rtol=0)
        with pytest.raises(UsageError, match=r"input 'video' must be uint8, got float32"):
            torch_engine.infer({**feeds, "video": feeds["video"].astype(np.float32)})


@pytest.mark.parametrize("contract", [0, 3, "2", True])
def test_a_bad_torch_contract_is_a_usage_error(tiny_models, contract):
    with pytest.raises(UsageError, match=r"^torch contract must be one of 1, 2, got ") as info:
        open_engine(tiny_models["slowfast"].checkpoint, contract=contract)
    assert info.value.setting == "contract"


def test_the_pipeline_gives_the_same_readings_under_both_contracts(tiny_models, both_onnx, clip_10s):
    """Front-end, batching (np.stack keeps uint8) and isolation carry each contract's dtypes."""
    readings = {}
    for label, (model, kwargs, isolate) in {
        "onnx c1": (both_onnx[0], {}, False), "onnx c2": (both_onnx[1], {}, False),
        "onnx c2 isolated": (both_onnx[1], {}, True),
        "torch c2": (tiny_models["slowfast"].checkpoint, {"contract": 2}, False),
    }.items():
        with open_engine(model, **kwargs) as engine:
            events = list(run_pipeline(engine, [clip_10s], PipelineConfig(batch_size=2, isolate=isolate)))
        (video,) = [e for e in events if isinstance(e, VideoResult)]
        assert video.ok, video.error
        readings[label] = np.stack([w.logits for w in video.windows])
    reference = readings.pop("onnx c1")
    assert reference.shape == (3, 6)
    for label, logits in readings.items():
        np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0, err_msg=label)


def test_mvrt_infer_gives_the_same_results_for_both_contracts(both_onnx, clip_10s, capsys):
    docs = []
    for model in both_onnx:
        code = main(["infer", str(clip_10s), "--model", str(model), "--format", "json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        docs.append(json.loads(out))
    (v1,), (v2,) = docs[0]["videos"], docs[1]["videos"]
    assert len(v1["windows"]) == len(v2["windows"]) == 3
    assert v1["label"] == v2["label"]
    for w1, w2 in zip(v1["windows"], v2["windows"]):
        assert (w1["start_seconds"], w1["end_seconds"]) == (w2["start_seconds"], w2["end_seconds"])
        np.testing.assert_allclose(list(w2["probabilities"].values()), list(w1["probabilities"].values()), atol=1e-5)
    np.testing.assert_allclose(list(v2["probabilities"].values()), list(v1["probabilities"].values()), atol=1e-5)
