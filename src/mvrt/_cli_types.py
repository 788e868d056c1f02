"""Value types of the CLI's options (click parameter types) and the parsing of list options.

Each type refuses a bad value with a short reason that names the bound ("must be at least 1,
got 0"); the CLI prints it on one line with the option's name. Lists (`--batch-size 1,8`,
`--splits validation,test`) are given comma-separated, or by repeating the option.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Callable

import click

from mvrt.errors import UsageError


class Args:
    """A command's parsed options as attributes (what the helpers shared by commands read).

    Built from the command's `locals()`; the options `with_options` added arrive in its
    `**shared` parameter and are spread like the others.
    """

    def __init__(self, values: dict):
        values = dict(values)
        self.__dict__.update(values.pop("shared", {}))
        self.__dict__.update(values)


def with_options(*groups: Callable) -> Callable:
    """Give a command the options declared once by each group (a function whose parameters are
    typer options), after its own; the command takes them as `**shared`.

    Typer reads the combined signature, so help, completion and parsing see ordinary options.
    """
    extra = [p for group in groups for p in inspect.signature(group, eval_str=True).parameters.values()]

    def wrap(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD] + extra

        @functools.wraps(command)
        def run(**values):
            return command(**values)

        run.__signature__ = own.replace(parameters=params)
        run.__annotations__ = {**{p.name: p.annotation for p in params}, "return": own.return_annotation}
        return run

    return wrap


class _Number(click.ParamType):
    """A number with a lower bound; `open_low` excludes the bound itself."""

    def __init__(self, cast, low: float, open_low: bool, name: str, too_small: str):
        self.cast, self.low, self.open_low, self.name, self.too_small = cast, low, open_low, name, too_small

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.cast(str(value).strip())
            except ValueError:
                kind = "an integer" if self.cast is int else "a number"
                self.fail(f"expected {kind}, got {value!r}", param, ctx)
        if isinstance(number, float) and not math.isfinite(number):
            self.fail(f"must be a finite number, got {value}", param, ctx)
        if number < self.low or (self.open_low and number == self.low):
            self.fail(f"{self.too_small}, got {value}", param, ctx)
        return number


POSITIVE_FLOAT = _Number(float, 0.0, True, "seconds", "must be positive")
POSITIVE_INT = _Number(int, 1, False, "N", "must be at least 1")
NON_NEGATIVE_INT = _Number(int, 0, False, "N", "must be 0 or more")


class _TimeoutSeconds(click.ParamType):
    """Seconds >= 0; 0 means no timeout (None)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float) and value > 0:
            return value
        try:
            seconds = float(str(value))
        except ValueError:
            self.fail(f"expected a number of seconds, got {value!r}", param, ctx)
        if not seconds >= 0 or seconds == math.inf:
            self.fail(f"must be 0 (no timeout) or a positive number of seconds, got {value}", param, ctx)
        return seconds or None


class _Port(click.ParamType):
    name = "port"

    def convert(self, value, param, ctx):
        try:
            port = int(str(value))
        except ValueError:
            self.fail(f"expected a port number, got {value!r}", param, ctx)
        if not 0 <= port <= 65535:
            self.fail(f"must be 0..65535, got {port}", param, ctx)
        return port


TIMEOUT_SECONDS = _TimeoutSeconds()
PORT = _Port()


def choice(*values: str) -> click.Choice:
    """A closed set of words; completion offers them."""
    return click.Choice(values)


def split_list(values: list[str] | None, flag: str) -> list[str]:
    """`--flag a,b --flag c` -> [a, b, c]; empty items are refused."""
    items: list[str] = []
    for value in values or []:
        parts = [part.strip() for part in value.split(",")]
        if any(not part for part in parts):
            raise UsageError(f"{flag} {value!r}: empty item in a comma-separated list")
        items.extend(parts)
    return items


def int_list(values: list[str] | None, flag: str, default: list[int]) -> list[int]:
    """Positive integers from `split_list`; `default` when the option was not given."""
    items = split_list(values, flag)
    if not items:
        return list(default)
    numbers = []
    for item in items:
        try:
            number = int(item)
        except ValueError:
            raise UsageError(f"{flag} {item!r}: expected a whole number") from None
        if number < 1:
            raise UsageError(f"{flag} {item}: must be at least 1")
        numbers.append(number)
    return numbers
