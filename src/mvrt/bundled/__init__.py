"""The demo model shipped with mvrt: a small `slowfast` trained on generated stand-in data.

It is what `mvrt infer VIDEO` uses when no `--model` is given, so that a fresh install runs
end to end. It was trained on clips from `mvrt standin` (see the README for the command),
not on MVED: every output made with it says so through its `trained_on` field.

Two files ship: the torch checkpoint (`default_checkpoint_path()`, for `mvrt export`,
`mvrt train --init` and the torch backend) and its FP32 ONNX export (`default_model_path()`,
tensor contract 2: uint8 `video`, normalised in the graph), whose `checkpoint_sha256` metadata
is the checkpoint's sha256. The checkpoint was rebuilt
from the ONNX export of the original training run (`tools/checkpoint_from_onnx.py`): its
convolutions carry the BatchNorm-folded weights and every BatchNorm is the identity in eval
mode (weight 1, the folded bias, running mean 0, running variance 1 - eps). It computes the
same logits as the ONNX model; fine-tuning it starts from those identity BatchNorms, not from
the state the original training ended in.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "standin-slowfast.onnx"
DEFAULT_CHECKPOINT = "standin-slowfast.safetensors"


def default_model_path() -> Path:
    """Path of the bundled ONNX model."""
    return _bundled(DEFAULT_MODEL)


def default_checkpoint_path() -> Path:
    """Path of the bundled torch checkpoint (`.safetensors`) the bundled ONNX model was exported from."""
    return _bundled(DEFAULT_CHECKPOINT)


def _bundled(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))
