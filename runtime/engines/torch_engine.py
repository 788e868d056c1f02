"""PyTorch engine: the reference for parity checks, on CPU or CUDA. Imports torch lazily.

On CUDA it can run in FP16 (weights and activations cast to half; logits returned as
float32) and replay CUDA graphs: one graph is captured per batch size on first use, then
each call copies the inputs into the graph's static buffers and replays it.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from mvrt.artifacts import TORCH_PRECISIONS as PRECISIONS
from mvrt.errors import BackendError, MissingDependencyError, UsageError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.model_meta import read_checkpoint_config

log = logging.getLogger(__name__)
_GRAPH_WARMUP_RUNS = 3


class TorchEngine(Engine):
    """Runs a `.safetensors` checkpoint in eval mode under `torch.inference_mode()`."""

    name = "torch"

    def __init__(self, checkpoint_path: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 precision: str = "fp32", cuda_graphs: bool = False):
        super().__init__(checkpoint_path, read_checkpoint_config(checkpoint_path))
        if precision not in PRECISIONS:
            raise UsageError(f"torch precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        on_cuda = device.startswith("cuda")
        if (precision == "fp16" or cuda_graphs) and not on_cuda:
            what = "fp16" if precision == "fp16" else "CUDA graphs"
            raise UsageError(f"{what} with the torch backend needs a CUDA device (device='cuda'), got {device!r}",
                             setting="device")
        self.device, self.threads, self.precision, self.cuda_graphs = device, threads, precision, cuda_graphs
        self._model = None
        self._graphs: dict[int, _Graph] = {}

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
        if self.precision == "fp16":
            self._model.half()
        log.info("torch engine: device=%s precision=%s cuda_graphs=%s", self.device, self.precision, self.cuda_graphs)

    def _release(self) -> None:
        self._model = None
        self._graphs.clear()

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        inputs = [torch.from_numpy(feeds[name]).to(self.device, dtype=dtype, non_blocking=True)
                  for name in self.config.input_names]
        with torch.inference_mode():
            if self.cuda_graphs:
                logits = self._graph_for(inputs).replay(inputs)
            else:
                logits = self._model(*inputs)
        return logits.float().cpu().numpy()

    def _graph_for(self, inputs: list) -> "_Graph":
        batch = int(inputs[0].shape[0])
        if batch not in self._graphs:
            self._graphs[batch] = _Graph(self._model, inputs)
        return self._graphs[batch]


class _Graph:
    """A CUDA graph of one forward pass at a fixed batch size, with static I/O buffers."""

    def __init__(self, model, example: list):
        import torch

        self.static_inputs = [x.clone() for x in example]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up outside the default stream (cuDNN autotuning)
            for _ in range(_GRAPH_WARMUP_RUNS):
                model(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = model(*self.static_inputs)

    def replay(self, inputs: list):
        for static, x in zip(self.static_inputs, inputs):
            static.copy_(x)
        self.graph.replay()
        return self.static_output.clone()
