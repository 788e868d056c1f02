"""Which layers of an mvrt network go on a DLA: the 2-D audio pathways (`--dla-core N`).

The paper's separable audio branch (2-D convolutions, pooling, ReLU over (B, C, mel, time)
maps) is what a DLA runs well; the 3-D video pathways, the MMTM fusion between audio and video,
the head and the graph's own input normalisation stay on the GPU (GPU_FALLBACK also sends any
audio layer the DLA cannot run there).

How the layers are recognised (checked on real exported graphs, tests/export/test_dla_layers.py):
torch names an exported node after its module scope, but the pathways share their module
attribute names, so a node reads `/stages.0/stages.0.0_1/branch_a/.../Conv` or
`/stem/stem.0/stem.0.0_2/Conv` under either contract (the `_N` suffix is call order, not the
pathway; contract 2's own input nodes are `/input_front/...`; early contract-2 exports had a
`/network` prefix, also read). Inside the pathway scopes (`stem`, `stages.N`) every audio map is
4-D (B, C, mel, time) and every video map 5-D (B, C, T, H, W), so the pathway is told by the
layer's output rank. Weights keep their parameter names (`pathways.audio_slow.stages...`).
The TensorRT ONNX parser names each layer after its node and records the node in the layer's
metadata as `[ONNX Layer: NAME]`; both are looked at.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mvrt.config import ModelConfig

log = logging.getLogger(__name__)

AUDIO_MAP_RANK = 4  # (B, C, mel, time)
_PATHWAY_SCOPE = re.compile(r"stem|stages\.\d+")
_METADATA = re.compile(r"\[ONNX Layer: (.*)\]")


@dataclass(frozen=True)
class LayerPlacement:
    """How many layers a build put where (recorded in the sidecar as `layer_devices`)."""

    dla: int  # audio-pathway layers the DLA takes
    gpu: int  # every other layer
    audio_on_gpu: int  # audio-pathway layers the DLA cannot run (GPU fallback)

    def as_dict(self) -> dict[str, int]:
        return {"dla": self.dla, "gpu": self.gpu, "audio_on_gpu": self.audio_on_gpu}

    def describe(self) -> str:
        return (f"{self.dla} audio-pathway layer(s) on the DLA, {self.audio_on_gpu} audio-pathway layer(s) the DLA "
                f"cannot run on the GPU, {self.gpu} other layer(s) on the GPU")


def onnx_node_name(name: str) -> str:
    """A layer name or metadata as the ONNX node name: `[ONNX Layer: /a/b]` -> `/a/b`."""
    found = _METADATA.search(name or "")
    return found.group(1) if found else (name or "")


def audio_pathway_layer(name: str, output_rank: int, config: ModelConfig) -> bool:
    """Whether the layer/node `name`, whose first output has `output_rank` axes, belongs to one of
    `config`'s 2-D audio pathways (MMTM fusion, head, video and input normalisation do not)."""
    name = onnx_node_name(name)
    if any(f"pathways.{audio}." in name for audio in config.audio_inputs):
        return True  # a weight of an audio pathway (parameter names keep the module path)
    parts = [p for p in name.split("/") if p]
    if parts and parts[0] == "network":  # early contract-2 exports scoped the wrapped network
        parts = parts[1:]
    in_pathway = len(parts) > 1 and _PATHWAY_SCOPE.fullmatch(parts[0]) is not None
    return in_pathway and output_rank == AUDIO_MAP_RANK


def place_layers(layers: Iterable[tuple[tuple[str, ...], int]], config: ModelConfig,
                 can_run_on_dla: Callable[[int], bool]) -> tuple[list[int], LayerPlacement]:
    """Indices of the layers to put on the DLA, and the counts.

    `layers`: for each layer in network order, (its names: layer name and metadata, output rank);
    `can_run_on_dla(index)` asks the builder whether the DLA can run that layer.
    """
    chosen: list[int] = []
    gpu = fallback = 0
    for index, (names, rank) in enumerate(layers):
        if not any(audio_pathway_layer(n, rank, config) for n in names):
            gpu += 1
        elif can_run_on_dla(index):
            chosen.append(index)
        else:
            fallback += 1
    return chosen, LayerPlacement(dla=len(chosen), gpu=gpu, audio_on_gpu=fallback)


def use_dla_for_audio(trt: Any, builder_config: Any, network: Any, config: ModelConfig, core: int) -> LayerPlacement:
    """Configure a TensorRT build: audio-pathway layers on DLA `core`, the rest on the GPU, GPU fallback on."""
    builder_config.default_device_type = trt.DeviceType.GPU
    builder_config.DLA_core = core
    builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # audio layers the DLA cannot run go to the GPU
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    described = [((layer.name, str(getattr(layer, "metadata", "") or "")), _output_rank(layer)) for layer in layers]
    chosen, placement = place_layers(described, config, lambda i: bool(builder_config.can_run_on_DLA(layers[i])))
    for index in chosen:
        builder_config.set_device_type(layers[index], trt.DeviceType.DLA)
    log.info("tensorrt build: DLA core %d: %s", core, placement.describe())
    return placement


def _output_rank(layer: Any) -> int:
    """Axes of the layer's first output (-1 when it has none or its rank is unknown)."""
    if not layer.num_outputs:
        return -1
    try:
        return len(layer.get_output(0).shape)
    except (TypeError, ValueError):  # dims of unknown rank
        return -1
