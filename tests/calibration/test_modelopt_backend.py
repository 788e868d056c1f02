"""`--quantizer modelopt`: the missing-package error everywhere, the real quantiser where installed."""

import importlib.util
import json
import logging

import numpy as np
import pytest
from shared_fixtures import validation_feeds

from mvrt.calibration.pipeline import calibrate
from mvrt.calibration.settings import CalibrationSettings
from mvrt.errors import MissingDependencyError, UsageError
from mvrt.runtime.model_meta import read_onnx_config


def _settings(tmp_path, **kw):
    base = dict(quantizer="modelopt", method="minmax", sensitivity_samples=0, latency_rounds=0, batch_size=4,
                cache_dir=tmp_path / "cache", threads=1)
    return CalibrationSettings(**{**base, **kw})


def test_missing_modelopt_says_how_to_install(calib_data, tmp_path, monkeypatch):
    root, model = calib_data
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "modelopt" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"^quantizer='modelopt' needs the 'nvidia-modelopt' package; "
                                                     r"install it with `pip install 'mvrt\[modelopt\]'`"):
        calibrate(model.onnx, root, _settings(tmp_path), out=tmp_path / "m.int8.onnx", progress=False)
    assert not (tmp_path / "m.int8.onnx").exists() and not (tmp_path / "cache").exists()  # before any work


def test_modelopt_has_no_percentile():
    with pytest.raises(UsageError, match="^quantizer='modelopt' calibrates with minmax or entropy, not percentile"):
        CalibrationSettings(quantizer="modelopt", method="percentile")
    assert CalibrationSettings(quantizer="modelopt").methods == ("minmax", "entropy")


def test_in_memory_set_is_every_batch_in_order(calib_data, tmp_path):
    from mvrt.calibration.dataset import build_calibration_set
    from mvrt.calibration.modelopt_backend import _in_memory
    from mvrt.data import discover

    root, model = calib_data
    calib = build_calibration_set(discover(root, "train"), model.config, tmp_path, progress=False)
    data = _in_memory(calib, model.config, batch_size=5)  # 12 clips: batches of 5, 5, 2
    whole = next(calib.batches(model.config, len(calib)))
    assert set(data) == set(model.config.input_names)
    for name, array in data.items():
        assert array.shape == (12, *model.config.input_shapes()[name]) and array.dtype == np.float32
        np.testing.assert_array_equal(array, whole[name])
    config2 = model.config.replace(contract=2)  # the same stack, read for a contract-2 model: uint8 frames
    data2 = _in_memory(calib, config2, batch_size=5)
    assert data2["video"].dtype == np.uint8 and data2["video"].shape == (12, *config2.input_shapes()["video"])
    np.testing.assert_array_equal(data2["audio_fast"], data["audio_fast"])
    np.testing.assert_array_equal(data2["video"][:, :, ::9], np.round((data["video_slow"] * 0.225 + 0.45) * 255))
    per_window = {c: sum(a[0].nbytes for a in d.values()) for c, d in ((1, data), (2, data2))}
    assert per_window[1] > 2 * per_window[2]


def test_modelopt_failures_are_one_line_backend_errors(calib_data, tmp_path, monkeypatch):
    import sys

    from mvrt.calibration import modelopt_backend
    from mvrt.calibration.dataset import build_calibration_set
    from mvrt.data import discover
    from mvrt.errors import BackendError

    root, model = calib_data
    calib = build_calibration_set(discover(root, "train"), model.config, tmp_path, progress=False)
    monkeypatch.setattr(modelopt_backend, "require_modelopt", lambda: None)
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", None)  # installed but broken
    with pytest.raises(BackendError, match=r"nvidia-modelopt is installed but cannot be imported: .*--force-reinstall"):
        modelopt_backend.quantize_modelopt(model.onnx, calib, model.config, "minmax", (), tmp_path)

    def failing(*args, **kwargs):
        raise AssertionError("Unsupported\n  node type")

    monkeypatch.setattr(modelopt_backend, "_import_quantize", lambda: failing)
    with pytest.raises(BackendError, match=r"\.onnx: ModelOpt quantisation failed: Unsupported node type$"):
        modelopt_backend.quantize_modelopt(model.onnx, calib, model.config, "entropy", (), tmp_path)
    with pytest.raises(UsageError, match="calibrates with minmax or entropy, not percentile"):
        modelopt_backend.quantize_modelopt(model.onnx, calib, model.config, "percentile", (), tmp_path)


@pytest.fixture(scope="module")
def modelopt_run(calib_data, tmp_path_factory):
    pytest.importorskip("modelopt.onnx.quantization", reason="nvidia-modelopt[onnx] is not installed")
    root, model = calib_data
    work = tmp_path_factory.mktemp("modelopt")
    before = model.onnx.read_bytes()
    result = calibrate(model.onnx, root, _settings(work), out=work / "m.int8.onnx", progress=False)
    assert model.onnx.read_bytes() == before, "ModelOpt rewrote the FP32 model"
    return root, model, work, result


def test_modelopt_graph_is_symmetric_per_channel_int8_and_keeps_the_metadata(modelopt_run):
    import onnx
    from onnx import numpy_helper

    root, model, work, result = modelopt_run
    proto = onnx.load(str(result.int8_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    fp32 = {p.key: p.value for p in onnx.load(str(model.onnx)).metadata_props}
    assert meta["mvrt_config"] == fp32["mvrt_config"] and meta["mvrt_precision"] == "int8"
    assert json.loads(meta["mvrt_calibration"])["quantizer"] == "modelopt"
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    quant = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    zero_points = [inits[n.input[2]] for n in quant if len(n.input) > 2 and n.input[2] in inits]
    assert quant and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weights = [n for n in quant if n.input[0] in inits]
    assert weights and all(inits[n.input[1]].size == inits[n.input[0]].shape[0] for n in weights)
    assert result.report.quantized_layers == len(weights)


def test_modelopt_report_matches_a_fresh_run(modelopt_run):
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    root, model, work, result = modelopt_run
    _, feeds = validation_feeds(root, read_onnx_config(model.onnx), work / "cache")  # the exported contract
    with OnnxRuntimeEngine(model.onnx, threads=1) as fp32, OnnxRuntimeEngine(result.int8_path, threads=1) as int8:
        a, b = fp32.infer(feeds), int8.infer(feeds)
    assert result.report.comparison.agreement == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    assert json.loads(result.report_path.read_text())["quantizer"] == "modelopt"


def test_modelopt_logs_reach_mvrt_log_not_stdout(capsys, caplog):
    import sys

    from mvrt.calibration.modelopt_backend import _modelopt_logging

    log = logging.getLogger("modelopt.onnx")
    with caplog.at_level(logging.WARNING), _modelopt_logging():
        log.addHandler(logging.StreamHandler(sys.stdout))  # what ModelOpt's configure_logging does
        log.warning("calibration data is small")
        log.error("Failed to get GPU count: NVML Shared Library Not Found")
    assert capsys.readouterr().out == "" and not log.handlers
    assert [r.getMessage() for r in caplog.records if r.name == "modelopt.onnx"] == ["calibration data is small"]


def test_modelopt_keeps_excluded_layers_float_and_stdout_clean(modelopt_run, tmp_path, capsys, caplog):
    from mvrt.calibration.quantize import quantized_nodes

    root, model, work, result = modelopt_run
    import onnx

    layer = sorted(quantized_nodes(onnx.load(str(result.int8_path))))[0]
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        again = calibrate(model.onnx, root, _settings(work, exclude=(layer,)), out=tmp_path / "x.int8.onnx",
                          progress=False)
    assert layer not in quantized_nodes(onnx.load(str(again.int8_path)))
    assert again.report.quantized_layers == result.report.quantized_layers - 1
    assert capsys.readouterr().out == ""
    assert not [r for r in caplog.records if r.name.startswith("modelopt") and "GPU count" in r.getMessage()]
