"""Autoencoder pretraining: reconstruction shapes, deep supervision, learning, and `--init` hand-over."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import mvrt.training.train as train_module  # noqa: E402
from mvrt.checkpoint import read_checkpoint_config  # noqa: E402
from mvrt.cli import main  # noqa: E402
from mvrt.config import FrontendConfig, ModelConfig  # noqa: E402
from mvrt.errors import UsageError  # noqa: E402
from mvrt.models import build_model, seed_everything  # noqa: E402
from mvrt.models.autoencoder import AutoEncoder, reconstruction_loss  # noqa: E402
from mvrt.training.pretrain import PretrainSettings, find_unlabelled_clips, pretrain  # noqa: E402
from mvrt.training.train import TrainSettings, load_matching_weights, train  # noqa: E402

FRONTEND = FrontendConfig(window_seconds=2.0, image_size=32)


def _config(arch: str, mmtm: bool = True) -> ModelConfig:
    return ModelConfig(arch=arch, width=1 / 16, mmtm=mmtm, frontend=FRONTEND)


def _batch(config: ModelConfig, size: int = 2) -> list:
    """Smooth inputs (coarse noise upsampled), like spectrograms and frames rather than white noise."""
    gen = torch.Generator().manual_seed(0)
    batch = []
    for name in config.input_names:
        c, *spatial = config.input_shapes()[name]
        coarse = torch.randn(size, c, *[max(s // 8, 1) for s in spatial], generator=gen)  # (B, C, *spatial/8)
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        batch.append(torch.nn.functional.interpolate(coarse, size=tuple(spatial), mode=mode, align_corners=False))
    return batch


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_every_output_reconstructs_the_input_shape_with_paper_auxiliary_counts(arch):
    config = _config(arch)
    seed_everything(0)
    model = AutoEncoder(config)
    inputs = _batch(config)
    outputs = model(*inputs)
    assert list(outputs) == list(config.input_names)
    for name, x in zip(config.input_names, inputs):
        expected_aux = 4 if name.startswith("video") else 3  # paper: 4 video, 3 audio auxiliary outputs
        assert len(outputs[name]) == 1 + expected_aux
        assert all(o.shape == x.shape for o in outputs[name]), (name, [tuple(o.shape) for o in outputs[name]])
    assert model.auxiliary_counts() == {n: 4 if n.startswith("video") else 3 for n in config.input_names}


def test_encoder_keys_match_the_classifier():
    config = _config("slowfast")
    encoder_keys = {k[len("encoder."):] for k in AutoEncoder(config).state_dict() if k.startswith("encoder.")}
    assert encoder_keys == set(build_model(config).state_dict())


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_reconstruction_loss_decreases_on_a_fixed_batch(arch):
    config = _config(arch, mmtm=arch == "slowfast")
    seed_everything(0)
    model = AutoEncoder(config)
    inputs = dict(zip(config.input_names, _batch(config)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = reconstruction_loss(model(*inputs.values()), inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():  # the loss is the mean MSE over every output of every branch
        outputs = model(*inputs.values())
        manual = torch.stack([torch.nn.functional.mse_loss(o, inputs[n]) for n, outs in outputs.items() for o in outs])
        assert float(reconstruction_loss(outputs, inputs)) == pytest.approx(float(manual.mean()), rel=1e-6)
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.fixture(scope="module")
def standin(standin_factory):
    return standin_factory("unlabelled", train=1, validation=1)


def test_finds_clips_in_any_layout_and_pairs_authors_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.mp4").write_bytes(b"")
    for kind, ext in (("audio", ".wav"), ("video", ".mp4")):
        (tmp_path / "set" / kind).mkdir(parents=True)
        (tmp_path / "set" / kind / f"song{ext}").write_bytes(b"")
    (tmp_path / ".mvrt-cache").mkdir()
    (tmp_path / ".mvrt-cache" / "y.mp4").write_bytes(b"")
    clips = {c.stem: c for c in find_unlabelled_clips(tmp_path)}
    assert sorted(clips) == ["song", "x"]
    assert clips["song"].audio_path.name == "song.wav" and clips["song"].video_path.name == "song.mp4"
    assert clips["x"].label == -1
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no media files"):
        find_unlabelled_clips(tmp_path / "empty")


def test_pretrain_writes_an_encoder_that_train_init_loads(standin, tmp_path, monkeypatch):
    root, cache = standin
    out = tmp_path / "pre.safetensors"
    settings = PretrainSettings(width=1 / 16, frontend=FRONTEND, epochs=2, batch_size=6, lr=3e-3, threads=1,
                                progress=False)
    result = pretrain(root, out, settings, cache_dir=cache)
    assert result.clips == 12 and result.skipped_clips == 0 and len(result.epoch_losses) == 2
    config = read_checkpoint_config(out)
    assert config.trained_on == f"autoencoder pretraining (unlabelled): {root.resolve().name}"

    seed_everything(0)
    fresh = build_model(config)
    from safetensors.torch import load_file

    saved = load_file(str(out))
    stem_key = next(k for k in saved if k.startswith("pathways.video_fast.stem") and k.endswith("weight"))
    assert not torch.equal(saved[stem_key], fresh.state_dict()[stem_key])  # trained, not a fresh init
    loaded, missing = load_matching_weights(fresh, out)
    assert loaded == len(fresh.state_dict()) and missing == 0
    assert torch.equal(fresh.state_dict()[stem_key], saved[stem_key])

    first = {}
    real_epoch = train_module._run_epoch

    def spy(model, *args, **kwargs):
        first.setdefault("weights", {k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_epoch(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "_run_epoch", spy)
    train(root, tmp_path / "tuned.safetensors",
          TrainSettings(width=1 / 16, frontend=FRONTEND, epochs=1, batch_size=6, threads=1, progress=False,
                        precise_bn_batches=0, init=out), cache_dir=cache)
    for key in saved:  # fine-tuning starts from every pretrained tensor
        assert torch.equal(first["weights"][key], saved[key]), key


def test_cli_pretrain_and_usage_errors(standin, tmp_path, capsys):
    root, cache = standin
    out = tmp_path / "cli.safetensors"
    code = main(["pretrain", str(root), "--arch", "musicvideo", "--width", "0.0625", "--epochs", "1", "--window", "2",
                 "--image-size", "32", "--batch-size", "12", "--cache", str(cache), "--out", str(out), "-q"])
    assert code == 0 and out.is_file()
    assert read_checkpoint_config(out).arch == "musicvideo"
    err = capsys.readouterr().err
    assert "final reconstruction loss" in err
    assert "mvrt pretrain: unlabelled: " in err and "mvrt pretrain: epoch 1/1: reconstruction loss " in err
    assert f"mvrt pretrain: encoder -> {out}" in err
    assert main(["pretrain", str(tmp_path / "missing"), "--out", str(out), "-q"]) == 2
    assert "no such clips folder" in capsys.readouterr().err
