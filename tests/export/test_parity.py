"""Parity report: the check batch, the real windows, the comparison rules, and ORT-vs-torch on exported models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mvrt.errors import ModelError
from mvrt.export.parity import (FP32_TOLERANCE, ParityTolerance, check_batch, compare_logits, media_batch, onnx_parity,
                                onnxruntime_logits, torch_logits, write_media_clip)
from mvrt.runtime.model_meta import read_onnx_config


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


def test_check_batch_of_contract_2_has_random_uint8_frames(tiny_models):
    config = read_onnx_config(tiny_models["slowfast"].onnx)
    assert config.contract == 2
    feeds = check_batch(config, batch=3, seed=7)
    assert list(feeds) == ["audio_slow", "audio_fast", "video"]
    assert feeds["video"].dtype == np.uint8 and feeds["video"].shape == (3, *config.input_shapes()["video"])
    assert feeds["video"].min() == 0 and feeds["video"].max() == 255 and abs(feeds["video"].mean() - 127.5) < 1
    assert feeds["audio_fast"].dtype == np.float32
    assert np.array_equal(feeds["video"], check_batch(config, 3, seed=7)["video"])


def test_torch_reference_of_contract_2_reads_the_same_uint8_frames(tiny_models):
    """torch behind with_contract on uint8 frames == the bare network on the runtime's contract-1 floats."""
    from mvrt.checkpoint import load_checkpoint
    from mvrt.runtime.network_inputs import normalize_frames, slow_indices

    model, config1 = load_checkpoint(tiny_models["slowfast"].checkpoint)
    config2 = config1.replace(contract=2)
    feeds2 = check_batch(config2, batch=2, seed=3)
    video = np.stack([normalize_frames(v.transpose(1, 2, 3, 0), config1.frontend) for v in feeds2["video"]])
    feeds1 = {"audio_slow": feeds2["audio_slow"], "audio_fast": feeds2["audio_fast"], "video_fast": video,
              "video_slow": np.ascontiguousarray(video[:, :, slow_indices(video.shape[2], 8)])}
    got, want = torch_logits(model, config2, feeds2), torch_logits(model, config1, feeds1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.abs(want).max() > 1e-3


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_fp32_onnx_matches_torch(tiny_models, arch):
    tiny = tiny_models[arch]
    report = onnx_parity(tiny.onnx, tiny.checkpoint, "fp32", batch=3)
    print(report.summary())
    assert report.passed and report.tolerance == FP32_TOLERANCE
    assert report.relative_diff <= 1e-5 and report.top1_agreement == 1.0 and report.logit_scale > 0
    assert "parity fp32 vs torch fp32 on 3 random samples" in report.summary() and report.summary().endswith("ok")
    real = report.real  # the window of a generated clip one model window long
    assert report.real_windows == 1 and real.batch == 1 and real.passed and real.tolerance == FP32_TOLERANCE
    assert real.relative_diff <= 1e-5 and real.top1_agreement == 1.0 and real.logit_scale > 0
    assert "samples: max |Δlogits|" in report.summary() and "; on 1 real window (generated clip): max |Δlogits|" \
        in report.summary()


def test_a_flipped_head_changes_the_label_and_fails(tiny_models, tmp_path):
    """Negating the classifier weights: logits far off, top-1 mostly wrong, the report fails."""
    tiny = tiny_models["musicvideo"]
    proto = onnx.load(str(tiny.onnx))
    flipped = 0
    for t in proto.graph.initializer:
        if t.name.endswith(("head.fc.weight", "head.fc.bias")):  # network.head... behind contract 2's front
            flipped += 1
            t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
    assert flipped == 2
    path = tmp_path / "flipped.onnx"
    onnx.save(proto, str(path))
    report = onnx_parity(path, tiny.checkpoint, "fp32")
    assert not report.passed and report.top1_agreement < 0.5 and report.relative_diff > 1
    assert not report.real.passed and report.real.relative_diff > 1
    assert report.summary().endswith("FAILED")


def test_comparison_rules_ties_offsets_and_non_finite(tiny_models):
    tiny = tiny_models["slowfast"]
    from mvrt.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny.checkpoint)
    config = read_onnx_config(tiny.onnx)  # the graph's contract (2): torch_logits puts the network behind it
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


def _clip_input(proto: onnx.ModelProto, name: str, bound: float) -> None:
    """Clip graph input `name` to [-bound, bound] before any node reads it."""
    clipped = f"{name}_clipped"
    for node in proto.graph.node:
        node.input[:] = [clipped if x == name else x for x in node.input]
    limits = [numpy_helper.from_array(np.array(v, np.float32), f"{name}_{side}")
              for v, side in ((-bound, "min"), (bound, "max"))]
    proto.graph.initializer.extend(limits)
    proto.graph.node.insert(0, onnx.helper.make_node("Clip", [name, limits[0].name, limits[1].name], [clipped]))


def test_real_windows_catch_what_random_samples_miss(tiny_models, tmp_path):
    """A graph that clips its audio input to [-6, 6]: N(0, 1) samples never reach that, real log-mels do."""
    tiny = tiny_models["slowfast"]
    proto = onnx.load(str(tiny.onnx))
    _clip_input(proto, "audio_fast", 6.0)
    path = tmp_path / "clipped.onnx"
    onnx.save(proto, str(path))
    assert np.abs(media_batch(tiny.config)["audio_fast"]).max() > 20  # not normalised: log-mels in dB
    alone = onnx_parity(path, tiny.checkpoint, "fp32", batch=2, real_windows=False)
    assert alone.passed and alone.real is None and "real window" not in alone.summary()
    report = onnx_parity(path, tiny.checkpoint, "fp32", batch=2)
    assert report.relative_diff <= 1e-5 and not report.real.passed and not report.passed
    assert report.summary().endswith("FAILED")
    with pytest.raises(ModelError, match=r"clipped\.onnx: parity fp32 vs torch fp32 on 2 random samples: .*; on 1 "
                                         r"real window \(generated clip\): .*FAILED; the conversion is not trustworthy"):
        report.raise_if_failed(str(path))


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_real_windows_are_what_inference_reads(tiny_models, tmp_path, arch):
    """The same seed gives the same windows; they are the front-end of the windows `run_pipeline` infers."""
    from mvrt.runtime.decode import iter_window_audio, iter_window_frames
    from mvrt.runtime.engines import open_engine
    from mvrt.runtime.network_inputs import window_features
    from mvrt.runtime.pipeline import PipelineConfig, run_pipeline
    from mvrt.runtime.results import WindowResult
    from mvrt.runtime.window_reader import file_windows

    tiny = tiny_models[arch]
    config, seed = read_onnx_config(tiny.onnx), 2  # contract 2: uint8 video
    feeds = media_batch(config, seed)
    assert config.contract == 2 and feeds["video"].dtype == np.uint8
    assert {k: v.shape for k, v in feeds.items()} == {k: (1, *s) for k, s in config.input_shapes().items()}
    assert all(np.array_equal(v, media_batch(config, seed)[k]) for k, v in feeds.items())  # reproducible
    assert not np.array_equal(feeds[config.input_names[0]], media_batch(config, seed + 1)[config.input_names[0]])
    clip = write_media_clip(tmp_path / "clip.mp4", config, seed)
    windows = file_windows(clip, config)
    assert [(w.start_seconds, w.span_seconds) for w in windows] == [(0.0, config.frontend.window_seconds)]
    fe, rates = config.frontend, sorted(set(config.audio_inputs.values()))
    decoded = list(zip(iter_window_audio(clip, windows, rates, fe.window_seconds),  # a pass for each stream
                       iter_window_frames(clip, windows, frames=fe.frames, size=fe.image_size)))
    assert len(decoded) == 1
    for i, (audio, frames) in enumerate(decoded):
        for name, value in window_features(audio, frames, config).items():
            np.testing.assert_array_equal(feeds[name][i], value, err_msg=f"window {i} {name}")
    with open_engine(tiny.onnx) as engine:
        results = [e for e in run_pipeline(engine, [clip], PipelineConfig()) if isinstance(e, WindowResult)]
    np.testing.assert_allclose(np.stack([r.logits for r in results]), onnxruntime_logits(tiny.onnx, feeds), atol=1e-5)
