"""PyTorch engine: the reference for parity checks (CPU or CUDA). Imports torch lazily."""

from __future__ import annotations

import os

import numpy as np

from mvrt.errors import BackendError, MissingDependencyError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.model_meta import read_checkpoint_config


class TorchEngine(Engine):
    """Runs a `.safetensors` checkpoint in eval mode under `torch.inference_mode()`."""

    name = "torch"

    def __init__(self, checkpoint_path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        super().__init__(checkpoint_path, read_checkpoint_config(checkpoint_path))
        self.device = device
        self.threads = threads  # torch's intra-op threads (a process-wide setting), if given
        self._model = None

    def _load(self) -> None:
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("torch", "torch", "the torch backend") from None
        from mvrt.checkpoint import load_checkpoint

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"torch device {self.device!r} requested but CUDA is not available")
        if self.threads:
            torch.set_num_threads(self.threads)
        self._model, _ = load_checkpoint(self.path, device=self.device)

    def _release(self) -> None:
        self._model = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = [torch.from_numpy(feeds[name]).to(self.device) for name in self.config.input_names]
        with torch.inference_mode():
            logits = self._model(*inputs)
        return logits.float().cpu().numpy()
