"""`--decode auto|cpu|nvdec|v4l2` on `mvrt infer` and `mvrt features`, and `decode=` in the API.

On this machine (no GPU): auto and cpu give the same tensors, nvdec is one line naming the input
and the flag (exit 1, no traceback), a value that is not a decoder is a usage error (exit 2).
"""

from __future__ import annotations

import numpy as np
import pytest

import mvrt
from mvrt.cli import main
from mvrt.errors import BackendError, UsageError
from mvrt.runtime import hw_decode


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def no_cuda():
    if hw_decode.cuda_device()[0]:
        pytest.skip("this machine has a CUDA device: nvdec would work")


def test_features_auto_and_cpu_write_the_same_tensors(capsys, clip_10s, tmp_path):
    written = {}
    for decode in ("cpu", "auto"):
        target = tmp_path / f"{decode}.npz"
        code, _, err = run(capsys, "features", clip_10s, "-o", target, "--decode", decode)
        assert code == 0, err
        with np.load(target) as data:
            written[decode] = {name: data[name] for name in data.files if name != "mvrt_config"}
    assert written["cpu"].keys() == written["auto"].keys()
    assert any(name.startswith("video") for name in written["cpu"])  # the frames (video, or video_slow/fast)
    for name, value in written["cpu"].items():
        assert np.array_equal(value, written["auto"][name]), name


def test_features_nvdec_without_a_gpu_names_the_input_and_the_flag(capsys, clip_10s, tmp_path, no_cuda):
    code, _, err = run(capsys, "features", clip_10s, "-o", tmp_path / "x.npz", "--decode", "nvdec")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("mvrt: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"{clip_10s}: --decode nvdec cannot decode its h264 video" in lines[0]
    assert lines[0].endswith("use --decode cpu or --decode auto")
    assert not (tmp_path / "x.npz").exists()


def test_infer_nvdec_without_a_gpu_fails_before_reading_with_one_line(capsys, clip_10s, no_cuda):
    code, out, err = run(capsys, "infer", clip_10s, "--decode", "nvdec", "--format", "json")
    assert code == 1 and out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("mvrt: error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mvrt: error: {clip_10s}: --decode nvdec needs a CUDA device with NVDEC, but ")
    assert lines[0].endswith("; use --decode cpu or --decode auto")


def test_infer_refuses_a_decoder_it_does_not_know(capsys, clip_10s):
    code, _, err = run(capsys, "infer", clip_10s, "--decode", "gpu")
    assert code == 2
    assert "--decode" in err and "'auto', 'cpu', 'nvdec', 'v4l2'" in err


def test_infer_decode_cpu_reads_the_input(capsys, clip_10s):
    code, out, err = run(capsys, "infer", clip_10s, "--decode", "cpu", "--format", "csv")
    assert code == 0, err
    assert len(out.strip().splitlines()) >= 2  # a header and the window's row


def test_the_api_takes_decode(clip_10s, no_cuda):
    with pytest.raises(UsageError) as info:
        mvrt.load_model(decode="cuda")
    assert info.value.setting == "decode"
    with mvrt.load_model(decode="nvdec") as model:
        assert model.pipeline.decode == "nvdec"
        with pytest.raises(BackendError, match="decode='nvdec' needs a CUDA device with NVDEC") as info:
            model.classify(clip_10s)
        assert info.value.setting == "decode"
        stream = model.stream(clip_10s, max_windows=1)
        assert stream is not None  # the stream's settings keep decode (checked when it is read)
        with pytest.raises(BackendError, match="decode='nvdec'"):
            next(iter(stream))
        stream.close()
