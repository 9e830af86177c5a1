// CPU kernels of sobel, gradient_magnitude, mask_boundary and flow_edges (forward and backward).
//
// Layout: every kernel works row by row on contiguous planes, parallelised with at::parallel_for over
// (plane, row) so that a single large image still uses every thread. Stencils are computed separably
// from row pointers (vertical combination of three rows, then a horizontal pass over a buffer padded by
// one column), which keeps the inner loops branch-free and vectorisable; the border only changes which
// rows/columns the pointers and the padded entries refer to. The per-element arithmetic comes from
// edges_kernels.cuh, shared with the CUDA kernels.
//
// Determinism: nothing here uses atomics; per-image reductions (flow_edges' max, tie count and dot
// product) are written per row and combined serially in row order, so the result does not depend on
// the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "common.h"
#include "edges/edges.h"
#include "edges/edges_checks.h"
#include "edges/edges_kernels.cuh"

namespace hmore {
namespace {

using namespace hmore::edges;

// Rows per parallel task: about 16k pixels, so tiny images do not pay for threads.
int64_t row_grain(int64_t W) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(W, 1)); }

// Per-task scratch of deriv_row: s (3 rows of W + 2) and d (W + 2), z (W zeros: the missing row of the zeros
// border), then `extra` more rows of W for the caller (extra(k) is the k-th).
template <typename T>
struct DerivScratch {
  DerivScratch(int W, int extra) : W_(W), buf(4 * (size_t(W) + 2) + size_t(W) * (1 + extra), T(0)) {}
  T* s() { return buf.data(); }
  T* d() { return buf.data() + 3 * (W_ + 2); }
  const T* z() { return buf.data() + 4 * (W_ + 2); }
  T* extra(int k) { return buf.data() + 4 * (W_ + 2) + size_t(W_) * (1 + k); }
  int W_;
  std::vector<T> buf;
};

// gx, gy of row i of one plane [H, W]. s: scratch of 3 (W + 2) (rows i-1, i, i+1 extended by the border
// map: entry j + 1 holds column j, entries 0 and W + 1 the border columns), d: W + 2 (the vertical
// differences, extended likewise); zrow: W zeros (the missing row of the zeros border). Differences
// first, then weights (edges_kernels.cuh).
template <typename T>
inline void deriv_row(const T* __restrict__ plane, int H, int W, int i, int border, T so, T sc, T inv,
                      T* __restrict__ s, T* __restrict__ d, const T* __restrict__ zrow, T* __restrict__ gx,
                      T* __restrict__ gy) {
  const int a = map_border(i - 1, H, border), c = map_border(i + 1, H, border);
  const T* __restrict__ r0 = a < 0 ? zrow : plane + int64_t(a) * W;
  const T* __restrict__ r1 = plane + int64_t(i) * W;
  const T* __restrict__ r2 = c < 0 ? zrow : plane + int64_t(c) * W;
  T* __restrict__ e0 = s;
  T* __restrict__ e1 = s + (W + 2);
  T* __restrict__ e2 = s + 2 * (W + 2);
  for (int j = 0; j < W; ++j) {
    e0[j + 1] = r0[j];
    e1[j + 1] = r1[j];
    e2[j + 1] = r2[j];
    d[j + 1] = r2[j] - r0[j];
  }
  const int l = map_border(-1, W, border), r = map_border(W, W, border);
  for (T* e : {e0, e1, e2, d}) {
    e[0] = l < 0 ? T(0) : e[l + 1];
    e[W + 1] = r < 0 ? T(0) : e[r + 1];
  }
  for (int j = 0; j < W; ++j) {
    T x_, y_;
    deriv_from_diffs(e0[j + 2] - e0[j], e1[j + 2] - e1[j], e2[j + 2] - e2[j], d[j], d[j + 1], d[j + 2], so, sc,
                     inv, x_, y_);
    gx[j] = x_;
    gy[j] = y_;
  }
}

// Adjoint of deriv_row's operator at row p: gx_pl, gy_pl are the incoming gradient planes [H, W] of gx
// and gy; out is row p of the gradient w.r.t. the input. u, v: scratch of W + 2 (zero at 0 and W + 1).
// Vertical adjoint first (a combination of rows p-1..p+1 whose coefficients differ from the plain
// taps only next to the border), then the horizontal adjoint of the combined row.
template <typename T>
inline void adjoint_row(const T* __restrict__ gx_pl, const T* __restrict__ gy_pl, int H, int W, int p, int border,
                        T so, T sc, T inv, T* __restrict__ u, T* __restrict__ v, const T* __restrict__ zrow,
                        T* __restrict__ out) {
  T cs[3], cd[3];
  adjoint_taps(p, H, border, so, sc, cs, cd);
  const T* __restrict__ x0 = p > 0 ? gx_pl + int64_t(p - 1) * W : zrow;
  const T* __restrict__ x1 = gx_pl + int64_t(p) * W;
  const T* __restrict__ x2 = p + 1 < H ? gx_pl + int64_t(p + 1) * W : zrow;
  const T* __restrict__ y0 = p > 0 ? gy_pl + int64_t(p - 1) * W : zrow;
  const T* __restrict__ y1 = gy_pl + int64_t(p) * W;
  const T* __restrict__ y2 = p + 1 < H ? gy_pl + int64_t(p + 1) * W : zrow;
  for (int j = 0; j < W; ++j) {
    u[j + 1] = cs[0] * x0[j] + cs[1] * x1[j] + cs[2] * x2[j];
    v[j + 1] = cd[0] * y0[j] + cd[1] * y1[j] + cd[2] * y2[j];
  }
  u[0] = u[W + 1] = v[0] = v[W + 1] = T(0);
  // Interior columns: the plain flipped taps. Columns 0, 1, W-2, W-1 can receive folded border taps
  // (reflect101 sends the tap at -1 to column 1).
  for (int j = 2; j < W - 2; ++j) {
    out[j] = inv * ((u[j] - u[j + 2]) + smooth3(v[j], v[j + 1], v[j + 2], so, sc));
  }
  // Border columns: the folded taps.
  for (int j = 0; j < W; j = (j == 1 && W > 4) ? W - 2 : j + 1) {
    T ccs[3], ccd[3];
    adjoint_taps(j, W, border, so, sc, ccs, ccd);
    T acc = T(0);
    for (int k = 0; k < 3; ++k) acc += ccd[k] * u[j + k] + ccs[k] * v[j + k];
    out[j] = inv * acc;
  }
}

// Adjoint of the derivative over all planes: g [N, 2, H, W] (gx, gy) -> out [N, H, W].
template <typename T>
void adjoint_planes(const T* g, T* out, int64_t N, int H, int W, int border, T so, T sc, T inv) {
  const int64_t HW = int64_t(H) * W;
  at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
    std::vector<T> buf(3 * (W + 2) + W, T(0));
    T* u = buf.data();
    T* v = u + (W + 2);
    const T* z = v + (W + 2);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / H;
      const int p = int(r % H);
      adjoint_row(g + n * 2 * HW, g + n * 2 * HW + HW, H, W, p, border, so, sc, inv, u, v, z, out + n * HW + p * W);
    }
  });
}

// ---- morphology -----------------------------------------------------------------------------------
// min/max that propagate NaN (max_pool2d's rule: a NaN in the window makes the result NaN, whatever the
// scan order); std::min/max would keep or drop it depending on the argument order.
template <typename T>
inline T nan_extremum(T a, T b, bool want_max) {
  return better(b, a, want_max) ? b : a;
}

// Separable min/max over the clamped (2w+1)^2 window: rows (through a replicate-padded copy of the row,
// so the inner loop has no clamps), then columns (an elementwise min/max over the clamped row range).
// T is float, double or uint8_t (bool masks). ero/dil may be null when the mode does not need them.
template <typename T>
void morph_planes(const T* m, T* ero, T* dil, int64_t N, int H, int W, int w) {
  const int64_t HW = int64_t(H) * W;
  // Scratch without zero-filling (every element is written before it is read).
  std::unique_ptr<T[]> hmin(ero ? new T[N * HW] : nullptr), hmax(dil ? new T[N * HW] : nullptr);
  // The inner loops go through __restrict__ locals: with T = uint8_t (bool masks) the compiler must
  // otherwise assume a byte store may alias anything and will not vectorise the min/max.
  auto row_pass = [W, w](const T* __restrict__ pad, T* __restrict__ o, bool want_max) {
    std::copy(pad, pad + W, o);
    for (int t = 1; t <= 2 * w; ++t) {
      const T* __restrict__ p = pad + t;
      if (want_max)
        for (int j = 0; j < W; ++j) o[j] = nan_extremum(o[j], p[j], true);
      else
        for (int j = 0; j < W; ++j) o[j] = nan_extremum(o[j], p[j], false);
    }
  };
  auto col_pass = [W](const T* __restrict__ src, int lo, int hi, T* __restrict__ o, bool want_max) {
    std::copy(src + int64_t(lo) * W, src + int64_t(lo) * W + W, o);
    for (int k = lo + 1; k <= hi; ++k) {
      const T* __restrict__ r = src + int64_t(k) * W;
      if (want_max)
        for (int j = 0; j < W; ++j) o[j] = nan_extremum(o[j], r[j], true);
      else
        for (int j = 0; j < W; ++j) o[j] = nan_extremum(o[j], r[j], false);
    }
  };
  at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
    std::vector<T> pad(W + 2 * int64_t(w));
    for (int64_t r = begin; r < end; ++r) {
      const T* row = m + r * W;
      for (int64_t k = 0; k < W + 2 * int64_t(w); ++k) pad[k] = row[clampi(int(k - w), 0, W - 1)];
      if (ero) row_pass(pad.data(), hmin.get() + r * W, false);
      if (dil) row_pass(pad.data(), hmax.get() + r * W, true);
    }
  });
  at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / H;
      const int i = int(r % H);
      const int lo = std::max(0, i - w), hi = std::min(H - 1, i + w);
      if (ero) col_pass(hmin.get() + n * HW, lo, hi, ero + r * W, false);
      if (dil) col_pass(hmax.get() + n * HW, lo, hi, dil + r * W, true);
    }
  });
}

// Boundary of N planes of float masks into out (same dtype); out may alias neither input.
template <typename T>
void boundary_planes(const T* m, T* out, int64_t N, int H, int W, int w, int mode) {
  const int64_t total = N * int64_t(H) * W;
  std::vector<T> ero(mode_needs_erode(mode) ? total : 0), dil(mode_needs_dilate(mode) ? total : 0);
  morph_planes<T>(m, ero.empty() ? nullptr : ero.data(), dil.empty() ? nullptr : dil.data(), N, H, W, w);
  at::parallel_for(0, total, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k)
      out[k] = boundary_value<T>(mode, m[k], ero.empty() ? T(0) : ero[k], dil.empty() ? T(0) : dil[k]);
  });
}

// First-extremum source index (row * W + col within the plane) of every pixel's window: the separable
// lexicographic scan described in edges_kernels.cuh (torch max_pool2d's tie rule).
template <typename T>
void morph_args(const T* m, int32_t* arg, int64_t N, int H, int W, int w, bool want_max) {
  const int64_t HW = int64_t(H) * W;
  std::vector<T> hval(N * HW);
  std::vector<int32_t> hcol(N * HW);
  at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int j = 0; j < W; ++j) {
        int c;
        const T* row = m + r * W;
        hval[r * W + j] = hscan<T>([row](int k) { return row[k]; }, j, W, w, want_max, c);
        hcol[r * W + j] = c;
      }
  });
  at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / H;
      const int i = int(r % H);
      const int lo = std::max(0, i - w), hi = std::min(H - 1, i + w);
      const T* hv = hval.data() + n * HW;
      for (int j = 0; j < W; ++j) {
        T best = hv[int64_t(lo) * W + j];
        int br = lo;
        for (int k = lo + 1; k <= hi; ++k) {
          const T val = hv[int64_t(k) * W + j];
          if (better(val, best, want_max)) {
            best = val;
            br = k;
          }
        }
        arg[r * W + j] = int32_t(br * W + hcol[n * HW + int64_t(br) * W + j]);
      }
    }
  });
}

// Boundary backward: every output q sends +grad(q) to its window's arg-max (dilate) and -grad(q) to its
// arg-min (erode). Done as a scatter, serial within a plane and in row-major order of q, so it is
// deterministic without atomics, and each pixel receives its terms in the same order as a gather over
// its window would add them; planes run in parallel. O(1) per pixel instead of O((2w+1)^2).
template <typename T>
void boundary_backward_planes(const T* g, const T* m, T* out, int64_t N, int H, int W, int w, int mode) {
  const int64_t HW = int64_t(H) * W;
  std::vector<int32_t> aero(mode_needs_erode(mode) ? N * HW : 0), adil(mode_needs_dilate(mode) ? N * HW : 0);
  if (!aero.empty()) morph_args<T>(m, aero.data(), N, H, W, w, false);
  if (!adil.empty()) morph_args<T>(m, adil.data(), N, H, W, w, true);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* __restrict__ gp = g + n * HW;
      T* __restrict__ op = out + n * HW;
      for (int64_t q = 0; q < HW; ++q) op[q] = boundary_self_grad<T>(mode, gp[q]);
      const int32_t* ad = adil.empty() ? nullptr : adil.data() + n * HW;
      const int32_t* ae = aero.empty() ? nullptr : aero.data() + n * HW;
      for (int64_t q = 0; q < HW; ++q) {
        if (ad) op[ad[q]] += gp[q];
        if (ae) op[ae[q]] -= gp[q];
      }
    }
  });
}

// thick boundary of the mask (as the flow's dtype) with the given band, [B, H, W] contiguous.
at::Tensor band_weights(const at::Tensor& mask, at::ScalarType st, int64_t band) {
  const int64_t B = mask.size(0);
  const int H = int(mask.size(2)), W = int(mask.size(3));
  if (mask.scalar_type() == at::kBool) {
    // Bool masks: the morphology on bytes (4-8x less memory traffic than on a float copy), then the
    // 0/1 band written straight in the flow's dtype.
    const auto mc = mask.contiguous();
    const int64_t total = mc.numel();
    const uint8_t* m = reinterpret_cast<const uint8_t*>(mc.data_ptr<bool>());
    std::unique_ptr<uint8_t[]> ero(new uint8_t[total]), dil(new uint8_t[total]);
    morph_planes<uint8_t>(m, ero.get(), dil.get(), B, H, W, int(band));
    auto out = at::empty({B, 1, H, W}, mask.options().dtype(st));
    AT_DISPATCH_FLOATING_TYPES(st, "flow_edges_band", [&] {
      scalar_t* o = out.data_ptr<scalar_t>();
      const uint8_t* __restrict__ e = ero.get();
      const uint8_t* __restrict__ d = dil.get();
      at::parallel_for(0, total, 1 << 15, [&](int64_t b, int64_t end) {
        for (int64_t k = b; k < end; ++k) o[k] = scalar_t(d[k] != e[k]);
      });
    });
    return out;
  }
  auto m = mask.to(st).contiguous();
  auto out = at::empty_like(m);
  AT_DISPATCH_FLOATING_TYPES(st, "flow_edges_band", [&] {
    boundary_planes<scalar_t>(m.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, H, W, int(band), kThick);
  });
  return out;
}

}  // namespace

// ---- sobel ----------------------------------------------------------------------------------------
at::Tensor sobel_cpu(const at::Tensor& x, bool normalized, const std::string& border_s) {
  check_rank(x, 4, "x", "[B, C, H, W]");
  check_float(x, "x", false);
  const int border = int(parse_border(border_s));
  check_size_limits(x, "x");
  const auto xc = x.contiguous();
  const int64_t N = xc.size(0) * xc.size(1);
  const int H = int(xc.size(2)), W = int(xc.size(3));
  auto out = at::empty({xc.size(0), xc.size(1), 2, H, W}, xc.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sobel_cpu", [&] {
    using T = scalar_t;
    T so, sc, inv;
    deriv_taps(kSobel, normalized, so, sc, inv);
    const T* xp = xc.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t HW = int64_t(H) * W;
    at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
      DerivScratch<T> scratch(W, 0);
      T* s = scratch.s();
      T* d = scratch.d();
      const T* z = scratch.z();
      for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / H;
        const int i = int(r % H);
        T* o = op + n * 2 * HW + int64_t(i) * W;
        deriv_row(xp + n * HW, H, W, i, border, so, sc, inv, s, d, z, o, o + HW);
      }
    });
  });
  return out;
}

at::Tensor sobel_backward_cpu(const at::Tensor& grad, bool normalized, const std::string& border_s) {
  check_rank(grad, 5, "grad", "[B, C, 2, H, W]");
  TORCH_CHECK_VALUE(grad.size(2) == 2, "grad: expected shape [B, C, 2, H, W], got ", grad.sizes());
  check_float(grad, "grad", false);
  const int border = int(parse_border(border_s));
  check_size_limits(grad, "grad");
  const auto g = grad.contiguous();
  const int H = int(g.size(3)), W = int(g.size(4));
  auto out = at::empty({g.size(0), g.size(1), H, W}, g.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "sobel_backward_cpu", [&] {
    using T = scalar_t;
    T so, sc, inv;
    deriv_taps(kSobel, normalized, so, sc, inv);
    adjoint_planes<T>(g.data_ptr<T>(), out.data_ptr<T>(), g.size(0) * g.size(1), H, W, border, so, sc, inv);
  });
  return out;
}

// ---- gradient_magnitude ---------------------------------------------------------------------------
at::Tensor gradient_magnitude_cpu(const at::Tensor& x, const std::string& kernel_s, const std::string& reduce_s,
                                  double eps) {
  check_rank(x, 4, "x", "[B, C, H, W]");
  check_float(x, "x", false);
  const int kernel = int(parse_deriv_kernel(kernel_s));
  const bool sum = parse_reduce(reduce_s);
  TORCH_CHECK_VALUE(eps >= 0, "eps: expected a float >= 0, got ", eps);
  check_size_limits(x, "x");
  const auto xc = x.contiguous();
  const int64_t B = xc.size(0), C = xc.size(1);
  const int H = int(xc.size(2)), W = int(xc.size(3));
  auto out = at::empty({B, sum ? 1 : C, H, W}, xc.options());
  if (out.numel() == 0) return out;
  if (C == 0) return out.zero_().add_(std::sqrt(eps));  // an empty channel sum is 0: sqrt(0 + eps)
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "gradient_magnitude_cpu", [&] {
    using T = scalar_t;
    T so, sc, inv;
    deriv_taps(kernel, true, so, sc, inv);
    const T e = T(eps);
    const T* xp = xc.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t HW = int64_t(H) * W;
    at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      DerivScratch<T> scratch(W, 3);
      T* s = scratch.s();
      T* d = scratch.d();
      const T* z = scratch.z();
      T* gx = scratch.extra(0);
      T* gy = scratch.extra(1);
      T* acc = scratch.extra(2);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H;
        const int i = int(r % H);
        for (int64_t c = 0; c < C; ++c) {
          deriv_row(xp + (b * C + c) * HW, H, W, i, kReplicate, so, sc, inv, s, d, z, gx, gy);
          if (sum) {
            if (c == 0)
              for (int j = 0; j < W; ++j) acc[j] = gx[j] * gx[j] + gy[j] * gy[j];
            else
              for (int j = 0; j < W; ++j) acc[j] += gx[j] * gx[j] + gy[j] * gy[j];
          } else {
            T* o = op + (b * C + c) * HW + int64_t(i) * W;
            for (int j = 0; j < W; ++j) o[j] = safe_sqrt(gx[j] * gx[j] + gy[j] * gy[j] + e);
          }
        }
        if (sum) {
          T* o = op + b * HW + int64_t(i) * W;
          for (int j = 0; j < W; ++j) o[j] = safe_sqrt(acc[j] + e);
        }
      }
    });
  });
  return out;
}

at::Tensor gradient_magnitude_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mag,
                                           const std::string& kernel_s, const std::string& reduce_s, double eps) {
  (void)eps;  // enters only through mag
  check_rank(x, 4, "x", "[B, C, H, W]");
  check_rank(grad, 4, "grad", "[B, C or 1, H, W]");
  check_rank(mag, 4, "mag", "[B, C or 1, H, W]");
  check_float(x, "x", false);
  check_float(grad, "grad", false);
  check_float(mag, "mag", false);
  const int kernel = int(parse_deriv_kernel(kernel_s));
  const bool sum = parse_reduce(reduce_s);
  check_size_limits(x, "x");
  const int64_t B = x.size(0), C = x.size(1);
  const int H = int(x.size(2)), W = int(x.size(3));
  const std::vector<int64_t> oshape = {B, sum ? 1 : C, H, W};
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef(oshape), "grad: expected shape ", at::IntArrayRef(oshape),
                    ", got ", grad.sizes());
  TORCH_CHECK_VALUE(mag.sizes() == at::IntArrayRef(oshape), "mag: expected shape ", at::IntArrayRef(oshape),
                    ", got ", mag.sizes());
  const auto st = x.scalar_type();
  const auto xc = x.contiguous();
  const auto gc = grad.to(st).contiguous();
  const auto mc = mag.to(st).contiguous();
  if (xc.numel() == 0) return at::zeros({B, C, H, W}, xc.options());
  auto gbar = at::empty({B, C, 2, H, W}, xc.options());
  auto out = at::empty({B, C, H, W}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(st, "gradient_magnitude_backward_cpu", [&] {
    using T = scalar_t;
    T so, sc, inv;
    deriv_taps(kernel, true, so, sc, inv);
    const T* xp = xc.data_ptr<T>();
    const T* gp = gc.data_ptr<T>();
    const T* mp = mc.data_ptr<T>();
    T* bp = gbar.data_ptr<T>();
    const int64_t HW = int64_t(H) * W;
    // Pass 1: d mag / d(gx, gy) = grad * (gx, gy) / mag, with gx, gy recomputed from x.
    at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      DerivScratch<T> scratch(W, 0);
      T* s = scratch.s();
      T* d = scratch.d();
      const T* z = scratch.z();
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H;
        const int i = int(r % H);
        for (int64_t c = 0; c < C; ++c) {
          const int64_t plane = b * C + c;
          T* ox = bp + plane * 2 * HW + int64_t(i) * W;
          T* oy = ox + HW;
          deriv_row(xp + plane * HW, H, W, i, kReplicate, so, sc, inv, s, d, z, ox, oy);
          const int64_t gi = (sum ? b : plane) * HW + int64_t(i) * W;
          for (int j = 0; j < W; ++j) {
            const T f = mag_grad_factor(gp[gi + j], mp[gi + j]);
            ox[j] *= f;
            oy[j] *= f;
          }
        }
      }
    });
    // Pass 2: the derivative adjoint.
    adjoint_planes<T>(bp, out.data_ptr<T>(), B * C, H, W, kReplicate, so, sc, inv);
  });
  return out;
}

// ---- mask_boundary --------------------------------------------------------------------------------
at::Tensor mask_boundary_cpu(const at::Tensor& mask, const std::string& mode_s, int64_t width) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1, "mask: expected a 4-D tensor [B, 1, H, W], got shape ", mask.sizes());
  const bool is_bool = mask.scalar_type() == at::kBool;
  TORCH_CHECK_TYPE(is_bool || mask.scalar_type() == at::kFloat || mask.scalar_type() == at::kDouble,
                   "mask: expected a bool or floating-point tensor (bool, float32, float64), got ",
                   mask.scalar_type());
  const int mode = int(parse_boundary_mode(mode_s));
  check_int_arg(width, "width", 1, kMaxWidth);
  check_size_limits(mask, "mask");
  const auto mc = mask.contiguous();
  const int64_t B = mc.size(0);
  const int H = int(mc.size(2)), W = int(mc.size(3));
  const int w = int(std::min<int64_t>(width, std::max(H, W)));  // a wider window sees the same pixels
  auto out = at::empty_like(mc);
  if (out.numel() == 0) return out;
  if (is_bool) {
    // bool masks: the same min/max on bytes; boundary > 0 (the reference's float path, then > 0).
    const int64_t total = mc.numel();
    const uint8_t* m = reinterpret_cast<const uint8_t*>(mc.data_ptr<bool>());
    std::vector<uint8_t> ero(mode_needs_erode(mode) ? total : 0), dil(mode_needs_dilate(mode) ? total : 0);
    morph_planes<uint8_t>(m, ero.empty() ? nullptr : ero.data(), dil.empty() ? nullptr : dil.data(), B, H, W, w);
    bool* o = out.data_ptr<bool>();
    at::parallel_for(0, total, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k)
        o[k] = boundary_value<int>(mode, m[k] != 0, ero.empty() ? 0 : ero[k] != 0, dil.empty() ? 0 : dil[k] != 0) > 0;
    });
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(mc.scalar_type(), "mask_boundary_cpu", [&] {
    boundary_planes<scalar_t>(mc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, H, W, w, mode);
  });
  return out;
}

at::Tensor mask_boundary_backward_cpu(const at::Tensor& grad, const at::Tensor& mask, const std::string& mode_s,
                                      int64_t width) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1, "mask: expected a 4-D tensor [B, 1, H, W], got shape ", mask.sizes());
  check_float(mask, "mask", false);
  check_rank(grad, 4, "grad", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(grad.sizes() == mask.sizes(), "grad: expected shape ", mask.sizes(), " like mask, got ",
                    grad.sizes());
  check_float(grad, "grad", false);
  const int mode = int(parse_boundary_mode(mode_s));
  check_int_arg(width, "width", 1, kMaxWidth);
  check_size_limits(mask, "mask");
  const auto mc = mask.contiguous();
  const auto gc = grad.to(mc.scalar_type()).contiguous();
  const int64_t B = mc.size(0);
  const int H = int(mc.size(2)), W = int(mc.size(3));
  const int w = int(std::min<int64_t>(width, std::max(H, W)));
  auto out = at::empty_like(mc);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(mc.scalar_type(), "mask_boundary_backward_cpu", [&] {
    boundary_backward_planes<scalar_t>(gc.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                       B, H, W, w, mode);
  });
  return out;
}

// ---- flow_edges -----------------------------------------------------------------------------------
namespace {
bool use_band(const std::optional<at::Tensor>& mask, std::optional<int64_t> band) {
  if (band.has_value()) check_int_arg(*band, "band", 1, kMaxWidth);
  return mask.has_value() && band.has_value();
}
}  // namespace

at::Tensor flow_edges_cpu(const at::Tensor& flow, const std::optional<at::Tensor>& mask, std::optional<int64_t> band,
                          bool normalize) {
  check_flow(flow, /*allow_half=*/false);
  if (mask.has_value()) check_mask_like(*mask, flow, "flow");
  const bool banded = use_band(mask, band);
  const auto fc = flow.contiguous();
  const int64_t B = fc.size(0);
  const int H = int(fc.size(2)), W = int(fc.size(3));
  auto out = at::empty({B, 1, H, W}, fc.options());
  if (out.numel() == 0) return out;
  const int w = banded ? int(std::min<int64_t>(*band, std::max(H, W))) : 0;
  at::Tensor bw = banded ? band_weights(*mask, fc.scalar_type(), w) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(fc.scalar_type(), "flow_edges_cpu", [&] {
    using T = scalar_t;
    T so, sc, inv;
    deriv_taps(kSobel, true, so, sc, inv);
    const T* fp = fc.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t HW = int64_t(H) * W;
    std::vector<T> rowmax(B * H);
    // Pass 1 (the only one over the flow): both channels' derivatives, the magnitude, row maxima.
    at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      DerivScratch<T> scratch(W, 4);
      T* s = scratch.s();
      T* d = scratch.d();
      const T* z = scratch.z();
      T* gx0 = scratch.extra(0);
      T* gy0 = scratch.extra(1);
      T* gx1 = scratch.extra(2);
      T* gy1 = scratch.extra(3);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H;
        const int i = int(r % H);
        deriv_row(fp + b * 2 * HW, H, W, i, kReplicate, so, sc, inv, s, d, z, gx0, gy0);
        deriv_row(fp + b * 2 * HW + HW, H, W, i, kReplicate, so, sc, inv, s, d, z, gx1, gy1);
        T* o = op + b * HW + int64_t(i) * W;
        T mx = T(0);
        for (int j = 0; j < W; ++j) {
          const T m = safe_sqrt(gx0[j] * gx0[j] + gy0[j] * gy0[j] + gx1[j] * gx1[j] + gy1[j] * gy1[j]);
          o[j] = m;
          mx = nan_max(mx, m);
        }
        rowmax[r] = mx;
      }
    });
    if (!normalize && !banded) return;
    std::vector<T> scale(B, T(1));
    if (normalize)
      for (int64_t b = 0; b < B; ++b) {
        T mx = T(0);
        for (int i = 0; i < H; ++i) mx = nan_max(mx, rowmax[b * H + i]);
        scale[b] = mx;  // divisor; 0 means "the image is all zero"
      }
    const T* bp = banded ? bw.data_ptr<T>() : nullptr;
    // Pass 2 (over m only): (m / max) * band, in the reference's order of operations.
    at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H;
        T* o = op + r * W;
        if (normalize) {
          const T M = scale[b];
          if (normalizes(M))
            for (int j = 0; j < W; ++j) o[j] = o[j] / M;
          else
            for (int j = 0; j < W; ++j) o[j] = T(0);
        }
        if (bp)
          for (int j = 0; j < W; ++j) o[j] = o[j] * bp[r * W + j];
      }
    });
  });
  return out;
}

at::Tensor flow_edges_backward_cpu(const at::Tensor& grad, const at::Tensor& flow,
                                   const std::optional<at::Tensor>& mask, std::optional<int64_t> band,
                                   bool normalize) {
  check_flow(flow, /*allow_half=*/false);
  if (mask.has_value()) check_mask_like(*mask, flow, "flow");
  const bool banded = use_band(mask, band);
  check_rank(grad, 4, "grad", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(grad.size(0) == flow.size(0) && grad.size(1) == 1 && grad.size(2) == flow.size(2) &&
                        grad.size(3) == flow.size(3),
                    "grad: expected shape [", flow.size(0), ", 1, ", flow.size(2), ", ", flow.size(3), "], got ",
                    grad.sizes());
  check_float(grad, "grad", false);
  const auto fc = flow.contiguous();
  const auto gc = grad.to(fc.scalar_type()).contiguous();
  const int64_t B = fc.size(0);
  const int H = int(fc.size(2)), W = int(fc.size(3));
  if (fc.numel() == 0) return at::zeros({B, 2, H, W}, fc.options());
  const int w = banded ? int(std::min<int64_t>(*band, std::max(H, W))) : 0;
  at::Tensor bw = banded ? band_weights(*mask, fc.scalar_type(), w) : at::Tensor();
  auto gbar = at::empty({B, 2, 2, H, W}, fc.options());  // (channel, d/dx|d/dy) like sobel's output
  auto out = at::empty({B, 2, H, W}, fc.options());
  AT_DISPATCH_FLOATING_TYPES(fc.scalar_type(), "flow_edges_backward_cpu", [&] {
    using T = scalar_t;
    T so, sc, inv;
    deriv_taps(kSobel, true, so, sc, inv);
    const T* fp = fc.data_ptr<T>();
    const T* gp = gc.data_ptr<T>();
    const T* bp = banded ? bw.data_ptr<T>() : nullptr;
    T* G = gbar.data_ptr<T>();
    const int64_t HW = int64_t(H) * W;
    std::vector<T> mt(B * HW);
    // Per row: the maximum, how many pixels reach it, and sum(grad * band * m) (in double: it is a
    // long sum and only feeds one correction term).
    std::vector<T> rowmax(B * H);
    std::vector<int64_t> rowcnt(B * H);
    std::vector<double> rowdot(B * H);
    // Pass 1: recompute the derivatives (kept in gbar) and the magnitude.
    at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      DerivScratch<T> scratch(W, 0);
      T* s = scratch.s();
      T* d = scratch.d();
      const T* z = scratch.z();
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H;
        const int i = int(r % H);
        T* g0 = G + b * 4 * HW + int64_t(i) * W;  // gx_u, gy_u, gx_v, gy_v rows
        deriv_row(fp + b * 2 * HW, H, W, i, kReplicate, so, sc, inv, s, d, z, g0, g0 + HW);
        deriv_row(fp + b * 2 * HW + HW, H, W, i, kReplicate, so, sc, inv, s, d, z, g0 + 2 * HW, g0 + 3 * HW);
        T* m = mt.data() + r * W;
        T mx = T(0);
        int64_t cnt = 0;
        double dot = 0;
        for (int j = 0; j < W; ++j) {
          const T a = g0[j], bb = g0[HW + j], c = g0[2 * HW + j], e = g0[3 * HW + j];
          m[j] = safe_sqrt(a * a + bb * bb + c * c + e * e);
          if (m[j] > mx || m[j] != m[j]) {
            mx = m[j];
            cnt = 0;
          }
          cnt += m[j] == mx;
          dot += double(gp[r * W + j] * (bp ? bp[r * W + j] : T(1))) * double(m[j]);
        }
        rowmax[r] = mx;
        rowcnt[r] = cnt;
        rowdot[r] = dot;
      }
    });
    std::vector<T> Ms(B, T(0)), dots(B, T(0)), cnts(B, T(1));
    for (int64_t b = 0; b < B; ++b) {
      T mx = T(0);
      for (int i = 0; i < H; ++i) mx = nan_max(mx, rowmax[b * H + i]);
      int64_t cnt = 0;
      double dot = 0;
      for (int i = 0; i < H; ++i) {
        if (rowmax[b * H + i] == mx) cnt += rowcnt[b * H + i];
        dot += rowdot[b * H + i];
      }
      Ms[b] = mx;
      dots[b] = T(dot);
      cnts[b] = T(std::max<int64_t>(cnt, 1));
    }
    // Pass 2: d out / d m, then through the magnitude onto the four derivatives (in place).
    at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H;
        const int i = int(r % H);
        T* g0 = G + b * 4 * HW + int64_t(i) * W;
        const T* m = mt.data() + r * W;
        for (int j = 0; j < W; ++j) {
          const T mb = flow_edges_mbar(gp[r * W + j], bp ? bp[r * W + j] : T(1), m[j], normalize, Ms[b], dots[b],
                                       cnts[b]);
          const T f = mag_grad_factor(mb, m[j]);
          g0[j] *= f;
          g0[HW + j] *= f;
          g0[2 * HW + j] *= f;
          g0[3 * HW + j] *= f;
        }
      }
    });
    // Pass 3: the Sobel adjoint of both channels.
    adjoint_planes<T>(G, out.data_ptr<T>(), B * 2, H, W, kReplicate, so, sc, inv);
  });
  return out;
}

TORCH_LIBRARY_IMPL(hmore, CPU, m) {
  m.impl("sobel", &sobel_cpu);
  m.impl("_sobel_backward", &sobel_backward_cpu);
  m.impl("gradient_magnitude", &gradient_magnitude_cpu);
  m.impl("_gradient_magnitude_backward", &gradient_magnitude_backward_cpu);
  m.impl("mask_boundary", &mask_boundary_cpu);
  m.impl("_mask_boundary_backward", &mask_boundary_backward_cpu);
  m.impl("flow_edges", &flow_edges_cpu);
  m.impl("_flow_edges_backward", &flow_edges_backward_cpu);
}

}  // namespace hmore
