"""GPU checks: skipped without CUDA; MVRT_REQUIRE_GPU=1 turns the skip into a failure."""

import os

import numpy as np
import pytest

from mvrt.runtime.engines import open_engine

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu


def _require_cuda():
    if torch.cuda.is_available():
        return
    if os.environ.get("MVRT_REQUIRE_GPU") == "1":
        pytest.fail("MVRT_REQUIRE_GPU=1 but torch sees no CUDA device")
    pytest.skip("no CUDA device")


def _feeds(config, batch, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((batch, *shape)).astype(np.float32) for name, shape in config.input_shapes().items()}


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_torch_on_cuda_matches_onnxruntime_on_cpu(tiny_models, arch):
    _require_cuda()
    tm = tiny_models[arch]
    feeds = _feeds(tm.config, batch=3)
    with open_engine(tm.checkpoint, backend="torch", device="cuda") as gpu, open_engine(tm.onnx) as cpu:
        got, ref = gpu.infer(feeds), cpu.infer(feeds)
    assert got.shape == (3, 6)
    # cuDNN may pick TF32 / different reduction orders: a looser bound than CPU parity (1e-4).
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)


def test_cuda_graph_replay_equals_eager_for_each_batch_size(tiny_models):
    _require_cuda()
    tm = tiny_models["slowfast"]
    with open_engine(tm.checkpoint, backend="torch", device="cuda") as eager, \
            open_engine(tm.checkpoint, backend="torch", device="cuda", cuda_graphs=True) as graphed:
        for batch in (1, 4, 1):  # the second batch-1 call replays the first graph
            feeds = _feeds(tm.config, batch, seed=batch)
            np.testing.assert_allclose(graphed.infer(feeds), eager.infer(feeds), atol=1e-4, rtol=1e-4)
        assert sorted(graphed._graphs) == [1, 4]


def test_fp16_on_cuda_stays_close_to_fp32(tiny_models):
    _require_cuda()
    tm = tiny_models["musicvideo"]
    feeds = _feeds(tm.config, batch=4)
    with open_engine(tm.checkpoint, backend="torch", device="cuda", precision="fp16") as half, open_engine(tm.onnx) as ref:
        got, expected = half.infer(feeds), ref.infer(feeds)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 2e-2 * max(scale, 1.0)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.75
