#!/usr/bin/env bash
# The GPU path's device check (issue 17), as one short script for a lent NVIDIA GPU machine.
#
# Prepare on the development machine, in the repository root (the wheels the GPU image lacks;
# its python3 is 3.12 with torch, onnxruntime (CPU), onnx, cuda-bindings, typer, rich, tqdm, safetensors):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl av==18.1.0 soxr soundfile cffi pycparser
# Then run it there with the device tool: carry [".whl"], command `bash tools/gpu_device_check.sh`.
# Writes $OUT/gpu-tests.txt and $OUT/bench-gpu.json (+ .txt); the native front-end is not built
# there, so the benchmark's front-end row is numpy's (its header says so).
set -u
OUT=${OUT:-/tmp/mvrt-gpu-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PWD/src:/tmp/site"
else
  export PYTHONPATH="$PWD/src"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
# The NVDEC and torch-CUDA tests must run (not skip) here. ONNX Runtime's GPU providers and TensorRT
# are not in the image, so their tests are left out rather than failed.
MVRT_REQUIRE_GPU=1 timeout 240 python3 -m pytest -q -p no:cacheprovider -x \
  tests/runtime/test_hw_decode.py tests/runtime/test_engines_cuda.py > "$OUT/gpu-tests.txt" 2>&1
echo "gpu tests rc=$?" >> "$OUT/gpu-tests.txt"
timeout 300 python3 bench/bench_gpu.py --json "$OUT/bench-gpu.json" --cache-dir /tmp/mvrt-bench-cache \
  > "$OUT/bench-gpu.txt" 2>&1
echo "bench rc=$?" >> "$OUT/bench-gpu.txt"
tail -5 "$OUT/gpu-tests.txt"; tail -40 "$OUT/bench-gpu.txt"
