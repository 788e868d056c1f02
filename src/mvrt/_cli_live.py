"""`mvrt infer` options for live sources: input format and options, live windows, limits, metrics."""

from __future__ import annotations

import argparse
import sys

from mvrt._cli_engine import positive_float, positive_int

LIVE_EXAMPLES = """\
live sources (stdin, pipes, URLs, devices; windows emitted as they complete, jsonl by default):
  cat clip.ts | mvrt infer - --model m.onnx                          # stdin
  mvrt infer udp://127.0.0.1:5000 --model m.onnx --max-windows 10   # a UDP stream, 10 windows
  mvrt infer rtsp://127.0.0.1:8554/cam --input-option rtsp_transport=tcp --reconnect \\
      --metrics-port 9100 -o readings.jsonl                           # a camera, for days
  mvrt infer /dev/video0 --input-format v4l2 --hop 10 --duration 600 # a capture device
  mvrt infer a.ts b.ts c.ts --jobs 3                                 # files decoded concurrently
"""


def add_source_options(p) -> None:
    g = p.add_argument_group("sources and live windows")
    g.add_argument("--input-format", default=None, metavar="FMT",
                   help="FFmpeg input format, as ffmpeg's -f (e.g. mpegts, alsa, v4l2 where built in)")
    g.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg input option, as ffmpeg's -KEY VALUE; repeatable (e.g. rtsp_transport=tcp, "
                   "rtsp_flags=listen)")
    g.add_argument("--live", action="store_true",
                   help="cut live windows (W every hop from time 0, each emitted once complete) even for a file; "
                   "stdin, pipes, URLs and devices are always live")
    g.add_argument("--max-windows", type=positive_int, default=None, metavar="N",
                   help="stop each input after N windows (exit 0)")
    g.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                   help="read only the first SECONDS of media of each input (exit 0), as ffmpeg's -t")
    g.add_argument("--reconnect", action="store_true",
                   help="reopen a network source after it ends or fails, backing off 0.5 s, 1 s, ... up to 30 s")
    g.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="files decoded at the same time (default: 1; live sources always each get a decoder)")
    g.add_argument("--metrics-port", type=_port, default=None, metavar="PORT",
                   help="serve Prometheus metrics on 127.0.0.1:PORT (needs mvrt[metrics])")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def source_options(args):
    """The SourceOptions of the parsed flags (each flag one field)."""
    from mvrt.runtime.sources import SourceOptions, parse_input_option

    options = tuple(parse_input_option(text) for text in args.input_option)
    return SourceOptions(input_format=args.input_format, input_options=options, live=args.live,
                         reconnect=args.reconnect, max_windows=args.max_windows, duration_seconds=args.duration)


def any_live(paths, options) -> bool:
    from mvrt.runtime.sources import is_live_path

    return any(is_live_path(p, options) for p in paths)


def start_metrics(args):
    """(Metrics, server) for --metrics-port, or (None, None)."""
    if args.metrics_port is None:
        return None, None
    from mvrt.runtime.metrics import Metrics

    metrics = Metrics()
    server = metrics.serve(args.metrics_port)
    print(f"mvrt: serving metrics on {server.url}", file=sys.stderr)
    return metrics, server


def describe_source_event(event) -> str | None:
    """A one-line stderr note for the source events an operator should see (None for the others)."""
    detail = event.detail
    if event.state == "reconnecting":
        return f"mvrt: {event.path}: reconnecting in {detail['delay_seconds']:g} s ({detail['reason']})"
    if event.state == "lost":
        return f"mvrt: {event.path}: source lost: {detail.get('error', 'unknown error')}"
    return None
