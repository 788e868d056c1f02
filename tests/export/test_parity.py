"""Parity report: the check batch, the comparison rules, and ORT-vs-torch on exported models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mvrt.errors import ModelError
from mvrt.export.parity import (FP32_TOLERANCE, ParityTolerance, check_batch, compare_logits, onnx_parity,
                                onnxruntime_logits, torch_logits)


def test_check_batch_is_seeded_and_shaped_per_config(tiny_models):
    config = tiny_models["slowfast"].config
    feeds = check_batch(config, batch=3, seed=7)
    assert {k: v.shape for k, v in feeds.items()} == {k: (3, *s) for k, s in config.input_shapes().items()}
    assert all(v.dtype == np.float32 for v in feeds.values())
    phase = feeds["audio_fast"][:, 1]
    assert -np.pi <= phase.min() < -3.0 and 3.0 < phase.max() <= np.pi
    assert abs(feeds["video_fast"].std() - 1) < 0.01 and abs(feeds["audio_slow"][:, 0].mean()) < 0.05  # 24k samples: sigma 0.0065
    assert all(np.array_equal(feeds[k], v) for k, v in check_batch(config, 3, seed=7).items())
    assert not np.array_equal(feeds["video_slow"], check_batch(config, 3, seed=8)["video_slow"])


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_fp32_onnx_matches_torch(tiny_models, arch):
    tiny = tiny_models[arch]
    report = onnx_parity(tiny.onnx, tiny.checkpoint, "fp32", batch=3)
    print(report.summary())
    assert report.passed and report.tolerance == FP32_TOLERANCE
    assert report.relative_diff <= 1e-5 and report.top1_agreement == 1.0 and report.logit_scale > 0
    assert "parity fp32 vs torch fp32 on 3 random samples" in report.summary() and report.summary().endswith("ok")


def test_a_flipped_head_changes_the_label_and_fails(tiny_models, tmp_path):
    """Negating the classifier weights: logits far off, top-1 mostly wrong, the report fails."""
    tiny = tiny_models["musicvideo"]
    proto = onnx.load(str(tiny.onnx))
    for t in proto.graph.initializer:
        if t.name in ("head.fc.weight", "head.fc.bias"):
            t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
    path = tmp_path / "flipped.onnx"
    onnx.save(proto, str(path))
    report = onnx_parity(path, tiny.checkpoint, "fp32")
    assert not report.passed and report.top1_agreement < 0.5 and report.relative_diff > 1
    assert report.summary().endswith("FAILED")


def test_comparison_rules_ties_offsets_and_non_finite(tiny_models):
    tiny = tiny_models["slowfast"]
    from mvrt.checkpoint import load_checkpoint

    model, config = load_checkpoint(tiny.checkpoint)
    feeds = check_batch(config, 4)
    reference = torch_logits(model, config, feeds)
    candidate = onnxruntime_logits(tiny.onnx, feeds)
    loose = ParityTolerance(max_relative=0.5, min_top1=1.0)
    swapped = candidate.copy()  # swap sample 0's two best classes: a near-tie under a loose bound
    best, second = np.argsort(reference[0])[-1], np.argsort(reference[0])[-2]
    swapped[0, [best, second]] = swapped[0, [second, best]]
    gap = (reference[0, best] - reference[0, second]) / np.abs(reference - reference.mean(1, keepdims=True)).max()
    assert compare_logits(reference, swapped, "fp32", loose).top1_agreement == (1.0 if gap <= 0.5 else 0.75)
    assert compare_logits(reference, swapped, "fp32").top1_agreement == 0.75
    broken = candidate.copy()
    broken[1, 2] = np.nan
    report = compare_logits(reference, broken, "fp32")
    assert report.max_abs_diff == np.inf and not report.passed
    with pytest.raises(ModelError, match=r"cannot be compared"):
        compare_logits(reference, candidate[:2], "fp32")


def test_reference_must_be_the_exported_model(tiny_models):
    with pytest.raises(ModelError, match=r"tiny-musicvideo\.safetensors: checkpoint config differs"):
        onnx_parity(tiny_models["slowfast"].onnx, tiny_models["musicvideo"].checkpoint, "fp32")
