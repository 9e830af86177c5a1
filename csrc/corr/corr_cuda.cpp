// TORCH_LIBRARY_IMPL(hmore, CUDA) for the correlation family: argument checks (corr.h, shared with the CPU
// glue), .contiguous(), allocation through PyTorch's caching allocator, device guard and current stream,
// then the extern "C" launchers of corr_cuda.cu.
//
// corr_volume / corr_pyramid are GEMMs on the matrix units: at::baddbmm with alpha = scale and beta = 0
// (cuBLAS through ATen: the scale is fused into the GEMM epilogue). Level l of the pyramid correlates
// fmap1 with fmap2 average-pooled l times (pooling the volume over q equals correlating with the pooled
// fmap2), so no level is ever pooled from a stored volume. Backward: GEMMs per level, float32 accumulation
// across levels, then the adjoint of the pooling (avg_pool2d_backward: a gather).
// Only c10/cuda headers plus ATen ops, so this compiles with torch's include paths alone.
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/avg_pool2d_backward.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#include "corr/corr.h"
#include "corr/corr_pool.h"
#include "corr/corr_cuda.h"
#include "hd.h"

namespace hmore {
namespace corr {
namespace {

int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return HMORE_F32;
    case at::kHalf:
      return HMORE_F16;
    case at::kBFloat16:
      return HMORE_BF16;
    default:
      TORCH_CHECK_TYPE(false, "unsupported dtype ", t.scalar_type());
  }
}

// float64 runs on the reference and cpu backends only (docs/ops.md: GPU backends need not support it).
void check_gpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), name, ": expected a CUDA tensor, got one on ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() != at::kDouble, name,
                   ": the cuda backend supports float32, float16 and bfloat16, got float64 (float64 runs on the "
                   "reference and cpu backends)");
}

void check_launch(cudaError_t e, const char* op) {
  TORCH_CHECK(e == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(e));
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

int to_int(int64_t v, const char* what) {
  TORCH_CHECK_VALUE(v <= INT_MAX, what, ": ", v, " does not fit the kernels' 32-bit sizes");
  return int(v);
}


// fmap2 pooled 0 .. L-1 times, [B, D, H2>>l, W2>>l]: level 0 is fmap2 itself (its dtype), the others
// are pooled in float32 from the float32 previous level and rounded once to the features' dtype.
std::vector<at::Tensor> pooled_levels(const at::Tensor& f2, int64_t L) {
  std::vector<at::Tensor> out{f2};
  at::Tensor cur = f2.to(at::kFloat);
  for (int64_t l = 1; l < L; ++l) {
    cur = pool2(cur);
    out.push_back(cur.to(f2.scalar_type()));
  }
  return out;
}

// [B, N1, N2] (features' dtype) = scale * f1^T f2 with f1 [B, D, H1, W1], f2 [B, D, h, w].
at::Tensor volume_flat(const at::Tensor& f1, const at::Tensor& f2, double s) {
  const int64_t B = f1.size(0), D = f1.size(1), N1 = f1.size(2) * f1.size(3), N2 = f2.size(2) * f2.size(3);
  if (D == 0 || B == 0 || N1 == 0 || N2 == 0) return at::zeros({B, N1, N2}, f1.options());
  at::Tensor a = f1.reshape({B, D, N1}).transpose(1, 2);
  at::Tensor b = f2.reshape({B, D, N2});
  at::Tensor out = at::empty({B, N1, N2}, f1.options());
  return at::baddbmm(out, a, b, /*beta=*/0, /*alpha=*/s);  // beta = 0: `out` is never read
}

// grads G_l [B, N1, n2_l] (undefined: no gradient) -> (grad fmap1, grad fmap2).
std::tuple<at::Tensor, at::Tensor> levels_backward(const std::vector<at::Tensor>& G, const at::Tensor& f1,
                                                   const at::Tensor& f2, double s) {
  const int64_t B = f1.size(0), D = f1.size(1), N1 = f1.size(2) * f1.size(3);
  const int64_t L = static_cast<int64_t>(G.size());
  const auto dt = f1.scalar_type();
  std::vector<at::Tensor> f2l = pooled_levels(f2, L);
  at::Tensor a = f1.reshape({B, D, N1});
  at::Tensor g1 = at::zeros({B, N1, D}, f1.options().dtype(at::kFloat));  // float32 across levels
  at::Tensor g2 = at::zeros(f2l[L - 1].sizes(), f1.options().dtype(at::kFloat));
  for (int64_t l = L - 1; l >= 0; --l) {
    if (l < L - 1) g2 = unpool2(g2, f2l[l].to(at::kFloat));
    if (!G[l].defined() || G[l].numel() == 0 || D == 0) continue;
    const int64_t h = f2l[l].size(2), w = f2l[l].size(3);
    at::Tensor Gl = G[l].reshape({B, N1, h * w}).to(dt);
    at::Tensor b = f2l[l].reshape({B, D, h * w});
    g1.add_(at::bmm(Gl, b.transpose(1, 2)), s);                          // [B, N1, D]
    g2.add_(at::bmm(a, Gl).reshape({B, D, h, w}), s);                    // [B, D, h, w]
  }
  at::Tensor g1o = g1.transpose(1, 2).reshape({B, D, f1.size(2), f1.size(3)}).to(dt).contiguous();
  return {g1o, g2.to(f2.scalar_type()).contiguous()};
}

}  // namespace

// ------------------------------------------------------------------------------------------ volume
at::Tensor corr_volume_cuda(const at::Tensor& fmap1, const at::Tensor& fmap2, c10::optional<double> scale) {
  check_pair(fmap1, fmap2, true, false);
  check_gpu(fmap1, "fmap1");
  c10::cuda::CUDAGuard guard(fmap1.device());
  const double s = resolve_scale(scale, fmap1.size(1));
  return volume_flat(fmap1, fmap2, s)
      .reshape({fmap1.size(0), fmap1.size(2), fmap1.size(3), fmap2.size(2), fmap2.size(3)});
}

std::tuple<at::Tensor, at::Tensor> corr_volume_backward_cuda(const at::Tensor& grad, const at::Tensor& fmap1,
                                                             const at::Tensor& fmap2, c10::optional<double> scale) {
  check_pair(fmap1, fmap2, true, false);
  check_gpu(fmap1, "fmap1");
  check_same_device(grad, "grad", fmap1, "fmap1");
  const int64_t B = fmap1.size(0), N1 = fmap1.size(2) * fmap1.size(3), N2 = fmap2.size(2) * fmap2.size(3);
  TORCH_CHECK_VALUE(grad.numel() == B * N1 * N2, "grad: expected shape [", B, ", ", fmap1.size(2), ", ",
                    fmap1.size(3), ", ", fmap2.size(2), ", ", fmap2.size(3), "], got ", grad.sizes());
  c10::cuda::CUDAGuard guard(fmap1.device());
  const double s = resolve_scale(scale, fmap1.size(1));
  return levels_backward({grad.reshape({B, N1, N2})}, fmap1, fmap2, s);
}

// ------------------------------------------------------------------------------------------ pyramid
std::vector<at::Tensor> corr_pyramid_cuda(const at::Tensor& fmap1, const at::Tensor& fmap2, int64_t num_levels,
                                          c10::optional<double> scale) {
  check_pair(fmap1, fmap2, true, false);
  check_gpu(fmap1, "fmap1");
  check_levels(num_levels);
  c10::cuda::CUDAGuard guard(fmap1.device());
  const double s = resolve_scale(scale, fmap1.size(1));
  const int64_t N = fmap1.size(0) * fmap1.size(2) * fmap1.size(3);
  std::vector<at::Tensor> f2l = pooled_levels(fmap2, num_levels);
  std::vector<at::Tensor> out;
  for (int64_t l = 0; l < num_levels; ++l)
    out.push_back(volume_flat(fmap1, f2l[l], s).reshape({N, 1, f2l[l].size(2), f2l[l].size(3)}));
  return out;
}

std::tuple<at::Tensor, at::Tensor> corr_pyramid_backward_cuda(const std::vector<c10::optional<at::Tensor>>& grads,
                                                              const at::Tensor& fmap1, const at::Tensor& fmap2,
                                                              c10::optional<double> scale) {
  check_pair(fmap1, fmap2, true, false);
  check_gpu(fmap1, "fmap1");
  std::vector<at::Tensor> G;
  for (const auto& g : grads) G.push_back(g.has_value() ? *g : at::Tensor());
  TORCH_CHECK_VALUE(!G.empty(), "grads: expected one gradient per level, got an empty list");
  c10::cuda::CUDAGuard guard(fmap1.device());
  const double s = resolve_scale(scale, fmap1.size(1));
  return levels_backward(G, fmap1, fmap2, s);
}

// ------------------------------------------------------------------------------------------ lookup
namespace {

struct LevelChunk {
  std::vector<const void*> p;
  std::vector<void*> g;
  std::vector<int> h, w;
};

LevelChunk level_chunk(const std::vector<at::Tensor>& lv, const std::vector<at::Tensor>* glv, size_t l0, size_t nl) {
  LevelChunk c;
  for (size_t l = l0; l < l0 + nl; ++l) {
    c.p.push_back(lv[l].data_ptr());
    c.g.push_back(glv ? (*glv)[l].data_ptr() : nullptr);
    c.h.push_back(to_int(lv[l].size(2), "pyramid level height"));
    c.w.push_back(to_int(lv[l].size(3), "pyramid level width"));
  }
  return c;
}

}  // namespace

at::Tensor corr_lookup_cuda(at::TensorList pyramid, const at::Tensor& coords, int64_t radius, std::string layout,
                            bool deterministic) {
  (void)deterministic;  // no atomics: the result is deterministic either way
  check_pyramid(pyramid, coords, true);
  check_radius(radius);
  check_gpu(pyramid[0], "pyramid[0]");
  const int lay = parse_layout(layout);
  c10::cuda::CUDAGuard guard(coords.device());
  const int64_t B = coords.size(0), H1 = coords.size(2), W1 = coords.size(3);
  const int64_t L = static_cast<int64_t>(pyramid.size()), T = (2 * radius + 1) * (2 * radius + 1);
  at::Tensor out = at::empty({B, L * T, H1, W1}, coords.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const at::Tensor c = coords.to(at::kFloat).contiguous();
  std::vector<at::Tensor> lv;
  for (const auto& p : pyramid) lv.push_back(p.contiguous());
  const int dt = dtype_code(lv[0]);
  for (size_t l0 = 0; l0 < lv.size(); l0 += HMORE_CORR_MAX_LEVELS) {
    const size_t nl = std::min<size_t>(HMORE_CORR_MAX_LEVELS, lv.size() - l0);
    LevelChunk ch = level_chunk(lv, nullptr, l0, nl);
    check_launch(hmore_corr_lookup_forward_cuda(ch.p.data(), ch.h.data(), ch.w.data(), int(l0), int(nl), int(L),
                                                c.data_ptr<float>(), out.data_ptr<float>(), B, H1, W1, int(radius), lay,
                                                dt, stream()),
                 "corr_lookup");
  }
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> corr_lookup_backward_cuda(const at::Tensor& grad,
                                                                          at::TensorList pyramid,
                                                                          const at::Tensor& coords, int64_t radius,
                                                                          std::string layout, bool deterministic) {
  (void)deterministic;  // gathers only
  check_pyramid(pyramid, coords, true);
  check_radius(radius);
  check_gpu(pyramid[0], "pyramid[0]");
  check_same_device(grad, "grad", coords, "coords");
  const int lay = parse_layout(layout);
  const int64_t B = coords.size(0), H1 = coords.size(2), W1 = coords.size(3);
  const int64_t L = static_cast<int64_t>(pyramid.size()), T = (2 * radius + 1) * (2 * radius + 1);
  check_lookup_grad(grad, B, L * T, H1, W1);
  c10::cuda::CUDAGuard guard(coords.device());
  std::vector<at::Tensor> lv, glv;
  for (const auto& p : pyramid) {
    lv.push_back(p.contiguous());
    glv.push_back(at::zeros(p.sizes(), p.options()));
  }
  at::Tensor gc = at::zeros({B, 2, H1, W1}, coords.options().dtype(at::kFloat));
  if (B * H1 * W1 == 0) return {glv, gc.to(coords.scalar_type())};
  const at::Tensor g = grad.to(at::kFloat).contiguous();
  const at::Tensor c = coords.to(at::kFloat).contiguous();
  const int dt = dtype_code(lv[0]);
  for (size_t l0 = 0; l0 < lv.size(); l0 += HMORE_CORR_MAX_LEVELS) {
    const size_t nl = std::min<size_t>(HMORE_CORR_MAX_LEVELS, lv.size() - l0);
    LevelChunk ch = level_chunk(lv, &glv, l0, nl);
    check_launch(hmore_corr_lookup_backward_cuda(ch.p.data(), ch.g.data(), ch.h.data(), ch.w.data(), int(l0),
                                                 int(nl), int(L), g.data_ptr<float>(), c.data_ptr<float>(),
                                                 gc.data_ptr<float>(), l0 > 0, B, H1, W1, int(radius), lay, dt,
                                                 stream()),
                 "_corr_lookup_backward");
  }
  return {glv, gc.to(coords.scalar_type())};
}

// ------------------------------------------------------------------------------------------ otf
namespace {

// Channels-last features: f1 [N, D]; the pooled fmap2 levels [B, h_l, w_l, D] in one buffer.
struct OtfInputs {
  at::Tensor f1, f2, c;
  std::vector<int64_t> off, tstart;
  std::vector<int> h, w;
  int64_t total = 0;  // number of pooled positions over all levels (B * sum h_l w_l)
};

OtfInputs otf_inputs(const at::Tensor& fmap1, const at::Tensor& fmap2, const at::Tensor& coords, int64_t L) {
  OtfInputs in;
  const int64_t B = fmap1.size(0), D = fmap1.size(1);
  in.f1 = fmap1.permute({0, 2, 3, 1}).contiguous();
  std::vector<at::Tensor> parts;
  int64_t o = 0;
  for (const auto& p : pooled_levels(fmap2, L)) {
    parts.push_back(p.permute({0, 2, 3, 1}).contiguous().reshape({-1}));
    in.off.push_back(o);
    in.tstart.push_back(in.total);
    in.h.push_back(to_int(p.size(2), "fmap2 height"));
    in.w.push_back(to_int(p.size(3), "fmap2 width"));
    o += parts.back().numel();
    in.total += B * p.size(2) * p.size(3);
  }
  (void)D;
  in.f2 = at::cat(parts);
  in.c = coords.to(at::kFloat).contiguous();
  return in;
}

void check_otf(const at::Tensor& fmap1, const at::Tensor& fmap2, const at::Tensor& coords, int64_t radius,
               int64_t num_levels) {
  check_pair(fmap1, fmap2, true, false);
  check_gpu(fmap1, "fmap1");
  check_coords(coords, fmap1.size(0), fmap1.size(2), fmap1.size(3), fmap1, "fmap1");
  check_radius(radius);
  check_levels(num_levels);
  TORCH_CHECK_VALUE(hmore_corr_otf_supported(int(radius), int(num_levels)),
                    "radius, num_levels: the cuda backend's corr_lookup_otf keeps a (2r+2)^2 window per level in "
                    "shared memory and supports num_levels <= ", HMORE_CORR_MAX_LEVELS,
                    " with (2r+2)^2 * (num_levels + 1) * 16 bytes <= 48 KiB (e.g. radius <= 10 at 4 levels), got "
                    "radius=", radius, ", num_levels=", num_levels, "; use backend='triton' or mode='allpairs'");
}

}  // namespace

at::Tensor corr_lookup_otf_cuda(const at::Tensor& fmap1, const at::Tensor& fmap2, const at::Tensor& coords,
                                int64_t radius, int64_t num_levels, c10::optional<double> scale, std::string layout,
                                bool deterministic) {
  (void)deterministic;  // the forward has no atomics
  check_otf(fmap1, fmap2, coords, radius, num_levels);
  const int lay = parse_layout(layout);
  c10::cuda::CUDAGuard guard(fmap1.device());
  const int64_t B = fmap1.size(0), D = fmap1.size(1), H1 = fmap1.size(2), W1 = fmap1.size(3);
  const int64_t T = (2 * radius + 1) * (2 * radius + 1);
  const double s = resolve_scale(scale, D);
  at::Tensor out = at::empty({B, num_levels * T, H1, W1}, fmap1.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  OtfInputs in = otf_inputs(fmap1, fmap2, coords, num_levels);
  check_launch(hmore_corr_otf_forward_cuda(in.f1.data_ptr(), in.f2.data_ptr(), in.off.data(), in.h.data(),
                                           in.w.data(), int(num_levels), in.c.data_ptr<float>(),
                                           out.data_ptr<float>(), B, H1, W1, D, int(radius), lay, float(s),
                                           dtype_code(fmap1), stream()),
               "corr_lookup_otf");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> corr_lookup_otf_backward_cuda(
    const at::Tensor& grad, const at::Tensor& fmap1, const at::Tensor& fmap2, const at::Tensor& coords,
    int64_t radius, int64_t num_levels, c10::optional<double> scale, std::string layout, bool deterministic) {
  check_otf(fmap1, fmap2, coords, radius, num_levels);
  check_same_device(grad, "grad", fmap1, "fmap1");
  const int lay = parse_layout(layout);
  const int64_t B = fmap1.size(0), D = fmap1.size(1), H1 = fmap1.size(2), W1 = fmap1.size(3);
  const int64_t H2 = fmap2.size(2), W2 = fmap2.size(3);
  const int64_t T = (2 * radius + 1) * (2 * radius + 1), SS = (2 * radius + 2) * (2 * radius + 2);
  check_lookup_grad(grad, B, num_levels * T, H1, W1);
  c10::cuda::CUDAGuard guard(fmap1.device());
  const double s = resolve_scale(scale, D);
  const int64_t N = B * H1 * W1;
  at::Tensor gc = at::zeros({B, 2, H1, W1}, coords.options().dtype(at::kFloat));
  if (N == 0 || D == 0 || H2 == 0 || W2 == 0)
    return {at::zeros(fmap1.sizes(), fmap1.options()), at::zeros(fmap2.sizes(), fmap2.options()),
            gc.to(coords.scalar_type())};
  OtfInputs in = otf_inputs(fmap1, fmap2, coords, num_levels);
  const at::Tensor g = grad.to(at::kFloat).contiguous();
  const auto f32 = fmap1.options().dtype(at::kFloat);
  at::Tensor gf1 = at::empty({N, D}, f32);
  at::Tensor g2 = at::zeros({in.total * D}, f32);
  at::Tensor gw, keys;
  if (deterministic) {
    gw = at::empty({N * num_levels * SS}, f32);
    keys = at::empty({N * num_levels * SS}, fmap1.options().dtype(at::kLong));
  }
  const int dt = dtype_code(fmap1);
  std::vector<int64_t> goff;
  for (int64_t l = 0; l < num_levels; ++l) goff.push_back(in.tstart[l] * D);
  check_launch(hmore_corr_otf_backward_cuda(in.f1.data_ptr(), in.f2.data_ptr(), in.off.data(), in.h.data(),
                                            in.w.data(), in.tstart.data(), in.total, int(num_levels),
                                            g.data_ptr<float>(), in.c.data_ptr<float>(), gc.data_ptr<float>(),
                                            gf1.data_ptr<float>(), g2.data_ptr<float>(),
                                            deterministic ? gw.data_ptr<float>() : nullptr,
                                            deterministic ? keys.data_ptr<int64_t>() : nullptr, deterministic, B, H1,
                                            W1, D, int(radius), lay, float(s), dt, stream()),
               "_corr_lookup_otf_backward");
  if (deterministic) {
    // CSR by target: a stable sort keeps each target's entries in increasing (query, level, window) order
    auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    at::Tensor start = at::searchsorted(std::get<0>(sorted), at::arange(in.total + 1, keys.options()));
    check_launch(hmore_corr_otf_scatter_cuda(std::get<1>(sorted).data_ptr<int64_t>(), start.data_ptr<int64_t>(),
                                             gw.data_ptr<float>(), in.f1.data_ptr(), g2.data_ptr<float>(), in.total,
                                             D, num_levels * SS, float(s), dt, stream()),
                 "_corr_lookup_otf_backward (scatter)");
  }
  // adjoint of the pooling, coarsest level first, into level 0
  float* g2p = g2.data_ptr<float>();
  for (int64_t l = num_levels - 1; l >= 1; --l)
    check_launch(hmore_corr_unpool_add_cuda(g2p + goff[l - 1], g2p + goff[l], B, in.h[l - 1], in.w[l - 1], in.h[l],
                                            in.w[l], D, stream()),
                 "_corr_lookup_otf_backward (unpool)");
  at::Tensor gfm1 = gf1.view({B, H1, W1, D}).permute({0, 3, 1, 2}).to(fmap1.scalar_type()).contiguous();
  at::Tensor gfm2 =
      g2.narrow(0, 0, B * H2 * W2 * D).view({B, H2, W2, D}).permute({0, 3, 1, 2}).to(fmap2.scalar_type()).contiguous();
  return {gfm1, gfm2, gc.to(coords.scalar_type())};
}

// ------------------------------------------------------------------------------------------ local_corr
at::Tensor local_corr_cuda(const at::Tensor& fmap1, const at::Tensor& fmap2, int64_t max_displacement, int64_t stride,
                           int64_t dilation, c10::optional<double> scale) {
  check_pair(fmap1, fmap2, true, true);
  check_gpu(fmap1, "fmap1");
  check_local_args(max_displacement, stride, dilation);
  c10::cuda::CUDAGuard guard(fmap1.device());
  const int64_t B = fmap1.size(0), D = fmap1.size(1), H = fmap1.size(2), W = fmap1.size(3);
  const int64_t K = (2 * max_displacement + 1) * (2 * max_displacement + 1);
  const int64_t Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
  const double s = resolve_scale(scale, D);
  at::Tensor out = at::empty({B, K, Ho, Wo}, fmap1.options());
  if (out.numel() == 0) return out;
  const at::Tensor f1 = fmap1.contiguous(), f2 = fmap2.contiguous();
  check_launch(hmore_local_corr_forward_cuda(f1.data_ptr(), f2.data_ptr(), out.data_ptr(), B, D, H, W,
                                             int(max_displacement), to_int(stride, "stride"),
                                             to_int(dilation, "dilation"), float(s), dtype_code(f1), stream()),
               "local_corr");
  return out;
}

std::tuple<at::Tensor, at::Tensor> local_corr_backward_cuda(const at::Tensor& grad, const at::Tensor& fmap1,
                                                            const at::Tensor& fmap2, int64_t max_displacement,
                                                            int64_t stride, int64_t dilation,
                                                            c10::optional<double> scale) {
  check_pair(fmap1, fmap2, true, true);
  check_gpu(fmap1, "fmap1");
  check_local_args(max_displacement, stride, dilation);
  check_same_device(grad, "grad", fmap1, "fmap1");
  const int64_t B = fmap1.size(0), D = fmap1.size(1), H = fmap1.size(2), W = fmap1.size(3);
  const int64_t K = (2 * max_displacement + 1) * (2 * max_displacement + 1);
  const int64_t Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == B && grad.size(1) == K && grad.size(2) == Ho &&
                        grad.size(3) == Wo,
                    "grad: expected shape [", B, ", ", K, ", ", Ho, ", ", Wo, "], got ", grad.sizes());
  c10::cuda::CUDAGuard guard(fmap1.device());
  const double s = resolve_scale(scale, D);
  at::Tensor g1 = at::empty(fmap1.sizes(), fmap1.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor g2 = at::empty(fmap2.sizes(), fmap2.options().memory_format(at::MemoryFormat::Contiguous));
  if (g1.numel() == 0) return {g1, g2};
  const at::Tensor g = grad.to(at::kFloat).contiguous();
  const at::Tensor f1 = fmap1.contiguous(), f2 = fmap2.contiguous();
  check_launch(hmore_local_corr_backward_cuda(g.data_ptr<float>(), f1.data_ptr(), f2.data_ptr(), g1.data_ptr(),
                                              g2.data_ptr(), B, D, H, W, int(max_displacement),
                                              to_int(stride, "stride"), to_int(dilation, "dilation"), float(s),
                                              dtype_code(f1), stream()),
               "_local_corr_backward");
  return {g1, g2};
}

}  // namespace corr
}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CUDA, m) {
  using namespace hmore::corr;
  m.impl("corr_volume", &corr_volume_cuda);
  m.impl("_corr_volume_backward", &corr_volume_backward_cuda);
  m.impl("corr_pyramid", &corr_pyramid_cuda);
  m.impl("_corr_pyramid_backward", &corr_pyramid_backward_cuda);
  m.impl("corr_lookup", &corr_lookup_cuda);
  m.impl("_corr_lookup_backward", &corr_lookup_backward_cuda);
  m.impl("corr_lookup_otf", &corr_lookup_otf_cuda);
  m.impl("_corr_lookup_otf_backward", &corr_lookup_otf_backward_cuda);
  m.impl("local_corr", &local_corr_cuda);
  m.impl("_local_corr_backward", &local_corr_backward_cuda);
}
