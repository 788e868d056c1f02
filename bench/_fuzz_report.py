"""Campaign results of the fuzz harness and their reports (text summary, markdown figures, JSON)."""

from __future__ import annotations

import platform
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from _fuzz_worker import CLEAN, FAILURES, OUTCOMES

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
SHORT = {"clean error": "clean err", "unexpected exception": "unexpected"}


@dataclass(frozen=True)
class InputRecord:
    """One input of a campaign and how it ended (the input file's path is written INPUT in messages)."""

    index: int
    seed_name: str
    mutator: str
    notes: tuple[str, ...]
    size_bytes: int
    outcome: str
    error_type: str
    message: str
    seconds: float
    peak_rss_mib: float
    names_input: bool  # whether the message named the input file
    detail: str = ""


@dataclass(frozen=True)
class CampaignResult:
    """Everything a campaign found; `records` are in index order."""

    seed: int
    workers: int
    model: str
    timeout_seconds: float
    memory_mib: float
    seeds: tuple[dict, ...]
    records: tuple[InputRecord, ...]
    elapsed_seconds: float
    reproduce: dict[int, str] = field(default_factory=dict)  # failing index -> command

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(r.outcome for r in self.records)
        return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    @property
    def failures(self) -> tuple[InputRecord, ...]:
        return tuple(r for r in self.records if r.outcome in FAILURES)

    def by(self, attribute: str) -> dict[str, dict[str, int]]:
        """Outcome counts per value of a record attribute ('mutator' or 'seed_name')."""
        table: dict[str, Counter] = {}
        for record in self.records:
            table.setdefault(getattr(record, attribute), Counter())[record.outcome] += 1
        return {key: {o: table[key].get(o, 0) for o in OUTCOMES} for key in sorted(table)}

    def clean_messages(self) -> Counter:
        """Distinct clean-error messages, numbers written N, first 60 characters, with their counts."""
        return Counter(_NUMBER.sub("N", r.message)[:60] for r in self.records if r.outcome == CLEAN)

    def to_json(self) -> dict:
        return {
            "seed": self.seed, "workers": self.workers, "model": self.model, "inputs": len(self.records),
            "timeout_seconds": self.timeout_seconds, "memory_mib": self.memory_mib,
            "elapsed_seconds": round(self.elapsed_seconds, 3), "machine": machine(), "seeds": list(self.seeds),
            "counts": self.counts, "by_mutator": self.by("mutator"), "by_container": self.by("seed_name"),
            "clean_error_messages": dict(self.clean_messages().most_common()),
            "failures": [{**asdict(r), "reproduce": self.reproduce.get(r.index, "")} for r in self.failures],
            "records": [{k: v for k, v in asdict(r).items() if k != "detail"} for r in self.records],
        }


def machine() -> dict:
    import os

    import av

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "pyav": av.__version__, "libavformat": ".".join(map(str, av.library_versions["libavformat"]))}


def _table(title: str, rows: dict[str, dict[str, int]], totals: dict[str, int]) -> list[str]:
    width = max([len(title), 5, *map(len, rows)])
    header = f"{title:<{width}}" + "".join(f"{SHORT.get(o, o):>11}" for o in OUTCOMES) + f"{'total':>8}"
    lines = [header, "-" * len(header)]
    for name, counts in [*rows.items(), ("total", totals)]:
        lines.append(f"{name:<{width}}" + "".join(f"{counts[o]:>11}" for o in OUTCOMES) + f"{sum(counts.values()):>8}")
    return lines


def summary(result: CampaignResult, slowest: int = 5, messages: int = 25) -> str:
    """The text report: tables per mutator and per seed container, the slowest inputs, the distinct
    clean-error messages and every failing input with the command that reproduces it."""
    n = len(result.records)
    rate = n / result.elapsed_seconds if result.elapsed_seconds else 0.0
    lines = [f"mvrt media fuzz: {n} inputs, seed {result.seed}, {result.workers} workers, model {result.model}",
             f"{result.elapsed_seconds:.1f} s ({rate:.1f} inputs/s); timeout {result.timeout_seconds:g} s, "
             f"memory limit {result.memory_mib:g} MiB",
             "seeds: " + ", ".join(f"{s['name']} ({s['size_bytes']} B)" for s in result.seeds), ""]
    lines += _table("mutator", result.by("mutator"), result.counts) + [""]
    lines += _table("container", result.by("seed_name"), result.counts) + [""]
    lines.append("slowest inputs:")
    for r in sorted(result.records, key=lambda r: -r.seconds)[:slowest]:
        lines.append(f"  #{r.index:<6} {r.seconds:7.2f} s  {r.seed_name:<15} {r.mutator:<15} {r.outcome}")
    unnamed = sum(1 for r in result.records if r.outcome == CLEAN and not r.names_input)
    lines += ["", f"clean-error messages (first 60 characters; INPUT is the input file; {unnamed} do not name it):"]
    for message, count in result.clean_messages().most_common(messages):
        lines.append(f"  {count:6}  {message}")
    failures = result.failures
    lines += ["", f"failures: {len(failures)}" + ("" if failures else " (no crash, hang, unexpected exception or memory)")]
    for r in failures:
        lines.append(f"  #{r.index} {r.outcome} {r.error_type}: {r.message[:160]}")
        lines.append(f"      {r.seed_name} / {r.mutator}: {'; '.join(r.notes)[:300]}")
        lines.append(f"      reproduce: {result.reproduce.get(r.index, '')}")
    return "\n".join(lines)


def markdown(result: CampaignResult, command: str) -> str:
    """The figures as markdown (for a README): the command, the machine, outcomes per mutator and container."""
    m = machine()
    lines = [f"`{command}` ({len(result.records)} inputs in {result.elapsed_seconds / 60:.1f} min on "
             f"{m['cpus']} CPUs, {m['platform']}, PyAV {m['pyav']} / libavformat {m['libavformat']}):", ""]
    for title, rows in (("mutator", result.by("mutator")), ("container", result.by("seed_name"))):
        lines.append(f"| {title} | " + " | ".join(OUTCOMES) + " | total |")
        lines.append("|---" * (len(OUTCOMES) + 2) + "|")
        for name, counts in [*rows.items(), ("**total**", result.counts)]:
            lines.append(f"| {name} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + f" | {sum(counts.values())} |")
        lines.append("")
    return "\n".join(lines)
