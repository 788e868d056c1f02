"""Checkpoints: exact round trip, config in the metadata, no unpickling, clear errors."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from mvrt.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from mvrt.config import AudioNorm, FrontendConfig, ModelConfig
from mvrt.errors import ModelError
from mvrt.models import build_model, count_parameters
from mvrt.runtime.model_meta import describe_model, sha256_file

CONFIG = ModelConfig(
    arch="slowfast", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0, image_size=32),
    audio_norm=(("audio_fast", AudioNorm((-40.0, 0.1), (12.0, 1.8))),), trained_on="test: random init",
)


def _saved(tmp_path, config: ModelConfig = CONFIG, name: str = "model.safetensors"):
    torch.manual_seed(0)
    model = build_model(config)
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():  # non-trivial BN statistics must survive the trip too
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 1.5, generator=gen)
            module.num_batches_tracked.fill_(7)
    path = save_checkpoint(model, config, tmp_path / name)
    return model, path


def test_round_trip_is_exact(tmp_path):
    model, path = _saved(tmp_path)
    loaded, config = load_checkpoint(path)
    assert config == CONFIG
    assert not loaded.training
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert want[name].dtype == got[name].dtype and torch.equal(want[name], got[name]), name


def test_describe_counts_parameters_from_the_header(tmp_path):
    model, path = _saved(tmp_path)
    info = describe_model(path)
    assert info["parameters"] == count_parameters(model)
    assert info["arch"] == "slowfast" and info["inputs"]["audio_fast"] == ["batch", 2, 128, 251]
    assert info["sha256"] == sha256_file(path) and info["size_bytes"] == path.stat().st_size


def test_config_is_readable_without_torch(tmp_path):
    _, path = _saved(tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from mvrt.checkpoint import read_checkpoint_config\n"
        f"print(read_checkpoint_config({str(path)!r}).to_json())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ModelConfig.from_json(out.stdout) == CONFIG == read_checkpoint_config(path)


def test_a_pickle_named_safetensors_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Touch(str(marker))))
    with pytest.raises(ModelError, match=r"evil\.safetensors: not a safetensors file"):
        load_checkpoint(path)
    torch_zip = tmp_path / "torchsave.safetensors"
    torch.save({"w": torch.zeros(3)}, torch_zip)
    with pytest.raises(ModelError, match=r"torchsave\.safetensors: not a safetensors file"):
        load_checkpoint(torch_zip)
    assert not marker.exists()


class _Touch:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match=r"absent\.safetensors: no such model file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_safetensors_without_mvrt_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"plain\.safetensors: no mvrt model config .*'mvrt_config'"):
        read_checkpoint_config(path)


def test_garbage_header(tmp_path):
    path = tmp_path / "garbage.safetensors"
    header = b"{not json"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ModelError, match=r"garbage\.safetensors: not a safetensors file \(header is not JSON\)"):
        read_checkpoint_config(path)


def test_bad_config_json_names_the_file(tmp_path):
    path = tmp_path / "oldcfg.safetensors"
    data = json.loads(CONFIG.to_json()) | {"version": 99}
    save_file({"w": torch.zeros(2)}, str(path), metadata={"mvrt_config": json.dumps(data)})
    with pytest.raises(ModelError, match=r"oldcfg\.safetensors: model config version 99 is newer"):
        read_checkpoint_config(path)


def test_key_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    model, _ = _saved(tmp_path, CONFIG.replace(mmtm=False))
    path = tmp_path / "mismatch.safetensors"
    save_checkpoint(model, CONFIG, path)  # weights without MMTM, config says mmtm=True
    with pytest.raises(ModelError, match=r"mismatch\.safetensors: .*missing \d+ key\(s\): mmtm\."):
        load_checkpoint(path)
    extra = {**{k: v.contiguous() for k, v in model.state_dict().items()}, "bogus.weight": torch.zeros(1)}
    save_file(extra, str(path), metadata={"mvrt_config": CONFIG.replace(mmtm=False).to_json()})
    with pytest.raises(ModelError, match=r"unexpected 1 key\(s\): bogus\.weight"):
        load_checkpoint(path)


def test_shape_mismatch_is_a_model_error(tmp_path):
    model, _ = _saved(tmp_path)
    path = tmp_path / "wider.safetensors"
    save_checkpoint(model, CONFIG.replace(width=1 / 8), path)
    with pytest.raises(ModelError, match=r"wider\.safetensors: weights do not fit the slowfast network"):
        load_checkpoint(path)


def test_malformed_tensor_entry_is_refused_before_safetensors_reads_it(tmp_path):
    path = tmp_path / "badshape.safetensors"
    header = json.dumps({"__metadata__": {"mvrt_config": CONFIG.to_json()},
                         "w": {"dtype": "F32", "shape": [2, "x"], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(ModelError, match=r"badshape\.safetensors: malformed safetensors header: tensor 'w': "
                       r"field 'shape' must be a list of non-negative integers"):
        load_checkpoint(path)
