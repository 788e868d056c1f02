"""mvrt: an edge inference runtime for music-video emotion recognition."""

from mvrt.config import CLASSES, FrontendConfig, ModelConfig
from mvrt.errors import MvrtError

__version__ = "0.1.0"
__all__ = ["CLASSES", "FrontendConfig", "ModelConfig", "MvrtError", "__version__"]
