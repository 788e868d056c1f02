"""Library settings shown as the CLI's flags in error messages.

Library errors name the setting as the library spells it (`batch_size must be at least 1, got 0`)
and list it in `MvrtError.setting`; `mvrt` shows the flag of the command that ran instead
(`mvrt: error: --batch-size must be at least 1, got 0`). A command's flags come from its own
click parameters (a parameter named like the setting, and the `--no-x`/`--restart` side of a
boolean flag), plus `RENAMED` where the library's name and the flag's differ.

Only the settings an error names are replaced, and only where the message uses them as names: a
whole identifier (not part of a word, a path or a flag) that has an underscore (`window_seconds`),
opens the message (`method 'kl': choose ...`), or is given a value (`backend='onnxruntime'` ->
`--backend onnxruntime`; a boolean flag's `resume=False` -> `--restart`). So "needs a CUDA device
(device='cuda')" becomes "needs a CUDA device (--device cuda)": the first `device` is a word.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass

#: Library setting -> the flag it is given by, where the two names differ (any command that has the flag).
RENAMED: dict[str, str] = {
    "window_seconds": "--window",
    "hop_seconds": "--hop",
    "start_seconds": "--start",
    "duration_seconds": "--duration",
    "read_timeout_seconds": "--read-timeout",
    "input_options": "--input-option",
    "port": "--metrics-port",
    "onnx_path": "--onnx",
    "engine_path": "--engine",
    "cache_dir": "--cache",
    "data_root": "--data",
    "timeout_seconds": "--remote-timeout",
    "address": "--ray",
    "num_cpus": "--ray-cpus",
    "providers": "--device",  # onnxruntime's execution providers: `--device cpu|cuda|cuda:N|tensorrt`
}

_VALUE = r"""'[^']*'|"[^"]*"|[\w:+-]+(?:\.\w+)*"""  # a Python string literal, a word or a number


@dataclass(frozen=True)
class Flag:
    """One option of a command: its long form, the long form of its off side, whether it takes a value."""

    name: str
    off: str | None = None
    takes_value: bool = True

    def shown(self, value: str | None) -> str | None:
        """The flag for `setting` or `setting=value` (None: leave the text as it is)."""
        if value is None:
            return self.name
        if not self.takes_value:
            return {"True": self.name, "False": self.off}.get(value)
        if value[:1] in "'\"":
            value = str(ast.literal_eval(value))
        return f"{self.name} {shlex.quote(value)}"


def _long(opts) -> str | None:
    longs = [o for o in opts if o.startswith("--")]
    return max(longs, key=len) if longs else None


def command_flags(command) -> dict[str, Flag]:
    """setting -> Flag for a click command: its parameter names, off sides, then RENAMED."""
    flags: dict[str, Flag] = {}
    for param in getattr(command, "params", ()):
        if param.param_type_name != "option" or _long(param.opts) is None:
            continue
        is_flag = bool(getattr(param, "is_flag", False))
        off = _long(getattr(param, "secondary_opts", ()))
        flags[param.name] = Flag(_long(param.opts), off, not is_flag)
        if off is not None:
            flags.setdefault(off[2:].replace("-", "_"), Flag(off, None, False))
    own = {flag.name: flag for flag in flags.values()}
    for setting, name in RENAMED.items():
        if name in own and setting not in flags:
            flags[setting] = own[name]
    return flags


def settings_of(error: BaseException) -> tuple[str, ...]:
    """The settings an error names (`MvrtError.setting`: a name or a tuple of names)."""
    setting = getattr(error, "setting", None)
    if setting is None:
        return ()
    return (setting,) if isinstance(setting, str) else tuple(setting)


def with_flags(message: str, settings: tuple[str, ...], flags: dict[str, Flag]) -> str:
    """`message` with each of `settings` that `flags` knows shown as its flag, where used as a name."""
    known = sorted((s for s in settings if s in flags), key=len, reverse=True)
    if not known:
        return message
    names = "|".join(map(re.escape, known))
    pattern = re.compile(rf"(?<![\w\-./])(?P<name>{names})(?:=(?P<value>{_VALUE}))?(?![\w\-/]|\.\w)")

    def replace(match: re.Match) -> str:
        name, value = match.group("name"), match.group("value")
        if value is None and "_" not in name and match.start() != 0:
            return match.group(0)  # an ordinary word ("a CUDA device"), not the setting
        return flags[name].shown(value) or match.group(0)

    return pattern.sub(replace, message)


def command_name(root, argv: list[str]) -> str | None:
    """The command `argv` runs (the root has no options that take a value), or None."""
    word = next((w for w in argv if not w.startswith("-")), None)
    return word if word in getattr(root, "commands", {}) else None


def error_text(error: BaseException | str, command) -> str:
    """What the CLI prints for a library error raised while `command` (a click command, or None) ran."""
    message = str(error)
    if command is None or isinstance(error, str):
        return message
    return with_flags(message, settings_of(error), command_flags(command))


def running_command():
    """The click command running now (None outside one)."""
    import click

    ctx = click.get_current_context(silent=True)
    return ctx.command if ctx is not None else None


def error_line(error: BaseException | str) -> str:
    """`mvrt: error: ...` for an error met inside the running command (a per-input failure)."""
    return f"mvrt: error: {error_text(error, running_command())}"
