"""The `mvrt` command line. Only this module turns errors into exit codes.

The commands are a typer application (`mvrt._cli_app`); `main` runs it without typer's
standalone handling, so that every error is one line on stderr (`mvrt: error: ...`, the settings
a library error names shown as the command's flags) with the contract's exit code: 0 ok, 1 an
input failed (any `MvrtError`), 2 bad usage (click's usage errors and `UsageError`), 130 Ctrl-C,
143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys

from mvrt.errors import MvrtError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
PROG = "mvrt"


class Terminated(KeyboardInterrupt):
    """SIGTERM (service managers, containers), handled like Ctrl-C: flush what is complete, stop."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` (default: sys.argv[1:]) and return the exit code; never raises SystemExit."""
    import click

    from mvrt._cli_app import Interrupted, build_command

    command = build_command()
    with _sigterm_as_interrupt():
        try:
            result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
        except Interrupted as exc:
            return _stopped(exc.original)
        except KeyboardInterrupt as exc:  # outside a command body
            return _stopped(exc)
        except MvrtError as exc:
            _quiet_broken_stdout()
            print(f"mvrt: error: {shown_error(exc, command, argv)}", file=sys.stderr)
            return exc.exit_code
        except click.ClickException as exc:
            print(usage_line(exc, argv), file=sys.stderr)
            return exc.exit_code
        except click.Abort:
            return _stopped(KeyboardInterrupt())
        except SystemExit as exc:  # shell completion answers and exits
            return exc.code if isinstance(exc.code, int) else EXIT_FAILED if exc.code else EXIT_OK
    return result if isinstance(result, int) else EXIT_OK


def shown_error(exc: MvrtError, root, argv: list[str] | None) -> str:
    """The error's message with the settings it names shown as the flags of the command that ran
    (`batch_size must be ...` -> `--batch-size must be ...`; see `mvrt._cli_flags`)."""
    from mvrt._cli_flags import command_name, error_text

    name = command_name(root, sys.argv[1:] if argv is None else argv)
    return error_text(exc, root.commands[name] if name is not None else None)


def usage_line(exc, argv: list[str] | None = None) -> str:
    """One line for a click usage error: what is wrong, the flag named, where the help is.

    Built from the exception's fields where click has them (their wording differs between click
    versions), else from its message.
    """
    import click

    possibilities: list[str] = list(getattr(exc, "possibilities", None) or [])
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        kind = exc.param_type or exc.param.param_type_name
        text = f"missing {kind} {_param_name(exc.param)}"
    elif isinstance(exc, click.BadParameter) and exc.param is not None:
        text = f"invalid value for {_param_name(exc.param)}: {exc.message.rstrip('.')}"
    elif isinstance(exc, click.NoSuchOption):
        text = f"no such option {exc.option_name}"
    else:
        text = " ".join(exc.format_message().split()).split(" Did you mean")[0]
        text = re.sub(r"'(-{1,2}[\w-]+)'", r"\1", text).rstrip(".")  # '--model' -> --model
        text = text[:1].lower() + text[1:]
        unknown = re.fullmatch(r"no such command '(.+)'", text)
        if unknown:
            possibilities = _close_commands(unknown.group(1))
    if possibilities:
        *others, last = list(dict.fromkeys(possibilities))[:3]
        text += f" (did you mean {', '.join(others) + ' or ' if others else ''}{last}?)"
    return f"mvrt: error: {text}; see `{_command_path(exc, argv)} --help`"


def _param_name(param) -> str:
    """--long-name of an option, 'METAVAR' of an argument."""
    if param.param_type_name == "option":
        return next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return f"'{param.metavar or param.name.upper()}'"


def _close_commands(word: str) -> list[str]:
    import difflib

    from mvrt._cli_app import build_command

    return difflib.get_close_matches(word, list(build_command().commands), n=3, cutoff=0.6)


def _command_path(exc, argv: list[str] | None) -> str:
    """`mvrt COMMAND` of the command whose options were wrong, else `mvrt`."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command_path:
        return ctx.command_path
    from mvrt._cli_app import build_command

    commands = build_command().commands
    words = sys.argv[1:] if argv is None else argv
    command = next((word for word in words if not word.startswith("-")), None)
    return f"{PROG} {command}" if command in commands else PROG


def _stopped(exc: KeyboardInterrupt) -> int:
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
