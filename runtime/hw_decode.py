"""Which decoder turns a video stream into frames: the CPU, NVDEC (CUDA GPUs) or V4L2 (Jetson).

The setting is `decode` (`PipelineConfig.decode`, `mvrt infer --decode`), one of `DECODE_MODES`:

- `"cpu"`: FFmpeg's software decoder on the stream's own codec context, frame and slice
  threads (what mvrt always did; nothing changes).
- `"nvdec"`: FFmpeg's own decoder for the codec (h264, hevc, vp9, av1, ...) with the NVDEC
  hardware acceleration (PyAV's `HWAccel("cuda")`): the bitstream is parsed on the CPU exactly
  as in software decoding (same reordering, same timestamps), the pictures are decoded on the
  GPU. Frames stay on the GPU (`is_hw_owned`); only a frame shown at some target is copied to
  system memory, inside `frame.reformat`, and then resized exactly as a software frame is
  (`_video_resize.to_rgb`). No software fallback: a stream NVDEC cannot decode fails.
- `"auto"` (the default): NVDEC when a CUDA device exists and FFmpeg has NVDEC for the codec,
  else the CPU. Under `auto` FFmpeg may fall back to software inside the NVDEC decoder (a profile
  the GPU lacks); that is logged. The choice and its reason are logged (INFO) once per input.
- `"v4l2"`: a V4L2 memory-to-memory hardware decoder, the Jetson path: NVIDIA's JetPack FFmpeg
  names its decoders `h264_nvv4l2dec`/`hevc_nvv4l2dec` (NVDEC behind /dev/nvhost-nvdec and
  NVIDIA's libv4l2 plugin) and they are taken first where the FFmpeg build has them; else
  upstream FFmpeg's `h264_v4l2m2m`/`hevc_v4l2m2m`, which drive a V4L2 m2m decoder device
  (/dev/video*). Its frames arrive in system memory and are resized as software frames are.
  Selectable, but UNTESTED: no Jetson was at hand; here (and wherever no such device exists)
  opening the decoder fails with a one-line BackendError. PyAV's wheels bundle the v4l2m2m
  decoders but not NVIDIA's nvv4l2dec, and Jetsons have no `cuda` NVDEC (no libnvcuvid).

Whether a CUDA device exists is answered once per process by creating FFmpeg's `cuda` hardware
device (cheap; no torch, no cuda-python). Non-CPU decoders run on a codec context of their own
(`open_decoder`) that takes the stream's parameters; the caller flushes it after a seek.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import av

from mvrt.errors import BackendError, UsageError
from mvrt.runtime._media_errors import ffmpeg_reason

_log = logging.getLogger(__name__)

DECODE_MODES = ("auto", "cpu", "nvdec", "v4l2")
# Decoder threads of an NVDEC context: FFmpeg gives each frame thread NVDEC surfaces of its own,
# and past 32 surfaces (a many-core machine) the decoder cannot be created; NVDEC needs none.
NVDEC_THREADS = 1
# The codec context fields a decoder of its own takes from the stream's (FFmpeg's codecpar).
_COPIED_FIELDS = ("width", "height", "color_range", "color_primaries", "color_trc", "colorspace")
# FFmpeg's codec names where the V4L2 decoders' prefix differs (mpeg2_v4l2m2m decodes mpeg2video).
_V4L2_PREFIX = {"mpeg1video": "mpeg1", "mpeg2video": "mpeg2"}
_V4L2_SUFFIXES = ("nvv4l2dec", "v4l2m2m")  # NVIDIA's JetPack FFmpeg first, then upstream's


@dataclass(frozen=True)
class DecodeChoice:
    """The decoder a video stream gets: `kind` "cpu", "nvdec" or "v4l2", the FFmpeg decoder that
    runs (`codec_name`: "h264", "hevc_v4l2m2m"), and why (`reason`, for the log).

    `software_fallback`: NVDEC may hand a stream it cannot decode to FFmpeg's software decoder
    (decode="auto"); with decode="nvdec" it fails instead.
    """

    kind: str
    codec_name: str
    reason: str
    software_fallback: bool = False

    @property
    def own_context(self) -> bool:
        """Whether it decodes on a codec context of its own (not the stream's)."""
        return self.kind != "cpu"


def check_decode(decode: object) -> str:
    """`decode` if it is one of DECODE_MODES, else a UsageError naming the setting."""
    if not isinstance(decode, str) or decode not in DECODE_MODES:
        raise UsageError(f"decode must be one of {', '.join(DECODE_MODES)}; got {decode!r} "
                         "(decode='auto' uses NVDEC where a CUDA GPU can, else the CPU)", setting="decode")
    return decode


def _hwaccel(software_fallback: bool = False):
    from av.codec.hwaccel import HWAccel

    return HWAccel("cuda", allow_software_fallback=software_fallback, is_hw_owned=True)


@functools.lru_cache(maxsize=1)
def cuda_device() -> tuple[bool, str]:
    """(whether FFmpeg can create a CUDA device here, why not / which). Cached per process."""
    from av.codec.hwaccel import hwdevices_available

    if "cuda" not in hwdevices_available():
        return False, "this FFmpeg build has no cuda hardware device"
    try:
        _hwaccel().create(av.Codec("h264", "r"))
    except (av.error.FFmpegError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        return False, f"there is no CUDA device (creating FFmpeg's cuda device failed: {ffmpeg_reason(exc)})"
    return True, "a CUDA device"


def nvdec_supports(codec_name: str) -> bool:
    """Whether FFmpeg's decoder for `codec_name` has the NVDEC (cuda) hardware acceleration."""
    try:
        configs = av.Codec(codec_name, "r").hardware_configs
    except (av.error.FFmpegError, ValueError):  # an unknown codec
        return False
    return any(config.device_type.name == "cuda" and config.is_supported for config in configs)


def v4l2_decoder(codec_name: str) -> str | None:
    """The V4L2 hardware decoder this FFmpeg has for `codec_name` (None: none)."""
    prefix = _V4L2_PREFIX.get(codec_name, codec_name)
    return next((f"{prefix}_{suffix}" for suffix in _V4L2_SUFFIXES
                 if f"{prefix}_{suffix}" in av.codecs_available), None)


def _advice() -> str:
    return "use decode='cpu' or decode='auto'"


def _nvdec_problem(codec_name: str) -> str | None:
    """Why NVDEC cannot decode `codec_name` here (None: it can)."""
    found, why = cuda_device()
    if not found:
        return why
    if not nvdec_supports(codec_name):
        return f"FFmpeg has no NVDEC decoder for {codec_name} video"
    return None


def choose_decoder(codec_name: str, decode: str, path: str) -> DecodeChoice:
    """The decoder for a `codec_name` video stream of `path` under the setting `decode`.

    decode="nvdec" or "v4l2" that cannot decode it here is a BackendError naming `path`, the
    codec and the setting.
    """
    check_decode(decode)
    if decode == "cpu":
        return DecodeChoice("cpu", codec_name, "decode='cpu'")
    if decode == "v4l2":
        name = v4l2_decoder(codec_name)
        if name is None:
            raise BackendError(f"{path}: decode='v4l2' cannot decode its {codec_name} video: this FFmpeg has no "
                               f"V4L2 decoder for it; {_advice()}", setting="decode")
        return DecodeChoice("v4l2", name, f"decode='v4l2' ({name})")
    problem = _nvdec_problem(codec_name)
    if decode == "nvdec":
        if problem is not None:
            raise BackendError(f"{path}: decode='nvdec' cannot decode its {codec_name} video: {problem}; "
                               f"{_advice()}", setting="decode")
        return DecodeChoice("nvdec", codec_name, "decode='nvdec'")
    if problem is not None:
        return DecodeChoice("cpu", codec_name, f"decode='auto': {problem}")
    return DecodeChoice("nvdec", codec_name, f"decode='auto': a CUDA device with NVDEC for {codec_name}",
                        software_fallback=True)


def check_decode_available(decode: str, where: str) -> None:
    """Before any input is read: decode="nvdec" on a machine without a CUDA device is a
    BackendError (`where` names the input or the run it was asked for)."""
    if check_decode(decode) != "nvdec":
        return
    found, why = cuda_device()
    if not found:
        raise BackendError(f"{where}: decode='nvdec' needs a CUDA device with NVDEC, but {why}; "
                           f"{_advice()}", setting="decode")


def log_choice(path: str, choice: DecodeChoice) -> None:
    """The INFO line saying which decoder an input's video got, and why."""
    where = {"cpu": "on the CPU", "nvdec": "with NVDEC", "v4l2": "with V4L2"}[choice.kind]
    _log.info("%s: %s video decoded %s (%s)", path, choice.codec_name, where, choice.reason)


def open_decoder(stream, choice: DecodeChoice, path: str):
    """The codec context that decodes `stream` as `choice` says (opened), or a BackendError.

    CPU: the stream's own context. NVDEC and V4L2: a context of their own, given the stream's
    extradata, size and colour description, as FFmpeg gives the stream's context its codecpar.
    """
    source = stream.codec_context
    if not choice.own_context:
        return source
    try:
        if choice.kind == "nvdec":
            context = av.CodecContext.create(choice.codec_name, "r", hwaccel=_hwaccel(choice.software_fallback))
            context.thread_count = NVDEC_THREADS
        else:
            context = av.CodecContext.create(choice.codec_name, "r")
        context.extradata = source.extradata
        for name in _COPIED_FIELDS:
            setattr(context, name, getattr(source, name))
        context.open()
    except (av.error.FFmpegError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        needs = "; it needs a V4L2 memory-to-memory decoder device, as on a Jetson" if choice.kind == "v4l2" else ""
        raise BackendError(f"{path}: decode={choice.kind!r} cannot open the {choice.codec_name} decoder here "
                           f"({ffmpeg_reason(exc)}{needs}); {_advice()}", setting="decode") from None
    return context


def decoded_nothing(path: str, choice: DecodeChoice) -> BackendError:
    """The error when a hardware decoder rejected every packet (a profile NVDEC lacks: 4:4:4, 10-bit H.264)."""
    return BackendError(f"{path}: decode={choice.kind!r} decoded no frame of its {choice.codec_name} video (the "
                        f"hardware decoder rejected every packet, e.g. a profile it lacks); {_advice()}",
                        setting="decode")


def on_device(frame) -> bool:
    """Whether a decoded frame is still in GPU memory (NVDEC's), not a software frame."""
    return frame.format.name == "cuda"
