"""Read an artifact's ModelConfig without torch or onnx (DESIGN §5).

- `.safetensors`: the header is an 8-byte little-endian length followed by JSON whose
  `__metadata__` maps strings to strings; the config is under `mvrt_config`.
- `.onnx`: the file is a protobuf `ModelProto`. Rather than loading the graph (onnx is not a
  runtime dependency, and an onnxruntime session would optimise the whole graph), we walk the
  top-level protobuf fields, skip everything but `metadata_props` (field 14), and read its
  key/value entries. Only the small metadata is read; the weights are skipped with seeks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import BinaryIO

from mvrt.config import ModelConfig
from mvrt.errors import ModelError

CONFIG_KEY = "mvrt_config"
CHECKPOINT_SHA_KEY = "checkpoint_sha256"
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_ONNX_METADATA_FIELD = 14
_MAX_TOP_LEVEL_FIELDS = 100_000  # a real ModelProto has a handful; garbage fails fast


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(_existing(path), "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig stored in a `.safetensors` checkpoint or an `.onnx` model."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_checkpoint_config(path)
    if suffix == ".onnx":
        return read_onnx_config(path)
    if suffix in (".plan", ".engine", ".trt"):
        from mvrt.runtime.engines.sidecar import read_sidecar

        return read_sidecar(path).model_config
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected .onnx, .safetensors or .plan")


def read_safetensors_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file: tensor name -> dtype/shape/offsets, `__metadata__`."""
    path = _existing(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelError(f"{path}: not a safetensors file (only {len(head)} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length < 2 or length > min(size - 8, _MAX_HEADER_BYTES):
            raise ModelError(f"{path}: not a safetensors file (header length {length} does not fit the file)")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` string map of a safetensors file (empty if it has none)."""
    meta = read_safetensors_header(path).get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelError(f"{path}: malformed safetensors metadata (must map strings to strings)")
    return meta


def read_checkpoint_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig in a checkpoint's safetensors metadata (no torch needed)."""
    meta = read_safetensors_metadata(path)
    return _config_from(meta, path, "saved by mvrt.checkpoint.save_checkpoint")


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `metadata_props` of an ONNX model as a dict, without parsing its graph."""
    path = _existing(path)
    size = path.stat().st_size
    meta: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            for _ in range(_MAX_TOP_LEVEL_FIELDS):
                if f.tell() >= size:
                    break
                field, wire = _read_tag(f)
                if field == _ONNX_METADATA_FIELD and wire == 2:
                    length = _read_varint(f)
                    if f.tell() + length > size:
                        raise ValueError("metadata entry runs past the end of the file")
                    key, value = _read_string_pair(f.read(length))
                    meta[key] = value
                else:
                    _skip(f, wire, size)
            else:
                raise ValueError("too many top-level fields")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not an ONNX model ({exc})") from None
    return meta


def read_onnx_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig in an ONNX model's `metadata_props`."""
    return _config_from(read_onnx_metadata(path), path, "exported by mvrt.export.onnx_export")


def describe_model(path: str | os.PathLike) -> dict:
    """What `mvrt info` shows for a checkpoint or ONNX model: config, inputs, provenance, hashes."""
    path = _existing(path)
    config = read_model_config(path)
    body = {k: v for k, v in config.to_dict().items() if k not in ("format", "version")}
    info = {"path": str(path), "format": path.suffix.lower().lstrip("."), **body}
    info["inputs"] = {name: ["batch", *shape] for name, shape in config.input_shapes().items()}
    info["output"] = {"logits": ["batch", len(config.classes)]}
    if info["format"] == "safetensors":
        info["parameters"] = _count_parameters(read_safetensors_header(path))
    elif info["format"] == "onnx":
        info["checkpoint_sha256"] = read_onnx_metadata(path).get(CHECKPOINT_SHA_KEY, "")
    else:  # a TensorRT plan: what its sidecar says about the build
        from mvrt.runtime.engines.sidecar import read_sidecar

        build = read_sidecar(path).to_dict()
        build.pop("model_config", None)
        info["engine"] = build
    info["size_bytes"] = path.stat().st_size
    info["sha256"] = sha256_file(path)
    return info


def _count_parameters(header: dict) -> int:
    """Elements of every tensor except BatchNorm running statistics."""
    stats = ("running_mean", "running_var", "num_batches_tracked")
    total = 0
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict) and not name.endswith(stats):
            total += math.prod(entry.get("shape", ()))
    return total


def _config_from(meta: dict[str, str], path: str | os.PathLike, how: str) -> ModelConfig:
    text = meta.get(CONFIG_KEY)
    if text is None:
        raise ModelError(f"{path}: no mvrt model config in its metadata (key {CONFIG_KEY!r}); was it {how}?")
    try:
        return ModelConfig.from_json(text)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    return path


# --- minimal protobuf wire-format reader -------------------------------------------------

def _read_varint(f: BinaryIO) -> int:
    value, shift = 0, 0
    while True:
        byte = f.read(1)
        if not byte:
            raise ValueError("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _read_tag(f: BinaryIO) -> tuple[int, int]:
    tag = _read_varint(f)
    field, wire = tag >> 3, tag & 7
    if field == 0:
        raise ValueError("field number 0")
    return field, wire


def _skip(f: BinaryIO, wire: int, size: int) -> None:
    if wire == 0:
        _read_varint(f)
        return
    lengths = {1: 8, 5: 4}
    length = lengths[wire] if wire in lengths else _read_varint(f) if wire == 2 else None
    if length is None:
        raise ValueError(f"unsupported wire type {wire}")
    if f.tell() + length > size:
        raise ValueError("field runs past the end of the file")
    f.seek(length, os.SEEK_CUR)


def _read_string_pair(data: bytes) -> tuple[str, str]:
    """A StringStringEntryProto: key = field 1, value = field 2."""
    import io

    buf, out = io.BytesIO(data), {1: "", 2: ""}
    while buf.tell() < len(data):
        field, wire = _read_tag(buf)
        if wire == 2 and field in out:
            out[field] = buf.read(_read_varint(buf)).decode("utf-8")
        else:
            _skip(buf, wire, len(data))
    return out[1], out[2]
