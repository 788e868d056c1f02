"""What the benchmarks share: the machine a run was timed on, and their common command line.

`machine_info(**versions)` is the header every benchmark's JSON carries (`cpu`, `cores`, the
versions it names, `python`); `bench_parser` and `fill_defaults` are the `--quick`/`--json`
arguments and the quick-or-full defaults; `int_list` reads a comma-separated option.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else `platform.processor()`, else "unknown"."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info(**versions: str) -> dict:
    """`{"cpu", "cores", **versions, "python"}`: the machine header of a benchmark's results."""
    return {"cpu": cpu_name(), "cores": usable_cores(), **versions, "python": platform.python_version()}


def bench_parser(description: str, quick_help: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: `--quick` and `--json`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p


def fill_defaults(args: argparse.Namespace, quick: dict, full: dict) -> argparse.Namespace:
    """Each option left unset takes its `quick` (with --quick) or `full` default."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def int_list(p: argparse.ArgumentParser, text, flag: str) -> list[int]:
    """`"1,2"` as `[1, 2]`; anything else (none at all included) is the parser's error naming `flag`."""
    try:
        values = [int(n) for n in str(text).split(",") if n.strip()]
    except ValueError:
        values = []
    if not values:
        p.error(f"{flag} must be comma-separated integers, got {text!r}")
    return values
