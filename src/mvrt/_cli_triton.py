"""`--triton-repo DIR` of export and calibrate: the artifact just written, as a Triton model repository."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mvrt.errors import UsageError

SERVING_PANEL = "Serving"

TritonRepo = Annotated[Optional[str], typer.Option(
    "--triton-repo", metavar="DIR", rich_help_panel=SERVING_PANEL, show_default="none",
    help="also write a Triton model repository: DIR/<name>/config.pbtxt (inputs, batching, the mvrt config) "
    "and DIR/<name>/1/model.onnx, or model.plan with --engine; an existing DIR/<name> is replaced in one step")]


def check_triton_repo(repo: str | None) -> None:
    """Refuse a --triton-repo that cannot be a folder before any work is done."""
    if repo is not None and Path(repo).exists() and not Path(repo).is_dir():
        raise UsageError(f"--triton-repo {repo}: is a file; name a folder (it is created if missing)")


def write_triton_repo(repo: str | None, command: str, model: Path, engine: Path | None) -> None:
    """Write the repository for the plan (built from `model`) when there is one, else for `model`."""
    if repo is None:
        return
    from mvrt.export.triton_repo import write_triton_repository

    if engine is not None:
        written = write_triton_repository(engine, repo, overwrite=True, source_onnx=model)
    else:
        written = write_triton_repository(model, repo, overwrite=True)
    print(f"mvrt {command}: wrote the Triton model {written.name!r} to {written.model_dir} ({written.platform}, "
          f"{written.precision}, max_batch_size {written.max_batch_size}, preferred "
          f"{', '.join(map(str, written.preferred_batch_sizes)) or 'none'}); serve it with "
          f"`tritonserver --model-repository {written.repo_dir}`", file=sys.stderr)
    for note in written.notes:
        print(f"mvrt {command}: note: {note}", file=sys.stderr)
