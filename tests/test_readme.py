"""The README stays true: every `mvrt ...` command it shows parses with today's CLI (options,
values, choices), the documents it points to exist, and its set-up command installs what the
CLI needs. (The API snippet runs as written in tests/test_api.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from mvrt._cli_app import build_command

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _shell_blocks(text: str) -> list[str]:
    """The contents of the ```bash fences, and of bare ``` fences that show a shell session."""
    blocks, current, language = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                body = "\n".join(current) + "\n"
                if language in ("bash", "sh") or (not language and body.startswith("$ ")):
                    blocks.append(body)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _mvrt_commands(text: str) -> list[str]:
    """Every `mvrt SUBCOMMAND ...` run in the README's shell blocks (continuations joined)."""
    commands = []
    for block in _shell_blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"&&|\|", line):
                part = part.split("#", 1)[0].strip().rstrip("&").strip()
                if part.startswith("mvrt "):
                    commands.append(part)
    return commands


def _inline_commands(text: str) -> list[str]:
    """`mvrt ...` in inline code (prose), when it is a whole command rather than a synopsis."""
    spans = re.findall(r"`(mvrt [^`\n]+)`", re.sub(r"\n\s*", " ", text))
    return [s for s in spans if not re.search(r"[\[|<]|\.\.\.|\$\(", s)]


INLINE = set(_inline_commands(README)) - set(_mvrt_commands(README))
COMMANDS = sorted(set(_mvrt_commands(README)) | INLINE)


def test_the_readme_shows_commands_of_every_kind():
    names = {shlex.split(c)[1] for c in COMMANDS}
    assert {"infer", "standin", "export", "calibrate", "train", "evaluate", "bench"} <= names, names


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command, monkeypatch):
    if "-completion" in command:
        return  # --install-completion would write to the shell's start-up files (tests/test_cli_help.py runs it)
    words = [w for w in shlex.split(command.replace('"$DEMO"', "demo.safetensors"))][1:]
    group = build_command()
    try:
        with group.make_context("mvrt", list(words), resilient_parsing=False) as ctx:
            name, sub, rest = group.resolve_command(ctx, list(words[:1]) + ctx.args)
            sub.make_context(name, rest, parent=ctx)
    except click.exceptions.Exit:
        pass  # --help, --show-completion: an eager option that answers and exits
    except click.MissingParameter:
        assert command in INLINE, command  # prose may name a command without its arguments
    except click.UsageError as exc:
        pytest.fail(f"README command `{command}` does not parse: {exc.format_message()}")


def test_the_documents_the_readme_names_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).is_file(), target
    assert (ROOT / "docs" / "DESIGN.md").is_file()
    for path in re.findall(r"`((?:bench|tests|tools|docs)/[\w./-]+\.(?:py|md))`", README):
        assert (ROOT / path).is_file(), path


def test_the_setup_command_installs_the_cli_and_the_tests_needs():
    setup = next(b for b in _shell_blocks(README) if "pip install" in b)
    assert "'.[torch,dev]'" in setup
    pyproject = (ROOT / "pyproject.toml").read_text()
    core = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    for package in ("typer", "click", "rich", "soundfile"):
        assert f'"{package}' in core, package
