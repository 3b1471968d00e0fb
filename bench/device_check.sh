#!/bin/bash
# Everything that needs a real NVIDIA GPU, as one call (a lent device machine gives a session minutes, not hours):
# the CUDA test suite on the device (EMBER_TEST_CUDA_TARGET=cuda: the emulator's cases run through cupy/NVRTC),
# then bench.cuda (ember next to cuBLAS, cupy and onnxruntime). Run from the repository root; needs python3 with
# numpy, onnx, llvmlite, cupy, pytest and hypothesis (the lent H100/H200 image has them all). ember is imported
# from this checkout without installing it. Logs and bench tables go to $OUT (default bench/results).
#
#   bash bench/device_check.sh            # about 5 minutes on an H100
#   TESTS_S=120 BENCH_S=300 bash bench/device_check.sh
set -o pipefail
PY=${PY:-python3}
OUT=${OUT:-bench/results}
mkdir -p "$OUT" /tmp/ember_path
ln -sfn "$PWD" /tmp/ember_path/ember
export PYTHONPATH=/tmp/ember_path${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" -c "import cupy, ember; p = cupy.cuda.runtime.getDeviceProperties(0); print('device:', p['name'].decode(), \
'sm_%d%d' % (p['major'], p['minor']), 'ember', ember.__version__)" || exit 2
EMBER_TEST_CUDA_TARGET=cuda timeout "${TESTS_S:-180}" "$PY" -m pytest -q -p no:cacheprovider --import-mode=importlib \
    tests/cuda 2>&1 | tee "$OUT/device_tests.log" | tail -40
tests=$?
timeout "${BENCH_S:-300}" "$PY" -m bench.cuda --out "$OUT" 2>&1 | tee "$OUT/device_bench.log"
bench=$?
echo "tests exit $tests, bench exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
