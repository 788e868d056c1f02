"""The tree reads in place: the subpackages at the top level are linked into src/mvrt, so a
clone imports `mvrt.runtime`, `mvrt.export` and `mvrt.calibration` with `PYTHONPATH=src`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["runtime", "export", "calibration"])
def test_each_subpackage_is_a_relative_link_into_src(name):
    link = ROOT / "src" / "mvrt" / name
    assert link.is_symlink() and os.readlink(link) == f"../../{name}"
    assert link.resolve() == (ROOT / name).resolve()


def test_the_tree_imports_in_place_with_pythonpath_src():
    code = ("import mvrt, mvrt.runtime.decode, mvrt.export.pipeline, mvrt.calibration.pipeline\n"
            "print(mvrt.__file__); print(mvrt.runtime.decode.__file__)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package, decode = done.stdout.split()
    assert Path(package).parent == ROOT / "src" / "mvrt"
    assert Path(decode).resolve() == (ROOT / "runtime" / "decode.py").resolve()
