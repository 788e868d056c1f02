"""PyTorch engine: the reference for parity checks, on CPU or CUDA. Imports torch lazily.

`contract` is the tensor contract the engine takes (DESIGN §3): 1 (the checkpoint's own, float32
video per pathway) or 2 (one uint8 `video` (B, 3, T, H, W)). With contract 2 the network is wrapped
by `mvrt.models.contract.with_contract`: the frames cross to the device as uint8 (1 byte per pixel
instead of 4) and are normalised, and the slow subset taken, on the device in float32.

On CUDA it can run in FP16 (weights and activations cast to half; float inputs cross as half, uint8
video stays uint8 and its normalised float32 values are cast to half in the graph; logits returned
as float32) and replay CUDA graphs: one graph is captured per batch size on first use, then each
call copies the inputs into the graph's static buffers (each of its input's device dtype) and
replays it.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from mvrt.artifacts import TORCH_PRECISIONS as PRECISIONS
from mvrt.config import CONTRACTS
from mvrt.errors import BackendError, MissingDependencyError, UsageError
from mvrt.runtime.engines.base import Engine
from mvrt.runtime.model_meta import read_checkpoint_config

log = logging.getLogger(__name__)
_GRAPH_WARMUP_RUNS = 3


class TorchEngine(Engine):
    """Runs a `.safetensors` checkpoint in eval mode under `torch.inference_mode()`, taking the
    inputs of tensor contract `contract` (its `config` is the checkpoint's with that contract)."""

    name = "torch"

    def __init__(self, checkpoint_path: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 precision: str = "fp32", cuda_graphs: bool = False, contract: int = 1):
        if isinstance(contract, bool) or contract not in CONTRACTS:
            raise UsageError(f"torch contract must be one of {', '.join(map(str, CONTRACTS))}, got {contract!r}",
                             setting="contract")
        super().__init__(checkpoint_path, read_checkpoint_config(checkpoint_path).replace(contract=contract))
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
        network, _ = load_checkpoint(self.path, device=self.device)
        if self.precision == "fp16":
            network = _half_inputs(network.half())
        if self.config.contract == 2:
            from mvrt.models.contract import with_contract

            network = with_contract(network, self.config).to(self.device)  # its scale/offset stay float32
        self._model = network.eval()
        log.info("torch engine: device=%s precision=%s cuda_graphs=%s contract=%d", self.device, self.precision,
                 self.cuda_graphs, self.config.contract)

    def _release(self) -> None:
        self._model = None
        self._graphs.clear()

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        floats = torch.float16 if self.precision == "fp16" else torch.float32
        inputs = []
        for name in self.config.input_names:  # uint8 video crosses as uint8 (contract 2), floats as `floats`
            x = torch.from_numpy(feeds[name])
            inputs.append(x.to(self.device, dtype=x.dtype if x.dtype == torch.uint8 else floats, non_blocking=True))
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


def _half_inputs(network):
    """`network` (already halved) behind float inputs of any precision (contract 2's normalised float32
    video): a module that casts each input to half on the device, then runs the network."""
    import torch

    class HalfInputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.network = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.network(*(x.half() for x in inputs))

    return HalfInputs(network)


class _Graph:
    """A CUDA graph of one forward pass at a fixed batch size, with static I/O buffers."""

    def __init__(self, model, example: list):
        import torch

        self.static_inputs = [x.clone() for x in example]  # same dtypes as the feeds on the device (uint8 video)
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
