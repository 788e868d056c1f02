"""GPU checks: skipped without CUDA; MVRT_REQUIRE_GPU=1 turns the skip into a failure."""

import os

import numpy as np
import pytest
from model_factory import random_feeds

from mvrt.runtime.engines import open_engine

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu


def _require_cuda():
    if torch.cuda.is_available():
        return
    if os.environ.get("MVRT_REQUIRE_GPU") == "1":
        pytest.fail("MVRT_REQUIRE_GPU=1 but torch sees no CUDA device")
    pytest.skip("no CUDA device")


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_torch_on_cuda_matches_onnxruntime_on_cpu(tiny_models, arch):
    """Contract 2 (the exported ONNX's): uint8 video crosses to the GPU and is normalised there."""
    _require_cuda()
    tm = tiny_models[arch]
    with open_engine(tm.checkpoint, backend="torch", device="cuda", contract=2) as gpu, open_engine(tm.onnx) as cpu:
        assert gpu.config == cpu.config and cpu.config.contract == 2
        feeds = random_feeds(cpu.config, batch=3)
        got, ref = gpu.infer(feeds), cpu.infer(feeds)
    assert got.shape == (3, 6)
    # cuDNN may pick TF32 / different reduction orders: a looser bound than CPU parity (1e-4).
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)


def test_torch_contract_1_on_cuda_matches_cpu(tiny_models):
    _require_cuda()
    tm = tiny_models["slowfast"]
    feeds = random_feeds(tm.config, batch=2)
    with open_engine(tm.checkpoint, device="cuda") as gpu, open_engine(tm.checkpoint) as cpu:
        np.testing.assert_allclose(gpu.infer(feeds), cpu.infer(feeds), atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("contract", [1, 2])
def test_cuda_graph_replay_equals_eager_for_each_batch_size(tiny_models, contract):
    _require_cuda()
    tm = tiny_models["slowfast"]
    kw = {"backend": "torch", "device": "cuda", "contract": contract}
    with open_engine(tm.checkpoint, **kw) as eager, open_engine(tm.checkpoint, cuda_graphs=True, **kw) as graphed:
        for batch in (1, 4, 1):  # the second batch-1 call replays the first graph
            feeds = random_feeds(graphed.config, batch, seed=batch)
            np.testing.assert_allclose(graphed.infer(feeds), eager.infer(feeds), atol=1e-4, rtol=1e-4)
        assert sorted(graphed._graphs) == [1, 4]
        dtypes = [str(x.dtype) for x in graphed._graphs[4].static_inputs]
    assert dtypes == (["torch.float32"] * 4 if contract == 1 else ["torch.float32", "torch.float32", "torch.uint8"])


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_fp16_on_cuda_stays_close_to_fp32(tiny_models, cuda_graphs):
    """FP16 with uint8 video: audio crosses as half, video as uint8, normalised in float32 then halved."""
    _require_cuda()
    tm = tiny_models["musicvideo"]
    with open_engine(tm.checkpoint, backend="torch", device="cuda", precision="fp16", contract=2,
                     cuda_graphs=cuda_graphs) as half, open_engine(tm.onnx) as ref:
        feeds = random_feeds(ref.config, batch=4)
        got, expected = half.infer(feeds), ref.infer(feeds)
        if cuda_graphs:
            assert [str(x.dtype) for x in half._graphs[4].static_inputs] == ["torch.float16", "torch.uint8"]
    assert got.dtype == np.float32
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 2e-2 * max(scale, 1.0)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.75
