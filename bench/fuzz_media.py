"""Fuzz the media path: mutate generated clips and classify them through the Python API in worker processes.

    python bench/fuzz_media.py --inputs 10000 --seed 1 --workers 2 [--model M.onnx] [--timeout-seconds 60]
        [--memory-mib 3072] [--json out.json] [--markdown figures.md] [--keep-dir DIR]
    python bench/fuzz_media.py --seed 1 --only 1234          # rebuild input 1234, write it, classify it

Seed clips (MP4 faststart / plain / fragmented, MKV, WebM, MPEG-TS; Ogg when FFmpeg has Theora and Vorbis
encoders) are generated once into bench/.cache/fuzz/. Input i of a campaign is built from a Generator
seeded with (seed, i) alone, so any input can be rebuilt. Outcomes: ok, clean error (an MvrtError with a
one-line message), unexpected exception, hang, crash, memory. Exit status 1 when any input crashed, hung,
raised an unexpected exception or went over the memory limit.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from _fuzz_mutate import FuzzInput, make_input  # noqa: E402
from _fuzz_report import CampaignResult, InputRecord, markdown, summary  # noqa: E402
from _fuzz_seeds import seed_clips  # noqa: E402
from _fuzz_worker import FAILURES, Hook, Outcome, PoolConfig, hook_name, run_inputs  # noqa: E402

DEFAULT_CACHE = BENCH_DIR / ".cache" / "fuzz"
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MEMORY_MIB = 3072.0
INPUT_TOKEN = "INPUT"


def default_model() -> str:
    from mvrt.bundled import default_model_path

    return str(default_model_path())


def reproduce_command(seed: int, index: int, model: str, timeout_seconds: float, memory_mib: float) -> str:
    parts = ["python", "bench/fuzz_media.py", "--seed", str(seed), "--only", str(index)]
    if model != default_model():
        parts += ["--model", model]
    if timeout_seconds != DEFAULT_TIMEOUT_SECONDS:
        parts += ["--timeout-seconds", f"{timeout_seconds:g}"]
    if memory_mib != DEFAULT_MEMORY_MIB:
        parts += ["--memory-mib", f"{memory_mib:g}"]
    return shlex.join(parts)


def _record(item: FuzzInput, path: str, outcome: Outcome) -> InputRecord:
    message = outcome.message.replace(path, INPUT_TOKEN)
    return InputRecord(item.index, item.seed_name, item.mutator, item.notes, len(item.data), outcome.outcome,
                       outcome.error_type, message, round(outcome.seconds, 4), round(outcome.peak_rss_mib, 1),
                       path in outcome.message, outcome.detail.replace(path, INPUT_TOKEN))


def kept_name(seed: int, item: FuzzInput) -> str:
    return f"fuzz-s{seed}-i{item.index}-{item.seed_name}-{item.mutator}{item.suffix}"


def run_campaign(
    inputs: int,
    seed: int,
    workers: int,
    model: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    memory_mib: float = DEFAULT_MEMORY_MIB,
    cache_dir: str | Path = DEFAULT_CACHE,
    *,
    indices: Iterable[int] | None = None,
    hook: Hook | str | None = None,
    keep_dir: str | Path | None = None,
    progress: Callable[[InputRecord], None] | None = None,
) -> CampaignResult:
    """Classify inputs 0 .. inputs-1 (or the given `indices`) of the campaign `seed` in `workers` worker
    processes. `hook(index, path)`, a module-level function (or its 'module:function' name), runs in the
    worker before each classify (tests use it to crash, hang or allocate). Failing inputs (or, with
    `indices`, every input) are written to `keep_dir` when given."""
    model = str(model or default_model())
    seeds = seed_clips(cache_dir)
    table = [(s.name, s.family, s.suffix, s.path.read_bytes()) for s in seeds]
    chosen = list(range(inputs) if indices is None else indices)
    keep = Path(keep_dir) if keep_dir is not None else None
    made: dict[int, tuple[FuzzInput, str]] = {}
    records: dict[int, InputRecord] = {}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mvrt-fuzz-") as work:
        work_dir = Path(work)

        def prepare(index: int, worker: int) -> str:
            item = make_input(seed, index, table)
            path = work_dir / f"input-{worker}{item.suffix}"
            path.write_bytes(item.data)
            made[index] = (item, str(path))
            return str(path)

        def report(index: int, outcome: Outcome) -> None:
            item, path = made.pop(index)
            record = records[index] = _record(item, path, outcome)
            if keep is not None and (indices is not None or record.outcome in FAILURES):
                keep.mkdir(parents=True, exist_ok=True)
                (keep / kept_name(seed, item)).write_bytes(item.data)
            if progress is not None:
                progress(record)

        config = PoolConfig(model, max(1, min(workers, len(chosen) or 1)), timeout_seconds, memory_mib, work_dir,
                            hook_name(hook))
        run_inputs(config, chosen, prepare, report)
    ordered = tuple(records[i] for i in sorted(records))
    commands = {r.index: reproduce_command(seed, r.index, model, timeout_seconds, memory_mib)
                for r in ordered if r.outcome in FAILURES}
    seed_info = tuple({"name": s.name, "file": s.path.name, "sha256": s.sha256, "size_bytes": s.size_bytes}
                      for s in seeds)
    return CampaignResult(seed, config.workers, model, timeout_seconds, memory_mib, seed_info, ordered,
                          time.monotonic() - start, commands)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=300, help="number of mutated inputs (default 300)")
    p.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--model", help="ONNX or checkpoint to classify with (default: the bundled demo model)")
    p.add_argument("--timeout-seconds", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                   help="per-input limit; longer is a hang (default 60)")
    p.add_argument("--memory-mib", type=float, default=DEFAULT_MEMORY_MIB,
                   help="worker resident-memory limit; more is a memory outcome (default 3072)")
    p.add_argument("--json", type=Path, help="write every record and the summary here")
    p.add_argument("--markdown", type=Path, help="write the figures as markdown tables here (for a README)")
    p.add_argument("--keep-dir", type=Path, help="write the failing inputs here")
    p.add_argument("--only", type=int, metavar="INDEX", help="rebuild and classify input INDEX alone, write it "
                   "(to --keep-dir, default the current folder) and print the details")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="seed clips (default bench/.cache/fuzz)")
    return p


def _progress(total: int) -> Callable[[InputRecord], None]:
    done = {"n": 0, "bad": 0, "shown": 0.0}

    def show(record: InputRecord) -> None:
        done["n"] += 1
        done["bad"] += record.outcome in FAILURES
        if record.outcome in FAILURES:
            print(f"  #{record.index} {record.outcome} {record.error_type}: {record.message[:100]}", file=sys.stderr)
        if time.monotonic() - done["shown"] > 10 or done["n"] == total:
            done["shown"] = time.monotonic()
            print(f"[{done['n']}/{total}] {done['bad']} failures so far", file=sys.stderr, flush=True)

    return show


def _only(args) -> int:
    keep = args.keep_dir or Path.cwd()
    result = run_campaign(1, args.seed, 1, args.model, args.timeout_seconds, args.memory_mib, args.cache_dir,
                          indices=[args.only], keep_dir=keep)
    (record,) = result.records
    print(f"input {record.index} of seed {result.seed}: {record.seed_name} / {record.mutator}, {record.size_bytes} B")
    for line in record.notes:
        print(f"  {line}")
    print(f"written to {keep}")
    print(f"outcome: {record.outcome} {record.error_type} {record.message} ({record.seconds:.2f} s, "
          f"peak RSS {record.peak_rss_mib:.0f} MiB)")
    if record.detail:
        print(record.detail)
    return int(record.outcome in FAILURES)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.only is not None:
        return _only(args)
    result = run_campaign(args.inputs, args.seed, args.workers, args.model, args.timeout_seconds,
                          args.memory_mib, args.cache_dir, keep_dir=args.keep_dir, progress=_progress(args.inputs))
    print(summary(result))
    if args.json:
        import json

        args.json.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    if args.markdown:
        command = shlex.join(["python", "bench/fuzz_media.py", *(argv if argv is not None else sys.argv[1:])])
        args.markdown.write_text(markdown(result, command) + "\n")
    return int(bool(result.failures))


if __name__ == "__main__":
    sys.exit(main())
