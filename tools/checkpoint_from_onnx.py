"""Rebuild a torch checkpoint from an mvrt FP32 ONNX export.

Usage: `python tools/checkpoint_from_onnx.py ONNX OUT.safetensors [--tolerance T] [--clip-seconds S]`.

`mvrt export` folds every BatchNorm into the convolution before it: the folded Conv gets a
new weight W' = W * gamma / sqrt(var + eps) and a bias B' = beta - mean * gamma / sqrt(var + eps),
both stored under generated names (`onnx::Conv_1821`); the other initializers (the first,
BN-free depthwise convolution of each separable unit, the MMTM and head Linear layers) keep
their torch parameter names. The original conv weight and BN statistics cannot be recovered
from W' and B', so the rebuilt network carries W' in the convolution and makes each BN the
identity in eval mode with the folded bias: weight 1, bias B', running_mean 0,
running_var 1 - eps (so sqrt(var + eps) = 1), num_batches_tracked 0. In eval mode it computes
what the ONNX graph computes; in train mode its BN layers start from that identity state, which
is not the state the original training ended in.

Which folded Conv belongs to which (conv, BN) pair is found by exporting the freshly built
network with the BN biases set to 1, 2, 3, ...: the same exporter gives the same node names,
and each folded node's bias names its pair. Every parameter and buffer must be set and every
initializer used, and the rebuilt network must reproduce the ONNX logits on ONNX Runtime
(seeded random batches and real stand-in clips) within `--tolerance`; otherwise nothing is
written and the script exits 1 with a one-line reason.

Re-exporting the written checkpoint (`mvrt export OUT.safetensors --onnx NEW.onnx`) gives an
ONNX whose `checkpoint_sha256` names it (how the bundled demo pair was made; see the README).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import ModelError, MvrtError

RANDOM_SEEDS = (0, 1, 2)  # seeded random batches of `mvrt.export.parity.check_batch`
RANDOM_BATCH = 2
# max |Δlogits| / max(1, max |logit|): absolute for small logits, relative for large ones (float32 keeps
# about 7 digits; seeded random inputs give the demo model logits near 180, whose spacing is 1.5e-5).
DEFAULT_TOLERANCE = 1e-4
CLIP_SECONDS = 8.0
CLIP_SEED = 123
_LIST_LIMIT = 8


@dataclass(frozen=True)
class Rebuild:
    """How the state dict was filled from the ONNX initializers."""

    copied: int  # state-dict entries copied by name
    folded_pairs: int  # (conv, BN) pairs rebuilt from folded Conv nodes
    state_entries: int  # all state-dict entries (every one was set)


@dataclass(frozen=True)
class Parity:
    """Rebuilt torch (eval) against ONNX Runtime on the source ONNX."""

    random_max_abs_diff: float
    random_logit_scale: float  # max |logit| of the torch reference on the random samples
    random_samples: int
    clips_max_abs_diff: float
    clips_logit_scale: float
    clips: int
    clips_same_argmax: int
    clips_correct: int  # argmax equal to the clip's stand-in class

    def passed(self, tolerance: float) -> bool:
        """Both differences within `tolerance` x max(1, logit scale), and the same top-1 on every clip."""
        return (self.random_max_abs_diff <= tolerance * max(1.0, self.random_logit_scale)
                and self.clips_max_abs_diff <= tolerance * max(1.0, self.clips_logit_scale)
                and self.clips_same_argmax == self.clips)

    def summary(self) -> str:
        return (f"max |Δlogits| {self.random_max_abs_diff:.2e} on {self.random_samples} seeded random samples "
                f"(logits up to {self.random_logit_scale:.3g}), {self.clips_max_abs_diff:.2e} on {self.clips} stand-in "
                f"clips (logits up to {self.clips_logit_scale:.3g}; same top-1 on "
                f"{self.clips_same_argmax}/{self.clips}, "
                f"correct class on {self.clips_correct}/{self.clips})")


def bn_pairs(model) -> list[tuple[str, str]]:
    """(conv, BN) module names: each BatchNorm with the bias-free convolution registered just before it."""
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm

    pairs, last = [], None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            last = (name, module)
        elif isinstance(module, _BatchNorm):
            if last is None or last[1].out_channels != module.num_features or last[1].bias is not None:
                raise ModelError(f"{name}: BatchNorm without a bias-free convolution of {module.num_features} "
                                 "channels before it; cannot undo the folding")
            pairs.append((last[0], name))
            last = None
    return pairs


def rebuild_from_onnx(onnx_path: str | Path):
    """The network of the ONNX's `mvrt_config` carrying its weights; returns (model in eval mode, its
    config as a checkpoint stores it (tensor contract 1, whatever the ONNX's), Rebuild)."""
    import onnx
    from onnx import numpy_helper

    from mvrt.models import build_model
    from mvrt.runtime.model_meta import read_onnx_config

    contract = read_onnx_config(onnx_path).contract
    config = read_onnx_config(onnx_path).replace(contract=1)
    proto = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    model = build_model(config).eval()
    pairs = bn_pairs(model)
    node_pair = _fingerprint_nodes(model, config, pairs, _opset(proto), contract)
    state = model.state_dict()
    values: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for name in sorted(set(inits) & set(state)):
        values[name] = inits[name]
        used.add(name)
    modules = dict(model.named_modules())
    for node in (n for n in proto.graph.node if n.op_type == "Conv" and n.name in node_pair):
        conv, bn = pairs[node_pair[node.name]]
        weight, bias = node.input[1], node.input[2]
        eps = modules[bn].eps
        values[f"{conv}.weight"] = inits[weight]
        values[f"{bn}.weight"] = np.ones_like(inits[bias])
        values[f"{bn}.bias"] = inits[bias]
        values[f"{bn}.running_mean"] = np.zeros_like(inits[bias])
        values[f"{bn}.running_var"] = np.full_like(inits[bias], 1.0 - eps)
        values[f"{bn}.num_batches_tracked"] = np.zeros((), np.int64)
        used.update((weight, bias))
    _check_complete(onnx_path, state, values, set(inits) - used)
    model.load_state_dict({k: _tensor(onnx_path, k, v, state[k]) for k, v in values.items()}, strict=True)
    return model.eval(), config, Rebuild(copied=len(set(inits) & set(state)), folded_pairs=len(pairs),
                                         state_entries=len(state))


def _opset(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _fingerprint_nodes(model, config: ModelConfig, pairs: list[tuple[str, str]], opset: int,
                       contract: int) -> dict[str, int]:
    """Folded Conv node name -> index into `pairs`, from an export (under the ONNX's tensor contract,
    so node names match) whose BN k has bias k + 1."""
    import onnx
    import torch
    from onnx import numpy_helper

    from mvrt.export.onnx_export import export_onnx

    marked = copy.deepcopy(model)
    modules = dict(marked.named_modules())
    with torch.no_grad():
        for k, (_, bn) in enumerate(pairs):
            m = modules[bn]
            m.weight.fill_(1.0)
            m.bias.fill_(k + 1.0)  # folded bias = beta - mean * gamma / sqrt(var + eps) = k + 1 exactly
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
    with tempfile.TemporaryDirectory(prefix="mvrt-fingerprint-") as tmp:
        proto = onnx.load(str(export_onnx(marked, config, Path(tmp) / "marked.onnx", opset=opset,
                                                 contract=contract)))
    inits = {i.name: i for i in proto.graph.initializer}
    found: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        bias = numpy_helper.to_array(inits[node.input[2]])
        k = int(round(float(bias.flat[0]))) - 1
        if 0 <= k < len(pairs) and np.all(bias == k + 1) and k not in found.values():
            found[node.name] = k
    if len(found) != len(pairs):
        raise ModelError(f"only {len(found)} of {len(pairs)} BatchNorms were found folded in the exported graph")
    return found


def _check_complete(onnx_path, state: dict, values: dict, unused: set[str]) -> None:
    """Every state-dict entry set, every initializer used; else a ModelError listing them."""
    unset = sorted(set(state) - set(values))
    if unset or unused:
        parts = [f"{label} {len(names)}: {_shorten(sorted(names))}" for label, names in
                 (("parameters/buffers not found in the ONNX", unset), ("initializers matching no parameter", unused))
                 if names]
        raise ModelError(f"{onnx_path}: the graph does not map onto the network of its config; {'; '.join(parts)}")


def _tensor(onnx_path, name: str, value: np.ndarray, like):
    import torch

    if tuple(value.shape) != tuple(like.shape):
        raise ModelError(f"{onnx_path}: {name} has shape {tuple(value.shape)} in the ONNX, "
                         f"{tuple(like.shape)} in the network")
    return torch.from_numpy(np.array(value, copy=True)).to(like.dtype)


def _shorten(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f", ... (+{len(names) - _LIST_LIMIT})" if len(names) > _LIST_LIMIT else "")


def standin_features(config: ModelConfig, folder: Path,
                     seconds: float = CLIP_SECONDS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels, model inputs) of one fresh stand-in clip per class (real encoded media, `mvrt.standin`)."""
    from mvrt.data import discover
    from mvrt.clip_cache import FeatureCache, load_batch
    from mvrt.standin import generate_standin

    generate_standin(folder / "data", clips_per_class=1, seconds=seconds, seed=CLIP_SEED, splits=("test",),
                     progress=False)
    entries = FeatureCache(folder / "cache", config).build(discover(folder / "data", "test"), progress=False).entries
    return np.array([clip.label for clip, _ in entries]), load_batch([p for _, p in entries], config)


def measure_parity(model, config: ModelConfig, onnx_path: str | Path, labels: np.ndarray,
                   clip_feeds: dict[str, np.ndarray]) -> Parity:
    """Logits of `model` (eval) and of `onnx_path` on ONNX Runtime CPU, on random batches and on clips."""
    from mvrt.export.parity import check_batch, torch_logits
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    random_diff = random_scale = 0.0
    with OnnxRuntimeEngine(onnx_path, providers="cpu") as engine:
        for seed in RANDOM_SEEDS:
            feeds = check_batch(config, RANDOM_BATCH, seed)
            reference = torch_logits(model, config, feeds)
            random_diff = max(random_diff, _max_diff(reference, engine.infer(feeds)))
            random_scale = max(random_scale, float(np.abs(reference).max()))
        a, b = torch_logits(model, config, clip_feeds), engine.infer(clip_feeds)
    return Parity(random_max_abs_diff=random_diff, random_logit_scale=random_scale,
                  random_samples=RANDOM_BATCH * len(RANDOM_SEEDS), clips_max_abs_diff=_max_diff(a, b),
                  clips_logit_scale=float(np.abs(a).max()), clips=len(labels),
                  clips_same_argmax=int(np.sum(a.argmax(1) == b.argmax(1))),
                  clips_correct=int(np.sum(a.argmax(1) == labels)))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def convert(onnx_path: str | Path, out_path: str | Path, tolerance: float = DEFAULT_TOLERANCE,
            clip_seconds: float = CLIP_SECONDS) -> tuple[Rebuild, Parity]:
    """Rebuild, check parity against `onnx_path`, then write `out_path` (nothing is written on failure)."""
    from mvrt.checkpoint import load_checkpoint, save_checkpoint

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".safetensors":
        raise ModelError(f"{out_path}: the checkpoint must be a .safetensors file")
    from mvrt.runtime.model_meta import read_onnx_config

    model, config, rebuild = rebuild_from_onnx(onnx_path)
    onnx_config = read_onnx_config(onnx_path)  # the ONNX's own inputs (its tensor contract)
    with tempfile.TemporaryDirectory(prefix="mvrt-rebuild-") as tmp:
        labels, feeds = standin_features(onnx_config, Path(tmp), clip_seconds)
        parity = measure_parity(model, onnx_config, onnx_path, labels, feeds)
        if not parity.passed(tolerance):
            raise ModelError(f"{onnx_path}: the rebuilt network does not reproduce the ONNX ({parity.summary()}; "
                             f"bound {tolerance:g}); nothing written")
        staged = save_checkpoint(model, config, Path(tmp) / out_path.name)
        _, stored = load_checkpoint(staged)
        if stored != config:
            raise ModelError(f"{staged}: the written config differs from the ONNX's")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(staged.read_bytes())
    return rebuild, parity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python tools/checkpoint_from_onnx.py "
                                            "src/mvrt/bundled/standin-slowfast.onnx /tmp/standin-slowfast.safetensors")
    parser.add_argument("onnx", metavar="ONNX", help="FP32 ONNX written by `mvrt export` (BatchNorm folded)")
    parser.add_argument("out", metavar="OUT.safetensors", help="checkpoint to write")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="largest |Δlogits| accepted, torch against ONNX Runtime, as a fraction of "
                             f"max(1, max |logit|) (default: {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--clip-seconds", type=float, default=CLIP_SECONDS,
                        help=f"length of the generated stand-in clips compared on (default: {CLIP_SECONDS:g})")
    args = parser.parse_args(argv)
    if not args.clip_seconds > 0:
        parser.error(f"--clip-seconds {args.clip_seconds:g}: must be positive")
    start = time.perf_counter()
    try:
        rebuild, parity = convert(args.onnx, args.out, args.tolerance, args.clip_seconds)
    except MvrtError as exc:
        print(f"checkpoint_from_onnx: {exc}", file=sys.stderr)
        return 1
    print(f"checkpoint_from_onnx: {rebuild.copied} entries copied by name, {rebuild.folded_pairs} conv+BN pairs "
          f"unfolded (BN = identity), all {rebuild.state_entries} state-dict entries set", file=sys.stderr)
    print(f"checkpoint_from_onnx: {parity.summary()}", file=sys.stderr)
    print(f"checkpoint_from_onnx: wrote {args.out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
