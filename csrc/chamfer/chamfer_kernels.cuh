// Per-element math of the Chamfer family (docs/ops.md §3, §5), shared by the CPU kernels (g++) and the CUDA
// kernels (nvcc). No torch headers. hmore_kernels/reference/chamfer.py is the same math in PyTorch.
//
// acc_t is the accumulation / distance type: float for float32 / float16 / bfloat16 points, double for
// float64. Callers convert loaded coordinates to acc_t before calling these functions.
#pragma once

#include "hd.h"

#if !defined(__CUDACC_RTC__)
#include <cmath>
#include <cstdint>
#endif

// Sentinel "no neighbour yet": +inf distance with index -1. A point whose other cloud is empty keeps
// index -1 and reports distance 0 (docs/ops.md: padded results are 0 / index -1) and contributes no term.
#define HMORE_CHAMFER_NO_INDEX (-1)

namespace hmore {
namespace chamfer {

// Squared distances use hmore::mul_rn / add_rn (hd.h): no FMA contraction on any backend, so every
// backend computes bit-identical distances and resolves ties the same way.
HMORE_HD float sqrt_acc(float a) {
#if defined(__CUDA_ARCH__)
  return ::sqrtf(a);
#else
  return std::sqrt(a);
#endif
}
HMORE_HD double sqrt_acc(double a) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(a);
#else
  return std::sqrt(a);
#endif
}

// Squared distance, computed directly as sum_k (a_k - b_k)^2 with k ascending, starting from the k = 0
// term. Never |a|^2 + |b|^2 - 2<a, b>: with pixel coordinates up to 4096 that expansion cancels
// catastrophically (|a|^2 ~ 3e7 while the distance may be 1) and breaks exact ties.
template <typename acc_t>
HMORE_HD acc_t sqdist2(acc_t ax, acc_t ay, acc_t bx, acc_t by) {
  const acc_t dx = ax - bx, dy = ay - by;
  return add_rn(mul_rn(dx, dx), mul_rn(dy, dy));
}
template <typename acc_t>
HMORE_HD acc_t sqdist3(acc_t ax, acc_t ay, acc_t az, acc_t bx, acc_t by, acc_t bz) {
  const acc_t dx = ax - bx, dy = ay - by, dz = az - bz;
  return add_rn(add_rn(mul_rn(dx, dx), mul_rn(dy, dy)), mul_rn(dz, dz));
}
// Any D (D >= 1); a, b already in acc_t. Same order as sqdist2/sqdist3 for D = 2, 3.
template <typename acc_t>
HMORE_HD acc_t sqdist(const acc_t* a, const acc_t* b, int D) {
  acc_t d0 = a[0] - b[0];
  acc_t s = mul_rn(d0, d0);
  for (int k = 1; k < D; ++k) {
    const acc_t dk = a[k] - b[k];
    s = add_rn(s, mul_rn(dk, dk));
  }
  return s;
}

// The tie rule. Scanning candidates j in increasing order, a strictly smaller distance replaces the
// best: ties keep the lowest index.
template <typename acc_t>
HMORE_HD void nn_update(acc_t d, int64_t j, acc_t& best, int64_t& best_j) {
  if (d < best) {
    best = d;
    best_j = j;
  }
}
// Merging two partial results (from different tiles, threads or warps, in any order): the smaller
// distance wins, the lower index on equal distances. Unset partials carry (+inf, -1) and never win
// against a set one (a set one has a finite distance or, on overflow, +inf with a valid index: then the
// lower valid index is kept -- idx -1 is treated as +infinity index).
template <typename acc_t>
HMORE_HD void nn_merge(acc_t d, int64_t j, acc_t& best, int64_t& best_j) {
  if (j < 0) return;
  if (best_j < 0 || d < best || (d == best && j < best_j)) {
    best = d;
    best_j = j;
  }
}

// The per-point term d_i from the squared distance: squared, or plain L2.
template <typename acc_t>
HMORE_HD acc_t point_term(acc_t d2, bool squared) {
  return squared ? d2 : (d2 > acc_t(0) ? sqrt_acc(d2) : acc_t(0));
}

// d(term)/d(a) = coef * (a - b) for the point a and its neighbour b (and -coef * (a - b) for b):
// squared -> 2; plain L2 -> 1 / |a - b|, and 0 (not NaN) at distance 0.
template <typename acc_t>
HMORE_HD acc_t term_grad_coef(acc_t d2, bool squared) {
  return squared ? acc_t(2) : (d2 > acc_t(0) ? acc_t(1) / sqrt_acc(d2) : acc_t(0));
}

// Per-direction normalisation of chamfer_distance (docs/ops.md §5): "mean"/"none" divide sum w_i d_i by
// sum w_i (0 when that sum is 0: an empty cloud, or all-zero weights), "sum" does not. Returns the
// factor that multiplies sum w_i d_i.
template <typename acc_t>
HMORE_HD acc_t direction_scale(acc_t wsum, bool normalise) {
  if (!normalise) return acc_t(1);
  return wsum > acc_t(0) ? acc_t(1) / wsum : acc_t(0);
}
// d D / d w_i for one direction: (d_i - D) / sum w ("mean"/"none"; 0 when sum w is 0) or d_i ("sum").
template <typename acc_t>
HMORE_HD acc_t weight_grad(acc_t d_i, acc_t D, acc_t wsum, bool normalise) {
  if (!normalise) return d_i;
  return wsum > acc_t(0) ? (d_i - D) / wsum : acc_t(0);
}

// ---- patch centroids ----------------------------------------------------------------------------
// Patch (pi, pj) at size p covers rows [pi*p, min(pi*p + p, H)) and columns likewise. Its statistics
// are accumulated in patch-local coordinates: m = sum w, sx = sum w * (j - j0 + dx), sy = sum w *
// (i - i0 + dy). The origin (j0, i0) cancels in |c_a - c_b|, and local sums stay exact in float32 for
// large images.
HMORE_HD int patch_extent(int pidx, int p, int size) {
  const int s = size - pidx * p;
  return s < p ? s : p;
}

// Patch-local centroid: (sx/m, sy/m) when m > thresh, else the centre of the patch's in-image pixels
// ((cols - 1)/2, (rows - 1)/2). patch_centroids uses thresh = 0, patch_centroid_chamfer min_mass.
template <typename acc_t>
HMORE_HD void local_centroid(acc_t m, acc_t sx, acc_t sy, int rows, int cols, acc_t thresh, acc_t& cx, acc_t& cy) {
  if (m > thresh) {
    cx = sx / m;
    cy = sy / m;
  } else {
    cx = acc_t(cols - 1) * acc_t(0.5);
    cy = acc_t(rows - 1) * acc_t(0.5);
  }
}

// Backward of local_centroid for m > thresh: given dL/dcx, dL/dcy, the gradient w.r.t. (m, sx, sy).
// (For m <= thresh the centroid is a constant: all zero.)
template <typename acc_t>
HMORE_HD void local_centroid_backward(acc_t m, acc_t cx, acc_t cy, acc_t gcx, acc_t gcy, acc_t& gm, acc_t& gsx,
                                      acc_t& gsy) {
  const acc_t inv = acc_t(1) / m;
  gsx = gcx * inv;
  gsy = gcy * inv;
  gm = -(gcx * cx + gcy * cy) * inv;
}

// Coverage r = min(1, m / p); its derivative is 1/p for m <= p (torch.clamp's rule at the kink), else 0.
template <typename acc_t>
HMORE_HD acc_t coverage(acc_t m, int p) {
  const acc_t r = m / acc_t(p);
  return r < acc_t(1) ? r : acc_t(1);
}
template <typename acc_t>
HMORE_HD acc_t coverage_grad(acc_t m, int p) {
  return m / acc_t(p) <= acc_t(1) ? acc_t(1) / acc_t(p) : acc_t(0);
}

// One patch of patch_centroid_chamfer. Inputs: the two patches' local statistics. Returns whether the
// patch counts (m_a + m_b > min_mass) and its term r_a r_b |c_a - c_b| + p |r_a - r_b| (0 if it does
// not count).
template <typename acc_t>
HMORE_HD bool pcc_term(acc_t ma, acc_t sxa, acc_t sya, acc_t mb, acc_t sxb, acc_t syb, int rows, int cols, int p,
                       acc_t min_mass, acc_t& term) {
  term = acc_t(0);
  if (!(ma + mb > min_mass)) return false;
  acc_t cxa, cya, cxb, cyb;
  local_centroid(ma, sxa, sya, rows, cols, min_mass, cxa, cya);
  local_centroid(mb, sxb, syb, rows, cols, min_mass, cxb, cyb);
  const acc_t ra = coverage(ma, p), rb = coverage(mb, p);
  const acc_t dx = cxa - cxb, dy = cya - cyb;
  const acc_t l2 = dx * dx + dy * dy;
  const acc_t L = l2 > acc_t(0) ? sqrt_acc(l2) : acc_t(0);
  const acc_t dr = ra - rb;
  term = ra * rb * L + acc_t(p) * (dr < acc_t(0) ? -dr : dr);
  return true;
}

// Backward of pcc_term for a counted patch, scaled by g (= dLoss/dterm): the gradient w.r.t. the
// statistics of a (gma, gsxa, gsya) and b (gmb, gsxb, gsyb). A pixel (i, j) of the patch with weight w
// then gets d/dw = gm + gsx * (j - j0) + gsy * (i - i0). d|c_a - c_b| = 0 at c_a == c_b and
// d|r_a - r_b| = 0 at r_a == r_b (subgradient 0, never NaN).
template <typename acc_t>
HMORE_HD void pcc_term_backward(acc_t ma, acc_t sxa, acc_t sya, acc_t mb, acc_t sxb, acc_t syb, int rows, int cols,
                                int p, acc_t min_mass, acc_t g, acc_t& gma, acc_t& gsxa, acc_t& gsya, acc_t& gmb,
                                acc_t& gsxb, acc_t& gsyb) {
  gma = gsxa = gsya = gmb = gsxb = gsyb = acc_t(0);
  if (!(ma + mb > min_mass)) return;
  acc_t cxa, cya, cxb, cyb;
  local_centroid(ma, sxa, sya, rows, cols, min_mass, cxa, cya);
  local_centroid(mb, sxb, syb, rows, cols, min_mass, cxb, cyb);
  const acc_t ra = coverage(ma, p), rb = coverage(mb, p);
  const acc_t dx = cxa - cxb, dy = cya - cyb;
  const acc_t l2 = dx * dx + dy * dy;
  const acc_t L = l2 > acc_t(0) ? sqrt_acc(l2) : acc_t(0);
  const acc_t dr = ra - rb;
  const acc_t sgn = dr > acc_t(0) ? acc_t(1) : (dr < acc_t(0) ? acc_t(-1) : acc_t(0));
  // d term / d r_a, d r_b
  const acc_t gra = g * (rb * L + acc_t(p) * sgn);
  const acc_t grb = g * (ra * L - acc_t(p) * sgn);
  gma = gra * coverage_grad(ma, p);
  gmb = grb * coverage_grad(mb, p);
  // d term / d c_a = ra rb (c_a - c_b) / L (0 at L = 0); d / d c_b is its negative
  const acc_t k = L > acc_t(0) ? g * ra * rb / L : acc_t(0);
  const acc_t gcx = k * dx, gcy = k * dy;
  if (ma > min_mass) {
    acc_t gm, gx, gy;
    local_centroid_backward(ma, cxa, cya, gcx, gcy, gm, gx, gy);
    gma += gm;
    gsxa = gx;
    gsya = gy;
  }
  if (mb > min_mass) {
    acc_t gm, gx, gy;
    local_centroid_backward(mb, cxb, cyb, -gcx, -gcy, gm, gx, gy);
    gmb += gm;
    gsxb = gx;
    gsyb = gy;
  }
}

}  // namespace chamfer
}  // namespace hmore
