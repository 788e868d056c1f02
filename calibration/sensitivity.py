"""Per-layer sensitivity: how far quantising one layer alone moves the output.

For each quantised node L, the FP32 graph gets exactly L's quantised inputs grafted in from
the full INT8 graph (the same Q/DQ nodes and scales, so the ranges are the calibrated ones)
and runs on a few validation clips. The shift of the softmax output from FP32 ranks the
layers; the worst ones are what `--exclude` should keep in FP32.

That costs one ONNX Runtime session and one run per layer (about 1.2 s a layer for the bundled
model on 2 cores: 237 layers, 4.5 minutes). The "fast" mode ranks every layer with the proxy of
`mvrt.calibration.proxy` (the same measurement on the least confident clip only, 8 layers per
run) and measures only the `top` worst exactly; "full" measures them all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mvrt.calibration.compare import prob_shift
from mvrt.calibration.proxy import PROXY_CLIPS, LayerProxy, cpu_session, proxy_ranking, qdq_chain

__all__ = ["LayerSensitivity", "SensitivityResult", "graft_layer", "layer_sensitivity", "measure_sensitivity"]


@dataclass(frozen=True)
class LayerSensitivity:
    """The output shift when only `node` is quantised, over the sensitivity clips."""

    node: str
    op_type: str
    mean_abs_dp: float  # mean over clips of the largest per-class |Δprobability|
    max_abs_dp: float
    flips: int  # clips whose top-1 label changed

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SensitivityResult:
    """Exact measurements (most sensitive first) and, in fast mode, the proxy ranking of every layer.

    In fast mode only the `measured` layers (the proxy's worst `top`) have exact numbers; the
    others are ranked by the proxy alone.
    """

    mode: str  # "fast" or "full"
    clips: int
    measured: tuple[LayerSensitivity, ...] = ()
    proxy: tuple[LayerProxy, ...] = ()
    top: int | None = None  # fast mode: how many proxy-ranked layers were measured
    proxy_clips: int = 0

    @property
    def unmeasured(self) -> int:
        """Layers the proxy ranked but nobody measured exactly."""
        return max(0, len(self.proxy) - len(self.measured))

    def describe_proxy(self) -> str:
        """What the proxy ranking measured, in words."""
        clips = "clip" if self.proxy_clips == 1 else f"{self.proxy_clips} clips"
        return (f"each layer quantised alone on the least confident validation {clips}, ranked by the relative "
                "shift of the logits")

    def to_dict(self) -> dict:
        """JSON form: `layers` holds exact measurements only; `proxy_ranking` every layer in fast mode."""
        found = {"mode": self.mode, "clips": self.clips, "measured_layers": len(self.measured),
                 "layers": [s.to_dict() for s in self.measured]}
        if self.mode == "fast":
            found.update({"measured": f"the {len(self.measured)} layers the proxy ranks worst, on all {self.clips} clips",
                          "proxy": self.describe_proxy(), "proxy_clips": self.proxy_clips,
                          "proxy_ranking": [p.to_dict() for p in self.proxy]})
        return found


def measure_sensitivity(fp32, int8, nodes: Sequence[str], feeds: dict[str, np.ndarray], fp32_logits: np.ndarray, *,
                        mode: str = "fast", top: int = 16, batch_size: int = 8, threads: int,
                        progress: bool = True) -> SensitivityResult:
    """Fast: rank `nodes` by the proxy and measure the `top` worst exactly; full: measure every node.

    Fast mode with `top` at least the number of nodes measures them all, and says "full".
    """
    if mode == "full" or top >= len(nodes):
        found = layer_sensitivity(fp32, int8, nodes, feeds, fp32_logits, threads=threads, progress=progress)
        return SensitivityResult("full", len(fp32_logits), tuple(found))
    ranking = proxy_ranking(fp32, int8, nodes, feeds, fp32_logits, clips=PROXY_CLIPS, batch_size=batch_size,
                            threads=threads, progress=progress)
    chosen = [p.node for p in ranking[:top]]
    found = layer_sensitivity(fp32, int8, chosen, feeds, fp32_logits, threads=threads, progress=progress)
    return SensitivityResult("fast", len(fp32_logits), tuple(found), tuple(ranking), top,
                             min(PROXY_CLIPS, len(fp32_logits)))


def graft_layer(fp32, int8, name: str):
    """A copy of the FP32 graph in which only node `name` reads quantised inputs, as in `int8`."""
    import onnx

    producers = {out: node for node in int8.graph.node for out in node.output}
    initializers = {t.name: t for t in int8.graph.initializer}
    target = next(node for node in int8.graph.node if node.name == name)
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    have = {t.name for t in model.graph.initializer}
    chain, inputs = qdq_chain(target, producers), list(target.input)
    for node in chain:
        for value in node.input[1:] if node.op_type == "QuantizeLinear" else node.input:
            if value in initializers and value not in have:
                model.graph.initializer.append(initializers[value])
                have.add(value)
    nodes = list(model.graph.node)
    index = next(i for i, node in enumerate(nodes) if node.name == name)
    del nodes[index].input[:]
    nodes[index].input.extend(inputs)
    del model.graph.node[:]
    model.graph.node.extend(nodes[:index] + chain + nodes[index:])
    return model


def layer_sensitivity(fp32, int8, nodes: Sequence[str], feeds: dict[str, np.ndarray], fp32_logits: np.ndarray, *,
                      threads: int, progress: bool = True) -> list[LayerSensitivity]:
    """Sensitivity of each quantised node in `nodes`, most sensitive first."""
    from tqdm import tqdm

    labels = fp32_logits.argmax(axis=1)
    ops = {node.name: node.op_type for node in int8.graph.node}
    found = []
    for name in tqdm(nodes, desc="layer sensitivity", unit="layer", file=sys.stderr, disable=not progress):
        logits = cpu_session(graft_layer(fp32, int8, name), threads, "a quantised variant").run(["logits"], feeds)[0]
        shift = prob_shift(fp32_logits, logits)
        found.append(LayerSensitivity(name, ops.get(name, "?"), float(shift.mean()), float(shift.max()),
                                      int(np.sum(logits.argmax(axis=1) != labels))))
    return sorted(found, key=lambda s: (-s.mean_abs_dp, s.node))
