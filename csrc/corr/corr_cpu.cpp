// CPU kernels of the correlation family (docs/ops.md §1): corr_volume, corr_pyramid, corr_lookup,
// corr_lookup_otf, local_corr, forward and backward. float32 and float64; float32 accumulates in float
// (lookups add 4 products; dot products go through BLAS or a vectorised float loop).
//
// * corr_volume: one batched GEMM (baddbmm with alpha = scale, beta = 0: the scale is fused).
// * corr_pyramid: level 0 is the volume, levels l >= 1 pool the stored level l-1 (pool_planes, ATen's
//   avg_pool2d summation order), so the levels are RAFT's to the bit given level 0. Measured on the
//   shared 2-core EPYC at 1/8 of 736x1280 (92x160), D = 256: pooling levels 1-3 costs 0.1-1.3 s (memory
//   bound, noisy under load) against 1.4 s for correlating fmap1 with the pooled fmap2 per level (a GEMM
//   of 1/4 + 1/16 + 1/64 of the volume's flops); at D = 128 the two are about even. Pooling wins or
//   ties and keeps RAFT's exact numbers. The backward goes the other way (linearity): grad fmap1 =
//   sum_l scale * G_l @ pool_l(fmap2)^T and grad fmap2 = sum_l unpool_l(scale * fmap1^T @ G_l), so no
//   volume-sized temporary is made beyond the incoming grads.
// * corr_lookup: one pass over query pixels covering all levels and taps; x and y footprints are
//   separable, so the (2r+1) x- and y-footprints are computed once per level and combined. Backward: a
//   query pixel touches only its own slice of every level, so the scatter has no conflicts.
// * corr_lookup_otf: per query pixel and level, dot products of fmap1(p) with the pooled fmap2 (channels
//   last) at the integer positions the window's bilinear corners cover (at most (2r+3)^2, in-image only),
//   then the bilinear combination. Backward: grad fmap1 and coords are gathers per pixel; grad of each
//   pooled fmap2 level is a scatter made deterministic without atomics: pixels are bucketed by the first
//   row of their patch and every thread owns a band of output rows, visiting buckets in order, so each
//   output cell sums its contributions in the same order whatever the number of threads; then the
//   adjoint of pooling brings the levels down to fmap2.
// * local_corr: channels-last copies of both maps, dot products per tap; backward gathers (grad fmap2
//   at q collects from the fmap1 pixels whose taps hit q), so it costs what the forward costs.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/avg_pool2d_backward.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/add.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <vector>

#include "common.h"
#include "corr/corr.h"
#include "corr/corr_pool.h"
#include "corr/corr_kernels.cuh"

namespace hmore {
namespace corr {
namespace {

// `omp simd reduction` lets the compiler split the sum into vector lanes (a fixed order for a given
// build, so results stay reproducible run to run); without it GCC keeps a float reduction scalar.
template <typename A>
inline A dot(const A* __restrict__ a, const A* __restrict__ b, int64_t n) {
  A s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

// The float dot product is the on-the-fly lookup's inner loop: built twice, for AVX2+FMA and for the
// baseline ISA the extension is compiled for, picked once at load time (GCC function multiversioning),
// so the wheel stays portable and a modern CPU gets 8-wide FMA lanes.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("arch=haswell", "default")))
#endif
float dot_f32(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

template <>
inline float dot<float>(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  return dot_f32(a, b, n);
}

template <typename A>
inline void axpy(A alpha, const A* __restrict__ x, A* __restrict__ y, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) y[k] += alpha * x[k];
}

// [B, D, H, W] -> contiguous [B, H, W, D] in dtype `st`.
at::Tensor channels_last(const at::Tensor& t, at::ScalarType st) {
  return t.to(st).permute({0, 2, 3, 1}).contiguous();
}

at::ScalarType acc_type(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }


// ------------------------------------------------------------------------------------------ volume
// [B, D, H1, W1] x [B, D, H2, W2] -> [B, N1, N2] (fmap dtype) = scale * f1^T f2
at::Tensor volume_flat(const at::Tensor& f1, const at::Tensor& f2, double s) {
  const int64_t B = f1.size(0), D = f1.size(1), N1 = f1.size(2) * f1.size(3), N2 = f2.size(2) * f2.size(3);
  at::Tensor a = f1.reshape({B, D, N1}).transpose(1, 2);
  at::Tensor b = f2.reshape({B, D, N2});
  if (D == 0 || B == 0 || N1 == 0 || N2 == 0) return at::zeros({B, N1, N2}, f1.options());
  at::Tensor out = at::empty({B, N1, N2}, f1.options());
  return at::baddbmm(out, a, b, /*beta=*/0, /*alpha=*/s);
}

at::Tensor corr_volume_cpu(const at::Tensor& fmap1, const at::Tensor& fmap2, c10::optional<double> scale) {
  check_pair(fmap1, fmap2, false, false);
  const double s = resolve_scale(scale, fmap1.size(1));
  return volume_flat(fmap1, fmap2, s).reshape({fmap1.size(0), fmap1.size(2), fmap1.size(3), fmap2.size(2), fmap2.size(3)});
}

// grads G_l [B, N1, n2_l] of levels (level 0 = volume) with the pooled fmap2 levels f2l [B, D, h_l, w_l].
std::tuple<at::Tensor, at::Tensor> levels_backward(const std::vector<at::Tensor>& G, const at::Tensor& f1,
                                                   const at::Tensor& f2, double s) {
  const int64_t B = f1.size(0), D = f1.size(1), N1 = f1.size(2) * f1.size(3);
  const int64_t L = static_cast<int64_t>(G.size());
  // No feature channels (or no pixels): the gradients are empty or zero. Checked before pooling fmap2,
  // which avg_pool2d refuses for an empty tensor ("Expected 3D or 4D (batch mode) tensor").
  if (f1.numel() == 0 || f2.numel() == 0) return {at::zeros_like(f1, at::MemoryFormat::Contiguous),
                                                  at::zeros_like(f2, at::MemoryFormat::Contiguous)};
  std::vector<at::Tensor> f2l{f2};
  for (int64_t l = 1; l < L; ++l) f2l.push_back(pool2(f2l.back()));
  at::Tensor a = f1.reshape({B, D, N1});  // [B, D, N1]
  at::Tensor g1 = at::zeros({B, N1, D}, f1.options());
  at::Tensor g2 = at::zeros_like(f2l[L - 1], at::MemoryFormat::Contiguous);
  for (int64_t l = L - 1; l >= 0; --l) {
    if (l < L - 1) g2 = unpool2(g2, f2l[l]);
    if (!G[l].defined() || G[l].numel() == 0 || D == 0) continue;
    const int64_t h = f2l[l].size(2), w = f2l[l].size(3);
    at::Tensor b = f2l[l].reshape({B, D, h * w});
    at::Tensor Gl = G[l].reshape({B, N1, h * w}).to(f1.scalar_type());
    g1.baddbmm_(Gl, b.transpose(1, 2), 1, s);                              // [B, N1, D]
    g2.add_(at::bmm(a, Gl).mul_(s).reshape({B, D, h, w}));                 // [B, D, h, w]
  }
  at::Tensor g1o = g1.transpose(1, 2).reshape({B, D, f1.size(2), f1.size(3)}).contiguous();
  return {g1o, g2.contiguous()};
}

std::tuple<at::Tensor, at::Tensor> corr_volume_backward_cpu(const at::Tensor& grad, const at::Tensor& fmap1,
                                                            const at::Tensor& fmap2, c10::optional<double> scale) {
  check_pair(fmap1, fmap2, false, false);
  const int64_t B = fmap1.size(0), N1 = fmap1.size(2) * fmap1.size(3), N2 = fmap2.size(2) * fmap2.size(3);
  TORCH_CHECK_VALUE(grad.numel() == B * N1 * N2, "grad: expected shape [", B, ", ", fmap1.size(2), ", ",
                    fmap1.size(3), ", ", fmap2.size(2), ", ", fmap2.size(3), "], got ", grad.sizes());
  const double s = resolve_scale(scale, fmap1.size(1));
  return levels_backward({grad.reshape({B, N1, N2})}, fmap1, fmap2, s);
}

// ------------------------------------------------------------------------------------------ pyramid
// avg_pool2d(2, stride 2, floor) of [N, 1, h, w] planes: many tiny planes, where at::avg_pool2d spends
// more on per-plane overhead than on the memory pass. Same summation order as ATen's CPU kernel
// (row by row, left to right, then / 4), so the levels are RAFT's to the bit.
template <typename T>
void pool_planes_kernel(const T* in, T* out, int64_t N, int64_t h, int64_t w) {
  const int64_t ho = h / 2, wo = w / 2;
  at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, h * w)), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const T* src = in + n * h * w;
      T* dst = out + n * ho * wo;
      for (int64_t i = 0; i < ho; ++i) {
        const T* r0 = src + 2 * i * w;
        const T* r1 = r0 + w;
        for (int64_t j = 0; j < wo; ++j) dst[i * wo + j] = pool4(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
      }
    }
  });
}

at::Tensor pool_planes(const at::Tensor& x) {
  const int64_t N = x.size(0), h = x.size(2), w = x.size(3);
  at::Tensor out = at::empty({N, 1, h / 2, w / 2}, x.options());
  if (out.numel() == 0) return out;
  at::Tensor xc = x.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "corr_pool_planes",
                             [&] { pool_planes_kernel<scalar_t>(xc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, h, w); });
  return out;
}

std::vector<at::Tensor> corr_pyramid_cpu(const at::Tensor& fmap1, const at::Tensor& fmap2, int64_t num_levels,
                                         c10::optional<double> scale) {
  check_pair(fmap1, fmap2, false, false);
  check_levels(num_levels);
  const double s = resolve_scale(scale, fmap1.size(1));
  const int64_t N = fmap1.size(0) * fmap1.size(2) * fmap1.size(3);
  std::vector<at::Tensor> out;
  out.push_back(volume_flat(fmap1, fmap2, s).reshape({N, 1, fmap2.size(2), fmap2.size(3)}));
  for (int64_t l = 1; l < num_levels; ++l) out.push_back(pool_planes(out.back()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> corr_pyramid_backward_cpu(const std::vector<c10::optional<at::Tensor>>& grads,
                                                             const at::Tensor& fmap1, const at::Tensor& fmap2,
                                                             c10::optional<double> scale) {
  check_pair(fmap1, fmap2, false, false);
  const double s = resolve_scale(scale, fmap1.size(1));
  std::vector<at::Tensor> G;
  for (const auto& g : grads) G.push_back(g.has_value() ? *g : at::Tensor());
  TORCH_CHECK_VALUE(!G.empty(), "grads: expected one gradient per level, got an empty list");
  return levels_backward(G, fmap1, fmap2, s);
}

// ------------------------------------------------------------------------------------------ lookup
// Bilinear footprint of the 2r+1 taps along one axis of one level: lower corner and weights.
template <typename A>
struct Footprint {
  std::vector<int64_t> i0;
  std::vector<A> w0, w1;
  explicit Footprint(int n) : i0(n), w0(n), w1(n) {}
  void set(A center, int r) {
    for (int k = 0; k < 2 * r + 1; ++k) {
      long long x0;
      bilinear_1d<A>(center + A(k - r), x0, w0[k], w1[k]);
      i0[k] = x0;
    }
  }
};

template <typename T>
at::Tensor lookup_kernel(const std::vector<at::Tensor>& pyr, const at::Tensor& coords, int r, int layout) {
  using A = T;
  const int64_t B = coords.size(0), H1 = coords.size(2), W1 = coords.size(3), HW = H1 * W1;
  const int L = static_cast<int>(pyr.size());
  const int n = 2 * r + 1, T_ = n * n;
  at::Tensor out = at::empty({B, L * T_, H1, W1}, coords.options().dtype(c10::CppTypeToScalarType<T>::value));
  if (out.numel() == 0) return out;
  at::Tensor c = coords.to(out.scalar_type()).contiguous();
  const A* cp = c.data_ptr<A>();
  std::vector<const T*> lp(L);
  std::vector<int64_t> lh(L), lw(L);
  for (int l = 0; l < L; ++l) {
    lp[l] = pyr[l].data_ptr<T>();
    lh[l] = pyr[l].size(2);
    lw[l] = pyr[l].size(3);
  }
  A* op = out.data_ptr<A>();
  at::parallel_for(0, B * HW, std::max<int64_t>(1, 4096 / (L * T_)), [&](int64_t begin, int64_t end) {
    Footprint<A> fx(n), fy(n);
    for (int64_t q = begin; q < end; ++q) {
      const int64_t b = q / HW, p = q % HW;
      const A cx = cp[(b * 2) * HW + p], cy = cp[(b * 2 + 1) * HW + p];
      A* o = op + b * L * T_ * HW + p;
      for (int l = 0; l < L; ++l) {
        const int64_t h = lh[l], w = lw[l];
        fx.set(level_center(cx, l), r);
        fy.set(level_center(cy, l), r);
        const T* plane = lp[l] + q * h * w;
        for (int a = 0; a < n; ++a) {      // dx index
          for (int bb = 0; bb < n; ++bb) {  // dy index
            const int64_t x0 = fx.i0[a], y0 = fy.i0[bb];
            const bool ix0 = inside(x0, w), ix1 = inside(x0 + 1, w), iy0 = inside(y0, h), iy1 = inside(y0 + 1, h);
            const A v00 = (iy0 && ix0) ? A(plane[y0 * w + x0]) : A(0);
            const A v01 = (iy0 && ix1) ? A(plane[y0 * w + x0 + 1]) : A(0);
            const A v10 = (iy1 && ix0) ? A(plane[(y0 + 1) * w + x0]) : A(0);
            const A v11 = (iy1 && ix1) ? A(plane[(y0 + 1) * w + x0 + 1]) : A(0);
            const A wx0 = fx.w0[a], wx1 = fx.w1[a], wy0 = fy.w0[bb], wy1 = fy.w1[bb];
            // A level 0 pixels wide holds nothing: its taps read 0 whatever the coordinate (the
            // reference's rule; a NaN weight times the zero padding would make them NaN).
            const A v = (h == 0 || w == 0) ? A(0)
                                           : v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1);
            const int t = tap_index(a - r, bb - r, r, layout);
            o[(l * T_ + t) * HW] = v;
          }
        }
      }
    }
  });
  return out;
}

at::Tensor corr_lookup_cpu(at::TensorList pyramid, const at::Tensor& coords, int64_t radius, std::string layout,
                           bool deterministic) {
  (void)deterministic;  // the CPU kernels never use atomics
  check_pyramid(pyramid, coords, false);
  check_radius(radius);
  const int lay = parse_layout(layout);
  std::vector<at::Tensor> pyr;
  for (const auto& p : pyramid) pyr.push_back(p.contiguous());
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(pyr[0].scalar_type(), "corr_lookup_cpu",
                             [&] { out = lookup_kernel<scalar_t>(pyr, coords, static_cast<int>(radius), lay); });
  return out;
}

template <typename T>
void lookup_backward_kernel(const at::Tensor& grad, const std::vector<at::Tensor>& pyr, const at::Tensor& c,
                            std::vector<at::Tensor>& gp, at::Tensor& gc, int r, int layout) {
  using A = T;
  const int64_t B = c.size(0), HW = c.size(2) * c.size(3);
  const int L = static_cast<int>(pyr.size());
  const int n = 2 * r + 1, T_ = n * n;
  const A* cp = c.data_ptr<A>();
  const A* gp_in = grad.data_ptr<A>();
  A* gcp = gc.data_ptr<A>();
  at::parallel_for(0, B * HW, std::max<int64_t>(1, 4096 / (L * T_)), [&](int64_t begin, int64_t end) {
    Footprint<A> fx(n), fy(n);
    for (int64_t q = begin; q < end; ++q) {
      const int64_t b = q / HW, p = q % HW;
      const A cx = cp[(b * 2) * HW + p], cy = cp[(b * 2 + 1) * HW + p];
      const A* g = gp_in + b * L * T_ * HW + p;
      A gx_sum = 0, gy_sum = 0;
      for (int l = 0; l < L; ++l) {
        const int64_t h = pyr[l].size(2), w = pyr[l].size(3);
        if (h == 0 || w == 0) continue;
        fx.set(level_center(cx, l), r);
        fy.set(level_center(cy, l), r);
        const T* plane = pyr[l].data_ptr<T>() + q * h * w;
        T* gplane = gp[l].data_ptr<T>() + q * h * w;
        A lgx = 0, lgy = 0;
        for (int a = 0; a < n; ++a) {
          for (int bb = 0; bb < n; ++bb) {
            const A go = g[(l * T_ + tap_index(a - r, bb - r, r, layout)) * HW];
            const int64_t x0 = fx.i0[a], y0 = fy.i0[bb];
            const bool ix0 = inside(x0, w), ix1 = inside(x0 + 1, w), iy0 = inside(y0, h), iy1 = inside(y0 + 1, h);
            const A wx0 = fx.w0[a], wx1 = fx.w1[a], wy0 = fy.w0[bb], wy1 = fy.w1[bb];
            A v00 = 0, v01 = 0, v10 = 0, v11 = 0;
            if (iy0 && ix0) { v00 = plane[y0 * w + x0]; gplane[y0 * w + x0] += go * (wx0 * wy0); }
            if (iy0 && ix1) { v01 = plane[y0 * w + x0 + 1]; gplane[y0 * w + x0 + 1] += go * (wx1 * wy0); }
            if (iy1 && ix0) { v10 = plane[(y0 + 1) * w + x0]; gplane[(y0 + 1) * w + x0] += go * (wx0 * wy1); }
            if (iy1 && ix1) { v11 = plane[(y0 + 1) * w + x0 + 1]; gplane[(y0 + 1) * w + x0 + 1] += go * (wx1 * wy1); }
            lgx += go * (wy0 * (v01 - v00) + wy1 * (v11 - v10));
            lgy += go * (wx0 * (v10 - v00) + wx1 * (v11 - v01));
          }
        }
        const A inv = level_inv_scale<A>(l);
        gx_sum += lgx * inv;
        gy_sum += lgy * inv;
      }
      gcp[(b * 2) * HW + p] = gx_sum;
      gcp[(b * 2 + 1) * HW + p] = gy_sum;
    }
  });
}

std::tuple<std::vector<at::Tensor>, at::Tensor> corr_lookup_backward_cpu(const at::Tensor& grad,
                                                                         at::TensorList pyramid,
                                                                         const at::Tensor& coords, int64_t radius,
                                                                         std::string layout, bool deterministic) {
  (void)deterministic;
  check_pyramid(pyramid, coords, false);
  check_radius(radius);
  const int lay = parse_layout(layout);
  const int64_t T_ = (2 * radius + 1) * (2 * radius + 1);
  const int64_t L = static_cast<int64_t>(pyramid.size());
  check_lookup_grad(grad, coords.size(0), L * T_, coords.size(2), coords.size(3));
  std::vector<at::Tensor> pyr, gp;
  for (const auto& p : pyramid) {
    pyr.push_back(p.contiguous());
    gp.push_back(at::zeros(p.sizes(), p.options()));
  }
  const auto st = pyr[0].scalar_type();
  at::Tensor c = coords.to(st).contiguous();
  at::Tensor g = grad.to(st).contiguous();
  at::Tensor gc = at::zeros(c.sizes(), c.options());
  if (c.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(st, "corr_lookup_backward_cpu", [&] {
      lookup_backward_kernel<scalar_t>(g, pyr, c, gp, gc, static_cast<int>(radius), lay);
    });
  }
  return {gp, gc.to(coords.scalar_type())};
}

// ------------------------------------------------------------------------------------------ on the fly
// avg_pool2d (2, stride 2, floor) of a channels-last [B, h, w, D] map: the four source pixels are
// contiguous D-vectors, so this is a vectorised pass; pool4 keeps avg_pool2d's summation order, so the
// levels equal at::avg_pool2d's. (at::avg_pool2d on the [B, D, h, w] map plus a channels-last copy per
// level cost ~1 ms per call at 46x62, D = 128 -- 15% of a lookup there; the op is called once per lookup.)
template <typename A>
void pool_cl_kernel(const A* in, A* out, int64_t B, int64_t h, int64_t w, int64_t D) {
  const int64_t ho = h / 2, wo = w / 2;
  at::parallel_for(0, B * ho, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, wo * D)), [&](int64_t b0, int64_t e0) {
    for (int64_t bi = b0; bi < e0; ++bi) {
      const int64_t b = bi / ho, i = bi % ho;
      const A* r0 = in + ((b * h + 2 * i) * w) * D;
      const A* r1 = r0 + w * D;
      A* o = out + bi * wo * D;
      for (int64_t j = 0; j < wo; ++j) {
        const A* a = r0 + 2 * j * D;
        const A* c = r1 + 2 * j * D;
        A* oj = o + j * D;
#pragma omp simd
        for (int64_t k = 0; k < D; ++k) oj[k] = pool4(a[k], a[D + k], c[k], c[D + k]);
      }
    }
  });
}

// Channels-last pooled fmap2 levels [B, h_l, w_l, D] (level 0 = fmap2), in the accumulation dtype.
std::vector<at::Tensor> pooled_levels(const at::Tensor& f2, int64_t L, at::ScalarType st) {
  std::vector<at::Tensor> lv;
  lv.push_back(f2.to(st).permute({0, 2, 3, 1}).contiguous());
  const int64_t B = f2.size(0), D = f2.size(1);
  for (int64_t l = 1; l < L; ++l) {
    const at::Tensor& prev = lv.back();
    const int64_t h = prev.size(1), w = prev.size(2);
    at::Tensor cur = at::empty({B, h / 2, w / 2, D}, prev.options());
    if (cur.numel() > 0) {
      AT_DISPATCH_FLOATING_TYPES(st, "corr_pool_cl", [&] {
        pool_cl_kernel<scalar_t>(prev.data_ptr<scalar_t>(), cur.data_ptr<scalar_t>(), B, h, w, D);
      });
    }
    lv.push_back(cur);
  }
  return lv;
}

// Patch of integer positions one level's window covers for a query: rows [y_lo, y_lo + ph), columns
// [x_lo, x_lo + pw), intersected with the level (empty when the window is outside).
struct Patch {
  int64_t y_lo = 0, x_lo = 0, ph = 0, pw = 0;
};

template <typename A>
Patch patch_of(const Footprint<A>& fx, const Footprint<A>& fy, int n, int64_t h, int64_t w) {
  // i0 is non-decreasing along the taps (centre + k rounds monotonically)
  Patch pt;
  const int64_t xa = std::max<int64_t>(fx.i0[0], 0), xb = std::min<int64_t>(fx.i0[n - 1] + 1, w - 1);
  const int64_t ya = std::max<int64_t>(fy.i0[0], 0), yb = std::min<int64_t>(fy.i0[n - 1] + 1, h - 1);
  if (xa > xb || ya > yb) return pt;
  pt.x_lo = xa;
  pt.y_lo = ya;
  pt.pw = xb - xa + 1;
  pt.ph = yb - ya + 1;
  return pt;
}

// Value at integer (y, x) of the patch's dot products, 0 outside the patch (= outside the level).
template <typename A>
inline A patch_at(const A* dots, const Patch& pt, int64_t y, int64_t x) {
  const int64_t yy = y - pt.y_lo, xx = x - pt.x_lo;
  return (yy >= 0 && yy < pt.ph && xx >= 0 && xx < pt.pw) ? dots[yy * pt.pw + xx] : A(0);
}

// dots[yy * ld + xx] = s * <fmap1(p), level(y_lo + yy, x_lo + xx)> over the patch (ld = pw: packed).
template <typename A>
void patch_dots(const A* f1p, const A* lvl, int64_t w, int64_t D, const Patch& pt, A s, A* dots, int64_t ld) {
  for (int64_t yy = 0; yy < pt.ph; ++yy)
    for (int64_t xx = 0; xx < pt.pw; ++xx)
      dots[yy * ld + xx] = s * dot(f1p, lvl + ((pt.y_lo + yy) * w + pt.x_lo + xx) * D, D);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HMORE_CORR_AVX2 1
// One row of a float patch: the pw positions are contiguous in the channels-last level (pw * D floats),
// so fmap1(p) is loaded once per 8 channels for NX positions (NX accumulators in registers) instead of
// once per position: ~1 + 1/NX loads per FMA instead of 2, and no call or reduction set-up per dot.
// (The extension is built with -std=c++17, i.e. -ffp-contract=off, so the FMAs are written out.)
template <int NX>
__attribute__((target("avx2,fma"))) inline void row_dots_avx2(const float* __restrict__ f1p,
                                                              const float* __restrict__ row, int64_t D, float s,
                                                              float* __restrict__ out) {
  __m256 acc[NX];
  for (int j = 0; j < NX; ++j) acc[j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= D; k += 8) {
    const __m256 a = _mm256_loadu_ps(f1p + k);
    for (int j = 0; j < NX; ++j) acc[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + j * D + k), acc[j]);
  }
  for (int j = 0; j < NX; ++j) {
    // fixed reduction order: (lo + hi) halves, then pairs
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
    float t = _mm_cvtss_f32(v);
    for (int64_t kk = k; kk < D; ++kk) t += f1p[kk] * row[j * D + kk];
    out[j] = s * t;
  }
}

__attribute__((target("avx2,fma"))) void patch_dots_avx2(const float* f1p, const float* lvl, int64_t w, int64_t D,
                                                         const Patch& pt, float s, float* dots, int64_t ld) {
  for (int64_t yy = 0; yy < pt.ph; ++yy) {
    const float* row = lvl + ((pt.y_lo + yy) * w + pt.x_lo) * D;
    float* o = dots + yy * ld;
    int64_t x = 0;
    while (x < pt.pw) {
      const int64_t rem = pt.pw - x;
      // at most 8 accumulators (16 ymm registers); split wider rows evenly (9 -> 5 + 4, 11 -> 6 + 5)
      const int64_t nx = rem <= 8 ? rem : (rem <= 16 ? (rem + 1) / 2 : 8);
      const float* rp = row + x * D;
      switch (nx) {
        case 1: row_dots_avx2<1>(f1p, rp, D, s, o + x); break;
        case 2: row_dots_avx2<2>(f1p, rp, D, s, o + x); break;
        case 3: row_dots_avx2<3>(f1p, rp, D, s, o + x); break;
        case 4: row_dots_avx2<4>(f1p, rp, D, s, o + x); break;
        case 5: row_dots_avx2<5>(f1p, rp, D, s, o + x); break;
        case 6: row_dots_avx2<6>(f1p, rp, D, s, o + x); break;
        case 7: row_dots_avx2<7>(f1p, rp, D, s, o + x); break;
        default: row_dots_avx2<8>(f1p, rp, D, s, o + x); break;
      }
      x += nx;
    }
  }
}

const bool kHaveAvx2Fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif

template <>
void patch_dots<float>(const float* f1p, const float* lvl, int64_t w, int64_t D, const Patch& pt, float s,
                       float* dots, int64_t ld) {
#ifdef HMORE_CORR_AVX2
  if (kHaveAvx2Fma) {
    patch_dots_avx2(f1p, lvl, w, D, pt, s, dots, ld);
    return;
  }
#endif
  for (int64_t yy = 0; yy < pt.ph; ++yy)
    for (int64_t xx = 0; xx < pt.pw; ++xx)
      dots[yy * ld + xx] = s * dot(f1p, lvl + ((pt.y_lo + yy) * w + pt.x_lo + xx) * D, D);
}

template <typename A>
void otf_forward_kernel(const at::Tensor& f1, const std::vector<at::Tensor>& lv, const at::Tensor& c, at::Tensor& out,
                        int r, int layout, A s) {
  // f1 is [B, D, H1, W1] contiguous: each pixel's D features are gathered (stride H1*W1) into a
  // thread-local vector -- D loads per pixel against ~(2r+2)^2 * D * L multiply-adds, and no
  // channels-last copy of fmap1 (that copy would be most of this op's memory at 1088x1920).
  const int64_t B = f1.size(0), HW = f1.size(2) * f1.size(3), D = f1.size(1);
  const int L = static_cast<int>(lv.size());
  const int n = 2 * r + 1, T_ = n * n;
  const A* cp = c.data_ptr<A>();
  const A* f1p0 = f1.data_ptr<A>();
  A* op = out.data_ptr<A>();
  std::vector<const A*> lvp(L);
  for (int l = 0; l < L; ++l) lvp[l] = lv[l].data_ptr<A>();
  const int64_t G = n + 2;  // side of the padded window grid
  at::parallel_for(0, B * HW, 1, [&](int64_t begin, int64_t end) {
    Footprint<A> fx(n), fy(n);
    std::vector<A> dots(static_cast<size_t>(n + 2) * (n + 2)), feat(D), grid(static_cast<size_t>(G * G));
    for (int64_t q = begin; q < end; ++q) {
      const int64_t b = q / HW, p = q % HW;
      const A cx = cp[(b * 2) * HW + p], cy = cp[(b * 2 + 1) * HW + p];
      const A* src = f1p0 + b * D * HW + p;
      for (int64_t k = 0; k < D; ++k) feat[k] = src[k * HW];
      const A* f1p = feat.data();
      A* o = op + b * L * T_ * HW + p;
      for (int l = 0; l < L; ++l) {
        const int64_t h = lv[l].size(1), w = lv[l].size(2);
        fx.set(level_center(cx, l), r);
        fy.set(level_center(cy, l), r);
        const Patch pt = (h > 0 && w > 0) ? patch_of(fx, fy, n, h, w) : Patch{};
        const A* lvl = lvp[l] + b * h * w * D;
        A* ol = o + static_cast<int64_t>(l) * T_ * HW;
        if (h == 0 || w == 0) {  // an empty level: its taps read 0 whatever the coordinate (the reference)
          for (int t = 0; t < T_; ++t) ol[t * HW] = A(0);
          continue;
        }
        const int64_t ox = fx.i0[0], oy = fy.i0[0];
        if (fx.i0[n - 1] - ox <= n && fy.i0[n - 1] - oy <= n) {
          // Fast path (every finite window of a level narrower than 2^22 pixels): the window's corners
          // span at most n + 2 rows and columns from (oy, ox); the patch's dots go into a zeroed
          // (n+2)^2 grid at their place in it, so the taps read corners without bounds tests (cells
          // outside the level stay 0).
          std::fill(grid.begin(), grid.end(), A(0));
          if (pt.ph > 0) patch_dots(f1p, lvl, w, D, pt, s, grid.data() + (pt.y_lo - oy) * G + (pt.x_lo - ox), G);
          for (int a = 0; a < n; ++a) {
            const A* gx = grid.data() + (fx.i0[a] - ox);
            const A wx0 = fx.w0[a], wx1 = fx.w1[a];
            for (int bb = 0; bb < n; ++bb) {
              const A* g0 = gx + (fy.i0[bb] - oy) * G;
              const A wy0 = fy.w0[bb], wy1 = fy.w1[bb];
              ol[tap_index(a - r, bb - r, r, layout) * HW] =
                  g0[0] * (wx0 * wy0) + g0[1] * (wx1 * wy0) + g0[G] * (wx0 * wy1) + g0[G + 1] * (wx1 * wy1);
            }
          }
          continue;
        }
        if (static_cast<size_t>(pt.ph * pt.pw) > dots.size()) dots.resize(pt.ph * pt.pw);
        patch_dots(f1p, lvl, w, D, pt, s, dots.data(), pt.pw);
        for (int a = 0; a < n; ++a) {
          for (int bb = 0; bb < n; ++bb) {
            const int64_t x0 = fx.i0[a], y0 = fy.i0[bb];
            const A wx0 = fx.w0[a], wx1 = fx.w1[a], wy0 = fy.w0[bb], wy1 = fy.w1[bb];
            const A v00 = patch_at(dots.data(), pt, y0, x0), v01 = patch_at(dots.data(), pt, y0, x0 + 1);
            const A v10 = patch_at(dots.data(), pt, y0 + 1, x0), v11 = patch_at(dots.data(), pt, y0 + 1, x0 + 1);
            ol[tap_index(a - r, bb - r, r, layout) * HW] =
                v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1);
          }
        }
      }
    }
  });
}

at::Tensor corr_lookup_otf_cpu(const at::Tensor& fmap1, const at::Tensor& fmap2, const at::Tensor& coords,
                               int64_t radius, int64_t num_levels, c10::optional<double> scale, std::string layout,
                               bool deterministic) {
  (void)deterministic;
  check_pair(fmap1, fmap2, false, false);
  check_coords(coords, fmap1.size(0), fmap1.size(2), fmap1.size(3), fmap1, "fmap1");
  check_radius(radius);
  check_levels(num_levels);
  const int lay = parse_layout(layout);
  const double s = resolve_scale(scale, fmap1.size(1));
  const auto st = acc_type(fmap1);
  const int64_t T_ = (2 * radius + 1) * (2 * radius + 1);
  at::Tensor out = at::empty({fmap1.size(0), num_levels * T_, fmap1.size(2), fmap1.size(3)}, fmap1.options().dtype(st));
  if (out.numel() == 0) return out;
  at::Tensor f1c = fmap1.to(st).contiguous();
  auto lv = pooled_levels(fmap2, num_levels, st);
  at::Tensor c = coords.to(st).contiguous();
  AT_DISPATCH_FLOATING_TYPES(st, "corr_lookup_otf_cpu", [&] {
    otf_forward_kernel<scalar_t>(f1c, lv, c, out, static_cast<int>(radius), lay, static_cast<scalar_t>(s));
  });
  return out;
}

template <typename A>
void otf_backward_kernel(const at::Tensor& grad, const at::Tensor& f1t, const std::vector<at::Tensor>& lv,
                         const at::Tensor& c, at::Tensor& g1t, std::vector<at::Tensor>& glv, at::Tensor& gc, int r,
                         int layout, A s) {
  const int64_t B = f1t.size(0), HW = f1t.size(1) * f1t.size(2), D = f1t.size(3);
  const int L = static_cast<int>(lv.size());
  const int n = 2 * r + 1, T_ = n * n;
  const int64_t P = static_cast<int64_t>(n + 2) * (n + 2);  // patch capacity (rows, cols <= 2r+3)
  const A* cp = c.data_ptr<A>();
  const A* gp = grad.data_ptr<A>();
  const A* f1p0 = f1t.data_ptr<A>();
  A* g1p0 = g1t.data_ptr<A>();
  A* gcp = gc.data_ptr<A>();
  // Per (pixel, level): its patch and the gradient of the patch's dot products (unscaled by s).
  std::vector<Patch> patches(static_cast<size_t>(B * HW * L));
  std::vector<A> G(static_cast<size_t>(B * HW * L * P));
  at::parallel_for(0, B * HW, 1, [&](int64_t begin, int64_t end) {
    Footprint<A> fx(n), fy(n);
    std::vector<A> dots(P);
    for (int64_t q = begin; q < end; ++q) {
      const int64_t b = q / HW, p = q % HW;
      const A cx = cp[(b * 2) * HW + p], cy = cp[(b * 2 + 1) * HW + p];
      const A* f1p = f1p0 + q * D;
      A* g1p = g1p0 + q * D;
      const A* g = gp + b * L * T_ * HW + p;
      A gx_sum = 0, gy_sum = 0;
      for (int l = 0; l < L; ++l) {
        const int64_t h = lv[l].size(1), w = lv[l].size(2);
        fx.set(level_center(cx, l), r);
        fy.set(level_center(cy, l), r);
        const Patch pt = (h > 0 && w > 0) ? patch_of(fx, fy, n, h, w) : Patch{};
        // rows and columns <= 2r+3 whenever the patch is inside a level narrower than 2^22 pixels (float
        // rounding of centre + k moves a corner by at most one pixel there)
        TORCH_INTERNAL_ASSERT(pt.ph <= n + 2 && pt.pw <= n + 2, "corr_lookup_otf: window patch larger than expected");
        patches[q * L + l] = pt;
        if (pt.ph == 0) continue;
        const A* lvl = lv[l].data_ptr<A>() + b * h * w * D;
        patch_dots(f1p, lvl, w, D, pt, s, dots.data(), pt.pw);
        A* Gq = G.data() + (q * L + l) * P;
        std::fill(Gq, Gq + pt.ph * pt.pw, A(0));
        A lgx = 0, lgy = 0;
        for (int a = 0; a < n; ++a) {
          for (int bb = 0; bb < n; ++bb) {
            const A go = g[(l * T_ + tap_index(a - r, bb - r, r, layout)) * HW];
            const int64_t x0 = fx.i0[a], y0 = fy.i0[bb];
            const A wx0 = fx.w0[a], wx1 = fx.w1[a], wy0 = fy.w0[bb], wy1 = fy.w1[bb];
            const A v00 = patch_at(dots.data(), pt, y0, x0), v01 = patch_at(dots.data(), pt, y0, x0 + 1);
            const A v10 = patch_at(dots.data(), pt, y0 + 1, x0), v11 = patch_at(dots.data(), pt, y0 + 1, x0 + 1);
            lgx += go * (wy0 * (v01 - v00) + wy1 * (v11 - v10));
            lgy += go * (wx0 * (v10 - v00) + wx1 * (v11 - v01));
            const int64_t cxs[2] = {x0 - pt.x_lo, x0 + 1 - pt.x_lo}, cys[2] = {y0 - pt.y_lo, y0 + 1 - pt.y_lo};
            const A wxs[2] = {wx0, wx1}, wys[2] = {wy0, wy1};
            for (int iy = 0; iy < 2; ++iy)
              for (int ix = 0; ix < 2; ++ix)
                if (cys[iy] >= 0 && cys[iy] < pt.ph && cxs[ix] >= 0 && cxs[ix] < pt.pw)
                  Gq[cys[iy] * pt.pw + cxs[ix]] += go * (wxs[ix] * wys[iy]);
          }
        }
        const A inv = level_inv_scale<A>(l);
        gx_sum += lgx * inv;
        gy_sum += lgy * inv;
        // grad fmap1(p) += s * sum_q G(q) f2l(q)
        for (int64_t yy = 0; yy < pt.ph; ++yy)
          for (int64_t xx = 0; xx < pt.pw; ++xx) {
            const A gq = Gq[yy * pt.pw + xx];
            if (gq != A(0)) axpy(s * gq, lvl + ((pt.y_lo + yy) * w + pt.x_lo + xx) * D, g1p, D);
          }
      }
      gcp[(b * 2) * HW + p] = gx_sum;
      gcp[(b * 2 + 1) * HW + p] = gy_sum;
    }
  });
  // Scatter to the pooled levels, deterministically: bucket pixels by their patch's first row; each
  // thread owns a band of output rows and visits the buckets that reach its rows in order.
  const int64_t pmax = n + 2;
  for (int64_t b = 0; b < B; ++b) {
    for (int l = 0; l < L; ++l) {
      const int64_t h = lv[l].size(1), w = lv[l].size(2);
      if (h == 0 || w == 0) continue;
      std::vector<int64_t> start(h + 1, 0), order;
      for (int64_t p = 0; p < HW; ++p) {
        const Patch& pt = patches[(b * HW + p) * L + l];
        if (pt.ph > 0) ++start[pt.y_lo + 1];
      }
      for (int64_t y = 0; y < h; ++y) start[y + 1] += start[y];
      order.resize(start[h]);
      std::vector<int64_t> fill(start.begin(), start.end() - 1);
      for (int64_t p = 0; p < HW; ++p) {
        const Patch& pt = patches[(b * HW + p) * L + l];
        if (pt.ph > 0) order[fill[pt.y_lo]++] = p;
      }
      A* gl = glv[l].data_ptr<A>() + b * h * w * D;
      at::parallel_for(0, h, 1, [&](int64_t y_begin, int64_t y_end) {
        for (int64_t y = y_begin; y < y_end; ++y) {
          for (int64_t yb = std::max<int64_t>(0, y - pmax + 1); yb <= y; ++yb) {
            for (int64_t k = start[yb]; k < start[yb + 1]; ++k) {
              const int64_t p = order[k], q = b * HW + p;
              const Patch& pt = patches[q * L + l];
              const int64_t yy = y - pt.y_lo;
              if (yy >= pt.ph) continue;
              const A* Gq = G.data() + (q * L + l) * P + yy * pt.pw;
              const A* f1p = f1p0 + q * D;
              for (int64_t xx = 0; xx < pt.pw; ++xx)
                if (Gq[xx] != A(0)) axpy(s * Gq[xx], f1p, gl + (y * w + pt.x_lo + xx) * D, D);
            }
          }
        }
      });
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> corr_lookup_otf_backward_cpu(
    const at::Tensor& grad, const at::Tensor& fmap1, const at::Tensor& fmap2, const at::Tensor& coords, int64_t radius,
    int64_t num_levels, c10::optional<double> scale, std::string layout, bool deterministic) {
  (void)deterministic;
  check_pair(fmap1, fmap2, false, false);
  check_coords(coords, fmap1.size(0), fmap1.size(2), fmap1.size(3), fmap1, "fmap1");
  check_radius(radius);
  check_levels(num_levels);
  const int lay = parse_layout(layout);
  const double s = resolve_scale(scale, fmap1.size(1));
  const int64_t T_ = (2 * radius + 1) * (2 * radius + 1);
  check_lookup_grad(grad, fmap1.size(0), num_levels * T_, fmap1.size(2), fmap1.size(3));
  const auto st = acc_type(fmap1);
  const int64_t B = fmap1.size(0), D = fmap1.size(1);
  at::Tensor f1t = channels_last(fmap1, st);
  auto lv = pooled_levels(fmap2, num_levels, st);
  at::Tensor c = coords.to(st).contiguous();
  at::Tensor g = grad.to(st).contiguous();
  at::Tensor g1t = at::zeros(f1t.sizes(), f1t.options());
  at::Tensor gc = at::zeros(c.sizes(), c.options());
  std::vector<at::Tensor> glv;
  for (const auto& t : lv) glv.push_back(at::zeros(t.sizes(), t.options()));
  if (g.numel() > 0 && B > 0) {
    AT_DISPATCH_FLOATING_TYPES(st, "corr_lookup_otf_backward_cpu", [&] {
      otf_backward_kernel<scalar_t>(g, f1t, lv, c, g1t, glv, gc, static_cast<int>(radius), lay,
                                    static_cast<scalar_t>(s));
    });
  }
  // adjoint of the pooling, coarsest level first, in [B, D, h, w]
  at::Tensor acc = glv[num_levels - 1].permute({0, 3, 1, 2});
  for (int64_t l = num_levels - 1; l >= 1; --l) {
    at::Tensor like = lv[l - 1].permute({0, 3, 1, 2});
    acc = at::add(unpool2(acc.contiguous(), like.contiguous()), glv[l - 1].permute({0, 3, 1, 2}));
  }
  (void)D;
  at::Tensor g1 = g1t.permute({0, 3, 1, 2}).to(fmap1.scalar_type()).contiguous();
  at::Tensor g2 = acc.to(fmap2.scalar_type()).contiguous();
  return {g1, g2, gc.to(coords.scalar_type())};
}

// ------------------------------------------------------------------------------------------ local_corr
template <typename A>
void local_forward_kernel(const at::Tensor& f1t, const at::Tensor& f2t, at::Tensor& out, int d, int stride, int dil,
                          A s) {
  const int64_t B = f1t.size(0), H = f1t.size(1), W = f1t.size(2), D = f1t.size(3);
  const int64_t Ho = out.size(2), Wo = out.size(3), C = out.size(1);
  const A* a = f1t.data_ptr<A>();
  const A* bp = f2t.data_ptr<A>();
  A* op = out.data_ptr<A>();
  at::parallel_for(0, B * Ho, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / Ho, i = bi % Ho, y = i * stride;
      for (int64_t j = 0; j < Wo; ++j) {
        const int64_t x = j * stride;
        const A* f1p = a + ((b * H + y) * W + x) * D;
        for (int64_t ch = 0; ch < C; ++ch) {
          int dx, dy;
          local_offset(static_cast<int>(ch), d, dx, dy);
          const int64_t yy = y + int64_t(dy) * dil, xx = x + int64_t(dx) * dil;
          A v = 0;
          if (inside(yy, H) && inside(xx, W)) v = s * dot(f1p, bp + ((b * H + yy) * W + xx) * D, D);
          op[((b * C + ch) * Ho + i) * Wo + j] = v;
        }
      }
    }
  });
}

at::Tensor local_corr_cpu(const at::Tensor& fmap1, const at::Tensor& fmap2, int64_t max_displacement, int64_t stride,
                          int64_t dilation, c10::optional<double> scale) {
  check_pair(fmap1, fmap2, false, true);
  check_local_args(max_displacement, stride, dilation);
  const double s = resolve_scale(scale, fmap1.size(1));
  const int64_t B = fmap1.size(0), H = fmap1.size(2), W = fmap1.size(3);
  const int64_t C = (2 * max_displacement + 1) * (2 * max_displacement + 1);
  at::Tensor out = at::empty({B, C, local_out_size(H, stride), local_out_size(W, stride)}, fmap1.options());
  if (out.numel() == 0) return out;
  at::Tensor f1t = fmap1.permute({0, 2, 3, 1}).contiguous(), f2t = fmap2.permute({0, 2, 3, 1}).contiguous();
  AT_DISPATCH_FLOATING_TYPES(fmap1.scalar_type(), "local_corr_cpu", [&] {
    local_forward_kernel<scalar_t>(f1t, f2t, out, static_cast<int>(max_displacement), static_cast<int>(stride),
                                   static_cast<int>(dilation), static_cast<scalar_t>(s));
  });
  return out;
}

template <typename A>
void local_backward_kernel(const at::Tensor& gt, const at::Tensor& f1t, const at::Tensor& f2t, at::Tensor& g1t,
                           at::Tensor& g2t, int d, int stride, int dil, A s) {
  const int64_t B = f1t.size(0), H = f1t.size(1), W = f1t.size(2), D = f1t.size(3);
  const int64_t Ho = gt.size(1), Wo = gt.size(2), C = gt.size(3);
  const A* g = gt.data_ptr<A>();  // [B, Ho, Wo, C]
  const A* a = f1t.data_ptr<A>();
  const A* bp = f2t.data_ptr<A>();
  A* g1 = g1t.data_ptr<A>();
  A* g2 = g2t.data_ptr<A>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t by = begin; by < end; ++by) {
      const int64_t b = by / H, y = by % H;
      for (int64_t x = 0; x < W; ++x) {
        // grad fmap1 at a strided pixel: sum_c g[c] * f2(tap c)
        if (y % stride == 0 && x % stride == 0) {
          const A* gc = g + ((b * Ho + y / stride) * Wo + x / stride) * C;
          A* o = g1 + ((b * H + y) * W + x) * D;
          for (int64_t ch = 0; ch < C; ++ch) {
            int dx, dy;
            local_offset(static_cast<int>(ch), d, dx, dy);
            const int64_t yy = y + int64_t(dy) * dil, xx = x + int64_t(dx) * dil;
            if (gc[ch] != A(0) && inside(yy, H) && inside(xx, W)) axpy(s * gc[ch], bp + ((b * H + yy) * W + xx) * D, o, D);
          }
        }
        // grad fmap2 at (y, x): gather from the fmap1 pixels (y - dy*dil, x - dx*dil) on the stride grid
        A* o2 = g2 + ((b * H + y) * W + x) * D;
        for (int64_t ch = 0; ch < C; ++ch) {
          int dx, dy;
          local_offset(static_cast<int>(ch), d, dx, dy);
          const int64_t ys = y - int64_t(dy) * dil, xs = x - int64_t(dx) * dil;
          if (!inside(ys, H) || !inside(xs, W) || ys % stride != 0 || xs % stride != 0) continue;
          const A gv = g[((b * Ho + ys / stride) * Wo + xs / stride) * C + ch];
          if (gv != A(0)) axpy(s * gv, a + ((b * H + ys) * W + xs) * D, o2, D);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> local_corr_backward_cpu(const at::Tensor& grad, const at::Tensor& fmap1,
                                                           const at::Tensor& fmap2, int64_t max_displacement,
                                                           int64_t stride, int64_t dilation,
                                                           c10::optional<double> scale) {
  check_pair(fmap1, fmap2, false, true);
  check_local_args(max_displacement, stride, dilation);
  const double s = resolve_scale(scale, fmap1.size(1));
  const int64_t B = fmap1.size(0), H = fmap1.size(2), W = fmap1.size(3);
  const int64_t C = (2 * max_displacement + 1) * (2 * max_displacement + 1);
  check_lookup_grad(grad, B, C, local_out_size(H, stride), local_out_size(W, stride));
  at::Tensor f1t = fmap1.permute({0, 2, 3, 1}).contiguous(), f2t = fmap2.permute({0, 2, 3, 1}).contiguous();
  at::Tensor gt = grad.to(fmap1.scalar_type()).permute({0, 2, 3, 1}).contiguous();
  at::Tensor g1t = at::zeros(f1t.sizes(), f1t.options()), g2t = at::zeros(f2t.sizes(), f2t.options());
  if (grad.numel() > 0 && fmap1.size(1) > 0) {
    AT_DISPATCH_FLOATING_TYPES(fmap1.scalar_type(), "local_corr_backward_cpu", [&] {
      local_backward_kernel<scalar_t>(gt, f1t, f2t, g1t, g2t, static_cast<int>(max_displacement),
                                      static_cast<int>(stride), static_cast<int>(dilation), static_cast<scalar_t>(s));
    });
  }
  return {g1t.permute({0, 3, 1, 2}).contiguous(), g2t.permute({0, 3, 1, 2}).contiguous()};
}

}  // namespace
}  // namespace corr
}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CPU, m) {
  using namespace hmore::corr;
  m.impl("corr_volume", &corr_volume_cpu);
  m.impl("_corr_volume_backward", &corr_volume_backward_cpu);
  m.impl("corr_pyramid", &corr_pyramid_cpu);
  m.impl("_corr_pyramid_backward", &corr_pyramid_backward_cpu);
  m.impl("corr_lookup", &corr_lookup_cpu);
  m.impl("_corr_lookup_backward", &corr_lookup_backward_cpu);
  m.impl("corr_lookup_otf", &corr_lookup_otf_cpu);
  m.impl("_corr_lookup_otf_backward", &corr_lookup_otf_backward_cpu);
  m.impl("local_corr", &local_corr_cpu);
  m.impl("_local_corr_backward", &local_corr_backward_cpu);
}
