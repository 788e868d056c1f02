"""Training on CUDA: skipped without a GPU; MVRT_REQUIRE_GPU=1 turns the skip into a failure."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpu import require_cuda  # noqa: E402
from mvrt.config import FrontendConfig  # noqa: E402
from mvrt.errors import UsageError  # noqa: E402
from mvrt.evaluation.evaluate import evaluate  # noqa: E402
from mvrt.standin import generate_standin  # noqa: E402
from mvrt.training.train import TrainSettings, train  # noqa: E402


def _settings(device: str) -> TrainSettings:
    return TrainSettings(width=1 / 16, frontend=FrontendConfig(window_seconds=2.0, image_size=32), epochs=4,
                         batch_size=8, lr=1e-2, dropout=0.2, progress=False, device=device)


@pytest.mark.gpu
def test_a_cuda_trained_checkpoint_scores_the_same_on_cpu(tmp_path):
    require_cuda()
    root = tmp_path / "standin"
    generate_standin(root, clips_per_class={"train": 4, "validation": 2}, splits=("train", "validation"),
                     seconds=1.5, width=64, height=48, progress=False)
    result = train(root, tmp_path / "m.safetensors", _settings("cuda"), cache_dir=tmp_path / "cache")
    best = next(r for r in result.history if r.epoch == result.best_epoch)
    on_cpu = evaluate(result.checkpoint, root, split="validation", cache_dir=tmp_path / "cache", progress=False)
    assert on_cpu.metrics.accuracy == pytest.approx(best.val_accuracy)
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_cuda_without_a_gpu_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="^device cuda: torch sees no CUDA device; train with device='cpu'$") as caught:
        train(tmp_path, tmp_path / "m.safetensors", _settings("cuda"))
    assert caught.value.setting == "device"


def test_an_unknown_device_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"^device must be cpu or cuda\[:N\], got 'tpu'") as caught:
        train(tmp_path, tmp_path / "m.safetensors", _settings("tpu"))
    assert caught.value.setting == "device"
