"""ONNX Runtime execution providers: which to use, their options, the TensorRT EP's caches.

Pure functions (no session, no GPU needed): `plan_providers` turns a request ("auto", "cpu",
"cuda", "tensorrt", "cuda:1", or full provider names) and the providers this onnxruntime has
into the ordered provider names and the options for each, as documented for ONNX Runtime's
CUDA and TensorRT execution providers:

- CUDA EP: `device_id`.
- TensorRT EP: `device_id`; `trt_engine_cache_enable` / `trt_engine_cache_path` (built engines
  and their profiles are saved and loaded instead of rebuilt on every start) and
  `trt_timing_cache_enable` / `trt_timing_cache_path` (kernel timings, shared by every engine
  built here, so even a rebuild is faster); `trt_fp16_enable` only for an FP16 graph and
  `trt_int8_enable` only for an INT8 (Q/DQ) graph, which TensorRT needs to honour the graph's
  Q/DQ scales (no calibration table is given: TensorRT refuses one for a Q/DQ graph). A plain
  FP32 graph keeps both off, so TensorRT never lowers its precision.

The caches live beside the model, in `<model>.ort-trt-cache/`: the timing cache at the top,
the engines under a folder named by the model's sha256 (ONNX Runtime keys its engines by the
graph's structure, not its weights, so a re-exported model at the same path must not reuse
an engine built from the old weights). Where the model's folder cannot be written (an
installed package, a read-only mount) the caches go to the user's cache folder
(`$XDG_CACHE_HOME/mvrt/ort-trt/`, by default `~/.cache/mvrt/ort-trt/`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mvrt.errors import BackendError, MissingDependencyError, UsageError

log = logging.getLogger(__name__)

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}
AUTO_ORDER = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = (CUDA, TENSORRT)
CACHE_SUFFIX = ".ort-trt-cache"
ENGINE_SUFFIX = ".engine"  # what the TensorRT EP names its cached engines
_FINGERPRINT_CHARS = 16


@dataclass(frozen=True)
class TensorRTCache:
    """Where the TensorRT EP's caches of one model go, and what is there now."""

    root: Path  # the timing cache; `<model>.ort-trt-cache` beside the model, or the user's fallback
    engines: Path  # cached engines and profiles of this exact model file (root / sha256 prefix)
    beside_model: bool  # False: the model's folder cannot be written, the user's cache folder is used
    cached_engines: int  # engine files there already (0: the next TensorRT start builds them)

    def to_dict(self) -> dict:
        return {"root": str(self.root), "engines": str(self.engines), "beside_model": self.beside_model,
                "cached_engines": self.cached_engines}


@dataclass(frozen=True)
class ProviderPlan:
    """The providers an ONNX Runtime session gets, in order, and each one's options."""

    providers: tuple[str, ...]
    provider_options: tuple[dict, ...] = field(default=())
    cache: TensorRTCache | None = None  # set when the TensorRT EP is among the providers
    precision: str = "fp32"  # the graph's, which the TensorRT precision flags follow

    @property
    def uses_tensorrt(self) -> bool:
        return TENSORRT in self.providers


def split_device(name: str) -> tuple[str, int | None]:
    """"cuda:1" -> ("cuda", 1); a name without a device index -> (name, None)."""
    base, sep, index = name.rpartition(":")
    if not sep:
        return name, None
    if not index.isdigit():
        raise UsageError(f"onnxruntime provider {name!r}: the part after ':' must be a device index (e.g. cuda:0)",
                         setting="providers")
    return base, int(index)


def resolve_providers(requested: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Execution provider names to try, most preferred first, CPU always last.

    With the TensorRT EP, the CUDA EP (when available) comes next, for the nodes TensorRT does
    not take (as ONNX Runtime's documentation recommends). A device index (`cuda:1`) is allowed
    and ignored here (see `requested_device_id`).
    """
    if requested is None or requested == "auto":
        return [p for p in AUTO_ORDER if p in available]
    chosen: list[str] = []
    for name in ([requested] if isinstance(requested, str) else list(requested)):
        base, _ = split_device(name)
        full = PROVIDER_ALIASES.get(base.lower(), base)
        if full not in available:
            if full in GPU_PROVIDERS:
                raise MissingDependencyError("onnxruntime-gpu", "gpu", f"the onnxruntime provider {name!r}")
            raise BackendError(f"onnxruntime provider {name!r} is not available (available: {', '.join(available)})")
        if full not in chosen:
            chosen.append(full)
    if TENSORRT in chosen and CUDA in available and CUDA not in chosen:
        chosen.insert(chosen.index(TENSORRT) + 1, CUDA)
    return chosen + ([] if CPU in chosen else [CPU])


def requested_device_id(requested: str | Sequence[str] | None, device_id: int | None = None) -> int:
    """The GPU index for the CUDA / TensorRT EPs: `device_id`, else a `cuda:N` suffix, else 0."""
    names = [] if requested in (None, "auto") else ([requested] if isinstance(requested, str) else list(requested))
    found = {index for _, index in map(split_device, names) if index is not None}
    if device_id is not None:
        if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
            raise UsageError(f"device_id must be a GPU index (0, 1, ...), got {device_id!r}", setting="device_id")
        found.add(device_id)
    if len(found) > 1:
        raise UsageError(f"onnxruntime providers name different GPUs {sorted(found)}; one session runs on one GPU",
                         setting="providers")
    return found.pop() if found else 0


def tensorrt_cache(model_path: str | os.PathLike) -> TensorRTCache:
    """Where the TensorRT EP's caches for `model_path` go; reads the file (its sha256), writes nothing."""
    path = Path(model_path)
    beside = path.with_name(path.name + CACHE_SUFFIX)
    root = beside if _can_write(beside if beside.exists() else path.parent) else user_cache_folder(path)
    return _cache_at(root, path, beside_model=root == beside)


def user_cache_folder(model_path: str | os.PathLike) -> Path:
    """The fallback cache folder of one model: the user's cache folder, per resolved model path."""
    path = Path(model_path)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return base / "mvrt" / "ort-trt" / f"{path.stem}-{where}"


def ensure_cache(cache: TensorRTCache, model_path: str | os.PathLike) -> TensorRTCache:
    """Create the cache folders; where the folder beside the model cannot be made, the user's instead."""
    try:
        cache.engines.mkdir(parents=True, exist_ok=True)
        return cache
    except OSError as exc:
        if not cache.beside_model:
            raise BackendError(f"cannot create the TensorRT cache folder {cache.engines}: {exc.strerror or exc}") from None
        fallback = _cache_at(user_cache_folder(model_path), Path(model_path), beside_model=False)
        log.warning("onnxruntime: cannot create %s (%s); TensorRT caches go to %s instead",
                    cache.root, exc.strerror or exc, fallback.root)
        return ensure_cache(fallback, model_path)


def tensorrt_options(cache: TensorRTCache, precision: str, device_id: int = 0) -> dict:
    """The TensorRT EP's options: engine and timing caches, precision flags as the graph's precision says."""
    return {
        "device_id": device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache.engines),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache.root),
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": precision == "int8",  # a Q/DQ graph: TensorRT needs INT8 on to use its scales
    }


def cuda_options(device_id: int = 0) -> dict:
    """The CUDA EP's options."""
    return {"device_id": device_id}


def plan_providers(model_path: str | os.PathLike, requested: str | Sequence[str] | None,
                   available: Sequence[str], *, precision: str = "fp32", device_id: int | None = None) -> ProviderPlan:
    """Providers and their options for a session on `model_path` (nothing is created or written)."""
    providers = resolve_providers(requested, available)
    device = requested_device_id(requested, device_id)
    cache = tensorrt_cache(model_path) if TENSORRT in providers else None
    options = []
    for name in providers:
        if name == TENSORRT:
            options.append(tensorrt_options(cache, precision, device))
        elif name == CUDA:
            options.append(cuda_options(device))
        else:
            options.append({})
    return ProviderPlan(tuple(providers), tuple(options), cache, precision)


def with_cache(plan: ProviderPlan, cache: TensorRTCache) -> ProviderPlan:
    """`plan` with its TensorRT caches moved to `cache` (after `ensure_cache` fell back)."""
    if plan.cache == cache:
        return plan
    options = tuple({**o, "trt_engine_cache_path": str(cache.engines), "trt_timing_cache_path": str(cache.root)}
                    if name == TENSORRT else o for name, o in zip(plan.providers, plan.provider_options))
    return ProviderPlan(plan.providers, options, cache, plan.precision)


def announce(plan: ProviderPlan, model_name: str) -> None:
    """Log, before the session is created, that the TensorRT EP may build engines, and where its caches are."""
    if not plan.uses_tensorrt:
        return
    cache = plan.cache
    found = (f"{cache.cached_engines} cached engine file(s) found there, so it should start quickly"
             if cache.cached_engines else "no cached engine there yet, so this start builds them")
    log.info("onnxruntime: the TensorRT execution provider may build TensorRT engines for %s before the first "
             "batch (a first start can take minutes); engine cache %s, timing cache %s%s; %s; precision %s "
             "(trt_fp16_enable=%s, trt_int8_enable=%s)", model_name, cache.engines, cache.root,
             "" if cache.beside_model else " (the model's folder is not writable: the user's cache folder)",
             found, plan.precision, plan.precision == "fp16", plan.precision == "int8")


def _cache_at(root: Path, model_path: Path, *, beside_model: bool) -> TensorRTCache:
    engines = root / _fingerprint(model_path)
    count = sum(1 for _ in engines.glob(f"*{ENGINE_SUFFIX}")) if engines.is_dir() else 0
    return TensorRTCache(root, engines, beside_model, count)


def _fingerprint(model_path: Path) -> str:
    from mvrt.runtime.model_meta import sha256_file

    return sha256_file(model_path)[:_FINGERPRINT_CHARS]


def _can_write(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
