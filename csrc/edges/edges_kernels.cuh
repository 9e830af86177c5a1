// Per-element math of sobel, gradient_magnitude, mask_boundary and flow_edges, shared by the CPU
// kernels (g++) and the CUDA kernels (nvcc), so the CPU tests exercise the arithmetic the GPU runs.
// No torch headers: plain C++ on scalars and raw pointers.
//
// Conventions (docs/ops.md §5): pixel (i, j) has x = j, y = i. The 3x3 derivative is separable, and the
// difference is always taken first, then weighted (the reference's order):
//   gx(i,j) = inv * (so * (e(i-1) + e(i+1)) + sc * e(i)),   e(r) = x(r,j+1) - x(r,j-1),
//   gy(i,j) = inv * (so * (d(j-1) + d(j+1)) + sc * d(j)),   d(c) = x(i+1,c) - x(i-1,c).
// Weighting first (smooth the columns, then difference them) overflows for values near the type's
// maximum where the difference itself is finite (3e38 - 3e38 is 0, 2 * 3e38 is inf), and leaves a
// rounding residue on constant images.
// with (so, sc, inv) = (1, 2, 1/8) for Sobel and (3, 10, 1/32) for Scharr (inv = 1 when unnormalised).
// Out-of-image taps read x(map(i), map(j)) with the border map below (zeros: the tap reads 0).
#pragma once

#include "hd.h"

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define HMORE_EDGES_UNROLL _Pragma("unroll")
#else
#define HMORE_EDGES_UNROLL
#endif

namespace hmore {
namespace edges {

// Same numbering as hmore::Border / DerivKernel / BoundaryMode in common.h (part of the launcher ABI).
constexpr int kReplicate = 0;
constexpr int kReflect101 = 1;
constexpr int kZeros = 2;
constexpr int kSobel = 0;
constexpr int kScharr = 1;
constexpr int kInner = 0;
constexpr int kOuter = 1;
constexpr int kThick = 2;

// Source index of extended coordinate a (only a in [-1, n] is ever asked for), or -1 for "reads zero".
// reflect101 on an axis of length 1 degenerates to replicate (OpenCV's behaviour, and the reference's).
HMORE_HD int map_border(int a, int n, int border) {
  if (a >= 0 && a < n) return a;
  if (border == kZeros) return -1;
  if (border == kReflect101 && n > 1) return a < 0 ? -a : 2 * (n - 1) - a;
  return a < 0 ? 0 : n - 1;
}

HMORE_HD int clampi(int a, int lo, int hi) { return a < lo ? lo : (a > hi ? hi : a); }

// Smoothing taps (outer, centre) and the normaliser of the 3x3 derivative kernel. Every value is
// exact in binary floating point (powers of two, small integers), so the weights round like the
// reference's float64 weights cast to the working dtype.
template <typename A>
HMORE_HD void deriv_taps(int kernel, bool normalized, A& so, A& sc, A& inv) {
  if (kernel == kScharr) {
    so = A(3);
    sc = A(10);
    inv = normalized ? A(1) / A(32) : A(1);
  } else {
    so = A(1);
    sc = A(2);
    inv = normalized ? A(1) / A(8) : A(1);
  }
}

template <typename A>
HMORE_HD A smooth3(A a, A b, A c, A so, A sc) {
  return so * (a + c) + sc * b;
}

// One output pixel from the differences: e0..e2 the horizontal differences of rows i-1, i, i+1;
// d_l, d_c, d_r the vertical differences of columns j-1, j, j+1.
template <typename A>
HMORE_HD void deriv_from_diffs(A e0, A e1, A e2, A d_l, A d_c, A d_r, A so, A sc, A inv, A& gx, A& gy) {
  gx = inv * smooth3(e0, e1, e2, so, sc);
  gy = inv * smooth3(d_l, d_c, d_r, so, sc);
}

// Full 3x3 neighbourhood form (v[r][c], r/c = 0..2 for offsets -1..1), used by the CUDA stencils.
template <typename A>
HMORE_HD void deriv3x3(const A v[3][3], A so, A sc, A inv, A& gx, A& gy) {
  deriv_from_diffs(v[0][2] - v[0][0], v[1][2] - v[1][0], v[2][2] - v[2][0], v[2][0] - v[0][0],
                   v[2][1] - v[0][1], v[2][2] - v[0][2], so, sc, inv, gx, gy);
}

// 1-D adjoint of "extend by one pixel with the border map, then correlate with taps w(-1..1)".
// Forward: y(q) = sum_d w(d) x(map(q + d)). Adjoint: xbar(p) = sum over (q, d) with map(q + d) = p of
// w(d) ybar(q). Because the extension reaches only one pixel past each edge, every contributing q is
// in p-1..p+1; cs[k] / cd[k] are the coefficients of ybar(p + k - 1) for the smoothing taps
// (so, sc, so) and the difference taps (-1, 0, +1). The extra terms are the border pixels that the
// map sends back onto p (replicate: p = 0 also receives the tap at -1, etc.).
template <typename A>
HMORE_HD void adjoint_taps(int p, int n, int border, A so, A sc, A cs[3], A cd[3]) {
  const bool lo = p - 1 >= 0, hi = p + 1 < n;
  cs[0] = lo ? so : A(0);  // q = p - 1 read p through d = +1
  cs[1] = sc;
  cs[2] = hi ? so : A(0);  // q = p + 1 read p through d = -1
  cd[0] = lo ? A(1) : A(0);
  cd[1] = A(0);
  cd[2] = hi ? A(-1) : A(0);
  // Constant indices only (p == 0 -> slot 1, p == 1 -> slot 0; p == n-1 -> slot 1, p == n-2 -> slot 2),
  // so that nvcc keeps the arrays in registers instead of a local-memory stack frame.
  if (map_border(-1, n, border) == p) {  // q = 0 reads extended -1 through d = -1
    if (p == 0) {
      cs[1] += so;
      cd[1] -= A(1);
    } else {
      cs[0] += so;
      cd[0] -= A(1);
    }
  }
  if (map_border(n, n, border) == p) {  // q = n-1 reads extended n through d = +1
    if (p == n - 1) {
      cs[1] += so;
      cd[1] += A(1);
    } else {
      cs[2] += so;
      cd[2] += A(1);
    }
  }
}

// Adjoint of the 2-D derivative at one pixel: gbx/gby[r][c] are the incoming gradients of gx/gy at
// (p_i + r - 1, p_j + c - 1) (any value where the coefficient is 0); rows use (cs_r, cd_r), columns
// (cs_c, cd_c). gx = smooth(rows) x diff(cols), gy = diff(rows) x smooth(cols).
template <typename A>
HMORE_HD A adjoint3x3(const A gbx[3][3], const A gby[3][3], const A cs_r[3], const A cd_r[3], const A cs_c[3],
                      const A cd_c[3], A inv) {
  A acc = A(0);
HMORE_EDGES_UNROLL
  for (int r = 0; r < 3; ++r) {
    A ux = A(0), uy = A(0);
HMORE_EDGES_UNROLL
    for (int c = 0; c < 3; ++c) {
      ux += cd_c[c] * gbx[r][c];
      uy += cs_c[c] * gby[r][c];
    }
    acc += cs_r[r] * ux + cd_r[r] * uy;
  }
  return inv * acc;
}

// sqrt with value 0 where s == 0 (the reference's _safe_sqrt); NaN stays NaN (docs/ops.md: a diverging
// flow must show in gradient_magnitude and flow_edges, never as a silent 0).
template <typename A>
HMORE_HD A safe_sqrt(A s) {
  return s > A(0) ? sqrt(s) : (s == s ? A(0) : s);
}

// d sqrt(s) / d g = g / m for s = sum g^2; 0 where m == 0 (matches the reference's masked sqrt); NaN
// where m is NaN.
template <typename A>
HMORE_HD A mag_grad_factor(A grad, A m) {
  return m > A(0) ? grad / m : (m == m ? A(0) : m);
}

// max that propagates NaN (torch.amax's rule; std::max and fmax drop it).
template <typename A>
HMORE_HD A nan_max(A a, A b) {
  return (b > a || b != b) ? b : a;
}

// flow_edges' per-image normalisation applies when the max is positive, or NaN (then the image is NaN).
template <typename A>
HMORE_HD bool normalizes(A M) {
  return M > A(0) || M != M;
}

// Morphology. The window of pixel q is the (2w+1)^2 square of a replicate-padded image, i.e. the
// clamped coordinates. The "first extremal" rule of torch's max_pool2d (keep the first strictly
// greater in row-major order of the padded window) is lexicographic in (di, dj), so it is separable:
// per row the first column reaching that row's extremum, then the first row whose extremum is
// strictly better. `better` is that strict comparison (min for erode, max for dilate).
// NaN counts as the extremum, as in max_pool2d (`val > max || isnan(val)`), so a NaN in a soft mask
// makes its whole window NaN on every backend, with the gradient at the last NaN in scan order.
template <typename A>
HMORE_HD bool better(A v, A best, bool want_max) {
  return v != v || (want_max ? v > best : v < best);
}

// Horizontal pass at (row, j): extremum over columns clamp(j - w .. j + w) and the source column of
// its first occurrence in scan order. ld(c) returns the row's value at column c in the accumulation
// type (the caller knows the storage type: half, bool, ...).
template <typename A, typename Load>
HMORE_HD A hscan(Load ld, int j, int W, int w, bool want_max, int& arg) {
  const int c0 = clampi(j - w, 0, W - 1), c1 = clampi(j + w, 0, W - 1);
  A best = ld(c0);
  arg = c0;
  // Clamped duplicates of the edge pixel can never be strictly better, so the distinct columns in
  // increasing order give the same first extremum as the padded window.
  for (int c = c0 + 1; c <= c1; ++c) {
    const A v = ld(c);
    if (better(v, best, want_max)) {
      best = v;
      arg = c;
    }
  }
  return best;
}

// Combination of the two morphology results into the boundary: inner = m - erode,
// outer = dilate - m, thick = dilate - erode.
template <typename A>
HMORE_HD A boundary_value(int mode, A m, A ero, A dil) {
  return mode == kInner ? m - ero : (mode == kOuter ? dil - m : dil - ero);
}
HMORE_HD bool mode_needs_erode(int mode) { return mode != kOuter; }
HMORE_HD bool mode_needs_dilate(int mode) { return mode != kInner; }

// Gradient of the boundary w.r.t. the mask at p, given whether p is the arg-extremum of q's window:
// d(inner)/dm = I - d erode, d(outer) = d dilate - I, d(thick) = d dilate - d erode.
template <typename A>
HMORE_HD A boundary_self_grad(int mode, A g) {
  return mode == kInner ? g : (mode == kOuter ? -g : A(0));
}

// flow_edges backward at one pixel: d out / d m for out = (m / M) * band, where M = max m of the
// image is itself a function of m (torch's amax backward splits its gradient evenly among the
// `count` tied maxima). dot = sum_q grad_q * band_q * m_q over the image.
template <typename A>
HMORE_HD A flow_edges_mbar(A grad, A band, A m, bool normalize, A M, A dot, A count) {
  const A gn = grad * band;
  if (!normalize) return gn;
  if (!normalizes(M)) return A(0);
  A r = gn / M;
  if (m == M) r -= dot / (M * M) / count;
  return r;
}

}  // namespace edges
}  // namespace hmore
