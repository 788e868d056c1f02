"""The `mvrt` typer application: the root options and every command, each with help by example.

Command bodies import what they need (numpy, av, onnxruntime, torch, matplotlib) when they
run, so that building the application, `mvrt --help` and shell completion stay fast.
"""

import functools
import sys
from typing import Annotated

import typer

from mvrt import __version__

DESCRIPTION = """mvrt: music-video emotion recognition at the edge.

Classify a music video into the six MVED emotions (Excited, Fear, Neutral, Relaxation, Sad,
Tension), window by window, with the paper's slow-fast audio-video network.

Typical use:
  mvrt infer video.mp4                       # per-window table + video label
  mvrt infer a.mp4 b.mkv --format jsonl      # one JSON line per event
  mvrt info model.onnx                       # what a model was built from
  mvrt features video.mp4 --start 30 -o f.npz    # one window's tensors
  mvrt calibrate m.onnx --data MVED          # INT8 model + accuracy report
  mvrt COMMAND --help                        # each command, by example

Exit status: 0 ok, 1 an input failed, 2 bad usage, 130 Ctrl-C, 143 SIGTERM.
"""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM inside a command, carried past typer (which would turn it into an exit code)."""

    def __init__(self, original: KeyboardInterrupt):
        super().__init__(str(original))
        self.original = original


def _guarded(command):
    """`command` with Ctrl-C / SIGTERM re-raised as `Interrupted` (the signature stays typer's to read)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise Interrupted(exc) from None

    return run


def help_text(text: str) -> str:
    """A command's help as typer's rich mode shows it well: prose paragraphs on one line each (rich
    wraps them to the terminal), blocks with indented lines (examples) kept line by line."""
    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        lines = paragraph.splitlines()
        if any(line.startswith("  ") for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _show_version(value: bool) -> None:
    if value:
        print(f"mvrt {__version__}")
        raise typer.Exit()


def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, metavar="",
                                         help="log more (-v: info, -vv: debug)")] = 0,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version, show_default=False,
                                          help="print the version and exit")] = False,
) -> None:
    import logging

    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="mvrt: %(levelname)s: %(message)s", stream=sys.stderr)


def _commands() -> list:
    """(name, function, help) of every command, in the order `mvrt --help` lists them."""
    from mvrt import _cli_bench as bench
    from mvrt import _cli_calibrate as calibrate
    from mvrt import _cli_export as export
    from mvrt import _cli_features as features
    from mvrt import _cli_infer as infer
    from mvrt import _cli_model as model
    from mvrt import _cli_pretrain as pretrain
    from mvrt import _cli_train as train

    return [
        ("infer", infer.infer, infer.INFER_HELP),
        ("features", features.features, features.FEATURES_HELP),
        ("info", model.info, model.INFO_HELP),
        ("init-model", model.init_model, model.INIT_MODEL_HELP),
        ("standin", model.standin, model.STANDIN_HELP),
        ("bench", bench.bench, bench.BENCH_HELP),
        ("export", export.export, export.EXPORT_HELP),
        ("train", train.train, train.TRAIN_HELP),
        ("evaluate", train.evaluate, train.EVALUATE_HELP),
        ("pretrain", pretrain.pretrain, pretrain.PRETRAIN_HELP),
        ("calibrate", calibrate.calibrate, calibrate.CALIBRATE_HELP),
    ]


@functools.lru_cache(maxsize=1)
def build_app() -> typer.Typer:
    """The application (built once per process)."""
    app = typer.Typer(
        name="mvrt", help=help_text(DESCRIPTION), add_completion=True, pretty_exceptions_enable=False,
        rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name, function, text in _commands():
        app.command(name, help=help_text(text))(_guarded(function))
    return app


def build_command():
    """The click command behind the application (what `mvrt.cli.main` runs)."""
    return typer.main.get_command(build_app())
