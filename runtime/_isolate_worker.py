"""The decode worker of `isolate=True`: run as `python -m mvrt.runtime._isolate_worker`.

It reads one JSON request per input (a path, with "audio" set for a pair of files) on stdin and answers on stdout with the input's events
(`_wire` framing): started, one header and raw arrays per window (each input's array as the
model's contract gives it: float32, or uint8 `video`), done (with the error's class and message
if the input failed). It exits when stdin closes. Anything a library prints goes
to stderr, never into the protocol.
"""

from __future__ import annotations

import logging
import os
import signal
import sys


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (C libraries included) land on stderr
    sys.stdout = sys.stderr
    logging.basicConfig(format="mvrt: %(levelname)s: %(message)s", stream=sys.stderr)

    from mvrt.runtime._wire import FrameReader, WireError

    requests = FrameReader(0, None)
    while True:
        try:
            request = requests.json()
        except WireError:
            return 0  # the parent closed our input (or went away)
        _serve(request, out)


def _serve(request: dict, out) -> None:
    from mvrt.config import ModelConfig
    from mvrt.runtime._wire import send_array, send_json
    from mvrt.runtime.events import FileDone, FileStarted, WindowItem
    from mvrt.runtime.inputs import MediaPair
    from mvrt.runtime.pipeline import LocalSource, PipelineConfig, guarded_events

    logging.getLogger().setLevel(int(request.get("log_level", logging.WARNING)))
    path = str(request["path"])
    audio = request.get("audio")
    item = MediaPair(str(audio), path) if audio is not None else path
    model = ModelConfig.from_dict(request["model"])
    config = PipelineConfig(hop_seconds=request["hop_seconds"], frontend=request["frontend"],
                            read_timeout_seconds=request["read_timeout_seconds"], decode=request.get("decode", "auto"))
    for event in guarded_events(LocalSource(model, config).file_events(item), item):
        if isinstance(event, FileStarted):
            send_json(out, {"event": "started", "windows": event.windows})
        elif isinstance(event, WindowItem):
            w = event.window
            send_json(out, {"event": "window", "index": w.index, "start_seconds": w.start_seconds,
                            "window_seconds": w.window_seconds, "span_seconds": w.span_seconds,
                            # time.monotonic() is one clock for every process of the machine
                            "ready_monotonic": event.ready_monotonic, "gap_seconds": event.gap_seconds})
            for name in model.input_names:
                send_array(out, event.feeds[name])
        elif isinstance(event, FileDone):
            error = event.error
            send_json(out, {"event": "done", "undecodable_packets": event.undecodable_packets,
                            "error": None if error is None else str(error),
                            "error_class": None if error is None else type(error).__name__,
                            "setting": getattr(error, "setting", None)})


if __name__ == "__main__":
    sys.exit(main())
