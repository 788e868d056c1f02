"""Library errors name settings (`batch_size`), never CLI flags; `mvrt` shows each as its command's flag."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

from mvrt._cli_app import build_command
from mvrt._cli_flags import RENAMED, Flag, command_flags, with_flags
from mvrt.calibration.settings import CalibrationSettings
from mvrt.cli import main
from mvrt.errors import MissingDependencyError, UsageError
from mvrt.export.build_settings import TensorRTSettings, parse_batch
from mvrt.runtime.pipeline import PipelineConfig, check_window
from mvrt.runtime.sources import SourceOptions, parse_input_option

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [ROOT / "src" / "mvrt", ROOT / "runtime", ROOT / "export", ROOT / "calibration"]
# Library modules whose settings no flag gives (`--triton-repo` writes with the defaults).
API_ONLY = {"export/triton_repo.py", "export/triton_model.py"}
# Modules that pass on a setting named elsewhere (an error's class, the isolation worker's wire, a Ray task's result).
PASS_THROUGH = {"errors.py", "runtime/isolate.py", "_ray_tasks.py"}
# Settings of the Python API that no command has, by design.
API_SETTINGS = {"label",  # mvrt.standin.write_standin_clip's class (`mvrt standin` makes every class)
                "max_batch",  # KServeEngine's largest batch (sizes its gRPC messages; the CLI passes batch_size)
                "stall_timeout_seconds", "max_inputs_in_flight",  # run_on_ray's bounds (the CLI keeps the defaults)
                "device_id"}  # OnnxRuntimeEngine's GPU index (the CLI names it in --device cuda:N)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _library_files() -> list[Path]:
    """Every library module once (src/mvrt/runtime links to runtime/), the CLI's own modules left out."""
    files = {path.resolve() for folder in LIBRARY for path in folder.rglob("*.py")}
    cli = ROOT / "src" / "mvrt"
    api_only = {(ROOT / name).resolve() for name in API_ONLY}
    return sorted(p for p in files - api_only
                  if not (p.parent == cli and (p.name == "cli.py" or p.name.startswith("_cli"))))


def _names(node: ast.expr, bound: dict[str, set[str]]) -> set[str] | None:
    """The setting names of a `setting=` value made of constants, or of a loop variable over
    constants (`for name in ("samples", ...)`); None for anything else."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, str)):
        return {node.value} - {None}
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Tuple):
        parts = [_names(e, bound) for e in node.elts]
        return None if None in parts else set().union(*parts)
    if isinstance(node, ast.IfExp):
        body, orelse = _names(node.body, bound), _names(node.orelse, bound)
        return None if body is None or orelse is None else body | orelse
    return None


def _loop_bindings(loop: ast.For) -> dict[str, set[str]]:
    """Names a `for` over a literal sequence binds to string constants: `for name, low in (("a", 1), ...)`."""
    if not isinstance(loop.iter, (ast.Tuple, ast.List)):
        return {}
    targets = loop.target.elts if isinstance(loop.target, ast.Tuple) else [loop.target]
    bound: dict[str, set[str]] = {}
    for i, target in enumerate(targets):
        items = [e.elts[i] if isinstance(loop.target, ast.Tuple) and isinstance(e, ast.Tuple) else e
                 for e in loop.iter.elts]
        if isinstance(target, ast.Name) and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in items):
            bound[target.id] = {v.value for v in items}
    return bound


def _setting_values(tree: ast.AST, bound: dict[str, set[str]]):
    """(value node, names bound around it) of every `setting=` keyword under `tree`."""
    for child in ast.iter_child_nodes(tree):
        inner = {**bound, **_loop_bindings(child)} if isinstance(child, ast.For) else bound
        if isinstance(child, ast.Call):
            yield from ((k.value, inner) for k in child.keywords if k.arg == "setting")
        yield from _setting_values(child, inner)


def _settings_in_library() -> tuple[dict[str, set[str]], set[str]]:
    """setting -> files naming it, and the files with a `setting=` the scan cannot read."""
    named: dict[str, set[str]] = {}
    unread: set[str] = set()
    for path in _library_files():
        where = path.relative_to(ROOT).as_posix().removeprefix("src/mvrt/")
        for value, bound in _setting_values(ast.parse(path.read_text(), str(path)), {}):
            names = _names(value, bound)
            if names is None and where not in PASS_THROUGH:
                unread.add(where)
            for name in names or ():
                named.setdefault(name, set()).add(where)
    return named, unread


def _all_flags() -> dict[str, dict[str, Flag]]:
    return {name: command_flags(command) for name, command in build_command().commands.items()}


def test_every_setting_the_library_names_is_a_flag_of_some_command():
    named, unread = _settings_in_library()
    flags = _all_flags()
    assert {"batch_size", "window_seconds", "sensitivity_top", "latency_rounds"} <= set(named)  # loops read too
    assert len(named) >= 25, sorted(named)  # the scan sees the library's errors
    for setting, files in sorted(named.items()):
        assert setting.isidentifier(), f"{setting!r} (in {sorted(files)}) is not a setting's name"
        if setting not in API_SETTINGS:
            assert any(setting in f for f in flags.values()), f"{setting} (in {sorted(files)}) is no command's flag"
    assert not unread, f"setting= neither a constant nor a loop over constants in {sorted(unread)}"


def test_the_training_and_calibration_settings_resolve():
    flags = _all_flags()
    expected = {("train", "init"): "--init", ("train", "device"): "--device", ("train", "restart"): "--restart",
                ("train", "window_seconds"): "--window", ("train", "cache_dir"): "--cache",
                ("pretrain", "out"): "--out", ("calibrate", "out"): "--out", ("calibrate", "engine"): "--engine",
                ("calibrate", "data_root"): "--data", ("export", "onnx_path"): "--onnx",
                ("export", "engine_path"): "--engine", ("export", "batch"): "--batch", ("infer", "port"): "--metrics-port",
                ("infer", "hop_seconds"): "--hop", ("infer", "input_options"): "--input-option",
                ("features", "start_seconds"): "--start", ("evaluate", "out_dir"): "--out-dir"}
    for (command, setting), flag in expected.items():
        assert flags[command][setting].name == flag, (command, setting)
    assert flags["train"]["resume"] == Flag("--resume", "--restart", False)
    for setting, flag in RENAMED.items():  # each renamed flag exists somewhere
        assert any(f.get(setting) and f[setting].name == flag for f in flags.values()), setting


def test_the_dynamically_named_calibration_settings_resolve():
    calibrate = _all_flags()["calibrate"]
    for name, bad in (("samples", 0), ("batch_size", 0), ("sensitivity_samples", -1), ("sensitivity_top", 0),
                      ("latency_rounds", -1)):
        with pytest.raises(UsageError, match=rf"^{name} must be a whole number >= \d, got {bad}$") as caught:
            CalibrationSettings(**{name: bad})
        assert caught.value.setting == name and name in calibrate


@pytest.mark.parametrize("make, setting, message", [
    (lambda: PipelineConfig(batch_size=0), "batch_size", "batch_size must be at least 1, got 0"),
    (lambda: PipelineConfig(jobs=0), "jobs", "jobs must be a positive integer, got 0"),
    (lambda: SourceOptions(max_windows=0), "max_windows", "max_windows must be a positive integer, got 0"),
    (lambda: SourceOptions(duration_seconds=-1.0), "duration_seconds", "duration_seconds must be a positive number"),
    (lambda: parse_input_option("novalue"), "input_options", "input_options 'novalue': expected KEY=VALUE"),
    (lambda: TensorRTSettings(workspace_gib=0), "workspace_gib", "workspace_gib must be positive, got 0"),
    (lambda: parse_batch("8:4:2"), "batch", "batch 8:4:2: must satisfy 1 <= MIN <= OPT <= MAX"),
    (lambda: CalibrationSettings(method="kl"), "method", "method 'kl': choose one of"),
    (lambda: CalibrationSettings(validation_split="train"), ("split", "validation_split"),
     "split and validation_split are both 'train'"),
])
def test_library_errors_name_the_setting_not_a_flag(make, setting, message):
    with pytest.raises(UsageError) as caught:
        make()
    assert str(caught.value).startswith(message) and "--" not in str(caught.value)
    assert caught.value.setting == setting


def test_a_window_mismatch_names_both_settings(tiny_models):
    with pytest.raises(UsageError, match=r"^window_seconds 30 does not match .* omit window_seconds, "
                                         r"or use hop_seconds to change the spacing$") as caught:
        check_window(tiny_models["slowfast"].config, 30.0)
    assert caught.value.setting == ("window_seconds", "hop_seconds")


def test_a_missing_package_can_name_its_setting():
    error = MissingDependencyError("nvidia-modelopt", "modelopt", "quantizer='modelopt'", setting="quantizer")
    assert str(error).startswith("quantizer='modelopt' needs the 'nvidia-modelopt' package")
    flags = _all_flags()["calibrate"]
    assert with_flags(str(error), ("quantizer",), flags).startswith("--quantizer modelopt needs the 'nvidia-modelopt'")


def test_only_the_named_settings_used_as_names_are_replaced():
    flags = _all_flags()
    bench, export, train = flags["bench"], flags["export"], flags["train"]
    assert (with_flags("fp16 with the torch backend needs a CUDA device (device='cuda'), got 'cpu'", ("device",), bench)
            == "fp16 with the torch backend needs a CUDA device (--device cuda), got 'cpu'")
    assert (with_flags("dla_core: DLA needs a fixed batch (MIN = OPT = MAX), got batch='1:4:8'",
                       ("dla_core", "batch"), export)
            == "--dla-core: DLA needs a fixed batch (MIN = OPT = MAX), got --batch 1:4:8")
    assert with_flags("a: starting afresh (resume=False to silence)", ("resume",), train) == \
        "a: starting afresh (--restart to silence)"
    assert with_flags("a: use backend='x y'", ("backend",), bench) == "a: use --backend 'x y'"
    # not named by the error, inside a path or a longer name, or an ordinary word: left alone
    text = "batch_size 9: /data/batch_size/x.onnx, my_batch_size, batch_size.onnx, the batch_size_max"
    assert with_flags(text, ("batch_size",), bench) == \
        "--batch-size 9: /data/batch_size/x.onnx, my_batch_size, batch_size.onnx, the batch_size_max"
    assert with_flags("batch_size 9", ("device",), bench) == "batch_size 9"
    assert with_flags("device x: no CUDA device", ("nonesuch", "device"), bench) == "--device x: no CUDA device"


def test_the_cli_prints_flags_for_library_errors(capsys, tmp_path):
    checkpoint = tmp_path / "m.safetensors"
    cases = [
        (["export", checkpoint, "--precision", "int8"],
         "mvrt: error: --precision int8 needs calibration data: run `mvrt calibrate` (it writes the Q/DQ ONNX) instead"),
        (["export", checkpoint, "--engine", tmp_path / "m.plan", "--batch", "8:4:2"],
         "mvrt: error: --batch 8:4:2: must satisfy 1 <= MIN <= OPT <= MAX"),
        (["export", checkpoint, "--engine", tmp_path / "m.plan", "--dla-core", "0"],
         "mvrt: error: --dla-core: DLA runs fp16 or int8 graphs only; export with --precision fp16"),
        (["export", checkpoint, "--engine", tmp_path / "m.plan", "--dla-core", "0", "--precision", "fp16"],
         "mvrt: error: --dla-core: DLA needs a fixed batch (MIN = OPT = MAX), got --batch 1:4:8"),
        (["calibrate", tmp_path / "m.onnx", "--data", tmp_path, "--split", "validation"],
         "mvrt: error: --split and --validation-split are both 'validation': calibrate on one split and report on "
         "another, or the report flatters INT8"),
        (["-v", "calibrate", tmp_path / "m.onnx", "--data", tmp_path, "--quantizer", "modelopt", "--method", "percentile"],
         "mvrt: error: --quantizer modelopt calibrates with minmax or entropy, not percentile"),
    ]
    for argv, line in cases:
        code, out, err = run(capsys, *argv)
        assert (code, out, err) == (2, "", line + "\n"), argv


def test_the_cli_prints_flags_for_a_window_mismatch(capsys, tiny_models, clip_10s):
    code, _, err = run(capsys, "infer", clip_10s, "--model", tiny_models["slowfast"].onnx, "--window", "30", "-q")
    assert code == 2 and err == ("mvrt: error: --window 30 does not match the model's 4 s windows (its input shapes "
                                 "are fixed); omit --window, or use --hop to change the spacing\n")


def test_a_failed_input_names_its_flag_too(capsys, tiny_models):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    url = f"tcp://127.0.0.1:{port}"
    code, _, err = run(capsys, "infer", url, "--model", tiny_models["slowfast"].onnx, "--read-timeout", "5", "-q")
    errors = [line for line in err.splitlines() if line.startswith("mvrt: error:")]
    assert code == 1 and errors == [f"mvrt: error: {url}: connection refused (nothing is listening there yet; "
                                    "--reconnect keeps trying)"], err


def test_a_lost_source_note_names_its_flag(tiny_models):
    import click

    from mvrt._cli_live import describe_source_event
    from mvrt.errors import MediaError
    from mvrt.runtime.events import SourceEvent

    error = MediaError("tcp://h:1: connection refused (reconnect=True keeps trying)", setting="reconnect")
    event = SourceEvent("tcp://h:1", "lost", detail={"error": str(error)}, exception=error)
    assert event.to_dict()["error"] == str(error) and "exception" not in event.to_dict()
    with click.Context(build_command().commands["infer"]):
        assert describe_source_event(event) == ("mvrt: tcp://h:1: source lost: tcp://h:1: connection refused "
                                                "(--reconnect keeps trying)")
    assert describe_source_event(event).endswith("(reconnect=True keeps trying)")  # outside a command: as raised


def test_a_worker_error_keeps_its_settings():
    from mvrt.runtime.isolate import _rebuild_error

    error = _rebuild_error({"error": "hop_seconds must be positive, got -1", "error_class": "UsageError",
                            "setting": ["window_seconds", "hop_seconds"]}, "a.mp4")
    assert type(error) is UsageError and error.setting == ("window_seconds", "hop_seconds")
    assert _rebuild_error({"error": "x", "error_class": "UsageError", "setting": 3}, "a.mp4").setting is None


def test_a_ray_task_error_keeps_its_class_and_settings():
    from mvrt._ray_tasks import InputDone
    from mvrt.errors import MediaError, MissingDependencyError, UnexpectedError
    from mvrt.runtime.isolate import _rebuild_error

    settings = ("window_seconds", "hop_seconds")
    error = InputDone("UsageError", "hop_seconds must be positive, got -1", 0, settings).error()
    assert type(error) is UsageError and str(error) == "hop_seconds must be positive, got -1"
    assert error.setting == settings
    assert type(InputDone("MissingDependencyError", "x needs y", 0).error()) is MissingDependencyError
    assert type(InputDone("ValueError", "not ours", 0).error()) is UnexpectedError  # never a foreign class
    assert InputDone(None, None, 3).error() is None
    # the isolation worker: a package missing there is that input's MediaError
    assert type(_rebuild_error({"error": "x", "error_class": "MissingDependencyError"}, "a.mp4")) is MediaError
