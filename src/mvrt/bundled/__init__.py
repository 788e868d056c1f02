"""The demo model shipped with mvrt: a small `slowfast` trained on generated stand-in data.

It is what `mvrt infer VIDEO` uses when no `--model` is given, so that a fresh install runs
end to end. It was trained on clips from `mvrt standin` (see the README for the command),
not on MVED: every output made with it says so through its `trained_on` field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "standin-slowfast.onnx"


def default_model_path() -> Path:
    """Path of the bundled ONNX model."""
    return Path(str(resources.files(__name__).joinpath(DEFAULT_MODEL)))
