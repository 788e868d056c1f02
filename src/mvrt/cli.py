"""The `mvrt` command line. Only this module turns errors into exit codes."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys

from mvrt import __version__
from mvrt.errors import MvrtError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (service managers, containers), handled like Ctrl-C: flush what is complete, stop."""

DESCRIPTION = """\
mvrt: music-video emotion recognition at the edge.

Classify a music video into the six MVED emotions (Excited, Fear, Neutral, Relaxation,
Sad, Tension), window by window, with the paper's slow-fast audio-video network.

Typical use:
  mvrt infer video.mp4 --model model.onnx              # per-window table + whole-video label
  mvrt infer a.mp4 b.mkv --model m.onnx --format jsonl  # machine-readable, one line per event
  mvrt info model.onnx                                  # what a model was built from
  mvrt features video.mp4 --model m.onnx --start 30 --output feats.npz
  mvrt calibrate m.onnx --data MVED                     # INT8 Q/DQ model + accuracy report
"""


def build_parser() -> argparse.ArgumentParser:
    from mvrt import _cli_commands as commands
    from mvrt._cli_bench import add_bench
    from mvrt._cli_calibrate import add_calibrate
    from mvrt._cli_export import add_export
    from mvrt._cli_pretrain import add_pretrain
    from mvrt._cli_train import add_evaluate, add_train

    parser = argparse.ArgumentParser(
        prog="mvrt", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"mvrt {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_infer(sub)
    commands.add_features(sub)
    commands.add_info(sub)
    commands.add_init_model(sub)
    commands.add_standin(sub)
    add_bench(sub)
    add_export(sub)
    add_train(sub)
    add_evaluate(sub)
    add_pretrain(sub)
    add_calibrate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="mvrt: %(levelname)s: %(message)s", stream=sys.stderr)
    with _sigterm_as_interrupt():
        try:
            return int(args.handler(args))
        except MvrtError as exc:
            _quiet_broken_stdout()
            print(f"mvrt: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            detail = getattr(exc, "detail", "")
            print(f"mvrt: {'terminated (SIGTERM)' if terminated else 'interrupted'}{'; ' + detail if detail else ''}",
                  file=sys.stderr)
            return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into `Terminated` while a command runs (main thread only)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_broken_stdout() -> None:
    """After stdout broke (a closed pipe), keep Python's exit-time flush from printing a traceback."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
