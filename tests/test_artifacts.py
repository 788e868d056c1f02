"""The artifact vocabulary lives in `mvrt.artifacts` only: no other module spells its keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mvrt import artifacts

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("src/mvrt", "runtime", "export", "calibration") for p in (ROOT / d).rglob("*.py")
           if p.name != "artifacts.py" and not p.is_symlink() and "bundled" not in p.parts]
KEYS = [artifacts.PRECISION_KEY, artifacts.CALIBRATION_KEY, artifacts.CALIBRATION_DETAILS_KEY, artifacts.FP32_OPS_KEY,
        artifacts.CHECKPOINT_SHA_KEY]


@pytest.mark.parametrize("key", KEYS)
def test_no_module_spells_an_artifact_key_itself(key):
    spelled = [str(p.relative_to(ROOT)) for p in SOURCES if re.search(rf"[\"']{key}[\"']", p.read_text())]
    assert spelled == [], f"{key!r} written out in {spelled}; import it from mvrt.artifacts"


def test_no_module_keeps_its_own_suffix_table():
    pattern = re.compile(r"[\"']\.plan[\"'],\s*[\"']\.engine[\"']")
    assert [str(p.relative_to(ROOT)) for p in SOURCES if pattern.search(p.read_text())] == []


@pytest.mark.parametrize("name, backend", [("m.onnx", "onnxruntime"), ("M.SAFETENSORS", "torch"), ("x.plan", "tensorrt"),
                                           ("x.engine", "tensorrt"), ("x.trt", "tensorrt"), ("x.pt", None)])
def test_backend_by_suffix(name, backend):
    assert artifacts.backend_for(name) == backend
