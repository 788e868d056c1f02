"""Engine padding (runtime/engines/base.py): a fixed-batch or MIN-bounded model gets a partial
batch padded with zero rows, and the padding's outputs dropped; a run's last partial batch does
not abort it.

`_MeanEngine` is a concrete Engine whose "model" is real numpy math (logits from each sample's
input means): it records the batch each `_infer` call was given, so the tests see what the
backend received, and per-sample logits make padding visible if a padded row leaked out.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from model_factory import tiny_config

from mvrt.errors import UsageError
from mvrt.runtime.engines.base import Engine, pad_feeds
from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
from mvrt.runtime.results import WindowResult

CONFIG = tiny_config("slowfast", contract=2)  # uint8 video: padding keeps each input's dtype


class _MeanEngine(Engine):
    name = "mean"

    def __init__(self, config=CONFIG, fixed_batch=None, min_batch=1, max_batch=None):
        super().__init__("mean.model", config, max_batch=max_batch)
        self.fixed_batch, self.min_batch = fixed_batch, min_batch
        self.given: list[dict[str, np.ndarray]] = []
        rng = np.random.default_rng(7)
        self.weights = rng.standard_normal((len(config.input_names), len(config.classes))).astype(np.float32)

    def _load(self):
        pass

    def _release(self):
        pass

    def _infer(self, feeds):
        self.given.append(feeds)
        means = np.stack([feeds[n].reshape(len(feeds[n]), -1).astype(np.float64).mean(1) for n in self.config.input_names],
                         axis=1)  # (B, inputs)
        return (means @ self.weights + 1.0).astype(np.float32)  # (B, classes); a zero row gives exactly 1.0


def _feeds(batch: int, seed: int = 0, config=CONFIG) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtypes = config.input_dtypes()
    return {n: (rng.integers(1, 256, (batch, *s), dtype=np.uint8) if dtypes[n] == "uint8"
                else rng.uniform(0.5, 1.5, (batch, *s)).astype(np.float32)) for n, s in config.input_shapes().items()}


def test_a_batch_under_the_fixed_batch_is_padded_and_the_padding_dropped(caplog):
    padded, plain = _MeanEngine(fixed_batch=4), _MeanEngine()
    feeds = _feeds(3, seed=1)
    with caplog.at_level(logging.INFO, logger="mvrt.runtime.engines.base"):
        got = padded.infer(feeds)
        padded.infer(_feeds(1, seed=2))
    np.testing.assert_array_equal(got, plain.infer(feeds))  # same numbers as the unpadded batch, 3 rows
    assert got.shape == (3, 6)
    assert [len(next(iter(g.values()))) for g in padded.given] == [4, 4]
    first = padded.given[0]
    for name, value in feeds.items():
        assert first[name].dtype == value.dtype and first[name].shape == (4, *value.shape[1:])
        np.testing.assert_array_equal(first[name][:3], value)
        assert not first[name][3:].any()  # zero rows
    said = [r.getMessage() for r in caplog.records if "padded" in r.getMessage()]
    assert len(said) == 1 and "its fixed batch 4: a batch of 3 is padded with 1 zero row(s)" in said[0]


def test_full_batches_are_not_padded_and_larger_ones_are_refused():
    engine = _MeanEngine(fixed_batch=4)
    engine.infer(_feeds(4))
    assert len(engine.given[0]["video"]) == 4
    with pytest.raises(UsageError, match=r"batch size 5 exceeds this engine's fixed batch 4 \(mean\.model runs batches "
                       r"of exactly 4; smaller ones are padded\)"):
        engine.infer(_feeds(5))
    assert len(engine.given) == 1  # refused before the backend ran


def test_a_batch_under_the_minimum_is_padded_up_to_it_only():
    engine = _MeanEngine(min_batch=2, max_batch=8)
    for batch in (1, 3, 8):
        assert engine.infer(_feeds(batch, seed=batch)).shape == (batch, 6)
    assert [len(g["video"]) for g in engine.given] == [2, 3, 8]
    assert engine.batch_to_run(1) == 2 and engine.batch_to_run(5) == 5
    with pytest.raises(UsageError, match=r"batch size 9 exceeds this engine's maximum batch 8"):
        engine.infer(_feeds(9))


def test_pad_feeds_keeps_dtypes_and_rows():
    feeds = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "v": np.full((2, 2), 200, np.uint8)}
    out = pad_feeds(feeds, 5)
    assert {k: (v.dtype, v.shape) for k, v in out.items()} == {"a": (np.float32, (5, 3)), "v": (np.uint8, (5, 2))}
    np.testing.assert_array_equal(out["a"][:2], feeds["a"])
    assert out["a"][2:].sum() == 0 and out["v"][2:].sum() == 0 and out["v"][:2].min() == 200


def test_the_last_partial_batch_of_a_run_is_padded_not_an_error(clip_10s):
    """3 windows at batch 2 on a fixed-batch-2 engine: the last batch of one window is padded, and
    every window's logits equal those of an engine without a fixed batch."""
    fixed, plain = _MeanEngine(fixed_batch=2, max_batch=2), _MeanEngine()
    runs = {}
    for name, engine in (("fixed", fixed), ("plain", plain)):
        events = list(run_pipeline(engine, [clip_10s], PipelineConfig(batch_size=2)))
        runs[name] = {e.index: e.logits for e in events if isinstance(e, WindowResult)}
    assert sorted(runs["fixed"]) == [0, 1, 2]
    for index, logits in runs["plain"].items():
        np.testing.assert_array_equal(runs["fixed"][index], logits)
    sizes = [len(g["video"]) for g in plain.given]  # the pipeline batches what is ready, up to 2
    assert sum(sizes) == 3 and 1 in sizes  # 3 windows: at least one partial batch
    assert {len(g["video"]) for g in fixed.given} == {2}  # ... which the fixed engine got padded
