"""The CLI teaches by example, completes in the shell, starts fast, and keeps usage errors to one line."""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys

import pytest

from mvrt import __version__
from mvrt._cli_app import _commands, build_command, help_text
from mvrt.cli import main

COMMANDS = ("infer", "features", "info", "init-model", "standin", "bench", "export", "train", "evaluate", "pretrain",
            "calibrate")
HEAVY = ("numpy", "av", "onnxruntime", "torch", "matplotlib", "soundfile", "tqdm", "safetensors")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _example_commands(text: str) -> list[list[str]]:
    """The `mvrt ...` command lines of a help text's indented blocks, as argument lists (comments dropped)."""
    lines, joined = [], ""
    for line in help_text(text).splitlines():
        if not line.startswith("  ") or line.strip().startswith("#"):
            continue
        joined += line.strip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        lines.append(joined)
        joined = ""
    commands = []
    for line in lines:
        line = line.split("  #")[0].split(" > ")[0]
        line = line.split("| ")[-1]  # cat clip.ts | mvrt infer -
        if line.startswith("mvrt "):
            commands.append(shlex.split(line)[1:])
    return commands


def test_every_command_is_listed_and_the_top_help_shows_typical_use(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "Typical use:" in out and "mvrt COMMAND --help" in out
    for name in COMMANDS:
        assert f" {name} " in out, name
    assert [name for name, _, _ in _commands()] == list(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_teaches_by_example(capsys, name):
    code, out, err = run(capsys, name, "--help")
    assert code == 0 and err == ""
    assert "Examples:" in out and "Exit status:" in out
    text = dict((n, t) for n, _, t in _commands())[name]
    examples = _example_commands(text)
    assert 2 <= len([e for e in examples if e[0] == name]) <= 12, examples
    for line in help_text(text).splitlines():
        assert len(line) <= 78 or not line.startswith("  "), f"example wider than an 80-column terminal: {line}"
    comments = [line for line in help_text(text).splitlines() if line.strip().startswith("#")]
    assert len(comments) >= 2  # each example says what it does


@pytest.mark.parametrize("name", COMMANDS)
def test_every_example_parses(name):
    """Each example names options that exist, with values of the right type (no command runs)."""
    text = dict((n, t) for n, _, t in _commands())[name]
    commands = build_command().commands
    for argv in _example_commands(text):
        command = commands[argv[0]]
        command.make_context(argv[0], argv[1:]).close()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_shows_its_default(name):
    command = build_command().commands[name]
    for param in command.params:
        if param.name == "help":
            continue
        assert param.help, f"{name} {param.opts}: no help"
        if param.param_type_name == "option" and not param.required:
            flag_off = param.is_flag and param.default in (False, None)
            shown = isinstance(param.show_default, str) or param.show_default and param.default is not None
            assert shown or flag_off, f"{name} {param.opts}: default {param.default!r} not shown"


def test_help_keeps_the_extras_in_brackets(capsys):
    _, out, _ = run(capsys, "infer", "--help")
    assert "mvrt[plot]" in out and "mvrt[metrics]" in out and "Sources and live windows" in out
    _, out, _ = run(capsys, "export", "--help")
    assert "TensorRT engine (needs pip install 'mvrt[tensorrt]' and a GPU)" in out


def test_version_and_no_system_exit(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"mvrt {__version__}\n"


@pytest.mark.parametrize("argv, line", [
    ([], "mvrt: error: missing command; see `mvrt --help`"),
    (["inferr"], "mvrt: error: no such command 'inferr' (did you mean infer or info?); see `mvrt --help`"),
    (["infer", "clip.mp4", "--formt", "json"],
     "mvrt: error: no such option --formt (did you mean --format, --input-format or --plot?); "
     "see `mvrt infer --help`"),
    (["infer", "clip.mp4", "--format", "xml"], "mvrt: error: invalid value for --format: 'xml' is not one of "
     "'table', 'json', 'csv', 'jsonl'; see `mvrt infer --help`"),
    (["infer", "clip.mp4", "--batch-size", "0"],
     "mvrt: error: invalid value for --batch-size: must be at least 1, got 0; see `mvrt infer --help`"),
    (["infer", "clip.mp4", "--read-timeout", "-1"], "mvrt: error: invalid value for --read-timeout: must be 0 "
     "(no timeout) or a positive number of seconds, got -1; see `mvrt infer --help`"),
    (["infer", "clip.mp4", "--model"], "mvrt: error: option --model requires an argument; see `mvrt infer --help`"),
    (["info"], "mvrt: error: missing argument 'FILE'; see `mvrt info --help`"),
    (["calibrate", "m.onnx"], "mvrt: error: missing option --data; see `mvrt calibrate --help`"),
    (["infer", "--video", "v.mp4"], "mvrt: error: --video needs --audio: give the sound and the picture files "
     "together (--audio FILE --video FILE)"),
    (["infer"], "mvrt: error: no input: give VIDEO... (files, folders, URLs, -) or --audio FILE --video FILE; "
     "see `mvrt infer --help`"),
    (["standin", "d", "--splits", "train,,test"], "mvrt: error: --splits 'train,,test': empty item in a "
     "comma-separated list"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, line):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", line + "\n")


def _complete(words: str, cword: int) -> list[str]:
    """Ask the installed `mvrt` for bash completions, as the script from --show-completion bash does."""
    env = {**os.environ, "_MVRT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    done = subprocess.run([sys.executable, "-m", "mvrt.cli"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_show_completion_prints_a_bash_script():
    done = subprocess.run([sys.executable, "-m", "mvrt.cli", "--show-completion", "bash"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "_MVRT_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _mvrt_completion mvrt" in done.stdout


def test_completion_completes_commands_options_and_choices():
    assert _complete("mvrt inf", 1) == ["infer", "info"]
    assert _complete("mvrt infer --backend o", 3) == ["onnxruntime"]
    assert _complete("mvrt calibrate m.onnx --sensitivity f", 4) == ["fast", "full"]
    assert "--audio-out" in _complete("mvrt features clip.mp4 --audio", 3)


def test_install_completion_writes_the_script_for_bash(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    done = subprocess.run([sys.executable, "-m", "mvrt.cli", "--install-completion", "bash"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    scripts = list(tmp_path.rglob("mvrt.sh"))
    assert scripts and "_mvrt_completion" in scripts[0].read_text()
    assert str(scripts[0]) in (tmp_path / ".bashrc").read_text()


def test_help_imports_nothing_heavy():
    code = ("import sys, contextlib, io\nfrom mvrt.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['infer', '--help']) == 0\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_starts_in_under_0_3_seconds_of_cpu():
    """`mvrt --help` in a fresh interpreter; CPU time (not wall time, which a loaded machine inflates), best of 5."""
    seconds = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "mvrt.cli", "--help"], capture_output=True, check=True, timeout=60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    assert min(seconds) < 0.3, seconds
