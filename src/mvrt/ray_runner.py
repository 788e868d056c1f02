"""Archives over a Ray cluster: decoding as CPU tasks, the engine in actors, results as a local run's.

    from mvrt.ray_runner import run_on_ray, done_inputs

    with run_on_ray("model.onnx", ["archive/"], address="local", num_cpus=8,
                    skip=done_inputs("out.jsonl")) as results:
        for video in results:
            print(video.path, video.label if video.ok else video.error)

Each input is one Ray task (1 CPU, no retries) that runs the local run's own reading code
(`runtime.pipeline.LocalSource` under `guarded_events`, so a bad input ends with the same
one-line error) and yields its windows' network inputs in chunks of at most `batch_size`
windows, each chunk put in the object store once (a streaming generator task). The driver
hands every chunk's reference to one of `engine_actors` engine actors (each opens the engine
once with `open_engine`; `num_gpus=1` when the engine options ask for CUDA and the cluster
has GPUs), which read the arrays zero-copy from the store and return the chunk's
`WindowResult`s (built by the local run's `infer_windows`). The driver fetches only those
small results, never the tensors, and yields a `VideoResult` per input as soon as its last
chunk is read (completion order, not input order). A task that dies (a decoder crash) is an
error result for that input only. The tasks and actors are in `mvrt._ray_tasks`; this
module is the driver.

Memory is bounded: at most `max_inputs_in_flight` inputs are submitted at a time, each task
is paused by Ray once two of its chunks wait unread, and no chunk is read while the actors
have `_CALLS_PER_ACTOR` calls each outstanding. Every wait is bounded (`ray.wait` polls;
`stall_timeout_seconds` without any progress is a `BackendError`); an exception or Ctrl-C in
the consumer cancels the outstanding tasks, kills the actors and shuts a local cluster down.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from mvrt._ray_tasks import EngineWorker, InputDone, decode_input, start_error, task_error
from mvrt.errors import BackendError, MissingDependencyError, OutputError, UsageError
from mvrt.runtime.inputs import InputItem, MediaPair, audio_of, expand_inputs, input_name
from mvrt.runtime.pipeline import PipelineConfig, check_engine_fits
from mvrt.runtime.probe import one_line
from mvrt.runtime.results import VideoResult, WindowResult
from mvrt.runtime.sources import is_live_path

__all__ = ["RayRun", "done_inputs", "ray_session", "run_on_ray", "wants_gpu"]

log = logging.getLogger(__name__)

_PURPOSE = "running inputs on a Ray cluster (--ray)"
# A local cluster binds to 127.0.0.1 only (read by Ray when it is imported).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_CALLS_PER_ACTOR = 4
_CHUNKS_AHEAD = 2  # chunks a decoding task may have waiting unread before Ray pauses it
_POLL_SECONDS = 1.0
_GET_TIMEOUT_SECONDS = 60.0
_ACTOR_START_TIMEOUT_SECONDS = 300.0


def _import_ray(local: bool):
    """`ray`, imported now (a local cluster then binds to loopback); missing: MissingDependencyError."""
    if importlib.util.find_spec("ray") is None:
        raise MissingDependencyError("ray", "ray", _PURPOSE)
    if local:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    return importlib.import_module("ray")


def _positive(value) -> bool:
    """None (the default) or a positive integer."""
    return value is None or (not isinstance(value, bool) and isinstance(value, int) and value >= 1)


@contextlib.contextmanager
def ray_session(address: str = "local", *, num_cpus: int | None = None, log_to_driver: bool = True):
    """Connect this process to Ray for the block: `"local"` starts a cluster on this machine
    (loopback only, `num_cpus` CPUs, no dashboard) and stops it after; any other address joins
    that cluster (`ray.init(address=...)`) and leaves it running. Yields the `ray` module."""
    local = address == "local"
    if not local and num_cpus is not None:
        raise UsageError("num_cpus sets up a local cluster (address='local'); a running cluster has its own CPUs",
                         setting="num_cpus")
    if not _positive(num_cpus):
        raise UsageError(f"num_cpus must be a positive integer, got {num_cpus!r}", setting="num_cpus")
    ray = _import_ray(local)
    if ray.is_initialized():
        raise UsageError("Ray is already initialised in this process; pass address=None to use that session",
                         setting="address")
    options = {"num_cpus": num_cpus, "include_dashboard": False} if local else {"address": address}
    try:
        ray.init(log_to_driver=log_to_driver, logging_level=logging.WARNING, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray cluster" if local else f"the Ray cluster at {address}"
        raise BackendError(f"could not start or reach {where}: {one_line(str(exc))}", setting="address") from None
    try:
        yield ray
    finally:
        ray.shutdown()  # a local cluster stops; a remote one only loses this driver


def run_on_ray(
    model_path: str | os.PathLike,
    inputs: Sequence[str | os.PathLike | MediaPair],
    pipeline: PipelineConfig | None = None,
    *,
    address: str | None = "local",
    num_cpus: int | None = None,
    engine_actors: int = 1,
    engine_options: dict | None = None,
    skip: Iterable[str] = (),
    max_inputs_in_flight: int | None = None,
    stall_timeout_seconds: float = 900.0,
    log_to_driver: bool = True,
) -> "RayRun":
    """A `VideoResult` per input (folders expanded) as each finishes, read on a Ray cluster.

    `address`: "local" starts a cluster on this machine with `num_cpus` CPUs (default: all)
    and stops it at the end; None uses the session this process already has (`ray.init`
    called by the caller); any other value joins that cluster. `engine_options` go to
    `open_engine` in each of the `engine_actors` actors (`backend`, `providers`, `threads`,
    `device`, ...). `skip`: input paths to leave out (`done_inputs`). `max_inputs_in_flight`:
    inputs submitted at a time (default twice the cluster's CPUs). `log_to_driver`: the workers'
    log lines (mvrt's warnings) on this process's stderr. Model and option errors are raised
    before the cluster starts, when this is called (the results come as they are iterated);
    a bad input is a result with `ok=False`.
    """
    pipeline = pipeline or PipelineConfig()
    engine_options = dict(engine_options or {})
    items = _inputs(inputs, pipeline, skip)
    engine = _check_engine(model_path, engine_options, pipeline)
    for name, value in (("engine_actors", engine_actors), ("max_inputs_in_flight", max_inputs_in_flight)):
        if not _positive(value):
            raise UsageError(f"{name} must be a positive integer, got {value!r}", setting=name)
    if not stall_timeout_seconds > 0:
        raise UsageError(f"stall_timeout_seconds must be positive, got {stall_timeout_seconds!r}",
                         setting="stall_timeout_seconds")
    if importlib.util.find_spec("ray") is None:
        raise MissingDependencyError("ray", "ray", _PURPOSE)
    if address is None and not _import_ray(False).is_initialized():
        raise UsageError("address=None uses this process's Ray session, but ray.init has not been called",
                         setting="address")
    settings = (os.fspath(model_path), engine, engine_options, pipeline, engine_actors, max_inputs_in_flight,
                stall_timeout_seconds)
    return RayRun(_stream(items, address, num_cpus, log_to_driver, settings))


class RayRun:
    """The results of `run_on_ray` as they come: an iterator of `VideoResult`s and a context
    manager; leaving the block (an exception, Ctrl-C) or `close()` ends the run at once."""

    def __init__(self, results: Iterator[VideoResult]):
        self._results = results

    def __iter__(self) -> "RayRun":
        return self

    def __next__(self) -> VideoResult:
        return next(self._results)

    def close(self) -> None:
        """Cancel the outstanding tasks, end the actors, stop a local cluster (idempotent)."""
        self._results.close()

    def __enter__(self) -> "RayRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stream(items: list[InputItem], address, num_cpus, log_to_driver: bool, settings: tuple) -> Iterator[VideoResult]:
    """The results of a checked run: the cluster joined or started, the run, everything ended after."""
    if not items:
        return
    with contextlib.ExitStack() as stack:
        if address is None:
            ray = _import_ray(False)
        else:
            ray = stack.enter_context(ray_session(address, num_cpus=num_cpus, log_to_driver=log_to_driver))
        run = _Run(ray, *settings)
        try:
            yield from run.results(items)
        finally:
            run.cancel()


def _inputs(inputs, pipeline: PipelineConfig, skip: Iterable[str]) -> list[InputItem]:
    if isinstance(inputs, (str, os.PathLike, MediaPair)):
        inputs = [inputs]
    items, empty = expand_inputs(list(inputs))
    for folder in empty:
        log.warning("%s: no media files in this folder", folder)
    if pipeline.isolate:
        raise UsageError("isolate=True is not needed on Ray: each input is read in a Ray worker of its own, "
                         "and a worker that crashes fails that input only", setting="isolate")
    for item in items:
        if not isinstance(item, MediaPair) and is_live_path(item, pipeline.source):
            raise UsageError(f"{item}: Ray runs read files; a live source (stdin, a pipe, a URL, a device, "
                             "live=True) runs with a local `mvrt infer`", setting="ray")
    skipped = {os.fspath(s) for s in skip}
    return [item for item in items if input_name(item) not in skipped]


def _check_engine(model_path, engine_options: dict, pipeline: PipelineConfig):
    """The engine, not loaded: its config, batch limit and option errors, before any cluster starts."""
    from mvrt.runtime.engines import open_engine

    engine = open_engine(model_path, **engine_options)
    check_engine_fits(engine, pipeline)
    return engine


def wants_gpu(engine, engine_options: dict) -> bool:
    """Whether the engine runs on CUDA: a TensorRT plan, a cuda device, or a CUDA/TensorRT provider."""
    if engine.name == "tensorrt" or str(engine_options.get("device", "")).startswith("cuda"):
        return True
    providers = engine_options.get("providers") or ()
    return any("CUDA" in str(p) or "Tensorrt" in str(p) for p in providers)


@dataclass
class _Input:
    """One input on its way: its task's stream and the actor calls on its chunks, in order."""

    item: InputItem
    stream: object  # ray.ObjectRefGenerator
    slots: list = field(default_factory=list)  # per chunk: an actor result, or the exception of its call
    waiting: int = 0
    streamed: bool = False  # the task has yielded its last chunk


class _Run:
    """The driver's side: submits tasks, hands chunks to actors, assembles results."""

    def __init__(self, ray, model_path: str, engine, engine_options: dict, pipeline: PipelineConfig,
                 engine_actors: int, max_inputs_in_flight: int | None, stall_timeout_seconds: float):
        self.ray, self.pipeline, self.classes = ray, pipeline, engine.config.classes
        self.model = engine.config
        self.chunk_windows = min(pipeline.batch_size, engine.max_batch or pipeline.batch_size)
        self.stall_timeout_seconds = stall_timeout_seconds
        self.streams: dict = {}  # ObjectRefGenerator -> _Input
        self.calls: dict = {}  # actor call ObjectRef -> (_Input, slot, actor index)
        self.actors: list = []
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        self.max_inputs = max_inputs_in_flight or 2 * cpus
        self.task = ray.remote(num_cpus=1, max_retries=0)(decode_input)
        self._start_actors(model_path, engine, engine_options, engine_actors)

    def _start_actors(self, model_path: str, engine, engine_options: dict, count: int) -> None:
        ray = self.ray
        gpus = 1 if wants_gpu(engine, engine_options) and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        cls = ray.remote(num_cpus=0, num_gpus=gpus, max_restarts=0)(EngineWorker)
        self.actors = [cls.remote(model_path, engine_options) for _ in range(count)]
        self.load = [0] * count
        try:
            ray.get([a.ready.remote() for a in self.actors], timeout=_ACTOR_START_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the engine's own error where Ray kept it
            raise start_error(model_path, exc) from None

    def results(self, items: list[InputItem]) -> Iterator[VideoResult]:
        queued = deque(items)
        last_progress = time.monotonic()
        while queued or self.streams or self.calls:
            while queued and len(self._active()) < self.max_inputs:
                item = queued.popleft()
                stream = self.task.options(_generator_backpressure_num_objects=_CHUNKS_AHEAD).remote(
                    item, self.model, self.pipeline, self.chunk_windows)
                self.streams[stream] = _Input(item, stream)
            ready = self._wait()
            if ready:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.stall_timeout_seconds:
                raise BackendError(f"ray: no progress for {self.stall_timeout_seconds:g} s "
                                   f"({len(self._active())} input(s) in progress); giving up")
            for done in ready:
                finished = self._read_stream(done) if done in self.streams else self._read_call(done)
                if finished is not None:
                    yield self._assemble(finished)

    def _active(self) -> set[int]:
        return {id(i) for i in self.streams.values()} | {id(i) for i, _, _ in self.calls.values()}

    def _wait(self) -> list:
        waitable = list(self.calls)
        if len(self.calls) < _CALLS_PER_ACTOR * len(self.actors):
            waitable += list(self.streams)
        if not waitable:
            return []
        ready, _ = self.ray.wait(waitable, num_returns=1, timeout=_POLL_SECONDS, fetch_local=False)
        return ready

    def _read_stream(self, stream) -> _Input | None:
        entry = self.streams[stream]
        try:
            ref = next(stream)
        except StopIteration:
            del self.streams[stream]
            entry.streamed = True
            return entry if entry.waiting == 0 else None
        actor = min(range(len(self.actors)), key=self.load.__getitem__)
        call = self.actors[actor].run.remote(ref)
        self.load[actor] += 1
        self.calls[call] = (entry, len(entry.slots), actor)
        entry.slots.append(None)
        entry.waiting += 1
        return None

    def _read_call(self, call) -> _Input | None:
        entry, slot, actor = self.calls.pop(call)
        self.load[actor] -= 1
        try:
            entry.slots[slot] = self.ray.get(call, timeout=_GET_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a dead task or actor fails this input, not the run
            entry.slots[slot] = exc
        entry.waiting -= 1
        return entry if entry.waiting == 0 and entry.streamed else None

    def _assemble(self, entry: _Input) -> VideoResult:
        path, audio = input_name(entry.item), audio_of(entry.item)
        failed = next((s for s in entry.slots if isinstance(s, Exception)), None)
        if failed is None and not (entry.slots and isinstance(entry.slots[-1], InputDone)):
            failed = BackendError("the task ended without its final record")
        if failed is not None:
            error = task_error(entry.item, failed)
            return VideoResult(path, (), self.classes, str(error), exception=error, audio_path=audio)
        done: InputDone = entry.slots[-1]
        error = done.error()
        if error is not None:
            return VideoResult(path, (), self.classes, str(error), exception=error,
                               undecodable_packets=done.undecodable_packets, audio_path=audio)
        windows: tuple[WindowResult, ...] = tuple(itertools.chain.from_iterable(entry.slots[:-1]))
        return VideoResult(path, windows, self.classes, None, undecodable_packets=done.undecodable_packets,
                           audio_path=audio)

    def cancel(self) -> None:
        """Cancel what is still running and end the actors (each step bounded, errors ignored)."""
        ray = self.ray
        for ref in list(self.streams) + list(self.calls):
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self.streams.clear()
        self.calls.clear()


def done_inputs(jsonl_path: str | os.PathLike, *, include_errors: bool = True) -> set[str]:
    """The input paths an mvrt jsonl output already has a video record for (`--resume`).

    A missing file has none. A last line cut short (a run stopped mid-write) is ignored; an
    unreadable line elsewhere is an OutputError. `include_errors=False` leaves failed inputs
    out (so that they are tried again).
    """
    try:
        with open(jsonl_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return set()
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{jsonl_path}: cannot read it to resume: {one_line(str(exc))}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    done: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                log.warning("%s: line %d is cut short (an interrupted run); ignored", jsonl_path, number)
                break
            raise OutputError(f"{jsonl_path}: line {number} is not JSON; is it an mvrt jsonl output?") from None
        if isinstance(record, dict) and record.get("type") == "video" and isinstance(record.get("path"), str):
            if include_errors or record.get("ok", True):
                done.add(record["path"])
    return done
