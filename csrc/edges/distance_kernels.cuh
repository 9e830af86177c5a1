// Per-element math of distance_transform (docs/ops.md §2), shared by the CPU kernel (g++) and the CUDA
// kernel (nvcc). No torch headers.
//
// Exact Euclidean distance transform after Felzenszwalb & Huttenlocher, "Distance Transforms of
// Sampled Functions" (Theory of Computing 8, 2012):
//   pass 1 (columns): near(i, j) = the row of the True pixel of column j nearest to row i (ties to the
//          upper one, like the reference), -1 when column j has no True pixel;
//   pass 2 (rows): d2(i, j) = min over columns k with near(i, k) >= 0 of f(k) + (j - k)^2 with
//          f(k) = (near(i, k) - i)^2, via the lower envelope of those parabolas.
// Everything is integer. The envelope's breakpoints are fractions; they are compared by
// cross-multiplication in int64, never rounded, so the envelope -- hence every distance -- is exact.
// For H, W <= 32768 every squared distance fits in int32: 2 * 32767^2 < 2^31 - 1.
#pragma once

#include "hd.h"

#define HMORE_DT_MAX_SIDE 32768

// Pass 1's choice between the nearest True row at or above i (a, -1 if none) and at or below i (b, -1
// if none): the nearer one, the upper one on ties (the reference's rule), -1 if neither exists.
HMORE_HD int hmore_dt_pick(int a, int b, int i) {
  if (a < 0) return b;
  if (b < 0) return a;
  return (i - a) <= (b - i) ? a : b;
}

// Squared vertical distance of row i to its nearest True row r (r >= 0).
HMORE_HD int hmore_dt_f(int r, int i) { return (r - i) * (r - i); }

// The breakpoint of the parabolas of columns p < q (values fp, fq) is s = num / den with den > 0:
// for j > s column q is strictly nearer, for j < s column p is, at j == s they tie.
HMORE_HD void hmore_dt_breakpoint(int p, int fp, int q, int fq, long long& num, long long& den) {
  num = (static_cast<long long>(fq) + static_cast<long long>(q) * q) -
        (static_cast<long long>(fp) + static_cast<long long>(p) * p);
  den = 2LL * (q - p);
}

// a/b <= c/d for positive denominators. |num| < 2^32 and den < 2^17, so the products are < 2^49.
HMORE_HD bool hmore_dt_frac_le(long long a, long long b, long long c, long long d) { return a * d <= c * b; }

// Pass 2 of one row. near: the row's near(i, k) for k in 0..W-1 (stride nstride between columns);
// v, fv: scratch of W ints for the envelope (column, f); outputs through emit(j, d2, k) with k the
// column of the minimising parabola, or k = -1 (and d2 = -1) when no column has a True pixel.
// The breakpoints are recomputed from (v, fv) instead of being stored: two int64 fractions per entry
// would triple the scratch, and recomputing costs a few integer multiplies.
template <typename Near, typename Emit>
HMORE_HD void hmore_dt_row(const Near& near, int i, int W, int* v, int* fv, Emit&& emit) {
  int n = 0;  // parabolas on the envelope
  for (int q = 0; q < W; ++q) {
    const int r = near(q);
    if (r < 0) continue;  // column without True pixel: no parabola
    const int fq = hmore_dt_f(r, i);
    // Pop envelope parabolas that q hides: the breakpoint (top, q) falls at or before the breakpoint
    // (below top, top), i.e. top is nowhere strictly the lowest any more.
    while (n >= 2) {
      long long a, b, c, d;
      hmore_dt_breakpoint(v[n - 1], fv[n - 1], q, fq, a, b);
      hmore_dt_breakpoint(v[n - 2], fv[n - 2], v[n - 1], fv[n - 1], c, d);
      if (!hmore_dt_frac_le(a, b, c, d)) break;
      --n;
    }
    // (With one parabola left its lower breakpoint is -inf: it always stays.)
    v[n] = q;
    fv[n] = fq;
    ++n;
  }
  if (n == 0) {
    for (int j = 0; j < W; ++j) emit(j, -1, -1);
    return;
  }
  // Sweep j left to right; the envelope's parabolas become the minimum in order, so advance while the
  // next one is strictly lower at j (exact integer comparison; equal values keep the current one).
  int k = 0;
  for (int j = 0; j < W; ++j) {
    int dk = fv[k] + (j - v[k]) * (j - v[k]);
    while (k + 1 < n) {
      const int dn = fv[k + 1] + (j - v[k + 1]) * (j - v[k + 1]);
      if (dn >= dk) break;
      ++k;
      dk = dn;
    }
    emit(j, dk, v[k]);
  }
}
