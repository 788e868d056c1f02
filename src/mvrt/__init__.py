"""mvrt: an edge inference runtime for music-video emotion recognition.

`import mvrt` stays cheap (no numpy, PyAV or ONNX Runtime): `mvrt.load_model` and
`mvrt.MediaPair` are looked up in `mvrt.api` on first use.
"""

from mvrt.config import CLASSES, FrontendConfig, ModelConfig
from mvrt.errors import MvrtError

__version__ = "0.1.0"
__all__ = ["CLASSES", "FrontendConfig", "MediaPair", "ModelConfig", "MvrtError", "__version__", "load_model"]

_LAZY = {"load_model": "mvrt.api", "MediaPair": "mvrt.runtime.inputs"}


def __getattr__(name: str):
    """`mvrt.load_model` (= `mvrt.api.load_model`) and `mvrt.MediaPair`, imported when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mvrt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
