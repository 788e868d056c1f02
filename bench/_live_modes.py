"""The three measurements of bench_live.py: latency (one source), capacity (N sources), soak (memory).

Each takes the parsed arguments, a loaded `mvrt.api.Model` and the clip to send, and returns a
JSON-ready dict. Times are seconds (monotonic clock); memory is KiB. Every run is bounded: a
timer stops the stream after `max_wall_seconds`, and the senders are killed on the way out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _live_support import CpuMeter, latency_stats, memory_kib, senders, staggered_senders


@dataclass(frozen=True)
class Sample:
    """One emitted window: where it came from, its media end, mvrt's latency, when we got it."""

    source: str
    index: int
    end_seconds: float
    latency_seconds: float | None
    received: float  # time.monotonic() when the caller received it
    gap_seconds: float

    def lag(self, start: float, speed: float) -> float:
        """Seconds after the window's last media second was due to be sent (real-time pacing)."""
        return self.received - start - self.end_seconds / speed


def media_needed(window_seconds: float, hop_seconds: float, windows: int) -> float:
    """Media seconds a live source must deliver for `windows` windows (W + (K - 1) H)."""
    return window_seconds + (windows - 1) * hop_seconds


def loops_for(clip_seconds: float, needed_seconds: float) -> int:
    """Loops of the clip that cover `needed_seconds` plus a margin (the last window must complete)."""
    return max(1, math.ceil((needed_seconds + 5.0) / clip_seconds))


def _sample(result) -> Sample:
    return Sample(result.path, result.index, result.end_seconds, result.latency_seconds, time.monotonic(),
                  result.gap_seconds)


def _stopper(stop, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    return timer


@dataclass
class _Run:
    """One sender and `model.stream` reading it; `cpu` is this process's use, read once the stream closed."""

    sender: object
    meter: CpuMeter
    stream: object
    cpu: dict | None = None


@contextlib.contextmanager
def _one_source(args, model, clip: Path, clip_seconds: float, needed: float):
    """One live source sending `needed` media seconds at `args.speed`, read until `args.windows` windows
    or `args.max_wall_seconds`; the sender is killed on the way out."""
    with senders(clip, 1, speed=args.speed, loops=loops_for(clip_seconds, needed),
                 max_seconds=needed / max(args.speed, 1e-9) + args.max_wall_seconds) as (sender,):
        meter = CpuMeter()
        with model.stream(sender.url, hop_seconds=args.hop, max_windows=args.windows) as stream:
            run = _Run(sender, meter, stream)
            timer = _stopper(stream.stop, args.max_wall_seconds)
            try:
                yield run
            finally:
                timer.cancel()
        run.cpu = meter.read()


def measure_latency(args, model, clip: Path, clip_seconds: float, window_seconds: float) -> dict:
    """One live source over TCP at `args.speed`, read with `model.stream`; latency of every window."""
    from mvrt.runtime.results import WindowResult

    needed = media_needed(window_seconds, args.hop, args.windows)
    samples, states = [], []
    with _one_source(args, model, clip, clip_seconds, needed) as run:
        start = run.meter.wall
        for event in run.stream:
            if isinstance(event, WindowResult):
                samples.append(_sample(event))
            else:
                states.append(event.state)
    latencies = [s.latency_seconds for s in samples]
    lags = [s.lag(start, args.speed) for s in samples]
    return {
        "windows_asked": args.windows, "windows": len(samples), "source_states": states,
        "latency_seconds": latency_stats(latencies),
        "latency_without_first_seconds": latency_stats(latencies[1:]),
        "first_window_latency_seconds": round(latencies[0], 4) if latencies and latencies[0] is not None else None,
        "lag_growth_seconds": round(lags[-1] - lags[0], 3) if len(lags) > 1 else None,
        "gap_seconds": round(sum(s.gap_seconds for s in samples), 3),
        "media_seconds": needed, "cpu": run.cpu, "sender": run.sender.report,
        "per_window": [{"index": s.index, "end_seconds": s.end_seconds, "latency_seconds": s.latency_seconds}
                       for s in samples],
    }


def measure_capacity_step(args, model, clip: Path, clip_seconds: float, window_seconds: float, count: int) -> dict:
    """`count` live sources in one `Model.run`; latencies, growth, CPU, and whether it was sustained."""
    from mvrt.runtime.pipeline import PipelineConfig
    from mvrt.runtime.results import VideoResult, WindowResult
    from mvrt.runtime.sources import SourceOptions

    needed = media_needed(window_seconds, args.hop, args.windows)
    config = PipelineConfig(batch_size=args.batch_size, hop_seconds=args.hop,
                            source=SourceOptions(max_windows=args.windows))
    samples, errors = [], []
    stop = threading.Event()
    spread = args.hop / args.speed  # staggered: the sources' windows complete evenly over one hop
    if args.stagger:  # mvrt listens, senders connect one after another; the wait for each is a read
        config = dataclasses.replace(config, read_timeout_seconds=spread + 30.0)
    launch = (staggered_senders(clip, count, spread, speed=args.speed, loops=loops_for(clip_seconds, needed),
                                max_seconds=needed / args.speed + args.max_wall_seconds) if args.stagger else
              senders(clip, count, speed=args.speed, loops=loops_for(clip_seconds, needed),
                      max_seconds=needed / args.speed + args.max_wall_seconds))
    with launch as running:
        urls = [s.url + ("?listen=1" if args.stagger else "") for s in running]
        meter, start = CpuMeter(), time.monotonic()
        timer = _stopper(stop.set, args.max_wall_seconds)
        try:
            for event in model.run(urls, config, stop=stop):
                if isinstance(event, WindowResult):
                    samples.append(_sample(event))
                elif isinstance(event, VideoResult) and not event.ok:
                    errors.append(event.error)
        finally:
            timer.cancel()
            stop.set()
        cpu = meter.read()
    sender_cpu = sum(s.cpu_seconds for s in running)
    result = _capacity_summary(args, samples, urls, start)
    result |= {"sources": count, "errors": errors, "media_seconds": needed, "cpu": cpu,
               "senders_cores_used": round(sender_cpu / cpu["wall_seconds"], 2) if cpu["wall_seconds"] else None}
    result["sustained"] = bool(result["all_delivered"] and not errors
                               and result["latency_seconds"]["p99"] <= args.latency_bound
                               and not result["grows"])
    return result


def _capacity_summary(args, samples: list[Sample], urls: list[str], start: float) -> dict:
    by_source = {url: sorted((s for s in samples if s.source == url), key=lambda s: s.index) for url in urls}
    counts = [len(v) for v in by_source.values()]
    complete = [v for v in by_source.values() if len(v) >= 2]
    first = [v[0].latency_seconds for v in complete if v[0].latency_seconds is not None]
    last = [v[-1].latency_seconds for v in complete if v[-1].latency_seconds is not None]
    lag_growth = [v[-1].lag(start, args.speed) - v[0].lag(start, args.speed) for v in complete]
    latency_growth = statistics.median(last) - statistics.median(first) if first and last else math.nan
    lag = statistics.median(lag_growth) if lag_growth else math.nan
    grows = not (latency_growth <= args.growth_bound and lag <= args.growth_bound)  # NaN: cannot tell, so it fails
    return {
        "windows_per_source_asked": args.windows, "windows_per_source_min": min(counts, default=0),
        "windows": len(samples), "all_delivered": bool(counts) and min(counts) >= args.windows,
        "latency_seconds": latency_stats([s.latency_seconds for s in samples]),
        "first_window_latency_median_seconds": round(statistics.median(first), 4) if first else None,
        "last_window_latency_median_seconds": round(statistics.median(last), 4) if last else None,
        "latency_growth_seconds": round(latency_growth, 4), "lag_growth_median_seconds": round(lag, 4),
        "grows": grows, "gap_seconds": round(sum(s.gap_seconds for s in samples), 3),
    }


def measure_capacity(args, model, clip: Path, clip_seconds: float, window_seconds: float) -> dict:
    """Each N of `args.sources` in turn, stopping after the first that is not sustained."""
    steps = []
    for count in args.sources:
        steps.append(measure_capacity_step(args, model, clip, clip_seconds, window_seconds, count))
        if not steps[-1]["sustained"]:
            break
    sustained = [s["sources"] for s in steps if s["sustained"]]
    return {"steps": steps, "largest_sustained": max(sustained, default=0), "staggered": bool(args.stagger),
            "latency_bound_seconds": args.latency_bound, "growth_bound_seconds": args.growth_bound}


def measure_soak(args, model, clip: Path, clip_seconds: float, window_seconds: float) -> dict:
    """`args.windows` windows of one looped source; resident memory at `args.sample_at` and at the end."""
    from mvrt.runtime.results import WindowResult

    needed = media_needed(window_seconds, args.hop, args.windows)
    marks = sorted({m for m in args.sample_at if m < args.windows} | {args.windows})
    memory, samples = {}, []
    with _one_source(args, model, clip, clip_seconds, needed) as run:
        for event in run.stream:
            if isinstance(event, WindowResult):
                samples.append(_sample(event))
                if len(samples) in marks:
                    memory[len(samples)] = memory_kib() | {"wall_seconds": round(time.monotonic() - run.meter.wall, 2)}
    if samples and len(samples) not in memory:  # stopped early (time limit, end of stream): read it anyway
        memory[len(samples)] = memory_kib() | {"wall_seconds": round(time.monotonic() - run.meter.wall, 2)}
    cpu = run.cpu
    first, final = memory.get(marks[0]), memory.get(len(samples)) if samples else None
    return {
        "windows_asked": args.windows, "windows": len(samples), "media_seconds": needed, "memory_kib": memory,
        "hwm_ratio": round(final["vm_hwm_kib"] / first["vm_hwm_kib"], 4) if first and final else None,
        "rss_ratio": round(final["vm_rss_kib"] / first["vm_rss_kib"], 4) if first and final else None,
        "first_mark": marks[0], "latency_seconds": latency_stats([s.latency_seconds for s in samples]),
        "windows_per_second": round(len(samples) / cpu["wall_seconds"], 2) if cpu["wall_seconds"] else None,
        "gap_seconds": round(sum(s.gap_seconds for s in samples), 3), "cpu": cpu, "sender": run.sender.report,
    }
