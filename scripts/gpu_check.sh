#!/usr/bin/env bash
# One visit to a lent GPU machine (H100/H200: torch with CUDA, nvcc, compute-sanitizer, no package
# registry): build with CUDA for sm_90, run the CUDA and compiled-Triton tests, compute-sanitizer
# over every CUDA op, and the benchmarks. Everything it writes goes to $OUT (default build/gpu).
# Usage (device tool): PYTHONUNBUFFERED=1 bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
unset TRITON_INTERPRET
# No registry there: build against what the image has, fetch nothing.
"$PY" -m pip install -v --no-build-isolation --no-deps --no-index -e . > "$OUT/build.log" 2>&1 ||
  { tail -n 80 "$OUT/build.log"; exit 1; }
grep -A6 "hmore_kernels build configuration" "$OUT/build.log"
"$PY" -c "import hmore_kernels as hk; print(hk.build_info()); print(hk.available_backends())"

echo "== pytest (CUDA + compiled Triton)"
"$PY" -m pytest tests -q -rs --durations=15 -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -n 40

echo "== compute-sanitizer (memcheck, racecheck) over every CUDA op"
cat > /tmp/hmore_sanitize.py <<'PY'
import torch, hmore_kernels as hk
torch.manual_seed(0)
d = "cuda"
for H, W in [(1, 1), (1, 17), (13, 1), (37, 53), (64, 96)]:
    x = torch.randn(2, 3, H, W, device=d, requires_grad=True)
    hk.sobel(x, backend="cuda").sum().backward()
    hk.gradient_magnitude(x, backend="cuda").sum().backward()
    m = (torch.rand(2, 1, H, W, device=d) > 0.5)
    hk.mask_boundary(m, "thick", 2, backend="cuda")
    sm = torch.rand(2, 1, H, W, device=d, requires_grad=True)
    hk.mask_boundary(sm, "inner", 1, backend="cuda").sum().backward()
    f = torch.randn(2, 2, H, W, device=d, requires_grad=True)
    hk.flow_edges(f, m, 3, backend="cuda").sum().backward()
    img = (torch.rand(2, 1, H, W, device=d) * 255).to(torch.uint8)
    hk.canny(img, 50, 150, backend="cuda")
    hk.distance_transform(m, True, backend="cuda")
torch.cuda.synchronize()
print("sanitize workload done")
PY
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 "$PY" /tmp/hmore_sanitize.py > "$OUT/sanitizer_$tool.log" 2>&1
  echo "$tool exit $? ($(grep -c 'ERROR SUMMARY' "$OUT/sanitizer_$tool.log") summaries)"; tail -n 3 "$OUT/sanitizer_$tool.log"
done

echo "== benchmarks"
"$PY" -m benchmarks.bench_edges 2>&1 | tee "$OUT/bench.log" | tail -n 60
cp benchmarks/results/*.csv "$OUT/" 2>/dev/null || true
