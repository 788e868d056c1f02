import itertools

import numpy as np
import pytest

from mvrt.errors import UsageError
from mvrt.runtime.engine_timing import bench_engine, synthetic_feeds
from mvrt.runtime.engines import open_engine


class _StepClock:
    """A clock whose successive timed calls take 10, 20, 30, ... ms."""

    def __init__(self):
        self.now, self.calls = 0.0, itertools.count()

    def __call__(self):
        call = next(self.calls)
        if call % 2 == 1:  # end of a timed call
            self.now += 0.010 * (call // 2 + 1)
        return self.now


def test_percentiles_and_throughput_come_from_the_timed_calls(tiny_models):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        (row,) = bench_engine(engine, [3], warmup=1, iterations=10, clock=_StepClock())
    expected = np.arange(1, 11) * 10.0  # ms
    assert row.p50_ms == pytest.approx(np.percentile(expected, 50))
    assert row.p99_ms == pytest.approx(np.percentile(expected, 99))
    assert row.mean_ms == pytest.approx(55.0)
    assert row.samples_per_second == pytest.approx(3 / 0.055)


def test_real_timings_are_ordered_and_positive(tiny_models):
    with open_engine(tiny_models["musicvideo"].onnx) as engine:
        rows = bench_engine(engine, [1, 2], warmup=1, iterations=3)
    assert [r.batch_size for r in rows] == [1, 2]
    for r in rows:
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms


def test_synthetic_feeds_match_the_model_inputs(tiny_models):
    config = tiny_models["slowfast"].config
    feeds = synthetic_feeds(config.input_shapes(), 2)
    assert {k: v.shape for k, v in feeds.items()} == {k: (2, *s) for k, s in config.input_shapes().items()}
    assert all(v.dtype == np.float32 for v in feeds.values())


def test_synthetic_feeds_follow_a_contract_2_models_dtypes(tiny_models):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        feeds = synthetic_feeds(engine.input_shapes, 2, input_dtypes=engine.input_dtypes)
        assert feeds["video"].dtype == np.uint8 and feeds["video"].max() > 200 and feeds["audio_slow"].dtype == np.float32
        assert engine.infer(feeds).shape == (2, 6)


@pytest.mark.parametrize("kwargs, match", [({"warmup": -1}, "warmup"), ({"iterations": 0}, "iterations")])
def test_bad_settings_are_refused(tiny_models, kwargs, match):
    with open_engine(tiny_models["slowfast"].onnx) as engine:
        with pytest.raises(UsageError, match=match):
            bench_engine(engine, [1], **kwargs)
