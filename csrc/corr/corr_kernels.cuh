// Per-element math of the correlation family (docs/ops.md §1, §5), shared by the CPU kernels (g++) and the
// CUDA kernels (nvcc), so the CPU tests exercise the arithmetic the GPU runs. No torch headers.
//
// Conventions:
// * Pixel (i, j) of a map has x = j, y = i. coords [B, 2, H1, W1]: channel 0 = x, 1 = y, in pixels of
//   level 0. Level l of the pyramid has size (H2 >> l, W2 >> l) (avg_pool2d 2x2 stride 2, floor), and
//   its window centre is coords / 2**l (an exact division: a power of two).
// * Taps (layout 'raft'): t = (dx + r) * (2r + 1) + (dy + r), dx slowest -- RAFT adds
//   stack(meshgrid(dy, dx)) to (x, y), which puts the x offset on the slow axis. Layout 'yx':
//   t = (dy + r) * (2r + 1) + (dx + r). Levels are concatenated level-major: channel l*T + t.
// * A tap samples the level at (x, y) = (cx + dx, cy + dy), both rounded in the working type exactly
//   as RAFT's `centroid_lvl + delta_lvl`, by bilinear interpolation with align_corners=True in pixel
//   coordinates and zeros outside: corners (x0, y0), (x0+1, y0), (x0, y0+1), (x0+1, y0+1) with
//   x0 = floor(x), weights written as grid_sample writes them, wx0 = (x0 + 1) - x, wx1 = x - x0
//   (same for y), corner weight = wx * wy. Unlike RAFT's bilinear_sampler (which normalises by W - 1)
//   this stays finite on levels 1 pixel wide or high; elsewhere the two agree to float rounding.
// * d(tap)/dx = wy0 * (v01 - v00) + wy1 * (v11 - v10), d(tap)/dy = wx0 * (v10 - v00) + wx1 * (v11 - v01)
//   (v_ab = the corner at (x0 + b, y0 + a), 0 outside): grid_sample's gradient, a one-sided derivative at
//   integer positions (the bilinear kink). d(coords)/... carries the factor 1 / 2**l of the level.
// * local_corr: channel (dy + d) * (2d + 1) + (dx + d) (dy slowest); output (i, j) reads fmap1 at
//   (i * stride, j * stride) and fmap2 at (i * stride + dy * dilation, j * stride + dx * dilation), zero
//   outside; the output is ceil(H / stride) x ceil(W / stride).
#pragma once

#include "hd.h"

namespace hmore {
namespace corr {

constexpr int kLayoutRaft = 0;  // tap (dx + r) * (2r + 1) + (dy + r)
constexpr int kLayoutYX = 1;    // tap (dy + r) * (2r + 1) + (dx + r)

HMORE_HD long long floor_ll(double v) {
  long long i = (long long)v;
  return (double)i > v ? i - 1 : i;
}

// Offsets (dx, dy) of tap t in a (2r+1)^2 window.
HMORE_HD void tap_offset(int t, int r, int layout, int& dx, int& dy) {
  const int n = 2 * r + 1;
  const int slow = t / n - r;
  const int fast = t % n - r;
  if (layout == kLayoutRaft) {
    dx = slow;
    dy = fast;
  } else {
    dy = slow;
    dx = fast;
  }
}

// Tap index of offsets (dx, dy).
HMORE_HD int tap_index(int dx, int dy, int r, int layout) {
  const int n = 2 * r + 1;
  return layout == kLayoutRaft ? (dx + r) * n + (dy + r) : (dy + r) * n + (dx + r);
}

// 1 / 2**l in the working type (exact).
template <typename A>
HMORE_HD A level_inv_scale(int level) {
  A s = A(1);
  for (int i = 0; i < level; ++i) s *= A(0.5);
  return s;
}

// Window centre of a level: coords / 2**l (exact, so the same as RAFT's division).
template <typename A>
HMORE_HD A level_center(A c, int level) {
  return c * level_inv_scale<A>(level);
}

// Size of level l of an n-pixel axis: n >> l (avg_pool2d floor, applied l times).
HMORE_HD long long level_size(long long n, int level) { return n >> level; }

// Bilinear footprint of a sample at x on a 1-D axis: lower corner x0 and the two weights. Coordinates
// outside the range of long long (inf, NaN, |x| > 9e18) are mapped far outside any image so that every
// corner reads zero; a non-finite coordinate (NaN or +-inf) gets NaN weights, so its taps are NaN on
// every backend (docs/ops.md, "Non-finite values"; the reference's (x0 + 1) - x is NaN there too).
template <typename A>
HMORE_HD void bilinear_1d(A x, long long& x0, A& w0, A& w1) {
  const A big = A(4.0e18);
  if (!(x > -big && x < big)) {  // also catches NaN
    x0 = (long long)(-(1LL << 62));
    const bool finite = x - x == A(0);  // inf - inf and NaN - NaN are NaN
    w0 = finite ? A(1) : x - x;
    w1 = finite ? A(0) : x - x;
    return;
  }
  x0 = floor_ll((double)x);
  const A fx0 = A(x0);
  w0 = (fx0 + A(1)) - x;
  w1 = x - fx0;
}

// Is integer position a inside [0, n)?
HMORE_HD bool inside(long long a, long long n) { return a >= 0 && a < n; }

// Sample position of tap (dx, dy) of level l for a query at (cx0, cy0) (level-0 pixels).
template <typename A>
HMORE_HD void tap_position(A cx0, A cy0, int level, int dx, int dy, A& x, A& y) {
  x = level_center(cx0, level) + A(dx);
  y = level_center(cy0, level) + A(dy);
}

// Bilinear sample of a [h, w] plane (row stride `rs`, column stride `cs`, in elements) at (x, y), zeros
// outside. Returns the value; if `grad` is non-null also d/dx, d/dy (grid_sample's one-sided form).
template <typename T, typename A>
HMORE_HD A bilinear_sample(const T* plane, long long h, long long w, long long rs, long long cs, A x, A y,
                           A* gx = nullptr, A* gy = nullptr) {
  if (h == 0 || w == 0) {  // an empty level: taps read 0 whatever the coordinate (the reference's rule)
    if (gx != nullptr) *gx = *gy = A(0);
    return A(0);
  }
  long long x0, y0;
  A wx0, wx1, wy0, wy1;
  bilinear_1d(x, x0, wx0, wx1);
  bilinear_1d(y, y0, wy0, wy1);
  const long long x1 = x0 + 1, y1 = y0 + 1;
  const bool ix0 = inside(x0, w), ix1 = inside(x1, w), iy0 = inside(y0, h), iy1 = inside(y1, h);
  const A v00 = (iy0 && ix0) ? A(plane[y0 * rs + x0 * cs]) : A(0);
  const A v01 = (iy0 && ix1) ? A(plane[y0 * rs + x1 * cs]) : A(0);
  const A v10 = (iy1 && ix0) ? A(plane[y1 * rs + x0 * cs]) : A(0);
  const A v11 = (iy1 && ix1) ? A(plane[y1 * rs + x1 * cs]) : A(0);
  if (gx != nullptr) {
    *gx = wy0 * (v01 - v00) + wy1 * (v11 - v10);
    *gy = wx0 * (v10 - v00) + wx1 * (v11 - v01);
  }
  return v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1);
}

// The four corner weights of a sample, in the order (y0,x0), (y0,x0+1), (y0+1,x0), (y0+1,x0+1) --
// the adjoint of bilinear_sample (used by the scatter of the backward to the pyramid).
template <typename A>
HMORE_HD void bilinear_weights(A wx0, A wx1, A wy0, A wy1, A w[4]) {
  w[0] = wx0 * wy0;
  w[1] = wx1 * wy0;
  w[2] = wx0 * wy1;
  w[3] = wx1 * wy1;
}

// avg_pool2d(2, stride 2, floor): pooled (i, j) is the mean of the source's (2i + a, 2j + b), a, b in
// {0, 1}; the adjoint sends g / 4 to each of those four (source pixels of the dropped odd row/column
// get no gradient). Summed in avg_pool2d's CPU order (row by row, left to right), then / 4 (exact).
template <typename A>
HMORE_HD A pool4(A a00, A a01, A a10, A a11) {
  return (((a00 + a01) + a10) + a11) * A(0.25);
}

// local_corr: offsets of channel c of a (2d+1)^2 window (dy slowest).
HMORE_HD void local_offset(int c, int d, int& dx, int& dy) {
  const int n = 2 * d + 1;
  dy = c / n - d;
  dx = c % n - d;
}

// Output size of local_corr along an axis: ceil(n / stride).
HMORE_HD long long local_out_size(long long n, int stride) { return (n + stride - 1) / stride; }

}  // namespace corr
}  // namespace hmore
