"""Results files are never torn or lost, stdout/stderr stay clean, and signals flush what is complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mvrt.cli import main

pytest.importorskip("torch")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _cli(*argv, **popen):
    """`python -m mvrt.cli ARGV` in a subprocess (own signals, own resource limits)."""
    return subprocess.Popen([sys.executable, "-m", "mvrt.cli", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _jsonl(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "jsonl must end on a line boundary"
    return [json.loads(line) for line in text.splitlines()]


def _read_available(stream) -> str:
    """What a pipe holds right now, without blocking."""
    import select

    data = b""
    while select.select([stream], [], [], 0.05)[0]:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def test_progress_only_on_a_terminal_unless_forced(capsys, tiny_models, clip_10s):
    model = tiny_models["slowfast"].onnx
    code, _, err = run(capsys, "infer", clip_10s, "--model", model, "--format", "json")
    assert code == 0 and "window" not in err  # stderr is not a terminal here: no bar redraws
    code, _, err = run(capsys, "infer", clip_10s, "--model", model, "--format", "json", "--progress")
    assert code == 0 and "mvrt infer" in err
    code, _, err = run(capsys, "infer", clip_10s, "--model", model, "--quiet", "--progress")
    assert code == 2 and "--quiet conflicts with --progress" in err


@pytest.mark.parametrize("flag", ["--plot", "--output"])
def test_an_output_into_a_missing_folder_fails_before_any_work(capsys, tiny_models, clip_10s, tmp_path, flag):
    target = tmp_path / "missing" / "out.png"
    code, out, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, flag, target)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and f"{flag} {target}" in err and "does not exist" in err


def test_the_plot_is_written_whole(capsys, tiny_models, clip_10s, tmp_path):
    target = tmp_path / "timeline.png"
    code, _, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--plot", target)
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]  # no temporary file left beside it


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_a_full_disk_is_one_line_and_exit_1(capsys, tiny_models, clip_10s, fmt):
    code, out, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--format", fmt,
                         "--output", "/dev/full")
    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line == "mvrt: error: /dev/full: cannot write output (No space left on device)" + (
        "; it ends after the last complete line" if fmt == "jsonl" else "")


_LIMITED = """\
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from mvrt.cli import main
sys.exit(main({argv!r}))
"""


def _run_with_file_limit(limit: int, argv: list) -> subprocess.CompletedProcess:
    code = textwrap.dedent(_LIMITED).format(limit=limit, argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_jsonl_cut_short_by_a_full_disk_ends_on_a_line_boundary(tiny_models, clip_40s, tmp_path):
    target = tmp_path / "out.jsonl"
    done = _run_with_file_limit(3000, ["infer", clip_40s, "--model", tiny_models["slowfast"].onnx,
                                       "--format", "jsonl", "--output", target])
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "cannot write output (File too large)" in done.stderr
    events = _jsonl(target)  # every line complete, nothing after the last newline
    assert events[0]["type"] == "model" and any(e["type"] == "window" for e in events)
    assert target.stat().st_size <= 3000


def test_a_failed_table_write_keeps_the_previous_results(tiny_models, clip_40s, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("previous results\n")
    done = _run_with_file_limit(1000, ["infer", clip_40s, "--model", tiny_models["slowfast"].onnx,
                                       "--output", target])
    assert done.returncode == 1
    assert "cannot write output (File too large); the previous file is kept" in done.stderr
    assert target.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.txt"]


def test_a_killed_run_keeps_the_previous_results(tiny_models, clip_40s, tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"previous": true}\n')
    proc = _cli("infer", clip_40s, clip_40s, "--model", tiny_models["slowfast"].onnx, "--format", "json",
                "--output", target, "--progress")
    try:
        _wait_for(lambda: "mvrt infer" in _read_available(proc.stderr), 120, "the progress bar (inference started)")
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
        proc.stdout.close()
    assert target.read_text() == '{"previous": true}\n'


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_flushes_complete_window_lines_and_exits(tiny_models, clip_40s, tmp_path, sig, code, word):
    target = tmp_path / "out.jsonl"
    proc = _cli("infer", clip_40s, clip_40s, "--model", tiny_models["slowfast"].onnx, "--format", "jsonl",
                "--output", target, "--batch-size", "1")
    try:
        _wait_for(lambda: target.exists() and target.read_text().count('"type": "window"') >= 2, 120,
                  "two window lines on disk")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    (line,) = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"mvrt: {word}") and "complete result(s) kept" in line
    events = _jsonl(target)
    windows = [e for e in events if e["type"] == "window"]
    assert len(windows) >= 2 and [w["window"] for w in windows[:2]] == [0, 1]


def test_sigterm_writes_the_complete_videos_of_a_json_document(tiny_models, clip_10s, tmp_path):
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    target = tmp_path / "out.json"
    proc = _cli("infer", clip_10s, fifo, "--model", tiny_models["slowfast"].onnx, "--format", "json",
                "--output", target, "--read-timeout", "60")
    writer = None

    def fifo_opened() -> bool:  # mvrt's decoder has reached the second input
        nonlocal writer
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    try:
        _wait_for(fifo_opened, 120, "mvrt to open the FIFO")
        time.sleep(5)  # the decoder runs ahead: let inference finish the first input's last windows
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        if writer is not None:
            os.close(writer)
    assert proc.returncode == 143, err
    doc = json.loads(target.read_text())
    assert doc["interrupted"] is True
    assert [v["path"] for v in doc["videos"]] == [str(clip_10s)] and doc["videos"][0]["ok"]
