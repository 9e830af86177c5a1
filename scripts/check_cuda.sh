#!/usr/bin/env bash
# Compile-check every CUDA source for sm_80 and sm_90 with warnings as errors, and print ptxas'
# register/spill/shared-memory report per kernel. Runs without a GPU (nvcc only). The .cu files are
# plain CUDA C++ (no torch headers), so nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda: nvcc not found; skipping the CUDA compile check" >&2
  exit 0
fi
"$NVCC" --version | tail -n 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for cu in $(awk '$1 == "cuda" && $2 ~ /\.cu$/ {print $2}' csrc/sources.txt); do
  echo "== $cu"
  if ! "$NVCC" -c -std=c++17 -O3 -Xcompiler -fPIC -Icsrc \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -Xptxas -v -Werror all-warnings -o "$out/$(basename "$cu").o" "$cu" 2>&1 |
      grep -E "error|warning|Compiling entry|registers|spill|smem" ; then
    :
  fi
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "check_cuda: FAILED to compile $cu" >&2
    status=1
  fi
done
exit $status
