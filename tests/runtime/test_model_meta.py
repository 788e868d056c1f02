"""Model files nobody vetted: malformed configs and safetensors headers are one-line ModelErrors naming file and field."""

from __future__ import annotations

import json
import re
import struct

import onnx
import pytest

import mvrt.api
import mvrt.cli
from mvrt.config import FrontendConfig, ModelConfig
from mvrt.errors import ModelError
from mvrt.runtime.model_meta import CONFIG_KEY, describe_model, read_model_config

CONFIG = ModelConfig(arch="slowfast", width=1 / 16, frontend=FrontendConfig(window_seconds=4.0, image_size=32))
TENSOR = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def _config_data() -> dict:
    return json.loads(CONFIG.to_json())


def _with(path: list[str], value) -> str:
    """CONFIG's JSON with the field at `path` set to `value` (... deletes it)."""
    data = _config_data()
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(data)


def write_safetensors(path, config_text: str | None, tensors: dict | None = None, data: bytes = bytes(8)) -> None:
    """A safetensors file by hand: 8-byte LE header length, JSON header, data."""
    header = dict(TENSOR if tensors is None else tensors)
    if config_text is not None:
        header["__metadata__"] = {CONFIG_KEY: config_text, "format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def write_onnx(path, config_text: str) -> None:
    """A trivial Identity graph with `config_text` in metadata_props."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    model = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    onnx.helper.set_model_props(model, {CONFIG_KEY: config_text})
    onnx.save(model, str(path))


def _model_file(tmp_path, kind: str, config_text: str):
    path = tmp_path / f"model.{kind}"
    (write_onnx if kind == "onnx" else write_safetensors)(path, config_text)
    return path


DEEP = '{"format": "mvrt-model", "version": 1, "trained_on": ' + "[" * 5000 + "]" * 5000 + "}"
BAD_CONFIGS = {  # each of these raised something other than a ModelError, or nothing, before
    "deeply nested": (DEEP, r"model config JSON is nested 5001 levels deep; at most 32 are read"),
    "a list": ("[1, 2, 3]", r"model config must be a JSON object, got a list"),
    "classes 5": (_with(["classes"], 5), r"model config field 'classes' must be a non-empty list"),
    "window string": (_with(["frontend", "window_seconds"], "30"),
                      r"model config field 'frontend.window_seconds' must be a positive number of seconds"),
    "hop 0": (_with(["frontend", "hop_length"], 0), r"model config field 'frontend.hop_length' must be a positive integer, got 0"),
    "std missing": (_with(["audio_norm", "audio_fast"], {"mean": [0, 0]}),
                    r"model config lacks the required field\(s\): audio_norm\.audio_fast\.std"),
    "version string": (_with(["version"], "x"), r"model config field 'version' must be a positive integer"),
    "huge frames": (_with(["frontend", "image_size"], 1024), r"model config field 'frontend' asks for \d+ values per window"),
    "bool n_mels": (_with(["frontend", "n_mels"], True), r"model config field 'frontend.n_mels' must be a positive integer, got true"),
}


@pytest.mark.parametrize("kind", ["onnx", "safetensors"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_malformed_config_names_the_file_and_the_field(tmp_path, kind, case):
    text, match = BAD_CONFIGS[case]
    path = _model_file(tmp_path, kind, text)
    for read in (read_model_config, describe_model):
        with pytest.raises(ModelError, match="^" + re.escape(f"{path}: ") + match) as info:
            read(path)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["onnx", "safetensors"])
def test_load_model_gives_the_model_error(tmp_path, kind):
    path = _model_file(tmp_path, kind, _with(["frontend", "hop_length"], 0))
    with pytest.raises(ModelError, match=re.escape(f"{path}: model config field 'frontend.hop_length'")):
        mvrt.api.load_model(path)


@pytest.mark.parametrize("entry, match", [
    ({"dtype": "F32", "shape": "ab", "data_offsets": [0, 8]}, r"tensor 'w': field 'shape' must be a list of non-negative integers, got 'ab'"),
    ({"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}, r"tensor 'w': field 'shape' must be a list of non-negative"),
    ({"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}, r"tensor 'w': field 'shape' must be a list of non-negative"),
    ({"dtype": "F32", "shape": [True], "data_offsets": [0, 8]}, r"tensor 'w': field 'shape' must be a list of non-negative"),
    ({"dtype": 4, "shape": [2], "data_offsets": [0, 8]}, r"tensor 'w': field 'dtype' must be a string, got 4"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}, r"tensor 'w': field 'data_offsets' must be two integers "
                                                              r"\[begin, end\] with 0 <= begin <= end <= 8 \(the data section\)"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, r"tensor 'w': field 'data_offsets' must be two integers"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0]}, r"tensor 'w': field 'data_offsets' must be two integers"),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, r"tensor 'w': field 'shape' \[3\] of F32 does not fit its "
                                                            r"data_offsets \(8 bytes\)"),
    ([1, 2], r"tensor 'w' must be a JSON object with dtype, shape and data_offsets"),
])
def test_malformed_safetensors_header_entries(tmp_path, entry, match):
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, CONFIG.to_json(), {"w": entry})
    for read in (read_model_config, describe_model):
        with pytest.raises(ModelError, match="^" + re.escape(f"{path}: malformed safetensors header: ") + match):
            read(path)


def test_deeply_nested_safetensors_header_is_refused(tmp_path):
    deep: object = 0
    for _ in range(36):
        deep = [deep]
    path = tmp_path / "deep.safetensors"
    write_safetensors(path, CONFIG.to_json(), {**TENSOR, "x": {"junk": "[[[[[[[[[[", "deep": deep}})
    with pytest.raises(ModelError, match=re.escape(f"{path}: safetensors header JSON is nested 38 levels deep; at most 32")):
        describe_model(path)


def test_well_formed_header_still_describes(tmp_path):
    path = tmp_path / "ok.safetensors"
    write_safetensors(path, CONFIG.to_json(), {**TENSOR, "bn.running_mean": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
                                               "u": {"dtype": "F4", "shape": [3, 5], "data_offsets": [12, 12]}}, bytes(12))
    info = describe_model(path)
    assert info["parameters"] == 2 + 15 and info["arch"] == "slowfast"  # BN statistics are not parameters


def test_huge_onnx_metadata_entry_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.onnx"
    write_onnx(path, CONFIG.to_json())
    with open(path, "ab") as f:  # one more metadata_props entry claiming 1 GiB (field 14, wire type 2)
        f.write(bytes([14 << 3 | 2]) + _varint(1 << 30))
        f.truncate(f.tell() + (1 << 30))  # sparse: the file is long enough for the claim
    with pytest.raises(ModelError, match=re.escape(f"{path}: not an ONNX model (a metadata entry of 1073741824 bytes; "
                                                   "at most 16777216 are read)")):
        read_model_config(path)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.mark.parametrize("kind", ["onnx", "safetensors"])
def test_cli_info_and_infer_print_one_line(tmp_path, capsys, kind):
    path = _model_file(tmp_path, kind, _with(["frontend", "hop_length"], 0))
    expected = f"mvrt: error: {path}: model config field 'frontend.hop_length' must be a positive integer, got 0\n"
    assert mvrt.cli.main(["info", str(path)]) == 1
    assert capsys.readouterr().err == expected
    backend = ["--backend", "onnxruntime"] if kind == "onnx" else ["--backend", "torch"]
    assert mvrt.cli.main(["infer", str(tmp_path / "clip.mp4"), "--model", str(path), "-q", *backend]) == 1
    assert capsys.readouterr().err == expected


@pytest.mark.parametrize("contract", [1, 2])
def test_info_shows_the_tensor_contract_the_input_dtypes_and_the_bytes_a_window(tmp_path, capsys, contract):
    """30 s slowfast windows: 16.6 MB of float32 under contract 1, 5.5 MB with contract 2's uint8 `video`."""
    config = ModelConfig(arch="slowfast", contract=contract)
    path = tmp_path / "m.onnx"
    write_onnx(path, config.to_json())
    info = describe_model(path)
    assert info["contract"] == contract
    if contract == 1:
        assert info["input_dtypes"] == dict.fromkeys(("audio_slow", "audio_fast", "video_slow", "video_fast"), "float32")
        assert info["window_input_bytes"] == 16_557_056 == 4 * (2 * 128 * (469 + 1876) + 3 * 72 * 128 * 128)
    else:
        assert info["input_dtypes"] == {"audio_slow": "float32", "audio_fast": "float32", "video": "uint8"}
        assert info["inputs"]["video"] == ["batch", 3, 64, 128, 128]
        assert info["window_input_bytes"] == 5_547_008 == 4 * 2 * 128 * (469 + 1876) + 3 * 64 * 128 * 128
    assert mvrt.cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"contract: {contract}" in out and "input_dtypes" in out
