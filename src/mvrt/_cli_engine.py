"""Argument helpers shared by sub-commands: number types, and engine flags -> engine keyword arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from mvrt.errors import UsageError

BACKEND_CHOICES = ("auto", "onnxruntime", "torch", "tensorrt")
_BY_SUFFIX = {".onnx": "onnxruntime", ".safetensors": "torch", ".plan": "tensorrt", ".engine": "tensorrt",
              ".trt": "tensorrt"}
TRUST_FLAG = "--trust-plan-code"


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (0 switches a measurement off)."""
    return _int_at_least(text, 0, "must be 0 or more")


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "must be at least 1")


def _int_at_least(text: str, minimum: int, too_small: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{too_small}, got {text}")
    return value


def add_engine_options(parser) -> None:
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                        help="inference backend (default: by file type: .onnx -> onnxruntime, "
                        ".safetensors -> torch, .plan -> tensorrt)")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"),
                        help="onnxruntime: CPU or CUDA execution provider; torch: device (default: cpu)")
    parser.add_argument("--precision", default=None, choices=("fp32", "fp16"),
                        help="torch only: compute precision on CUDA (ONNX models carry theirs in the graph)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="torch on CUDA only: capture and replay a CUDA graph per batch size")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for the engine (default: the backend's choice)")
    parser.add_argument(TRUST_FLAG, action="store_true",
                        help="tensorrt only: allow a version-compatible plan, whose embedded TensorRT host code "
                        "runs inside mvrt; give it only for plans from a source you trust (default: refuse them)")


def resolve_backend(model: str, backend: str) -> str:
    if backend != "auto":
        return backend
    return _BY_SUFFIX.get(Path(model).suffix.lower(), "auto")


def engine_options(args) -> dict:
    """Keyword arguments for `open_engine`, refusing flags the chosen backend cannot honour."""
    backend = resolve_backend(args.model, args.backend)
    options: dict = {}
    trusted = getattr(args, "trust_plan_code", False)
    if trusted and backend != "tensorrt":
        raise UsageError(f"{TRUST_FLAG} applies to TensorRT plans (the tensorrt backend) only, not {backend} models")
    if args.threads is not None:
        options["threads"] = args.threads
    if backend == "torch":
        options.update(device=args.device or "cpu", precision=args.precision or "fp32", cuda_graphs=args.cuda_graphs)
        return options
    if args.precision is not None or args.cuda_graphs:
        flag = "--precision" if args.precision is not None else "--cuda-graphs"
        raise UsageError(f"{flag} applies to the torch backend only; {backend} models carry their precision "
                         f"in the graph (see `mvrt export --precision`)")
    if backend == "onnxruntime" and args.device is not None:
        options["providers"] = [args.device]
    elif backend == "tensorrt":
        if args.device == "cpu":
            raise UsageError("--device cpu conflicts with a TensorRT engine, which runs on the GPU")
        _check_plan_trust(args.model, trusted)
        options["trust_plan_code"] = trusted
    return options


def _check_plan_trust(model: str, trusted: bool) -> None:
    """Refuse an untrusted version-compatible plan with the CLI's wording (the library names trust_plan_code).

    Anything else wrong with the plan or its sidecar is left for the engine to report.
    """
    path = Path(model)
    if trusted or _BY_SUFFIX.get(path.suffix.lower()) != "tensorrt" or not path.is_file():
        return
    from mvrt.errors import ModelError
    from mvrt.runtime.engines.sidecar import check_plan_trust, read_sidecar

    try:
        sidecar = read_sidecar(path)
    except ModelError:
        return
    check_plan_trust(sidecar, path, trusted, how=f"by giving {TRUST_FLAG}")
