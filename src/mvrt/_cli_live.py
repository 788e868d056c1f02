"""`mvrt infer` options for live sources: input format and options, live windows, limits, metrics."""

import sys
from typing import Annotated, Optional

import typer

from mvrt._cli_types import PORT, POSITIVE_FLOAT, POSITIVE_INT

SOURCES_PANEL = "Sources and live windows"

LIVE_EXAMPLES = """\
Live sources: stdin, pipes, URLs, devices (windows as they complete, jsonl):
  # stdin
  cat clip.ts | mvrt infer -
  # ten windows of a UDP stream
  mvrt infer udp://127.0.0.1:5000 --max-windows 10
  # a camera, for days: reconnects, Prometheus metrics
  mvrt infer rtsp://127.0.0.1:8554/cam --input-option rtsp_transport=tcp \\
      --reconnect --metrics-port 9100 -o readings.jsonl
  # a capture device, a 30 s window every 10 s
  mvrt infer /dev/video0 --input-format v4l2 --hop 10
  # three files decoded concurrently
  mvrt infer a.ts b.ts c.ts --jobs 3
"""

InputFormat = Annotated[Optional[str], typer.Option(
    "--input-format", metavar="FMT", rich_help_panel=SOURCES_PANEL, show_default="probed",
    help="FFmpeg input format, as ffmpeg's -f (e.g. mpegts, alsa, v4l2 where built in)")]
InputOption = Annotated[Optional[list[str]], typer.Option(
    "--input-option", metavar="KEY=VALUE", rich_help_panel=SOURCES_PANEL, show_default="none",
    help="FFmpeg input option, as ffmpeg's -KEY VALUE; repeatable (e.g. rtsp_transport=tcp, rtsp_flags=listen)")]
Live = Annotated[bool, typer.Option(
    "--live", rich_help_panel=SOURCES_PANEL, show_default="only stdin, pipes, URLs and devices",
    help="cut live windows (W every hop from time 0, each emitted once complete) even for a file")]
MaxWindows = Annotated[Optional[int], typer.Option(
    "--max-windows", click_type=POSITIVE_INT, metavar="N", rich_help_panel=SOURCES_PANEL, show_default="no limit",
    help="stop each input after N windows (exit 0)")]
Duration = Annotated[Optional[float], typer.Option(
    "--duration", click_type=POSITIVE_FLOAT, metavar="SECONDS", rich_help_panel=SOURCES_PANEL,
    show_default="all of it", help="read only the first SECONDS of media of each input (exit 0), as ffmpeg's -t")]
Reconnect = Annotated[bool, typer.Option(
    "--reconnect", rich_help_panel=SOURCES_PANEL, show_default=False,
    help="reopen a network source after it ends or fails, backing off 0.5 s, 1 s, ... up to 30 s")]
Jobs = Annotated[int, typer.Option(
    "--jobs", click_type=POSITIVE_INT, metavar="N", rich_help_panel=SOURCES_PANEL,
    help="files decoded at the same time (live sources always each get a decoder)")]
MetricsPort = Annotated[Optional[int], typer.Option(
    "--metrics-port", click_type=PORT, metavar="PORT", rich_help_panel=SOURCES_PANEL, show_default="off",
    help="serve Prometheus metrics on 127.0.0.1:PORT (needs mvrt\\[metrics])")]


def source_options(args):
    """The SourceOptions of the parsed flags (each flag one field)."""
    from mvrt.runtime.sources import SourceOptions, parse_input_option

    options = tuple(parse_input_option(text) for text in args.input_option or ())
    return SourceOptions(input_format=args.input_format, input_options=options, live=args.live,
                         reconnect=args.reconnect, max_windows=args.max_windows, duration_seconds=args.duration)


def any_live(paths, options) -> bool:
    from mvrt.runtime.inputs import MediaPair
    from mvrt.runtime.sources import is_live_path

    return any(is_live_path(p, options) for p in paths if not isinstance(p, MediaPair))


def start_metrics(args):
    """(Metrics, server) for --metrics-port, or (None, None)."""
    if args.metrics_port is None:
        return None, None
    from mvrt.runtime.live_metrics import Metrics

    metrics = Metrics()
    server = metrics.serve(args.metrics_port)
    print(f"mvrt: serving metrics on {server.url}", file=sys.stderr)
    return metrics, server


def describe_source_event(event) -> Optional[str]:
    """A one-line stderr note for the source events an operator should see (None for the others)."""
    detail = event.detail
    if event.state == "reconnecting":
        return f"mvrt: {event.path}: reconnecting in {detail['delay_seconds']:g} s ({detail['reason']})"
    if event.state == "lost":
        from mvrt._cli_flags import error_text, running_command

        error = event.exception if event.exception is not None else detail.get("error", "unknown error")
        return f"mvrt: {event.path}: source lost: {error_text(error, running_command())}"
    return None
