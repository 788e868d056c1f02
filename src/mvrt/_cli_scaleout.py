"""`mvrt infer --ray local|ADDRESS` and `--resume`: an archive spread over a Ray cluster, and a run
that picks up where a stopped one left its jsonl output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from mvrt._cli_types import POSITIVE_INT
from mvrt.errors import UsageError

SCALE_PANEL = "Scale-out (Ray)"

Ray = Annotated[Optional[str], typer.Option(
    "--ray", metavar="local|ADDRESS", rich_help_panel=SCALE_PANEL, show_default="off",
    help="spread the inputs over a Ray cluster: decoding and the front-end as CPU tasks, the engine in actors "
    "(on GPUs where the cluster has them); local starts one on this machine; needs mvrt\\[ray]")]
RayCpus = Annotated[Optional[int], typer.Option(
    "--ray-cpus", click_type=POSITIVE_INT, metavar="N", rich_help_panel=SCALE_PANEL, show_default="all cores",
    help="--ray local only: the CPUs of the cluster it starts")]
EngineActors = Annotated[int, typer.Option(
    "--engine-actors", click_type=POSITIVE_INT, metavar="N", rich_help_panel=SCALE_PANEL,
    help="--ray only: engine actors batching windows")]
Resume = Annotated[bool, typer.Option(
    "--resume", rich_help_panel=SCALE_PANEL, show_default=False,
    help="skip the inputs --output (jsonl) already has a result for and append to it")]


def scaleout_group(ray: Ray = None, ray_cpus: RayCpus = None, engine_actors: EngineActors = 1,
                   resume: Resume = False) -> None:
    """The scale-out options of infer (`with_options(scaleout_group)`)."""


def check_scaleout(args) -> None:
    """Options that make no sense together are an error before any work."""
    if args.ray is None:
        extra = "--ray-cpus" if args.ray_cpus is not None else "--engine-actors" if args.engine_actors != 1 else None
        if extra:
            raise UsageError(f"{extra} applies with --ray only")
    else:
        if args.ray_cpus is not None and args.ray != "local":
            raise UsageError("--ray-cpus sizes the cluster --ray local starts; a running cluster has its own")
        for flag, given in (("--isolate", args.isolate), ("--jobs", args.jobs != 1),
                            ("--metrics-port", args.metrics_port is not None)):
            if given:
                raise UsageError(f"{flag} applies to a local run; with --ray the cluster's tasks decode the inputs")
    if args.resume and (args.output is None or args.format != "jsonl"):
        raise UsageError("--resume reads and appends to a jsonl output: add --format jsonl --output FILE")


def skip_done(args, inputs: list) -> list:
    """--resume: the inputs the jsonl output has no result for yet (saying how many are skipped)."""
    if not args.resume or not Path(args.output).exists():
        return inputs
    import sys

    from mvrt.ray_runner import done_inputs
    from mvrt.runtime.inputs import input_name

    done = done_inputs(args.output)
    left = [item for item in inputs if str(input_name(item)) not in done]
    print(f"mvrt: --resume: {len(inputs) - len(left)} of {len(inputs)} input(s) already in {args.output}",
          file=sys.stderr)
    return left


def ray_events(args, inputs: list, pipeline, options: dict) -> Iterator[object]:
    """The events of a Ray run as a local run gives them: each input's windows, then its result."""
    from mvrt.ray_runner import run_on_ray

    run = run_on_ray(args.model, inputs, pipeline, address=args.ray, num_cpus=args.ray_cpus,
                     engine_actors=args.engine_actors, engine_options={"backend": args.backend, **options})
    with run as results:
        for video in results:
            yield from video.windows
            yield video
