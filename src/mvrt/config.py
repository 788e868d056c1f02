"""Configuration shared by every part of mvrt: classes, front-end parameters, model config.

Everything here is a frozen dataclass that round-trips through JSON; the JSON form is what
travels in checkpoint metadata (safetensors), ONNX ``metadata_props`` and engine sidecars.
Model files come from anywhere, so every field is checked when a config is built (types:
bool is not an int, floats accept ints; ranges that keep a window's memory bounded) and the
JSON is bounded in size and nesting before it is parsed. Each error names the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Mapping

from mvrt.errors import ModelError

CLASSES: tuple[str, ...] = ("Excited", "Fear", "Neutral", "Relaxation", "Sad", "Tension")
ARCHITECTURES: tuple[str, ...] = ("slowfast", "musicvideo")
CONFIG_FORMAT = "mvrt-model"
CONFIG_VERSION = 2  # version 2 adds `contract`; a contract-1 config is still written as version 1
# Tensor contracts (DESIGN §3): 1 = float32 video inputs per pathway (normalised, slow subset taken
# by the runtime); 2 = one uint8 `video` input (B, 3, frames, size, size), normalised in the graph.
CONTRACTS: tuple[int, ...] = (1, 2)
VIDEO_INPUT_V2 = "video"

# Audio inputs per architecture: name -> sample rate (DESIGN §3).
AUDIO_INPUTS: dict[str, dict[str, int]] = {
    "slowfast": {"audio_slow": 8000, "audio_fast": 32000},
    "musicvideo": {"audio": 22050},
}
# Video inputs per architecture: name -> frame count. A pathway with fewer frames than
# `FrontendConfig.frames` takes the subset round(linspace(0, frames-1, n)).
VIDEO_INPUTS: dict[str, dict[str, int]] = {
    "slowfast": {"video_slow": 8, "video_fast": 64},
    "musicvideo": {"video": 64},
}

# Bounds on what a config may ask for; a crafted file must not make mvrt allocate gigabytes.
MAX_CONFIG_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_WINDOW_SECONDS = 600.0
MAX_N_FFT = 8192
MAX_N_MELS = 512
MAX_FRAMES = 1024
MAX_IMAGE_SIZE = 1024
MAX_WIDTH = 4.0
MAX_CLASSES = 1000
# Values one window needs (samples, STFT bins, decoded frames, network inputs): 10.8M by default.
MAX_WINDOW_ELEMENTS = 1 << 25
_FRONTEND_FIELDS = ("window_seconds", "n_fft", "hop_length", "n_mels", "frames", "image_size", "video_mean", "video_std")
_REQUIRED = ("format", "version", "arch", "classes", "frontend")


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the spectrogram and frame-sampling front-end (DESIGN §4)."""

    window_seconds: float = 30.0
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    frames: int = 64
    image_size: int = 128
    video_mean: float = 0.45
    video_std: float = 0.225

    def __post_init__(self) -> None:
        _set(self, "window_seconds", _real("frontend.window_seconds", self.window_seconds, 0.0, MAX_WINDOW_SECONDS,
                                           f"a positive number of seconds, at most {MAX_WINDOW_SECONDS:g}", low_open=True))
        n_fft = _integer("frontend.n_fft", self.n_fft, 2, MAX_N_FFT)
        if n_fft & (n_fft - 1):
            raise _bad("frontend.n_fft", "a power of two", n_fft)
        _set(self, "n_fft", n_fft)
        _set(self, "hop_length", _integer("frontend.hop_length", self.hop_length, 1, n_fft, f"n_fft ({n_fft})"))
        _set(self, "n_mels", _integer("frontend.n_mels", self.n_mels, 1, MAX_N_MELS))
        _set(self, "frames", _integer("frontend.frames", self.frames, 1, MAX_FRAMES))
        _set(self, "image_size", _integer("frontend.image_size", self.image_size, 1, MAX_IMAGE_SIZE))
        _set(self, "video_mean", _real("frontend.video_mean", self.video_mean))
        _set(self, "video_std", _real("frontend.video_std", self.video_std, 0.0, math.inf, "a positive number", low_open=True))

    def window_samples(self, sample_rate: int) -> int:
        """Samples of one window at `sample_rate`."""
        return int(round(self.window_seconds * sample_rate))

    def audio_frames(self, sample_rate: int) -> int:
        """STFT frames of one window (centred STFT: 1 + samples // hop)."""
        return 1 + self.window_samples(sample_rate) // self.hop_length

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrontendConfig":
        _check_keys(data, "frontend", _FRONTEND_FIELDS, _FRONTEND_FIELDS)
        return cls(**dict(data))


@dataclass(frozen=True)
class AudioNorm:
    """Dataset mean/std of the two audio channels (log-mel dB, phase) of one input."""

    mean: tuple[float, float] = (0.0, 0.0)
    std: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        _set(self, "mean", _pair("audio_norm.mean", self.mean))
        _set(self, "std", _pair("audio_norm.std", self.std, positive=True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "audio_norm") -> "AudioNorm":
        _check_keys(data, where, ("mean", "std"), ("mean", "std"))
        return cls(mean=_pair(f"{where}.mean", data["mean"]), std=_pair(f"{where}.std", data["std"], positive=True))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network and feed it: travels with every artifact."""

    arch: str = "slowfast"
    width: float = 1.0
    mmtm: bool = True
    dropout: float = 0.5
    classes: tuple[str, ...] = CLASSES
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    # input name -> normalisation; inputs missing here use mean 0, std 1.
    audio_norm: tuple[tuple[str, AudioNorm], ...] = ()
    # Free-text provenance, e.g. "generated stand-in data, not MVED".
    trained_on: str = ""
    # Tensor contract of the artifact's inputs (DESIGN §3); checkpoints and training use 1.
    contract: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in ARCHITECTURES:
            raise _bad("arch", f"one of {', '.join(ARCHITECTURES)}", self.arch)
        _set(self, "width", _real("width", self.width, 0.0, MAX_WIDTH, f"a positive number, at most {MAX_WIDTH:g}",
                                  low_open=True))
        if not isinstance(self.mmtm, bool):
            raise _bad("mmtm", "true or false", self.mmtm)
        _set(self, "dropout", _real("dropout", self.dropout, 0.0, 1.0, "a number from 0 up to (not including) 1",
                                    high_open=True))
        _set(self, "classes", _classes(self.classes))
        if not isinstance(self.frontend, FrontendConfig):
            raise _bad("frontend", "a front-end config", self.frontend)
        _set(self, "audio_norm", _norms(self.audio_norm, self.arch))
        if not isinstance(self.trained_on, str):
            raise _bad("trained_on", "a string", self.trained_on)
        if isinstance(self.contract, bool) or self.contract not in CONTRACTS:
            raise _bad("contract", f"one of {', '.join(map(str, CONTRACTS))}", self.contract)
        _check_window_size(self)

    @property
    def audio_inputs(self) -> dict[str, int]:
        """Audio input name -> sample rate."""
        return dict(AUDIO_INPUTS[self.arch])

    @property
    def video_inputs(self) -> dict[str, int]:
        """Video input name -> frame count, as the artifact takes them (its contract)."""
        if self.contract == 2:
            return {VIDEO_INPUT_V2: max(VIDEO_INPUTS[self.arch].values())}
        return dict(VIDEO_INPUTS[self.arch])

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names of the artifact (ONNX graph, plan, served model), in graph order."""
        return (*AUDIO_INPUTS[self.arch], *self.video_inputs)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input name -> shape without the batch axis (DESIGN §3), under the config's contract."""
        return self._shapes(self.video_inputs)

    def input_dtypes(self) -> dict[str, str]:
        """Input name -> numpy dtype name: float32, except contract 2's uint8 `video`."""
        video = "uint8" if self.contract == 2 else "float32"
        return {name: (video if name in self.video_inputs else "float32") for name in self.input_names}

    @property
    def network_input_names(self) -> tuple[str, ...]:
        """Inputs of the PyTorch network's forward() (always contract 1: float video per pathway)."""
        return (*AUDIO_INPUTS[self.arch], *VIDEO_INPUTS[self.arch])

    def network_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Network input name -> shape without the batch axis (contract 1)."""
        return self._shapes(VIDEO_INPUTS[self.arch])

    def _shapes(self, video: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        fe = self.frontend
        shapes: dict[str, tuple[int, ...]] = {}
        for name, sr in AUDIO_INPUTS[self.arch].items():
            shapes[name] = (2, fe.n_mels, fe.audio_frames(sr))
        for name, frames in video.items():
            shapes[name] = (3, frames, fe.image_size, fe.image_size)
        return shapes

    def norm_for(self, input_name: str) -> AudioNorm:
        return dict(self.audio_norm).get(input_name, AudioNorm())

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
        data["audio_norm"] = {name: dataclasses.asdict(norm) for name, norm in self.audio_norm}
        if self.contract == 1:  # written as before contracts existed: same bytes, older mvrt reads it
            del data["contract"]
            return {"format": CONFIG_FORMAT, "version": 1, **data}
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        if not isinstance(data, Mapping):
            raise ModelError(f"model config must be a JSON object, got {_kind(data)}")
        if data.get("format") != CONFIG_FORMAT:
            raise ModelError(f"not an mvrt model config (format={_show(data.get('format'))})")
        names = [f.name for f in dataclasses.fields(cls)]
        _check_keys(data, "", ("format", "version", *names), _REQUIRED)
        version = _integer("version", data["version"], 1)
        if version > CONFIG_VERSION:
            raise ModelError(f"model config version {version} is newer than this mvrt supports "
                             f"({CONFIG_VERSION}); upgrade mvrt")
        body = {k: v for k, v in data.items() if k not in ("format", "version")}
        body["classes"] = _classes(body["classes"])
        body["frontend"] = FrontendConfig.from_dict(body["frontend"])
        norms = body.get("audio_norm", {})
        if not isinstance(norms, Mapping):
            raise _bad("audio_norm", "an object mapping audio input names to mean/std", norms)
        body["audio_norm"] = tuple((name, AudioNorm.from_dict(norms[name], f"audio_norm.{name}")) for name in sorted(norms))
        return cls(**body)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelConfig":
        return cls.from_dict(load_json_bounded(text, "model config", MAX_CONFIG_BYTES))


def load_json_bounded(text: str | bytes, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads(text)`, refusing (ModelError) text over `max_bytes` or nested deeper than `max_depth` first."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(raw) > max_bytes:
        raise ModelError(f"{what} is {len(raw)} bytes of JSON; at most {max_bytes} are read")
    depth = json_depth(raw)
    if depth > max_depth:
        raise ModelError(f"{what} JSON is nested {depth} levels deep; at most {max_depth} are read")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, over-long integers
        raise ModelError(f"{what} is not valid JSON: {' '.join(str(exc).split())}") from None


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKET_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text, without parsing it (C-speed scans only)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


# --- field checks: each raises a one-line ModelError naming the field ------------------------

def _bad(name: str, expected: str, value: Any) -> ModelError:
    return ModelError(f"model config field {name!r} must be {expected}, got {_show(value)}")


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass: normalise a checked value


def _integer(name: str, value: Any, minimum: int, maximum: int | None = None, maximum_text: str = "") -> int:
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise _bad(name, expected, value)
    if maximum is not None and value > maximum:
        raise _bad(name, f"{expected} of at most {maximum_text or maximum}", value)
    return int(value)


def _real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, expected: str = "a finite number",
          low_open: bool = False, high_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (low_open and value == low) or (high_open and value == high):
        raise _bad(name, expected, value)
    return float(value)


def _pair(name: str, value: Any, positive: bool = False) -> tuple[float, float]:
    expected = "two positive finite numbers" if positive else "two finite numbers"
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _bad(name, expected, value)
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
             for v in value)
    if not ok:
        raise _bad(name, expected, value)
    return float(value[0]), float(value[1])


def _classes(value: Any) -> tuple[str, ...]:
    expected = f"a non-empty list of at most {MAX_CLASSES} unique non-empty strings"
    if not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_CLASSES:
        raise _bad("classes", expected, value)
    if not all(isinstance(c, str) and c.strip() for c in value):
        raise _bad("classes", expected, value)
    if len(set(value)) != len(value):
        repeated = next(c for i, c in enumerate(value) if c in value[:i])
        raise ModelError(f"model config field 'classes' must not repeat a class, got {_show(repeated)} twice")
    return tuple(value)


def _norms(value: Any, arch: str) -> tuple[tuple[str, AudioNorm], ...]:
    inputs = AUDIO_INPUTS[arch]
    if not isinstance(value, tuple):
        raise _bad("audio_norm", "a tuple of (input name, AudioNorm) pairs", value)
    seen: set[str] = set()
    for item in value:
        name = item[0] if isinstance(item, tuple) and len(item) == 2 else None
        if not isinstance(name, str) or not isinstance(item[1], AudioNorm):
            raise _bad("audio_norm", "a tuple of (input name, AudioNorm) pairs", item)
        if name not in inputs:
            raise ModelError(f"model config field {'audio_norm.' + name!r} names no audio input of the {arch} "
                             f"architecture (its audio inputs: {', '.join(inputs)})")
        if name in seen:
            raise ModelError(f"model config field 'audio_norm' lists {name!r} twice")
        seen.add(name)
    return value


def _check_keys(data: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    label = f"model config field {where!r}" if where else "model config"
    if not isinstance(data, Mapping):
        raise ModelError(f"{label} must be a JSON object, got {_kind(data)}")
    unknown = sorted(str(k) for k in set(data) - set(allowed))
    if unknown:
        raise ModelError(f"{label} has unknown field(s): {_show(', '.join(unknown))}")
    missing = [k for k in required if k not in data]
    if missing:
        prefix = f"{where}." if where else ""
        raise ModelError(f"model config lacks the required field(s): {', '.join(prefix + k for k in missing)}")


def _check_window_size(config: ModelConfig) -> None:
    fe = config.frontend
    rates = set(AUDIO_INPUTS[config.arch].values())
    elements = sum(math.prod(shape) for shape in config.network_input_shapes().values())  # network inputs
    elements += fe.frames * fe.image_size * fe.image_size * 3  # decoded frames
    elements += sum(fe.window_samples(sr) + (fe.n_fft // 2 + 1) * fe.audio_frames(sr) for sr in rates)  # audio, STFT
    if elements > MAX_WINDOW_ELEMENTS:
        raise ModelError(f"model config field 'frontend' asks for {elements} values per window (at most "
                         f"{MAX_WINDOW_ELEMENTS}); lower window_seconds, n_mels, frames or image_size, or raise hop_length")


# An input that delivers no data for this long is given up (a FIFO nobody writes, a stalled read).
DEFAULT_READ_TIMEOUT_SECONDS = 30.0
