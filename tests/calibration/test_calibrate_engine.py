"""`calibrate --engine`: requests checked before any work here; the INT8 plan built and run where TensorRT is.

Without TensorRT / a CUDA driver the build test skips; MVRT_REQUIRE_GPU=1 makes it fail.
"""

import importlib.util

import numpy as np
import pytest
from gpu import require_tensorrt
from shared_fixtures import validation_feeds

from mvrt.calibration.pipeline import calibrate
from mvrt.calibration.settings import CalibrationSettings
from mvrt.errors import MissingDependencyError, UsageError
from mvrt.export.build_settings import TensorRTSettings
from mvrt.runtime.model_meta import read_onnx_config

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _settings(tmp_path):
    return CalibrationSettings(method="minmax", sensitivity_samples=0, latency_rounds=0, batch_size=4,
                               cache_dir=tmp_path / "cache", threads=1)


def test_engine_requests_fail_before_calibrating(calib_data, tmp_path):
    root, model = calib_data
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(UsageError, match=r"^engine .*m\.int8\.onnx: would overwrite the INT8 model") as caught:
        calibrate(model.onnx, root, _settings(tmp_path), out=out, engine=out, progress=False)
    assert caught.value.setting == "engine"
    with pytest.raises(UsageError, match="TensorRT settings ask for fp16, but a calibrated graph is int8"):
        calibrate(model.onnx, root, _settings(tmp_path), out=out, engine=tmp_path / "m.plan",
                  tensorrt=TensorRTSettings(precision="fp16"), progress=False)
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_engine_without_tensorrt_names_the_extra(calib_data, tmp_path):
    root, model = calib_data
    with pytest.raises(MissingDependencyError, match=r"pip install 'mvrt\[tensorrt\]'"):
        calibrate(model.onnx, root, _settings(tmp_path), out=tmp_path / "m.int8.onnx", engine=tmp_path / "m.plan",
                  progress=False)
    assert not (tmp_path / "cache").exists()


@pytest.mark.gpu
def test_int8_plan_follows_the_int8_onnx(calib_data, tmp_path):
    require_tensorrt()
    from mvrt.runtime.engines import open_engine
    from mvrt.runtime.engines.sidecar import read_sidecar
    from mvrt.runtime.model_meta import read_onnx_metadata

    root, model = calib_data
    trt = TensorRTSettings(precision="int8", batch_min=1, batch_opt=4, batch_max=16)
    result = calibrate(model.onnx, root, _settings(tmp_path), out=tmp_path / "m.int8.onnx",
                       engine=tmp_path / "m.plan", tensorrt=trt, progress=False)
    sidecar = read_sidecar(result.engine_path)
    assert sidecar.precision == "int8"
    assert sidecar.calibration_sha256 == read_onnx_metadata(result.int8_path)["mvrt_calibration_sha256"]
    _, feeds = validation_feeds(root, read_onnx_config(model.onnx), tmp_path / "cache")  # the exported contract
    with open_engine(result.engine_path) as plan, open_engine(result.int8_path) as onnx_int8:
        got, ref = plan.infer(feeds), onnx_int8.infer(feeds)
    # Same Q/DQ scales; TensorRT fuses and accumulates differently, so compare probabilities loosely.
    p_got, p_ref = (np.exp(x - x.max(1, keepdims=True)) for x in (got, ref))
    p_got, p_ref = p_got / p_got.sum(1, keepdims=True), p_ref / p_ref.sum(1, keepdims=True)
    assert np.abs(p_got - p_ref).max() < 0.1 and np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9
