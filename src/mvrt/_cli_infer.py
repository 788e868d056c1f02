"""`mvrt infer`: classify videos window by window (files, folders, pairs of files, live sources)."""

import json
import sys
from typing import Annotated, Optional

import typer

from mvrt._cli_engine_options import engine_group, engine_options, resolve_backend, run_precision
from mvrt._cli_live import (
    LIVE_EXAMPLES,
    Duration,
    InputFormat,
    InputOption,
    Jobs,
    Live,
    MaxWindows,
    MetricsPort,
    Reconnect,
    any_live,
    describe_source_event,
    source_options,
    start_metrics,
)
from mvrt._cli_scaleout import check_scaleout, ray_events, scaleout_group, skip_done
from mvrt._cli_output import OUTPUT_PANEL, LineWriter, Progress, Quiet, check_writable, progress_wanted, write_document
from mvrt._cli_types import POSITIVE_FLOAT, POSITIVE_INT, TIMEOUT_SECONDS, Args, choice, with_options
from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS
from mvrt.errors import UsageError

EXIT_OK, EXIT_FAILED = 0, 1
INPUTS_PANEL = "Inputs and windows"
BUNDLED_NOTE = "mvrt: no --model given: using the bundled demo model, trained on generated stand-in data (not MVED)"

INFER_EXAMPLES = """\
Examples:
  # the bundled demo model: per-window table and whole-video label
  mvrt infer clip.mp4
  # every video in a folder, with your model, streamed one JSON line per event
  mvrt infer videos/ --model m.onnx --format jsonl -o run.jsonl
  # sound and picture in two files (the MVED authors' layout)
  mvrt infer --audio song.wav --video song.mp4
  # probability curves over time, frames beneath (paper Fig. 11)
  mvrt infer clip.mp4 --plot clip.png
  # untrusted media: a decoder crash fails that input only
  mvrt infer *.mp4 --isolate --read-timeout 10
  # decode on the GPU (NVDEC); an error, not the CPU, if it cannot
  mvrt infer clip.mp4 --decode nvdec
"""

INFER_HELP = f"""Classify music videos window by window.

Per-window softmax probabilities and top label, and the whole-video label (the window
probabilities' mean, each window weighted by the media time it stands for). Progress goes to stderr; json, csv and jsonl on stdout stay machine-clean.

{INFER_EXAMPLES}
{LIVE_EXAMPLES}
Exit status: 0 all inputs done, 1 an input failed, 2 bad usage, 130 Ctrl-C, 143 SIGTERM.
"""


DECODERS = ("auto", "cpu", "nvdec", "v4l2")


def decode_option(panel: Optional[str] = None):
    """`--decode DECODER` (the library's `decode` setting), in help panel `panel`."""
    return Annotated[str, typer.Option(
        "--decode", click_type=choice(*DECODERS), metavar="DECODER", rich_help_panel=panel,
        help="video decoder: auto (NVDEC where a CUDA GPU has it for the codec, else the CPU; logged), cpu, "
        "nvdec (fails without one), v4l2 (V4L2 hardware decoders, the Jetson path; untested)")]


Decode = decode_option(INPUTS_PANEL)


@with_options(engine_group, scaleout_group)
def infer(
    videos: Annotated[Optional[list[str]], typer.Argument(
        metavar="VIDEO...", show_default=False,
        help="media files (MP4, MKV, WebM, ...), folders (every video file in them, recursively; "
        "audio/ + video/ folders pair files by stem), - for stdin, named pipes, URLs (udp://, tcp://, "
        "rtsp://, srt://, http(s):// and HLS, ...) or devices")] = None,
    audio: Annotated[Optional[str], typer.Option(
        "--audio", metavar="FILE", rich_help_panel=INPUTS_PANEL, show_default="none",
        help="the sound of one more input whose picture is --video (two separate files); needs --video")] = None,
    video: Annotated[Optional[str], typer.Option(
        "--video", metavar="FILE", rich_help_panel=INPUTS_PANEL, show_default="none",
        help="the picture of the --audio input; needs --audio")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="FILE", show_default="the bundled demo model",
        help="ONNX model (.onnx), checkpoint (.safetensors) or TensorRT plan (.plan); the bundled demo model "
        "was trained on generated stand-in data (not MVED)")] = None,
    window: Annotated[Optional[float], typer.Option(
        "--window", click_type=POSITIVE_FLOAT, metavar="SECONDS", rich_help_panel=INPUTS_PANEL,
        show_default="the model's, 30 s", help="window length; must equal the model's")] = None,
    hop: Annotated[Optional[float], typer.Option(
        "--hop", click_type=POSITIVE_FLOAT, metavar="SECONDS", rich_help_panel=INPUTS_PANEL,
        show_default="the window length, no overlap", help="spacing of window starts")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", click_type=POSITIVE_INT, metavar="N", rich_help_panel=INPUTS_PANEL,
        help="windows per engine call, drawn from any input")] = 4,
    read_timeout: Annotated[Optional[float], typer.Option(
        "--read-timeout", click_type=TIMEOUT_SECONDS, metavar="SECONDS", rich_help_panel=INPUTS_PANEL,
        help="give up on an input that delivers no data for this long (0: wait for ever)")]
        = DEFAULT_READ_TIMEOUT_SECONDS,
    isolate: Annotated[bool, typer.Option(
        "--isolate", rich_help_panel=INPUTS_PANEL, show_default=False,
        help="decode each input in a worker process, so that a decoder crash on hostile media fails that input "
        "only (costs a process and a copy of every window)")] = False,
    decode: Decode = "auto",
    format: Annotated[Optional[str], typer.Option(
        "--format", click_type=choice("table", "json", "csv", "jsonl"), metavar="FORMAT", rich_help_panel=OUTPUT_PANEL,
        show_default="table, or jsonl when an input is live",
        help="table, json, csv or jsonl; jsonl streams one line per window, source event and video")] = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default="stdout",
        help="write results here (table/json/csv replace FILE only once complete; jsonl is flushed line by line)")]
        = None,
    plot: Annotated[Optional[str], typer.Option(
        "--plot", metavar="PNG", rich_help_panel=OUTPUT_PANEL, show_default="no plot",
        help="draw each video's per-class softmax probability over time, frames beneath (paper Fig. 11); "
        "needs mvrt\\[plot]")] = None,
    plot_sigmoids: Annotated[bool, typer.Option(
        "--plot-sigmoids", rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="plot the per-class sigmoid curves instead of softmax (needs --plot)")] = False,
    input_format: InputFormat = None,
    input_option: InputOption = None,
    live: Live = False,
    max_windows: MaxWindows = None,
    duration: Duration = None,
    reconnect: Reconnect = False,
    jobs: Jobs = 1,
    metrics_port: MetricsPort = None,
    progress: Progress = None,
    quiet: Quiet = False,
    **shared,
) -> int:
    return run_infer(Args(locals()))


def model_or_bundled(model: str | None) -> str:
    """`--model` as given, else the bundled demo model (saying so on stderr)."""
    if model is not None:
        return model
    from mvrt.bundled import default_model_path

    print(BUNDLED_NOTE, file=sys.stderr)
    return str(default_model_path())


def run_infer(args) -> int:
    from mvrt.runtime.pipeline import PipelineConfig

    progress = progress_wanted(args)
    _check_outputs(args)  # before any work: a bad --output/--plot is a usage error
    items = _input_items(args)
    args.model = model_or_bundled(args.model)
    sources = source_options(args)
    pipeline = PipelineConfig(batch_size=args.batch_size, window_seconds=args.window, hop_seconds=args.hop,
                              read_timeout_seconds=args.read_timeout, isolate=args.isolate, source=sources,
                              jobs=args.jobs, decode=args.decode)
    options = engine_options(args)
    inputs, empty = _expand(items)  # plain path work: before the model loads
    if args.format is None:
        args.format = "jsonl" if any_live(inputs, sources) else "table"
    check_scaleout(args)
    inputs = skip_done(args, inputs)
    if args.ray is not None:
        summary, videos = _run_on_ray(args, inputs, pipeline, options, progress)
    else:
        summary, videos = _run_here(args, inputs, pipeline, options, progress)
    if args.plot:
        _draw_plot(videos, summary, args)
    failed = len(empty) + sum(not v.ok for v in videos)
    if failed:
        print(f"mvrt: {failed} of {len(empty) + len(videos)} input(s) failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _run_here(args, inputs, pipeline, options, progress) -> tuple[dict, list]:
    from mvrt.api import load_model
    from mvrt.output_formats import model_summary

    metrics, server = start_metrics(args)
    try:
        with load_model(args.model, backend=args.backend, **options) as model:
            summary = model_summary(model.config, args.model, model.backend,
                                    precision=run_precision(args.model, model.backend, options))
            events = model.run(inputs, pipeline, metrics=metrics) if inputs else iter(())
            return summary, _run_and_write(events, model.config.classes, inputs, summary, args, progress)
    finally:
        if server is not None:
            server.close()


def _run_on_ray(args, inputs, pipeline, options, progress) -> tuple[dict, list]:
    from mvrt.output_formats import model_summary
    from mvrt.runtime.model_meta import read_model_config

    config = read_model_config(args.model)
    backend = resolve_backend(args.model, args.backend)
    summary = model_summary(config, args.model, backend, precision=run_precision(args.model, backend, options))
    events = ray_events(args, inputs, pipeline, options) if inputs else iter(())
    return summary, _run_and_write(events, config.classes, inputs, summary, args, progress)


def _check_outputs(args) -> None:
    if args.plot_sigmoids and not args.plot:
        raise UsageError("--plot-sigmoids changes what --plot draws; add --plot PNG")
    if args.output:
        check_writable(args.output, "--output")
    if args.plot:
        check_writable(args.plot, "--plot")
        from mvrt.plot import plot_format, require_matplotlib

        plot_format(args.plot)  # a suffix it cannot draw is refused before any work
        require_matplotlib()


def _input_items(args) -> list:
    """The positional inputs, then the --audio/--video pair (both or neither)."""
    items: list = list(args.videos or [])
    if (args.audio is None) != (args.video is None):
        given, missing = ("--audio", "--video") if args.video is None else ("--video", "--audio")
        raise UsageError(f"{given} needs {missing}: give the sound and the picture files together "
                         "(--audio FILE --video FILE)")
    if args.audio is not None:
        from mvrt.runtime.inputs import MediaPair

        items.append(MediaPair(args.audio, args.video))
    if not items:
        raise UsageError("no input: give VIDEO... (files, folders, URLs, -) or --audio FILE --video FILE; "
                         "see `mvrt infer --help`")
    return items


def _expand(items: list) -> tuple[list, list[str]]:
    """Folders replaced by their videos and pairs; each folder without any is one error line."""
    from mvrt.data import VIDEO_EXTENSIONS
    from mvrt.runtime.inputs import expand_inputs

    inputs, empty = expand_inputs(items)
    for folder in empty:
        print(f"mvrt: error: {folder}: folder has no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})",
              file=sys.stderr)
    return inputs, empty


def _draw_plot(videos: list, summary: dict, args) -> None:
    from mvrt.plot import plot_timeline

    written = plot_timeline(videos, args.plot, title_note=f"model trained on: {summary['trained_on']}",
                            sigmoids=args.plot_sigmoids)
    print(f"mvrt: wrote plot {written}", file=sys.stderr)


def _run_and_write(events, classes, inputs, summary, args, progress) -> list:
    """Follow the run's events and write the results; on Ctrl-C/SIGTERM write what is complete, then re-raise."""
    lines = LineWriter(args.output, append=args.resume) if args.format == "jsonl" else None
    videos: list = []
    try:
        if lines is not None and lines.empty:
            lines.write_line(json.dumps({"type": "model", **summary}))
        _consume(events, videos, lines, progress)
    except KeyboardInterrupt as exc:
        _in_input_order(videos, inputs)
        _write_documents(videos, summary, classes, args, interrupted=True)
        where = f" in {args.output}" if args.output else ""
        exc.detail = f"{len(videos)} complete result(s) kept{where}"
        raise
    finally:
        getattr(events, "close", lambda: None)()  # a Ray run ends its tasks (and a local cluster) now
        if lines is not None:
            lines.close()
    _in_input_order(videos, inputs)
    _write_documents(videos, summary, classes, args)
    return videos


def _in_input_order(videos: list, inputs: list) -> None:
    """Documents list inputs in the order given, however concurrently they were decoded."""
    from mvrt.runtime.inputs import input_name

    order: dict[str, int] = {}
    for i, item in enumerate(inputs):
        order.setdefault(str(input_name(item)), i)
    videos.sort(key=lambda v: order.get(v.path, len(inputs)))


def _consume(events, videos: list, lines, progress: bool) -> None:
    """Follow the pipeline's events: progress, jsonl lines, and the finished videos (appended)."""
    from tqdm import tqdm

    from mvrt._cli_flags import error_line
    from mvrt.output_formats import jsonl_line
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
                    bar.write(error_line(event.exception or event.error), file=sys.stderr)
                if lines is not None:
                    lines.write_line(jsonl_line(event))


def _write_documents(videos, summary, classes, args, *, interrupted: bool = False) -> None:
    """table/json/csv: the whole document (complete videos only), to stdout or atomically to --output."""
    from mvrt import output_formats

    if args.format == "table":
        text = output_formats.render_table(videos, summary)
    elif args.format == "json":
        text = output_formats.render_json(videos, summary, interrupted=interrupted)
    elif args.format == "csv":
        text = output_formats.render_csv(videos, classes, trained_on=summary["trained_on"])
    else:
        return
    write_document(args.output, text)
