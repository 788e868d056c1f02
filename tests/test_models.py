"""The paper's networks: parameter counts, shapes, gradient flow, MMTM and block structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvrt.config import FrontendConfig, ModelConfig
from mvrt.models import PAPER_PARAMETERS, build_model, count_parameters, seed_everything
from mvrt.models.blocks import MMTM, DenseResidualBlock, Pathway, PathwaySpec

VARIANTS = [("slowfast", True), ("slowfast", False), ("musicvideo", True), ("musicvideo", False)]
SMALL_FRONTEND = FrontendConfig(window_seconds=4.0, image_size=32)


def tiny(arch: str, mmtm: bool = True) -> ModelConfig:
    return ModelConfig(arch=arch, mmtm=mmtm, width=1 / 16, frontend=SMALL_FRONTEND)


def random_inputs(config: ModelConfig, batch: int, seed: int = 0) -> list[torch.Tensor]:
    """Audio ch0 ~ N(0,1), ch1 (phase) in [-pi, pi]; video ~ N(0,1)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name, shape in config.input_shapes().items():
        x = torch.randn(batch, *shape, generator=gen)
        if name in config.audio_inputs:
            x[:, 1] = (2 * torch.rand(batch, *shape[1:], generator=gen) - 1) * np.pi
        out.append(x)
    return out


@pytest.mark.parametrize("arch,mmtm", VARIANTS)
def test_parameter_count_is_within_10_percent_of_the_paper(arch, mmtm):
    model = build_model(ModelConfig(arch=arch, mmtm=mmtm))
    count, paper = count_parameters(model), PAPER_PARAMETERS[(arch, mmtm)]
    buffers = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    print(f"{arch} mmtm={mmtm}: {count:,} parameters (paper {paper:,}, {count / paper - 1:+.2%}); "
          f"{count + buffers:,} with BN running statistics")
    assert abs(count / paper - 1) <= 0.10


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_full_size_forward_gives_one_logit_per_class(arch):
    config = ModelConfig(arch=arch)
    model = build_model(config).eval()
    with torch.inference_mode():
        logits = model(*random_inputs(config, 1))
    assert logits.shape == (1, len(config.classes))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch,mmtm", VARIANTS)
@pytest.mark.parametrize("batch", [1, 3])
def test_tiny_forward_shape_and_batch_independence(arch, mmtm, batch):
    config = tiny(arch, mmtm)
    torch.manual_seed(0)
    model = build_model(config).eval()
    inputs = random_inputs(config, batch)
    with torch.inference_mode():
        logits = model(*inputs)
        first = model(*[x[:1] for x in inputs])
    assert logits.shape == (batch, 6)
    torch.testing.assert_close(logits[:1], first, atol=1e-5, rtol=1e-5)  # eval: rows are independent


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_every_parameter_receives_a_gradient(arch):
    config = tiny(arch, mmtm=True).replace(width=1 / 8)  # the no-MMTM graph is a subgraph
    torch.manual_seed(0)
    model = build_model(config).train()
    for module in model.modules():  # tiny widths leave few bottleneck units; keep them active
        if isinstance(module, MMTM):
            torch.nn.init.constant_(module.squeeze.bias, 1.0)
    logits = model(*random_inputs(config, 2))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 5])).backward()
    params = dict(model.named_parameters())
    unused = [name for name, p in params.items() if p.grad is None]
    assert not unused, f"parameters outside the graph: {unused[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    # A channel or two of a tiny network may sit behind a dead ReLU; a broken path would not.
    zero = [name for name, p in params.items() if not p.grad.abs().sum() > 0]
    assert len(zero) <= 0.02 * len(params), f"parameters with zero gradient: {zero[:5]}"


def test_seed_everything_makes_initialisation_reproducible():
    config = tiny("musicvideo")
    seed_everything(3)
    first = build_model(config).state_dict()
    seed_everything(3)
    second = build_model(config).state_dict()
    seed_everything(4)
    other = build_model(config).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["head.fc.weight"], other["head.fc.weight"])


def test_mmtm_width_and_parameter_presence():
    with_mmtm, without = build_model(tiny("slowfast", True)), build_model(tiny("slowfast", False))
    names = [n for n, _ in with_mmtm.named_parameters() if n.startswith("mmtm.")]
    assert names and not any(n.startswith("mmtm.") for n, _ in without.named_parameters())
    # One MMTM per stage and per (audio, video) pair: 4 stages x 2 pairs.
    assert sum(len(stages) for stages in with_mmtm.mmtm.values()) == 8


def test_mmtm_matches_the_paper_formula():
    torch.manual_seed(0)
    mmtm = MMTM(12, 20)
    assert mmtm.squeeze.out_features == (12 + 20) // 4
    a, v = torch.randn(2, 12, 5, 7), torch.randn(2, 20, 3, 4, 4)
    got_a, got_v = mmtm(a, v)
    w = {k: t.detach().numpy().astype(np.float64) for k, t in mmtm.state_dict().items()}
    an, vn = a.numpy().astype(np.float64), v.numpy().astype(np.float64)
    s = np.concatenate([an.mean(axis=(2, 3)), vn.mean(axis=(2, 3, 4))], axis=1)
    z = np.maximum(s @ w["squeeze.weight"].T + w["squeeze.bias"], 0)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    gate_a = 2 * sig(z @ w["excite_audio.weight"].T + w["excite_audio.bias"])
    gate_v = 2 * sig(z @ w["excite_video.weight"].T + w["excite_video.bias"])
    np.testing.assert_allclose(got_a.detach().numpy(), gate_a[:, :, None, None] * an, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_v.detach().numpy(), gate_v[:, :, None, None, None] * vn, rtol=1e-5, atol=1e-6)


def _frames_changed(module: torch.nn.Module, frames: int, poked: int) -> list[int]:
    """Output frames that change when input frame `poked` changes (eval mode)."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, frames, 16, 16)
    y = x.clone()
    y[:, :, poked] += 1.0
    with torch.no_grad():
        diff = (module.eval()(x) - module(y)).abs().amax(dim=(0, 1, 3, 4))  # (T,)
    return [t for t in range(frames) if diff[t] > 1e-6]


def test_video_blocks_are_per_frame_and_the_transition_mixes_time():
    block = DenseResidualBlock(3, 4, 8, k=5, pool=(1, 2, 2), separable=True)
    assert _frames_changed(block, 6, 3) == [3]
    spec = PathwaySpec(dims=3, in_channels=4, stem_channels=4, stem_kernel=(1, 3, 3), stem_stride=(1, 1, 1),
                       stem_pool=None, growth=(8,), out_channels=(8,), kernel=5, pools=((1, 2, 2),),
                       transition_kernel=(3, 3, 3), separable=True)
    pathway = Pathway(spec, 1.0)
    assert _frames_changed(torch.nn.Sequential(pathway.stem, *pathway.stages), 6, 3) == [2, 3, 4]


def test_separable_convolutions_factorise_filters_and_channels():
    model = build_model(ModelConfig(arch="slowfast", width=0.25))
    for name, k in (("video_slow", 3), ("video_fast", 5)):
        stages = model.pathways[name].stages
        convs = [m for m in stages.modules() if isinstance(m, torch.nn.Conv3d)]
        assert sum(c.kernel_size[0] > 1 for c in convs) == len(stages)  # one 3D conv per stage
        assert all(c.kernel_size == (3, 3, 3) for c in convs if c.kernel_size[0] > 1)
        depthwise = {c.kernel_size for c in convs if c.groups > 1}
        assert all(c.groups == c.in_channels == c.out_channels for c in convs if c.groups > 1)
        # n x n split into 1 x n then n x 1: the branches use n = k, the smoothing conv n = 3
        assert depthwise == {(1, 1, k), (1, k, 1), (1, 1, 3), (1, 3, 1)}
        per_frame = [c for c in convs if c.kernel_size[0] == 1 and c.groups == 1]
        assert per_frame and all(c.kernel_size == (1, 1, 1) for c in per_frame)  # pointwise
    slow, fast = model.pathways["video_slow"].channels, model.pathways["video_fast"].channels
    assert all(f < s for f, s in zip(fast, slow))
