#!/usr/bin/env bash
# Set up, then run every test this machine can run:
#   1. the nvcc compile check of every .cu file for sm_80 and sm_90 (register/spill report),
#   2. the CMake build of the same sources and its C++ dispatcher test (ctest),
#   3. pytest (reference, C++ CPU and Triton-interpreter backends; CUDA tests run only with a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh

echo "== nvcc compile check (sm_80, sm_90, warnings as errors)"
bash scripts/check_cuda.sh

echo "== CMake build + ctest"
cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')" > build/cmake-configure.log 2>&1 ||
  { cat build/cmake-configure.log; exit 1; }
grep "hmore_kernels:" build/cmake-configure.log || true
cmake --build build/cmake -j"$(nproc)" > build/cmake-build.log 2>&1 || { tail -n 60 build/cmake-build.log; exit 1; }
ctest --test-dir build/cmake --output-on-failure

echo "== pytest"
# setup.sh installed torchvision and ptlflow: their tests must run, not skip (tests/test_integrations.py).
export HMORE_REQUIRE_INTEGRATIONS=1
export TRITON_INTERPRET=${TRITON_INTERPRET:-$("$PY" -c "import torch; print(0 if torch.cuda.is_available() else 1)")}
"$PY" -m pytest tests -q -rs --durations=10 -p no:cacheprovider
