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

from mvrt.artifacts import CHECKPOINT_SHA_KEY, CONFIG_KEY, PLAN_SUFFIXES, PRECISION_KEY
from mvrt.config import MAX_JSON_DEPTH, ModelConfig, json_depth
from mvrt.errors import ModelError

_FLOAT_DTYPES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64"}
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_MAX_METADATA_ENTRY_BYTES = 16 * 1024 * 1024  # one ONNX metadata_props entry (the config is at most 64 KiB)
# Bytes per element of the safetensors dtypes whose size is whole bytes (others are checked less).
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
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
    if suffix in PLAN_SUFFIXES:
        from mvrt.runtime.engines.sidecar import read_sidecar

        return read_sidecar(path).model_config
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected .onnx, .safetensors or .plan")


def read_safetensors_header(path: str | os.PathLike) -> dict:
    """The checked JSON header of a safetensors file: tensor name -> dtype/shape/offsets, `__metadata__`.

    The header is refused when it is nested deeper than `MAX_JSON_DEPTH` (before parsing), when a tensor's
    dtype is not a string, its shape not a list of non-negative integers, or its data_offsets not two
    integers inside the data section (spanning dtype size x elements), or when `__metadata__` does not
    map strings to strings.
    """
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
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ModelError(f"{path}: safetensors header JSON is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are read")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSONDecodeError, over-long integers
        raise ModelError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (header is not a JSON object)")
    _check_header(header, path, size - 8 - length)
    return header


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` string map of a safetensors file (empty if it has none)."""
    return read_safetensors_header(path).get("__metadata__") or {}


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
                    if length > _MAX_METADATA_ENTRY_BYTES:
                        raise ValueError(f"a metadata entry of {length} bytes; at most {_MAX_METADATA_ENTRY_BYTES} are read")
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
    info = {"path": str(path), "format": path.suffix.lower().lstrip("."), "precision": model_precision(path), **body}
    info["contract"] = config.contract  # the tensor contract of its inputs (DESIGN §3); 1 for checkpoints
    info["inputs"] = {name: ["batch", *shape] for name, shape in config.input_shapes().items()}
    info["input_dtypes"] = config.input_dtypes()  # float32; uint8 `video` under contract 2
    info["window_input_bytes"] = input_bytes_per_window(config)
    info["output"] = {"logits": ["batch", len(config.classes)]}
    if info["format"] == "safetensors":
        info["parameters"] = _count_parameters(read_safetensors_header(path))
    elif info["format"] == "onnx":
        info[CHECKPOINT_SHA_KEY] = read_onnx_metadata(path).get(CHECKPOINT_SHA_KEY, "")
    else:  # a TensorRT plan: what its sidecar says about the build
        from mvrt.runtime.engines.sidecar import read_sidecar

        build = read_sidecar(path).to_dict()
        build.pop("model_config", None)
        info["engine"] = build
    info["size_bytes"] = path.stat().st_size
    info["sha256"] = sha256_file(path)
    return info


def input_bytes_per_window(config: ModelConfig) -> int:
    """Bytes of one window's inputs as the model takes them (30 s slowfast: 16.6 MB under contract 1,
    5.5 MB under contract 2, whose `video` is uint8)."""
    import numpy as np

    dtypes = config.input_dtypes()
    return sum(np.dtype(dtypes[n]).itemsize * math.prod(shape) for n, shape in config.input_shapes().items())


def model_precision(path: str | os.PathLike) -> str:
    """fp32, fp16 or int8: an ONNX model's `mvrt_precision` metadata (fp32 when absent, as `export_onnx`
    writes no key), a plan's sidecar, a checkpoint's weight dtype."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return read_onnx_metadata(path).get(PRECISION_KEY, "fp32")
    if suffix == ".safetensors":
        return _weights_precision(read_safetensors_header(path))
    if suffix in PLAN_SUFFIXES:
        from mvrt.runtime.engines.sidecar import read_sidecar

        return read_sidecar(path).precision
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected .onnx, .safetensors or .plan")


def _weights_precision(header: dict) -> str:
    """The float dtype holding most weight elements of a (checked) safetensors header."""
    elements: dict[str, int] = {}
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] in _FLOAT_DTYPES:
            elements[entry["dtype"]] = elements.get(entry["dtype"], 0) + math.prod(entry["shape"])
    return _FLOAT_DTYPES[max(elements, key=elements.get)] if elements else "fp32"


def _count_parameters(header: dict) -> int:
    """Elements of every tensor except BatchNorm running statistics (a header checked by `_check_header`)."""
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(entry["shape"]) for name, entry in header.items()
               if name != "__metadata__" and not name.endswith(stats))


def _check_header(header: dict, path: Path, data_bytes: int) -> None:
    """ModelError naming the tensor and the field when a safetensors header entry is malformed."""
    meta = header.get("__metadata__")
    if meta is not None and (not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values())):
        raise ModelError(f"{path}: malformed safetensors metadata (must map strings to strings)")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: malformed safetensors header: tensor {_short(name)}"
        if not isinstance(entry, dict):
            raise ModelError(f"{where} must be a JSON object with dtype, shape and data_offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise ModelError(f"{where}: field 'dtype' must be a string, got {_short(dtype)}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ModelError(f"{where}: field 'shape' must be a list of non-negative integers, got {_short(shape)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise ModelError(f"{where}: field 'data_offsets' must be two integers [begin, end] with "
                             f"0 <= begin <= end <= {data_bytes} (the data section), got {_short(offsets)}")
        if dtype in _DTYPE_BYTES and math.prod(shape) * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
            raise ModelError(f"{where}: field 'shape' {_short(shape)} of {dtype} does not fit its data_offsets "
                             f"({offsets[1] - offsets[0]} bytes)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
