"""TensorRT build settings: MIN:OPT:MAX parsing and validation one-liners."""

from __future__ import annotations

import dataclasses

import pytest

from mvrt.errors import UsageError
from mvrt.export.build_settings import TensorRTSettings, make_settings, parse_batch


@pytest.mark.parametrize("text, expected", [("1:4:8", (1, 4, 8)), ("2:2:2", (2, 2, 2)), ("8", (1, 8, 8)), (" 3 ", (1, 3, 3))])
def test_parse_batch(text, expected):
    assert parse_batch(text) == expected


@pytest.mark.parametrize("text, message", [
    ("8:4:2", r"^batch 8:4:2: must satisfy 1 <= MIN <= OPT <= MAX"),
    ("0:1:2", r"1 <= MIN"),
    ("0", r"1 <= MIN"),
    ("1:2", r"expected MIN:OPT:MAX or a single N"),
    ("a:b:c", r"whole numbers"),
])
def test_parse_batch_rejects(text, message):
    with pytest.raises(UsageError, match=message):
        parse_batch(text)


def test_settings_are_frozen_and_validated(tmp_path):
    s = make_settings("fp16", "2:4:16", 2.5, tmp_path / "cache.bin", True, None)
    assert (s.batch_min, s.batch_opt, s.batch_max, s.workspace_gib, s.version_compatible) == (2, 4, 16, 2.5, True)
    assert "batch 2:4:16" in s.describe() and "cache.bin" in s.describe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_max = 3
    cases = [
        (dict(workspace_gib=0), r"^workspace_gib must be positive"),
        (dict(dla_core=-1, precision="fp16", batch_min=4, batch_opt=4, batch_max=4), r"^dla_core must be a core index"),
        (dict(dla_core=0), r"DLA runs fp16 or int8 graphs only"),
        (dict(dla_core=0, precision="fp16"), r"DLA needs a fixed batch .* got batch='1:4:8'"),
        (dict(precision="bf16"), r"unknown precision 'bf16'"),
        (dict(batch_opt=9), r"^batch 1:9:8 \(batch_min:batch_opt:batch_max\) must satisfy"),
        (dict(timing_cache=tmp_path), r"is a folder"),
        (dict(exclude_lean_runtime=True), r"only applies to version-compatible plans"),
    ]
    for changes, message in cases:
        with pytest.raises(UsageError, match=message):
            TensorRTSettings(**changes)
    assert TensorRTSettings(precision="int8", dla_core=1, batch_min=2, batch_opt=2, batch_max=2).dla_core == 1
