// Per-element math of the skeleton family (docs/ops.md §4, §5), shared by the CPU kernels (g++) and the CUDA
// kernels (nvcc): the CPU tests exercise the arithmetic the GPU runs. No torch headers.
//
// skeleton_match's cost of point q at pixel p = (x = j, y = i) is
//     cost = sqrt(dx*dx + dy*dy) * w_q,   dx = x - qx, dy = y - qy,
// evaluated in exactly this order in T (float, or double for float64 points), each product rounded on
// its own: on the GPU through __fmul_rn / __dmul_rn, which nvcc never contracts into an FMA (one rounding
// instead of two would move near-ties); on the host, x86-64 without -march has no FMA to contract into.
// sqrt is the correctly rounded one in both (nvcc's default -prec-sqrt=true; SSE sqrtss/sqrtsd). The
// reference (PyTorch) and Triton (mul_rn, sqrt_rn) evaluate the same expression, so every backend picks
// the same point, ties and near-ties included.
//
// w_q = -log(min(c_q, 1 - eps)) is computed by the glue with ATen ops on the conf tensor (the same op
// sequence as the reference; see skeleton.h) and is NaN for excluded points (c_q <= eps or NaN). A NaN
// cost never wins, so excluded points need no branch.
#pragma once

#include "hd.h"

#if !defined(__CUDACC_RTC__)
#include <cmath>
#endif

// Products use hmore::mul_rn (hd.h). __CUDA_ARCH__ (not HMORE_DEVICE_CODE, which nvcc's host pass sees
// too): the device pass takes the correctly rounded intrinsics, every host pass the plain functions.

namespace hmore {
namespace skel {

HMORE_HD float sqrt_rn(float v) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(v);
#else
  return std::sqrt(v);
#endif
}

HMORE_HD double sqrt_rn(double v) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(v);
#else
  return std::sqrt(v);
#endif
}

// The cost of a point at squared distance parts: dx2 = dx*dx and dy2 = dy*dy already rounded. Split out
// so a CPU row loop can hoist dy*dy (the same rounded value) out of its inner loop.
template <typename T>
HMORE_HD T cost_from(T dx2, T dy2, T w) {
  return sqrt_rn(dx2 + dy2) * w;
}

template <typename T>
HMORE_HD T cost(T px, T py, T qx, T qy, T w) {
  const T dx = px - qx, dy = py - qy;
  return cost_from(mul_rn(dx, dx), mul_rn(dy, dy), w);
}

// Running argmin over points visited in increasing index order: the first point with a non-NaN cost is
// taken whatever its cost (an infinite one included), then only a strictly smaller cost replaces it, so
// ties go to the lowest index. idx < 0: nothing taken yet.
template <typename T>
HMORE_HD bool better(T c, T best, long long idx) {
  return idx < 0 ? (c == c) : (c < best);
}

// Interpolation weights of point k of n on a bone (a -> b): p = s*a + t*b. n >= 2: t = k/(n-1), s =
// (n-1-k)/(n-1), both computed in double and rounded once, so the ends are exactly the joints (s, t in
// {0, 1}). n == 1: the bone's midpoint (s = t = 1/2).
HMORE_HD void bone_weights(int k, int n, double* s, double* t) {
  if (n == 1) {
    *s = 0.5;
    *t = 0.5;
    return;
  }
  const double d = double(n - 1);
  *t = double(k) / d;
  *s = double(n - 1 - k) / d;
}

template <typename T>
HMORE_HD T lerp(T s, T a, T t, T b) {
  return mul_rn(s, a) + mul_rn(t, b);
}

}  // namespace skel
}  // namespace hmore
