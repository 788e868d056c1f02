"""What train and pretrain share: the cosine schedule, the epoch order, batching, the run's set-up."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mvrt.config import FrontendConfig
from mvrt.data import Clip
from mvrt.errors import UsageError
from mvrt.training.loop import batches, epoch_start, set_cosine_lr, start_run
from mvrt.training.settings import PretrainSettings, TrainSettings


def _optimizer(groups: int = 2) -> SimpleNamespace:
    return SimpleNamespace(param_groups=[{"lr": None} for _ in range(groups)])


def test_cosine_lr_starts_at_the_peak_and_decays_every_group():
    optimizer = _optimizer()
    assert set_cosine_lr(optimizer, 1e-2, 1, 4) == pytest.approx(1e-2)
    assert set_cosine_lr(optimizer, 1e-2, 3, 4) == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(5e-3)] * 2
    assert set_cosine_lr(optimizer, 1e-2, 4, 4) < set_cosine_lr(optimizer, 1e-2, 2, 4)


def test_epoch_start_shuffles_by_seed_and_epoch():
    settings = TrainSettings(epochs=5, lr=2e-3, seed=3)
    lr, order = epoch_start(_optimizer(1), settings, 2, 10)
    assert lr == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi / 5)))
    np.testing.assert_array_equal(order, np.random.default_rng([3, 2]).permutation(10))
    assert sorted(order) == list(range(10))
    _, again = epoch_start(_optimizer(1), settings, 2, 10)
    _, other = epoch_start(_optimizer(1), settings, 3, 10)
    assert np.array_equal(order, again) and not np.array_equal(order, other)


def test_batches_keep_order_and_the_short_tail():
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches([], 3) == []


def test_a_run_whose_clips_all_fail_says_so(tmp_path):
    pytest.importorskip("torch")
    broken = tmp_path / "clips" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real movie")
    settings = PretrainSettings(width=1 / 16, frontend=FrontendConfig(window_seconds=2.0, image_size=32),
                                progress=False)
    start = start_run(settings, tmp_path / "clips", tmp_path / "out.safetensors", tmp_path / "cache",
                      command="pretrain")
    assert start.root == tmp_path / "clips" and start.out == tmp_path / "out.safetensors"
    assert start.cache.folder.parent == tmp_path / "cache" and start.config == settings.model_config()
    clip = Clip(broken, broken, label=-1, class_name="", split="unlabelled", stem="broken")
    with pytest.raises(UsageError, match=r"clips: no usable unlabelled clips \(all failed to decode\)"):
        start.features([clip], "unlabelled")
