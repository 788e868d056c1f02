"""Model config: round trip, strict field checks (types, ranges, keys), bounded JSON parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvrt.config import (
    MAX_CONFIG_BYTES,
    AudioNorm,
    FrontendConfig,
    ModelConfig,
    json_depth,
    load_json_bounded,
)
from mvrt.errors import ModelError

CONFIG = ModelConfig(
    arch="slowfast", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0, image_size=32),
    audio_norm=(("audio_fast", AudioNorm((-40.0, 0.1), (12.0, 1.8))),), trained_on="test",
)


def _data(**changes) -> dict:
    """CONFIG as JSON data; `frontend__x=v` changes a front-end field, a value of ... deletes the key."""
    data = json.loads(CONFIG.to_json())
    for key, value in changes.items():
        target, name = (data["frontend"], key[len("frontend__"):]) if key.startswith("frontend__") else (data, key)
        if value is ...:
            del target[name]
        else:
            target[name] = value
    return data


def test_round_trip_and_number_normalisation():
    assert ModelConfig.from_json(CONFIG.to_json()) == CONFIG
    config = ModelConfig.from_dict(_data(frontend__window_seconds=4, width=1, dropout=0))
    assert isinstance(config.frontend.window_seconds, float) and config.frontend.window_seconds == 4.0
    assert isinstance(config.width, float) and isinstance(config.dropout, float)
    fe = FrontendConfig(n_mels=np.int64(64))  # numpy integers are integers
    assert type(fe.n_mels) is int and fe.n_mels == 64


@pytest.mark.parametrize("changes, match", [
    ({"classes": 5}, r"field 'classes' must be a non-empty list of at most 1000 unique non-empty strings, got 5"),
    ({"classes": []}, r"field 'classes' must be a non-empty list"),
    ({"classes": ["Sad", ""]}, r"field 'classes' must be a non-empty list"),
    ({"classes": ["Sad", 3]}, r"field 'classes' must be a non-empty list"),
    ({"classes": ["Sad", "Fear", "Sad"]}, r"field 'classes' must not repeat a class, got \"Sad\" twice"),
    ({"frontend__window_seconds": "30"}, r"field 'frontend.window_seconds' must be a positive number of seconds, "
                                         r"at most 600, got \"30\""),
    ({"frontend__window_seconds": 0}, r"field 'frontend.window_seconds' must be a positive number"),
    ({"frontend__window_seconds": 1e9}, r"field 'frontend.window_seconds' must be .*at most 600"),
    ({"frontend__hop_length": 0}, r"field 'frontend.hop_length' must be a positive integer, got 0$"),
    ({"frontend__hop_length": 4096}, r"field 'frontend.hop_length' must be a positive integer of at most n_fft \(2048\)"),
    ({"frontend__hop_length": 512.0}, r"field 'frontend.hop_length' must be a positive integer, got 512\.0"),
    ({"frontend__n_mels": True}, r"field 'frontend.n_mels' must be a positive integer, got true"),
    ({"frontend__n_mels": 100000}, r"field 'frontend.n_mels' must be a positive integer of at most 512"),
    ({"frontend__n_fft": 1000}, r"field 'frontend.n_fft' must be a power of two, got 1000"),
    ({"frontend__n_fft": 1 << 20}, r"field 'frontend.n_fft' must be an integer >= 2 of at most 8192"),
    ({"frontend__frames": 0}, r"field 'frontend.frames' must be a positive integer, got 0"),
    ({"frontend__frames": 10**6}, r"field 'frontend.frames' must be a positive integer of at most 1024"),
    ({"frontend__image_size": 10**6}, r"field 'frontend.image_size' must be a positive integer of at most 1024"),
    ({"frontend__video_std": 0}, r"field 'frontend.video_std' must be a positive number, got 0"),
    ({"frontend__video_mean": None}, r"field 'frontend.video_mean' must be a finite number, got null"),
    ({"frontend__hop_length": 1}, r"field 'frontend' asks for \d+ values per window \(at most 33554432\)"),
    ({"frontend__frames": 1024, "frontend__image_size": 1024}, r"field 'frontend' asks for \d+ values per window"),
    ({"frontend__n_fft": ...}, r"model config lacks the required field\(s\): frontend\.n_fft"),
    ({"frontend": [1]}, r"model config field 'frontend' must be a JSON object, got a list"),
    ({"frontend__colour": 1}, r"model config field 'frontend' has unknown field\(s\): \"colour\""),
    ({"arch": ...}, r"model config lacks the required field\(s\): arch"),
    ({"arch": "resnet"}, r"field 'arch' must be one of slowfast, musicvideo, got \"resnet\""),
    ({"width": 0}, r"field 'width' must be a positive number, at most 4, got 0"),
    ({"width": 64}, r"field 'width' must be a positive number, at most 4, got 64"),
    ({"width": "1"}, r"field 'width' must be a positive number"),
    ({"dropout": 1}, r"field 'dropout' must be a number from 0 up to \(not including\) 1, got 1"),
    ({"dropout": -0.1}, r"field 'dropout' must be a number from 0"),
    ({"mmtm": 1}, r"field 'mmtm' must be true or false, got 1"),
    ({"trained_on": 5}, r"field 'trained_on' must be a string, got 5"),
    ({"audio_norm": []}, r"field 'audio_norm' must be an object mapping audio input names to mean/std"),
    ({"audio_norm": {"audio_fast": {"mean": [0, 0]}}}, r"lacks the required field\(s\): audio_norm\.audio_fast\.std"),
    ({"audio_norm": {"audio_fast": [1, 2]}}, r"field 'audio_norm.audio_fast' must be a JSON object, got a list"),
    ({"audio_norm": {"audio_fast": {"mean": [0, 0], "std": [1, 0]}}},
     r"field 'audio_norm.audio_fast.std' must be two positive finite numbers, got \[1, 0\]"),
    ({"audio_norm": {"audio_fast": {"mean": [0], "std": [1, 1]}}}, r"field 'audio_norm.audio_fast.mean' must be two finite"),
    ({"audio_norm": {"audio_fast": {"mean": ["a", 0], "std": [1, 1]}}}, r"field 'audio_norm.audio_fast.mean' must be"),
    ({"audio_norm": {"audio": {"mean": [0, 0], "std": [1, 1]}}},
     r"field 'audio_norm.audio' names no audio input of the slowfast architecture \(its audio inputs: audio_slow, audio_fast\)"),
    ({"version": "1"}, r"field 'version' must be a positive integer, got \"1\""),
    ({"version": ...}, r"model config lacks the required field\(s\): version"),
    ({"colour": "red"}, r"model config has unknown field\(s\): \"colour\""),
])
def test_each_bad_field_is_a_model_error_naming_it(changes, match):
    with pytest.raises(ModelError, match=match) as info:
        ModelConfig.from_dict(_data(**changes))
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match=match):
        ModelConfig.from_json(json.dumps(_data(**changes)))


def test_non_finite_numbers_from_json_are_refused():
    text = CONFIG.to_json().replace('"video_std": 0.225', '"video_std": NaN')
    with pytest.raises(ModelError, match=r"field 'frontend.video_std' must be a positive number, got NaN"):
        ModelConfig.from_json(text)


@pytest.mark.parametrize("text, match", [
    ("[1, 2]", r"^model config must be a JSON object, got a list$"),
    ('"slowfast"', r"^model config must be a JSON object, got a string$"),
    ("{not json", r"^model config is not valid JSON"),
    ('{"format": "other"}', r"^not an mvrt model config \(format=\"other\"\)$"),
])
def test_the_config_must_be_an_mvrt_json_object(text, match):
    with pytest.raises(ModelError, match=match):
        ModelConfig.from_json(text)


def test_the_constructors_check_the_same_fields():
    with pytest.raises(ModelError, match=r"field 'frontend.hop_length' must be a positive integer, got 0"):
        FrontendConfig(hop_length=0)
    with pytest.raises(ModelError, match=r"field 'audio_norm.std' must be two positive finite numbers"):
        AudioNorm(std=(1.0, 0.0))
    with pytest.raises(ModelError, match=r"field 'classes' must not repeat a class"):
        CONFIG.replace(classes=("a", "a"))
    with pytest.raises(ModelError, match=r"field 'audio_norm' lists 'audio_fast' twice"):
        CONFIG.replace(audio_norm=CONFIG.audio_norm * 2)


def test_deep_or_large_json_is_refused_before_parsing(monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("json.loads was called")

    deep = '{"format": "mvrt-model", "trained_on": ' + "[" * 20_000 + "]" * 20_000 + "}"
    big = json.dumps(_data(trained_on="x" * MAX_CONFIG_BYTES))
    monkeypatch.setattr(json, "loads", no_parse)
    with pytest.raises(ModelError, match=r"^model config JSON is nested 20001 levels deep; at most 32 are read$"):
        ModelConfig.from_json(deep)
    with pytest.raises(ModelError, match=r"^model config is \d+ bytes of JSON; at most 65536 are read$"):
        ModelConfig.from_json(big)


@pytest.mark.parametrize("text, depth", [
    (b"{}", 1), (b"[]", 1), (b"1", 0), (b'{"a": [1, {"b": []}]}', 4), (b"[[], [[]], []]", 3),
    (b'{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
    (b'["\\"[[[", [2]]', 2),  # nor after an escaped quote
])
def test_json_depth(text, depth):
    assert json_depth(text) == depth


def test_load_json_bounded_limits_its_own_arguments():
    assert load_json_bounded(b'{"a": [[1]]}', "thing", 100, max_depth=3) == {"a": [[1]]}
    with pytest.raises(ModelError, match=r"^thing JSON is nested 3 levels deep; at most 2 are read$"):
        load_json_bounded(b'{"a": [[1]]}', "thing", 100, max_depth=2)
    with pytest.raises(ModelError, match=r"^thing is 12 bytes of JSON; at most 11 are read$"):
        load_json_bounded(b'{"a": [[1]]}', "thing", 11)
    with pytest.raises(ModelError, match=r"^thing is not valid JSON"):
        load_json_bounded('{"n": ' + "9" * 5000 + "}", "thing", 10_000)  # over-long integers are a ValueError
