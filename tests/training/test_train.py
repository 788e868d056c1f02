"""Training on generated stand-in clips: it learns, stores the audio statistics, resumes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("torch")

import mvrt.training.train as train_module  # noqa: E402
from mvrt.checkpoint import read_checkpoint_config  # noqa: E402
from mvrt.config import FrontendConfig  # noqa: E402
from mvrt.data import discover  # noqa: E402
from mvrt.evaluation.evaluate import evaluate  # noqa: E402
from mvrt.clip_cache import FeatureCache, load_entry  # noqa: E402
from mvrt.training.train import EpochRecord, TrainSettings, _Best, last_state_path, train  # noqa: E402

EPOCHS = 6


def _settings(**changes) -> TrainSettings:
    base = TrainSettings(width=1 / 16, frontend=FrontendConfig(window_seconds=2.0, image_size=32), epochs=EPOCHS,
                         batch_size=8, lr=1e-2, dropout=0.2, threads=1, progress=False)
    return TrainSettings(**{**base.__dict__, **changes})


@pytest.fixture(scope="module")
def standin(standin_factory):
    return standin_factory("standin", train=4, validation=2)


def _train_accuracy(checkpoint, root, cache) -> float:
    return evaluate(checkpoint, root, split="train", cache_dir=cache, progress=False, threads=1).metrics.accuracy


def test_learns_with_mmtm_and_resume_matches_an_uninterrupted_run(standin, tmp_path, monkeypatch):
    root, cache = standin
    straight = train(root, tmp_path / "a.safetensors", _settings(), cache_dir=cache)
    history = straight.history
    assert len(history) == EPOCHS and straight.resumed_from_epoch == 0
    assert max(r.val_accuracy for r in history) >= 0.4  # held-out clips, chance 0.167
    assert history[-1].train_loss < 0.85 * history[0].train_loss
    accuracy = _train_accuracy(straight.checkpoint, root, cache)
    assert accuracy >= 0.75, f"train accuracy {accuracy:.3f} (chance 0.167)"

    real_epoch = train_module._run_epoch
    calls = []

    def dies_in_epoch_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # 2 calls (train, val) per epoch: the 4th epoch's training
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_run_epoch", dies_in_epoch_4)
    out = tmp_path / "b.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(root, out, _settings(), cache_dir=cache)
    assert last_state_path(out).is_file()
    monkeypatch.setattr(train_module, "_run_epoch", real_epoch)
    resumed = train(root, out, _settings(), cache_dir=cache)
    assert resumed.resumed_from_epoch == 3
    for a, b in zip(resumed.history, history):  # the same run, bit for bit
        assert (a.train_loss, a.val_loss, a.val_accuracy) == (b.train_loss, b.val_loss, b.val_accuracy)
    restarted = train(root, out, _settings(epochs=1, resume=False), cache_dir=cache)
    assert restarted.resumed_from_epoch == 0 and len(restarted.history) == 1


def test_learns_without_mmtm_and_stores_train_audio_statistics(standin, tmp_path, caplog, capsys):
    root, cache = standin
    caplog.set_level(logging.INFO, logger="mvrt.training")
    result = train(root, tmp_path / "c.safetensors", _settings(mmtm=False), cache_dir=cache)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mvrt.training") and r.levelno == logging.INFO]
    assert lines[0].startswith("train: ") and lines[1].startswith("validation: ")
    assert f"epoch {EPOCHS}/{EPOCHS}: train loss" in lines[-1]
    assert "mvrt train" not in capsys.readouterr().err  # progress is logged, not printed
    assert result.history[-1].train_loss < 0.85 * result.history[0].train_loss
    accuracy = _train_accuracy(result.checkpoint, root, cache)
    assert accuracy >= 0.75, f"train accuracy {accuracy:.3f} (chance 0.167)"
    config = read_checkpoint_config(result.checkpoint)
    assert not config.mmtm and config.trained_on == f"stand-in data (generated, not MVED): {root.resolve().name}"
    entries = FeatureCache(cache, config).build(discover(root, "train"), progress=False).entries
    for name in ("audio_slow", "audio_fast"):
        stacked = np.stack([load_entry(p)[name] for _, p in entries]).astype(np.float64)  # (N, 2, mels, T)
        norm = config.norm_for(name)
        np.testing.assert_allclose(norm.mean, stacked.mean(axis=(0, 2, 3)), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(norm.std, stacked.std(axis=(0, 2, 3)), rtol=1e-9, atol=1e-9)


def test_init_loads_matching_weights(standin, tmp_path):
    import torch

    from mvrt.checkpoint import load_checkpoint, save_checkpoint
    from mvrt.models import build_model

    settings = _settings(epochs=1, lr=1e-9)
    config = train_module.ModelConfig(width=1 / 16, frontend=settings.frontend)
    torch.manual_seed(123)
    donor = build_model(config)
    save_checkpoint(donor, config, tmp_path / "donor.safetensors")
    root, cache = standin
    result = train(root, tmp_path / "d.safetensors", _settings(epochs=1, lr=1e-9, init=tmp_path / "donor.safetensors"),
                   cache_dir=cache)
    model, _ = load_checkpoint(result.checkpoint)
    weight = "head.weight" if "head.weight" in donor.state_dict() else next(iter(dict(donor.named_parameters())))
    torch.testing.assert_close(model.state_dict()[weight], donor.state_dict()[weight], atol=1e-6, rtol=0)


def test_trained_on_names_the_stand_in(tmp_path):
    assert train_module.trained_on(tmp_path) == str(tmp_path.resolve())
    (tmp_path / train_module.STANDIN_MARKERS[0]).write_text("{}")
    assert train_module.trained_on(tmp_path) == f"stand-in data (generated, not MVED): {tmp_path.resolve().name}"


def test_the_best_epoch_is_the_most_accurate_then_the_lowest_loss():
    def record(accuracy: float, loss: float) -> EpochRecord:
        return EpochRecord(epoch=2, train_loss=1.0, train_accuracy=0.5, val_loss=loss, val_accuracy=accuracy, lr=1e-3)

    assert _Best().beaten_by(record(0.0, 1e9))  # any first epoch is the best so far
    best = _Best(accuracy=0.5, loss=0.8, epoch=1)
    assert best.beaten_by(record(0.6, 2.0)) and best.beaten_by(record(0.5, 0.7))
    assert not best.beaten_by(record(0.5, 0.8)) and not best.beaten_by(record(0.4, 0.1))
