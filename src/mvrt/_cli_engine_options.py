"""Engine options shared by infer, bench and evaluate, and the flags -> engine keyword arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mvrt._cli_types import POSITIVE_FLOAT, POSITIVE_INT, choice
from mvrt.artifacts import backend_for
from mvrt.errors import UsageError

BACKEND_CHOICES = ("auto", "onnxruntime", "torch", "tensorrt", "kserve")
KSERVE_FLAGS = {"url": "--url", "remote_model": "--remote-model", "protocol": "--protocol",
                "remote_timeout": "--remote-timeout"}
TRUST_FLAG = "--trust-plan-code"
ENGINE_PANEL = "Engine"

Backend = Annotated[str, typer.Option(
    "--backend", click_type=choice(*BACKEND_CHOICES), metavar="NAME", rich_help_panel=ENGINE_PANEL,
    help="inference backend: auto, onnxruntime, torch, tensorrt or kserve (a KServe V2 server: Triton, MLServer; "
    "needs --url); auto picks by file type (.onnx -> onnxruntime, .safetensors -> torch, .plan -> tensorrt)")]
Device = Annotated[Optional[str], typer.Option(
    "--device", click_type=choice("cpu", "cuda"), rich_help_panel=ENGINE_PANEL, show_default="cpu",
    help="onnxruntime: CPU or CUDA execution provider; torch: the device")]
Precision = Annotated[Optional[str], typer.Option(
    "--precision", click_type=choice("fp32", "fp16"), rich_help_panel=ENGINE_PANEL, show_default="fp32",
    help="torch only: compute precision on CUDA (ONNX models and plans carry theirs in the graph)")]
CudaGraphs = Annotated[bool, typer.Option(
    "--cuda-graphs", rich_help_panel=ENGINE_PANEL, show_default=False,
    help="torch on CUDA only: capture and replay a CUDA graph per batch size")]
Threads = Annotated[Optional[int], typer.Option(
    "--threads", click_type=POSITIVE_INT, metavar="N", rich_help_panel=ENGINE_PANEL,
    show_default="the backend's choice", help="CPU threads for the engine")]
TrustPlanCode = Annotated[bool, typer.Option(
    TRUST_FLAG, rich_help_panel=ENGINE_PANEL, show_default="refuse them",
    help="tensorrt only: allow a version-compatible plan, whose embedded TensorRT host code runs inside mvrt; "
    "give it only for plans from a source you trust")]

Url = Annotated[Optional[str], typer.Option(
    "--url", metavar="HOST:PORT", rich_help_panel=ENGINE_PANEL, show_default="none",
    help="kserve only: the KServe V2 server (its gRPC or HTTP port); decoding and the front-end stay here")]
RemoteModel = Annotated[Optional[str], typer.Option(
    "--remote-model", metavar="NAME", rich_help_panel=ENGINE_PANEL, show_default="the model file's stem",
    help="kserve only: the model's name on the server")]
Protocol = Annotated[Optional[str], typer.Option(
    "--protocol", click_type=choice("grpc", "http"), rich_help_panel=ENGINE_PANEL, show_default="grpc",
    help="kserve only: grpc or http")]
RemoteTimeout = Annotated[Optional[float], typer.Option(
    "--remote-timeout", click_type=POSITIVE_FLOAT, metavar="SECONDS", rich_help_panel=ENGINE_PANEL,
    show_default="60", help="kserve only: how long one batch may take on the server")]


def engine_group(
    backend: Backend = "auto",
    device: Device = None,
    precision: Precision = None,
    cuda_graphs: CudaGraphs = False,
    threads: Threads = None,
    trust_plan_code: TrustPlanCode = False,
    url: Url = None,
    remote_model: RemoteModel = None,
    protocol: Protocol = None,
    remote_timeout: RemoteTimeout = None,
) -> None:
    """The engine options infer, bench and evaluate share (`with_options(engine_group)`)."""


def resolve_backend(model: str, backend: str) -> str:
    if backend != "auto":
        return backend
    return backend_for(model) or "auto"


def engine_options(args) -> dict:
    """Keyword arguments for `open_engine`, refusing flags the chosen backend cannot honour.

    `args` has the attributes model, backend, device, precision, cuda_graphs, threads and
    (optionally) trust_plan_code.
    """
    backend = resolve_backend(args.model, args.backend)
    options: dict = {}
    trusted = getattr(args, "trust_plan_code", False)
    if trusted and backend != "tensorrt":
        raise UsageError(f"{TRUST_FLAG} applies to TensorRT plans (the tensorrt backend) only, not {backend} models")
    kserve = {key: getattr(args, key, None) for key in KSERVE_FLAGS}
    given = [KSERVE_FLAGS[key] for key, value in kserve.items() if value is not None]
    if backend == "kserve":
        return _kserve_options(args, kserve)
    if given:
        raise UsageError(f"{given[0]} applies to the kserve backend only (--backend kserve), not {backend} models")
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


def _kserve_options(args, kserve: dict) -> dict:
    """open_engine's kserve options; engine flags that act on a local engine are an error."""
    local = [flag for flag, value in (("--device", args.device), ("--threads", args.threads),
                                      ("--precision", args.precision), ("--cuda-graphs", args.cuda_graphs or None))
             if value is not None]
    if local:
        raise UsageError(f"{local[0]} applies to a local engine; with --backend kserve the server runs the model")
    if kserve["url"] is None:
        raise UsageError("--backend kserve needs --url HOST:PORT (the KServe V2 server)")
    options = {"url": kserve["url"], "remote_model": kserve["remote_model"], "protocol": kserve["protocol"] or "grpc"}
    if kserve["remote_timeout"] is not None:
        options["timeout_seconds"] = kserve["remote_timeout"]
    return options


def run_precision(model: str, backend: str, options: dict) -> str:
    """The precision a run computes in: the torch engine's option, else what the artifact says."""
    if backend == "torch":
        return options.get("precision", "fp32")
    from mvrt.runtime.model_meta import model_precision

    return model_precision(model)


def _check_plan_trust(model: str, trusted: bool) -> None:
    """Refuse an untrusted version-compatible plan with the CLI's wording (the library names trust_plan_code).

    Anything else wrong with the plan or its sidecar is left for the engine to report.
    """
    path = Path(model)
    if trusted or backend_for(path) != "tensorrt" or not path.is_file():
        return
    from mvrt.errors import ModelError
    from mvrt.runtime.engines.sidecar import check_plan_trust, read_sidecar

    try:
        sidecar = read_sidecar(path)
    except ModelError:
        return
    check_plan_trust(sidecar, path, trusted, how=f"by giving {TRUST_FLAG}")
