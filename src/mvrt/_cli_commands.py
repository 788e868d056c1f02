"""Sub-commands of the `mvrt` CLI: argument definitions and handlers, one pair each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mvrt._cli_engine import add_engine_options, engine_options, positive_float, positive_int
from mvrt._cli_live import LIVE_EXAMPLES, add_source_options, any_live, describe_source_event, source_options, start_metrics
from mvrt._cli_output import LineWriter as _LineWriter
from mvrt._cli_output import add_progress_options, check_writable, progress_wanted, write_document
from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS
from mvrt.errors import UsageError

EXIT_OK, EXIT_FAILED = 0, 1
UNTRAINED = "nothing: random initialisation (predictions are meaningless)"


# --- infer -----------------------------------------------------------------------------

INFER_EXAMPLES = """\
examples:
  mvrt infer clip.mp4                                  # bundled demo model, table on stdout
  mvrt infer videos/ --model m.onnx --format jsonl -o run.jsonl   # a folder, streamed line by line
  mvrt infer *.mp4 --model m.onnx --isolate --read-timeout 10     # untrusted media: crash-isolated

exit status: 0 all inputs done, 1 an input failed, 2 bad usage, 130 Ctrl-C, 143 SIGTERM
"""

def add_infer(sub) -> None:
    p = sub.add_parser(
        "infer",
        help="classify videos window by window",
        description="Classify music videos: per-window softmax probabilities and top label, and the "
        "whole-video label (mean of the window probabilities). Progress goes to stderr; json, "
        "csv and jsonl on stdout stay machine-clean. Exit code 1 if any input failed.",
        epilog=INFER_EXAMPLES + "\n" + LIVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="media files (MP4, MKV, WebM, ...), folders (every video file in them, recursively), "
                   "- for stdin, named pipes, URLs (udp://, tcp://, rtsp://, srt://, http(s):// and HLS, ...) "
                   "or devices")
    p.add_argument("--model", default=None,
                   help="ONNX model (.onnx), checkpoint (.safetensors) or TensorRT plan (.plan); default: the "
                   "bundled demo model, trained on generated stand-in data (not MVED)")
    p.add_argument("--window", type=positive_float, default=None, metavar="SECONDS",
                   help="window length; must equal the model's (default: the model's, 30 s)")
    p.add_argument("--hop", type=positive_float, default=None, metavar="SECONDS",
                   help="spacing of window starts (default: the window length, no overlap)")
    p.add_argument("--batch-size", type=positive_int, default=4, metavar="N",
                   help="windows per engine call, drawn from any input (default: 4)")
    add_engine_options(p)
    p.add_argument("--format", default=None, choices=("table", "json", "csv", "jsonl"),
                   help="output format (default: table, or jsonl when an input is live); jsonl streams one line "
                   "per window, source event and video")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="write results here instead of stdout (table/json/csv replace FILE only once complete; "
                   "jsonl is flushed line by line)")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw per-class curves over time (paper Fig. 11)")
    p.add_argument("--read-timeout", type=_timeout_seconds, default=DEFAULT_READ_TIMEOUT_SECONDS, metavar="SECONDS",
                   help="give up on an input that delivers no data for this long (default: "
                   f"{DEFAULT_READ_TIMEOUT_SECONDS:g}; 0: wait for ever)")
    p.add_argument("--isolate", action="store_true",
                   help="decode each input in a worker process, so that a decoder crash on hostile media fails "
                   "that input only (costs a process and a copy of every window)")
    add_source_options(p)
    add_progress_options(p)
    p.set_defaults(handler=run_infer)


def _timeout_seconds(text: str) -> float | None:
    """Seconds >= 0; 0 means no timeout (None)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (no timeout) or a positive number of seconds, got {text}")
    return value or None


def run_infer(args) -> int:
    from mvrt.api import load_model
    from mvrt.runtime.pipeline import PipelineConfig

    progress = progress_wanted(args)
    _check_outputs(args)  # before any work: a bad --output/--plot is a usage error
    if args.model is None:
        from mvrt.bundled import default_model_path

        args.model = str(default_model_path())
        print("mvrt: no --model given: using the bundled demo model, trained on generated stand-in data "
              "(not MVED)", file=sys.stderr)
    sources = source_options(args)
    pipeline = PipelineConfig(batch_size=args.batch_size, window_seconds=args.window, hop_seconds=args.hop,
                              read_timeout_seconds=args.read_timeout, isolate=args.isolate, source=sources,
                              jobs=args.jobs)
    options = engine_options(args)
    paths, empty = _expand_folders(args.videos)  # plain path work: before the model loads
    if args.format is None:
        args.format = "jsonl" if any_live(paths, sources) else "table"
    metrics, server = start_metrics(args)
    try:
        with load_model(args.model, backend=args.backend, **options) as model:
            from mvrt.report import model_summary

            summary = model_summary(model.config, args.model, model.backend)
            videos = _run_and_write(model, paths, pipeline, summary, args, progress, metrics)
    finally:
        if server is not None:
            server.close()
    if args.plot:
        from mvrt.plot import plot_timeline

        plot_timeline(videos, args.plot, title_note=f"model trained on: {summary['trained_on']}")
    failed = len(empty) + sum(not v.ok for v in videos)
    if failed:
        print(f"mvrt: {failed} of {len(empty) + len(videos)} input(s) failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _check_outputs(args) -> None:
    if args.output:
        check_writable(args.output, "--output")
    if args.plot:
        check_writable(args.plot, "--plot")
        from mvrt.plot import require_matplotlib

        require_matplotlib()


def _run_and_write(model, paths, pipeline, summary, args, progress, metrics=None) -> list:
    """Run the inputs and write the results; on Ctrl-C/SIGTERM write what is complete, then re-raise."""
    lines = _LineWriter(args.output) if args.format == "jsonl" else None
    videos: list = []
    try:
        if lines is not None:
            lines.write_line(json.dumps({"type": "model", **summary}))
        if paths:
            _consume(model.run(paths, pipeline, metrics=metrics), videos, lines, progress)
    except KeyboardInterrupt as exc:
        _in_input_order(videos, paths)
        _write_documents(videos, summary, model.config.classes, args, interrupted=True)
        where = f" in {args.output}" if args.output else ""
        exc.detail = f"{len(videos)} complete result(s) kept{where}"
        raise
    finally:
        if lines is not None:
            lines.close()
    _in_input_order(videos, paths)
    _write_documents(videos, summary, model.config.classes, args)
    return videos


def _in_input_order(videos: list, paths: list[str]) -> None:
    """Documents list inputs in the order given, however concurrently they were decoded."""
    order: dict[str, int] = {}
    for i, path in enumerate(paths):
        order.setdefault(str(path), i)
    videos.sort(key=lambda v: order.get(v.path, len(paths)))


def _expand_folders(inputs: list[str]) -> tuple[list[str], list[str]]:
    """Files as given, folders replaced by their video files; (paths, folders without any)."""
    from mvrt.data import VIDEO_EXTENSIONS, media_files

    paths, empty = [], []
    for item in inputs:
        if not os.path.isdir(item):
            paths.append(item)
        elif found := media_files(item, VIDEO_EXTENSIONS):
            paths.extend(str(p) for p in found)
        else:
            empty.append(item)
            print(f"mvrt: error: {item}: folder has no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})",
                  file=sys.stderr)
    return paths, empty


def _consume(events, videos: list, lines, progress: bool) -> None:
    """Follow the pipeline's events: progress, jsonl lines, and the finished videos (appended)."""
    from tqdm import tqdm

    from mvrt.report import jsonl_line
    from mvrt.runtime.events import FileStarted, SourceEvent
    from mvrt.runtime.results import VideoResult, WindowResult

    with tqdm(total=0, unit="window", file=sys.stderr, disable=not progress, desc="mvrt infer") as bar:
        for event in events:
            if isinstance(event, FileStarted):
                if event.windows is not None:
                    bar.total += event.windows
                    bar.refresh()
            elif isinstance(event, SourceEvent):
                note = describe_source_event(event)
                if note:
                    bar.write(note, file=sys.stderr)
                if lines is not None:
                    lines.write_line(json.dumps(event.to_dict()))
            elif isinstance(event, WindowResult):
                bar.update(1)
                if lines is not None:
                    lines.write_line(jsonl_line(event))
            elif isinstance(event, VideoResult):
                videos.append(event)
                if not event.ok:
                    bar.write(f"mvrt: error: {event.error}", file=sys.stderr)
                if lines is not None:
                    lines.write_line(jsonl_line(event))


def _write_documents(videos, summary, classes, args, *, interrupted: bool = False) -> None:
    """table/json/csv: the whole document (complete videos only), to stdout or atomically to --output."""
    from mvrt import report

    if args.format == "table":
        text = report.render_table(videos, summary)
    elif args.format == "json":
        text = report.render_json(videos, summary, interrupted=interrupted)
    elif args.format == "csv":
        text = report.render_csv(videos, classes)
    else:
        return
    write_document(args.output, text)


# --- features ----------------------------------------------------------------------------

def add_features(sub) -> None:
    p = sub.add_parser(
        "features",
        help="write the exact input tensors of one window",
        description="Write the tensors the engine would see for the window starting at --start, "
        "as an .npz with one array per model input (float32, no batch axis), plus the model "
        "config as JSON (key mvrt_config). Use it to check your own preprocessing.",
    )
    p.add_argument("video", metavar="VIDEO")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model whose front-end and normalisation to use (.onnx / .safetensors)")
    which.add_argument("--arch", choices=("slowfast", "musicvideo"), help="an architecture's default front-end, no normalisation")
    p.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="window start (default: 0)")
    p.add_argument("--output", "-o", required=True, metavar="NPZ", help="output .npz file")
    p.add_argument("--frontend", default="auto", choices=("auto", "native", "numpy"),
                   help="spectrogram implementation (default: native C++ kernel when built)")
    p.set_defaults(handler=run_features)


def run_features(args) -> int:
    import numpy as np

    from mvrt.config import ModelConfig
    from mvrt.runtime.media_features import iter_file_features, window_at
    from mvrt.runtime.model_meta import read_model_config

    config = read_model_config(args.model) if args.model else ModelConfig(arch=args.arch)
    window = window_at(args.video, config, args.start)
    _, feeds = next(iter_file_features(args.video, config, [window], implementation=args.frontend))
    try:
        np.savez(args.output, **feeds, mvrt_config=np.array(config.to_json()), start_seconds=np.float64(window.start_seconds))
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write features: {exc.strerror}") from None
    shapes = ", ".join(f"{name} {tuple(a.shape)}" for name, a in feeds.items())
    print(f"wrote {args.output}: {shapes}", file=sys.stderr)
    return EXIT_OK


# --- info ----------------------------------------------------------------------------------

def add_info(sub) -> None:
    p = sub.add_parser("info", help="show a model's metadata (or a media file's streams)",
                       description="Show what a checkpoint or ONNX model was built from: architecture, "
                       "inputs, front-end, normalisation, provenance. For media files, their streams.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_info)


def run_info(args) -> int:
    from mvrt.runtime.model_meta import describe_model

    suffix = Path(args.file).suffix.lower()
    if suffix in (".onnx", ".safetensors", ".plan", ".engine", ".trt"):
        info = describe_model(args.file)
    else:
        from dataclasses import asdict

        from mvrt.runtime.decode import probe

        info = asdict(probe(args.file))
        info["path"] = str(info["path"])
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            print(f"{key:>20}: {value if not isinstance(value, dict) else json.dumps(value)}")
    return EXIT_OK


# --- init-model -----------------------------------------------------------------------------

def add_init_model(sub) -> None:
    p = sub.add_parser("init-model", help="create an untrained model (for pipeline checks and benchmarks)",
                       description="Create a randomly initialised checkpoint of an architecture, and "
                       "optionally its ONNX export. Its predictions are meaningless; every output made "
                       "with it says so. Needs torch: pip install 'mvrt[torch]'.")
    p.add_argument("output", metavar="CHECKPOINT", help="output .safetensors")
    p.add_argument("--arch", default="slowfast", choices=("slowfast", "musicvideo"))
    p.add_argument("--width", type=positive_float, default=1.0, help="channel width multiplier (default: 1)")
    p.add_argument("--no-mmtm", dest="mmtm", action="store_false", help="without the MMTM fusion blocks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--onnx", default=None, metavar="OUT.onnx", help="also export ONNX here")
    p.set_defaults(handler=run_init_model)


def run_init_model(args) -> int:
    from mvrt.checkpoint import save_checkpoint
    from mvrt.config import ModelConfig
    from mvrt.models import build_model, seed_everything

    if not args.output.endswith(".safetensors"):
        raise UsageError(f"{args.output}: checkpoints are .safetensors files")
    config = ModelConfig(arch=args.arch, width=args.width, mmtm=args.mmtm, trained_on=UNTRAINED)
    seed_everything(args.seed)
    model = build_model(config).eval()
    save_checkpoint(model, config, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    if args.onnx:
        from mvrt.export.onnx_export import export_onnx

        export_onnx(args.output, config, args.onnx)
        print(f"wrote {args.onnx}", file=sys.stderr)
    return EXIT_OK


# --- standin ---------------------------------------------------------------------------------

def add_standin(sub) -> None:
    p = sub.add_parser("standin", help="generate an MVED-shaped stand-in data set",
                       description="Write <root>/<split>/<Class>/<clip>.mp4 (H.264 + AAC) clips whose "
                       "tempo, mode, loudness, brightness and motion depend on the class. For tests, "
                       "demos and smoke-training; it is not MVED.")
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--clips-per-class", type=positive_int, default=10, metavar="N")
    p.add_argument("--seconds", type=positive_float, default=8.0, help="clip length (default: 8)")
    p.add_argument("--splits", nargs="+", default=["train", "validation", "test"])
    p.add_argument("--layout", default="flat", choices=("flat", "authors"))
    p.add_argument("--seed", type=int, default=0)
    add_progress_options(p)
    p.set_defaults(handler=run_standin)


def run_standin(args) -> int:
    from mvrt.standin import generate_standin

    summary = generate_standin(args.root, clips_per_class=args.clips_per_class, seconds=args.seconds,
                               seed=args.seed, splits=tuple(args.splits), layout=args.layout,
                               progress=progress_wanted(args))
    per_split = {}
    for split, _, count in summary.counts:
        per_split[split] = per_split.get(split, 0) + count
    splits = ", ".join(f"{split}: {count}" for split, count in per_split.items())
    print(f"wrote {summary.total_clips} clips to {summary.root} ({splits}) in {summary.elapsed_seconds:.1f} s; "
          f"generated stand-in data, not MVED", file=sys.stderr)
    return EXIT_OK
