"""Configuration shared by every part of mvrt: classes, front-end parameters, model config.

Everything here is a frozen dataclass that round-trips through JSON; the JSON form is what
travels in checkpoint metadata (safetensors), ONNX ``metadata_props`` and engine sidecars.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mvrt.errors import ModelError

CLASSES: tuple[str, ...] = ("Excited", "Fear", "Neutral", "Relaxation", "Sad", "Tension")
ARCHITECTURES: tuple[str, ...] = ("slowfast", "musicvideo")
CONFIG_FORMAT = "mvrt-model"
CONFIG_VERSION = 1

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

    def window_samples(self, sample_rate: int) -> int:
        """Samples of one window at `sample_rate`."""
        return int(round(self.window_seconds * sample_rate))

    def audio_frames(self, sample_rate: int) -> int:
        """STFT frames of one window (centred STFT: 1 + samples // hop)."""
        return 1 + self.window_samples(sample_rate) // self.hop_length

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrontendConfig":
        return _from_dict(cls, data, "frontend")


@dataclass(frozen=True)
class AudioNorm:
    """Dataset mean/std of the two audio channels (log-mel dB, phase) of one input."""

    mean: tuple[float, float] = (0.0, 0.0)
    std: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AudioNorm":
        return cls(mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]))


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

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ModelError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if not self.width > 0:
            raise ModelError(f"width multiplier must be positive, got {self.width}")

    @property
    def audio_inputs(self) -> dict[str, int]:
        """Audio input name -> sample rate."""
        return dict(AUDIO_INPUTS[self.arch])

    @property
    def video_inputs(self) -> dict[str, int]:
        """Video input name -> frame count."""
        return dict(VIDEO_INPUTS[self.arch])

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names in the order the network's forward() takes them."""
        return (*AUDIO_INPUTS[self.arch], *VIDEO_INPUTS[self.arch])

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input name -> shape without the batch axis (DESIGN §3)."""
        fe = self.frontend
        shapes: dict[str, tuple[int, ...]] = {}
        for name, sr in AUDIO_INPUTS[self.arch].items():
            shapes[name] = (2, fe.n_mels, fe.audio_frames(sr))
        for name, frames in VIDEO_INPUTS[self.arch].items():
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
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        if data.get("format") != CONFIG_FORMAT:
            raise ModelError(f"not an mvrt model config (format={data.get('format')!r})")
        if int(data.get("version", 0)) > CONFIG_VERSION:
            raise ModelError(
                f"model config version {data['version']} is newer than this mvrt supports "
                f"({CONFIG_VERSION}); upgrade mvrt"
            )
        body = {k: v for k, v in data.items() if k not in ("format", "version")}
        body["classes"] = tuple(body.get("classes", CLASSES))
        body["frontend"] = FrontendConfig.from_dict(body.get("frontend", {}))
        norms = body.get("audio_norm", {})
        body["audio_norm"] = tuple((name, AudioNorm.from_dict(norms[name])) for name in sorted(norms))
        return _from_dict(cls, body, "model")

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model config is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _from_dict(cls: type, data: Mapping[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelError(f"unknown {what} config field(s): {', '.join(unknown)}")
    return cls(**dict(data))
