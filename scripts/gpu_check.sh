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

echo "== pytest, CuPy backend (NVRTC JIT of the same .cu sources)"
HMORE_TEST_BACKENDS=cupy "$PY" -m pytest tests/test_edges.py tests/test_corr.py tests/test_chamfer.py tests/test_skeleton.py \
  tests/test_cupy.py -q -rs \
  -p no:cacheprovider 2>&1 | tee "$OUT/pytest_cupy.log" | tail -n 40

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
    # skeleton
    j = torch.rand(2, 17, 2, device=d) * torch.tensor([W, H], device=d); c = torch.rand(2, 17, device=d)
    jr = j.clone().requires_grad_()
    p, pc, _ = hk.skeleton_points(jr, c, backend="cuda"); p.sum().backward()
    pc = pc.detach()
    hk.skeleton_match(p.detach(), pc, m, backend="cuda")
    hk.skeleton_offset_map(p.detach(), p.detach() + 1, pc, m, backend="cuda")
    # chamfer (ragged, ties, both directions, both backward modes) and the patch / boundary ops
    for N, M in [(1, 1), (H * W, 37), (300, 257)]:
        px = (torch.rand(2, N, 2, device=d) * 64).round().requires_grad_()
        py = (torch.rand(2, M, 2, device=d) * 64).round().requires_grad_()
        lx = torch.tensor([N, N // 2], device=d); ly = torch.tensor([M, 0], device=d)
        for det in (False, True):
            hk.chamfer_distance(px, py, lx, ly, backend="cuda", deterministic=det).backward()
        hk.nearest_neighbors(px.detach(), py.detach(), lx, ly, backend="cuda")
    ea = torch.rand(2, 1, H, W, device=d, requires_grad=True); eb = torch.rand(2, 1, H, W, device=d)
    fo = torch.randn(2, 2, H, W, device=d, requires_grad=True)
    cen, mass = hk.patch_centroids(ea, 8, fo, backend="cuda"); (cen.sum() + mass.sum()).backward()
    hk.patch_centroid_chamfer(ea, eb, backend="cuda").backward()
    hk.boundary_chamfer(m, torch.rand(2, 1, H, W, device=d) > 0.7, backend="cuda")
    # correlation: pyramid + lookup (coords far outside too), memory-free lookup, local correlation
    for dt in (torch.float32, torch.bfloat16):
        f1 = torch.randn(2, 8, H, W, device=d, dtype=dt, requires_grad=True)
        f2 = torch.randn(2, 8, H, W, device=d, dtype=dt, requires_grad=True)
        co = (torch.rand(2, 2, H, W, device=d) * 1.5 - 0.25) * torch.tensor([W, H], device=d).view(1, 2, 1, 1)
        co.requires_grad_()
        pyr = hk.corr_pyramid(f1, f2, 3, backend="cuda")
        hk.corr_lookup(pyr, co, 2, backend="cuda").sum().backward()
        for det in (False, True):
            hk.corr_lookup_otf(f1, f2, co, 2, 3, backend="cuda", deterministic=det).sum().backward()
        hk.local_corr(f1, f2, 3, 2, 1, backend="cuda").sum().backward()
torch.cuda.synchronize()
print("sanitize workload done")
PY
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 "$PY" /tmp/hmore_sanitize.py > "$OUT/sanitizer_$tool.log" 2>&1
  echo "$tool exit $? ($(grep -c 'ERROR SUMMARY' "$OUT/sanitizer_$tool.log") summaries)"; tail -n 3 "$OUT/sanitizer_$tool.log"
done

echo "== benchmarks"
for b in edges corr chamfer skeleton; do
  timeout 900 "$PY" -m benchmarks.bench_$b 2>&1 | tee "$OUT/bench_$b.log" | tail -n 40
done
cp benchmarks/results/*.csv "$OUT/" 2>/dev/null || true
