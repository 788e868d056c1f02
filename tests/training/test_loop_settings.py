"""The training settings: one shared base, the same fields and defaults as before, errors naming the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import UsageError
from mvrt.training.pretrain import PretrainSettings as PretrainFromModule
from mvrt.training.settings import LoopSettings, PretrainSettings, TrainSettings
from mvrt.training.train import TrainSettings as TrainFromModule

SHARED = ("arch", "mmtm", "width", "frontend", "epochs", "batch_size", "lr", "weight_decay", "seed", "threads",
          "progress", "device")


def _names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def test_both_settings_share_the_base_fields_and_keep_their_defaults():
    assert TrainFromModule is TrainSettings and PretrainFromModule is PretrainSettings
    assert _names(LoopSettings) == SHARED == _names(PretrainSettings)
    assert _names(TrainSettings) == SHARED + ("dropout", "resume", "init", "precise_bn_batches")
    train, pre = TrainSettings(), PretrainSettings()
    assert (train.epochs, pre.epochs) == (30, 10)
    assert (train.dropout, train.resume, train.init, train.precise_bn_batches) == (0.5, True, None, 200)
    for name in SHARED:
        if name != "epochs":
            assert getattr(train, name) == getattr(pre, name), name
    assert (pre.batch_size, pre.lr, pre.weight_decay, pre.device, pre.threads) == (8, 1e-3, 1e-2, "cpu", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.lr = 1.0  # type: ignore[misc]


def test_every_field_is_a_keyword():
    values = dict(arch="musicvideo", mmtm=False, width=0.5, frontend=FrontendConfig(window_seconds=2.0, image_size=32),
                  epochs=3, batch_size=2, lr=5e-4, weight_decay=0.0, seed=7, threads=1, progress=False,
                  device="cuda:1")
    pre = PretrainSettings(**values)
    train = TrainSettings(**values, dropout=0.1, resume=False, init=Path("p.safetensors"), precise_bn_batches=0)
    assert {k: getattr(pre, k) for k in values} == values == {k: getattr(train, k) for k in values}
    assert (train.dropout, train.resume, train.init, train.precise_bn_batches) == (0.1, False, Path("p.safetensors"), 0)


@pytest.mark.parametrize("cls", [TrainSettings, PretrainSettings])
@pytest.mark.parametrize("setting, value, message", [
    ("epochs", 0, "epochs must be at least 1, got 0"),
    ("batch_size", 0, "batch_size must be at least 1, got 0"),
    ("batch_size", True, "batch_size must be at least 1, got True"),
    ("epochs", 2.5, "epochs must be at least 1, got 2.5"),
    ("lr", 0.0, "lr must be positive, got 0.0"),
    ("lr", "fast", "lr must be positive, got 'fast'"),
    ("device", "tpu", r"device must be cpu or cuda\[:N\], got 'tpu'"),
])
def test_a_bad_value_names_its_setting(cls, setting, value, message):
    with pytest.raises(UsageError, match=f"^{message}$") as caught:
        cls(**{setting: value})
    assert caught.value.setting == setting


def test_model_config_carries_the_network_and_front_end():
    frontend = FrontendConfig(window_seconds=4.0, image_size=64)
    settings = TrainSettings(arch="musicvideo", mmtm=False, width=0.25, frontend=frontend, dropout=0.3)
    assert settings.model_config(dropout=settings.dropout) == ModelConfig(arch="musicvideo", mmtm=False, width=0.25,
                                                                          frontend=frontend, dropout=0.3)
    assert PretrainSettings(frontend=frontend).model_config() == ModelConfig(frontend=frontend)
