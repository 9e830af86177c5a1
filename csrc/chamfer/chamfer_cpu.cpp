// CPU kernels of the Chamfer family (docs/ops.md §3, §5): nearest_neighbors, chamfer_distance (+ backward),
// patch_centroids (+ backward), patch_centroid_chamfer (+ backward), boundary_chamfer.
//
// Nearest neighbours: the points of each cloud are first copied to structure-of-arrays (one contiguous
// run per coordinate), so the inner loop over a tile of y is a plain vectorisable loop. Work is split
// into tasks (batch, tile of kXTile x points) run by at::parallel_for; each task sweeps y in tiles of
// kYTile points that stay in L1. For one x point the tile's distances are written to a small buffer while
// the running minimum is kept; the first index attaining a strictly smaller minimum is then searched in
// that buffer only, so ties go to the lowest index without an argmin in the hot loop.
// chamfer_distance does both directions in that one pass: the tasks run in at most `threads` contiguous
// chunks, and every tile of distances also updates the chunk's own column minima of y (a strictly smaller
// distance replaces: x indices only increase within a chunk, so ties keep the lowest index); the chunks'
// minima are then merged with the lexicographic (distance, index) rule, which is commutative and
// associative, so the result does not depend on the number of threads. Memory: O(points * threads).
// Measured on 2 cores at 8k x 8k: one pass 1.25x faster than running y -> x as a second pass
// (HMORE_CHAMFER_CPU_TWO_PASS=1 selects that, for the benchmark's comparison).
// D = 2 above ~2^17 point pairs (pixel coordinates of boundaries, the H-MoRe case) uses instead an exact
// spatially pruned search (nn_pruned: sqrt(n)-point strips sorted by y, bounds that never skip a point
// at the best distance), bit-identical to the brute force -- same distances, same lowest-index ties --
// at O(n sqrt(n)) worst case (all points on one vertical line) and ~O(n log n) on spread clouds.
// HMORE_CHAMFER_CPU_NN=brute|pruned forces either path (tests compare them).
//
// Backward: no atomics anywhere. The scatter of a point's gradient into its neighbour runs serially
// within one batch element (batch elements in parallel), so results are bit-identical run to run;
// `deterministic` therefore changes nothing on CPU.
//
// Patches: every (batch, patch row) task reduces its own pixels (no scatter); the per-batch sums of
// patch terms run serially in patch order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#if defined(__SSE2__) && !defined(HMORE_CHAMFER_NO_SIMD)
#include <emmintrin.h>
#define HMORE_CHAMFER_SSE2 1
#else
#define HMORE_CHAMFER_SSE2 0
#endif
#include <type_traits>

#include "chamfer/chamfer.h"
#include "chamfer/chamfer_checks.h"
#include "chamfer/chamfer_kernels.cuh"
#include "common.h"
#include "edges/edges.h"

namespace hmore {
namespace {

using namespace hmore::chamfer;

constexpr int64_t kXTile = 64;

// Parallel grains. A task must carry enough work to pay for waking a thread: on a busy machine a
// parallel region whose helper thread is descheduled waits a whole scheduler time slice (milliseconds),
// which is what a 0.2 ms op cannot afford. So each parallel_for gets at least ~kTaskWork elements of
// simple work (pixels, points) per task, and small problems run inline on the calling thread.
constexpr int64_t kTaskWork = int64_t{1} << 18;
constexpr int64_t kSmallGrain = int64_t{1} << 16;
inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kTaskWork / std::max<int64_t>(work_per_item, 1));
}
constexpr int64_t kYTile = 1024;
// Pruned D = 2 search (nn_pruned): strip size = kStripScale * sqrt(points), and the brute-force work
// sum_b n_b * m_b from which the pruned path is used automatically. Measured on 1 thread, uniform
// integer clouds, one call: 256 x 256 brute 66 us / pruned 52 us, 1k x 1k 525 / 446 us, 2k x 2k
// 2.2 / 1.05 ms; at 128 x 128 brute is ahead (the strips cost their sorts), so the switch is at 2^17.
constexpr double kStripScale = 1.0;
constexpr int64_t kPrunedMinWork = int64_t{1} << 17;

// ---- argument checks (shared by forward and backward) -------------------------------------------
void check_points(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 3, name, ": expected a 3-D tensor [B, N, D], got shape ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   ": expected float32 or float64 on CPU (float16/bfloat16 are GPU-only), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.size(1) < (int64_t{1} << 31), name, ": expected fewer than 2^31 points, got ", t.size(1));
}

void check_pair(const at::Tensor& x, const at::Tensor& y) {
  check_points(x, "x");
  check_points(y, "y");
  check_pair_agreement(x, y);
}

// lengths -> per-batch counts (validated: [B] int64, 0 <= l <= N); none -> all N.
std::vector<int64_t> read_lengths(const std::optional<at::Tensor>& l, int64_t B, int64_t N, const char* name,
                                  const at::Tensor& like) {
  std::vector<int64_t> out(size_t(B), N);
  if (!l.has_value()) return out;
  const at::Tensor& t = *l;
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == B, name, ": expected shape [", B, "], got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, ": expected int64, got ", t.scalar_type());
  check_same_device(t, name, like, "x");
  at::Tensor c = t.contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(p[b] >= 0 && p[b] <= N, name, ": expected values in [0, ", N, "], got ", p[b],
                      " at index ", b);
    out[size_t(b)] = p[b];
  }
  return out;
}

at::Tensor read_weights(const std::optional<at::Tensor>& w, int64_t B, int64_t N, const char* name,
                        const at::Tensor& like) {
  if (!w.has_value()) return at::Tensor();
  const at::Tensor& t = *w;
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == B && t.size(1) == N, name, ": expected shape [", B, ", ", N,
                    "], got ", t.sizes());
  TORCH_CHECK_TYPE(t.is_floating_point(), name, ": expected a floating-point tensor, got ", t.scalar_type());
  check_same_device(t, name, like, "x");
  at::Tensor c = t.to(like.scalar_type()).contiguous();
  TORCH_CHECK_VALUE(!(c < 0).any().item<bool>(), name, ": expected weights >= 0, got a negative weight");
  return c;
}

// [B, N, D] -> SoA [B, D, N] contiguous in T.
template <typename T>
at::Tensor soa(const at::Tensor& p) {
  return p.transpose(1, 2).contiguous();
}

// ---- nearest neighbour pass ----------------------------------------------------------------------
#if HMORE_CHAMFER_SSE2
// The D = 2 float tile with SSE2 (x86-64 baseline): GCC does not vectorise the scalar loop (the float
// min reduction and the float-mask select of int32 indices count as control flow). Same arithmetic as
// sqdist2 -- (dx*dx) + (dy*dy), separately rounded, no FMA -- so the bits match the scalar path and the
// GPU. _mm_min_ps(d, m) = d < m ? d : m (a NaN distance never wins). Processes the multiple-of-4 prefix
// of the tile and returns its length; the caller finishes the rest with the scalar loop.
template <bool Both>
inline int64_t tile_d2_sse2(float x0, float x1, const float* __restrict y0, const float* __restrict y1, int64_t nt,
                            float* __restrict buf, float* __restrict cb, int32_t* __restrict ci, int32_t i,
                            float& tmin) {
  const __m128 X0 = _mm_set1_ps(x0), X1 = _mm_set1_ps(x1);
  const __m128i I = _mm_set1_epi32(i);
  __m128 m = _mm_set1_ps(tmin);
  const int64_t n4 = nt & ~int64_t(3);
  for (int64_t j = 0; j < n4; j += 4) {
    const __m128 dx = _mm_sub_ps(X0, _mm_loadu_ps(y0 + j));
    const __m128 dy = _mm_sub_ps(X1, _mm_loadu_ps(y1 + j));
    const __m128 d = _mm_add_ps(_mm_mul_ps(dx, dx), _mm_mul_ps(dy, dy));
    _mm_storeu_ps(buf + j, d);
    m = _mm_min_ps(d, m);
    if (Both) {
      const __m128 c = _mm_loadu_ps(cb + j);
      const __m128i lt = _mm_castps_si128(_mm_cmplt_ps(d, c));
      _mm_storeu_ps(cb + j, _mm_min_ps(d, c));
      const __m128i k = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ci + j));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ci + j), _mm_or_si128(_mm_and_si128(lt, I), _mm_andnot_si128(lt, k)));
    }
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, m);
  for (int l = 0; l < 4; ++l) tmin = lanes[l] < tmin ? lanes[l] : tmin;
  return n4;
}
#endif

// One x point against y[0, ny) (SoA, stride N between coordinates). Updates (best, bj) with the tie
// rule and, if Both, the column minima (cb, ci) of y with the lexicographic rule.
template <typename T, int DC, bool Both>
inline void nn_point(const T* xp, int64_t xs, int32_t i, const T* yp, int64_t ys, int64_t ny, int D, T* buf,
                     T& best, int32_t& bj, T* cb, int32_t* ci) {
  T xc[3] = {T(0), T(0), T(0)};
  if (DC > 0)
    for (int k = 0; k < DC; ++k) xc[k] = xp[k * xs];
  for (int64_t j0 = 0; j0 < ny; j0 += kYTile) {
    const int64_t nt = std::min(kYTile, ny - j0);
    T tmin = std::numeric_limits<T>::infinity();
    const T* y0 = yp + j0;
    if (DC == 2) {
      const T* y1 = y0 + ys;
      int64_t j = 0;
#if HMORE_CHAMFER_SSE2
      if constexpr (std::is_same<T, float>::value) {
        j = tile_d2_sse2<Both>(xc[0], xc[1], y0, y1, nt, buf, cb ? cb + j0 : nullptr, ci ? ci + j0 : nullptr, i, tmin);
      }
#endif
      for (; j < nt; ++j) {
        const T d = sqdist2(xc[0], xc[1], y0[j], y1[j]);
        buf[j] = d;
        tmin = d < tmin ? d : tmin;
        if (Both) {
          const T c = cb[j0 + j];
          const int32_t k = ci[j0 + j];
          const bool lt = d < c;  // strict: within one chunk x indices only increase (tie -> lowest)
          cb[j0 + j] = lt ? d : c;
          ci[j0 + j] = lt ? i : k;
        }
      }
    } else if (DC == 3) {
      const T* y1 = y0 + ys;
      const T* y2 = y1 + ys;
      for (int64_t j = 0; j < nt; ++j) {
        const T d = sqdist3(xc[0], xc[1], xc[2], y0[j], y1[j], y2[j]);
        buf[j] = d;
        tmin = d < tmin ? d : tmin;
        if (Both) {
          const T c = cb[j0 + j];
          const int32_t k = ci[j0 + j];
          const bool lt = d < c;  // strict: within one chunk x indices only increase (tie -> lowest)
          cb[j0 + j] = lt ? d : c;
          ci[j0 + j] = lt ? i : k;
        }
      }
    } else {
      // Any D: accumulate coordinate by coordinate over the tile (same order as sqdist: k ascending).
      for (int64_t j = 0; j < nt; ++j) {
        const T dk = xp[0] - y0[j];
        buf[j] = mul_rn(dk, dk);
      }
      for (int k = 1; k < D; ++k) {
        const T xk = xp[k * xs];
        const T* yk = y0 + k * ys;
        for (int64_t j = 0; j < nt; ++j) {
          const T dk = xk - yk[j];
          buf[j] = add_rn(buf[j], mul_rn(dk, dk));
        }
      }
      for (int64_t j = 0; j < nt; ++j) {
        const T d = buf[j];
        tmin = d < tmin ? d : tmin;
        if (Both) {
          const T c = cb[j0 + j];
          const int32_t k = ci[j0 + j];
          const bool lt = d < c;  // strict: within one chunk x indices only increase (tie -> lowest)
          cb[j0 + j] = lt ? d : c;
          ci[j0 + j] = lt ? i : k;
        }
      }
    }
    if (tmin < best) {  // strictly smaller than everything before this tile: find its first index
      int64_t j = 0;
      while (buf[j] != tmin) ++j;
      best = tmin;
      bj = static_cast<int32_t>(j0 + j);
    }
  }
}

// Directed pass for all batches: (rbest, ridx) [B, N] for x -> y; with Both also (cbest, cidx) [B, M].
// xs_, ys_: SoA [B, D, N], [B, D, M].
template <typename T, int DC, bool Both>
void nn_all(const T* xs_, const T* ys_, int64_t B, int64_t N, int64_t M, int D, const std::vector<int64_t>& nxl,
            const std::vector<int64_t>& nyl, T* rbest, int32_t* ridx, T* cbest, int32_t* cidx) {
  const int64_t ntx = (N + kXTile - 1) / kXTile, ntask = B * ntx;
  // About 4M distance evaluations (a few ms) per chunk at least, so small problems stay on one thread.
  const int64_t work = std::max<int64_t>(1, kXTile * std::max<int64_t>(M, 1));
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 22) / work);
  // The tasks run in nch contiguous chunks, each with its own column minima of y: within a chunk the x
  // indices of a batch element only increase, so a strictly smaller distance replacing the column's best
  // keeps the lowest index on ties with no extra comparison in the hot loop. Chunks are then merged with
  // the lexicographic (distance, index) rule. Memory: nch * B * M (nch <= threads).
  const int64_t nch = Both ? std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), ntask / grain)) : 1;
  std::vector<T> tcb;
  std::vector<int32_t> tci;
  if (Both) {
    tcb.assign(size_t(nch) * B * M, std::numeric_limits<T>::infinity());
    tci.assign(size_t(nch) * B * M, -1);
  }
  auto run_tasks = [&](int64_t t0, int64_t t1, T* cbase, int32_t* cibase) {
    std::vector<T> buf(static_cast<size_t>(kYTile));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / ntx, i0 = (t - b * ntx) * kXTile;
      const int64_t nx = nxl[size_t(b)], ny = nyl[size_t(b)];
      const int64_t i1 = std::min(i0 + kXTile, nx);
      const T* xb = xs_ + b * D * N;
      const T* yb = ys_ + b * D * M;
      T* cb = Both ? cbase + b * M : nullptr;
      int32_t* ci = Both ? cibase + b * M : nullptr;
      for (int64_t i = i0; i < i1; ++i) {
        T best = std::numeric_limits<T>::infinity();
        int32_t bj = -1;
        nn_point<T, DC, Both>(xb + i, N, static_cast<int32_t>(i), yb, M, ny, D, buf.data(), best, bj, cb, ci);
        rbest[b * N + i] = bj < 0 ? T(0) : best;
        ridx[b * N + i] = bj;
      }
      for (int64_t i = std::max(i0, nx); i < i0 + kXTile && i < N; ++i) {  // padding past the length
        rbest[b * N + i] = T(0);
        ridx[b * N + i] = -1;
      }
    }
  };
  if (!Both) {
    at::parallel_for(0, ntask, grain, [&](int64_t t0, int64_t t1) { run_tasks(t0, t1, nullptr, nullptr); });
    return;
  }
  at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      run_tasks(c * ntask / nch, (c + 1) * ntask / nch, tcb.data() + size_t(c) * B * M, tci.data() + size_t(c) * B * M);
  });
  at::parallel_for(0, B * M, kSmallGrain, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      T best = std::numeric_limits<T>::infinity();
      int64_t bi = -1;
      for (int64_t c = 0; c < nch; ++c) nn_merge<T>(tcb[size_t(c) * B * M + e], tci[size_t(c) * B * M + e], best, bi);
      cbest[e] = bi < 0 ? T(0) : best;
      cidx[e] = static_cast<int32_t>(bi);
    }
  });
}

template <typename T, bool Both>
void nn_dispatch(const T* xs_, const T* ys_, int64_t B, int64_t N, int64_t M, int D, const std::vector<int64_t>& nxl,
                 const std::vector<int64_t>& nyl, T* rbest, int32_t* ridx, T* cbest, int32_t* cidx) {
  if (D == 2)
    nn_all<T, 2, Both>(xs_, ys_, B, N, M, D, nxl, nyl, rbest, ridx, cbest, cidx);
  else if (D == 3)
    nn_all<T, 3, Both>(xs_, ys_, B, N, M, D, nxl, nyl, rbest, ridx, cbest, cidx);
  else
    nn_all<T, 0, Both>(xs_, ys_, B, N, M, D, nxl, nyl, rbest, ridx, cbest, cidx);
}

// Both directions: (dx [B, N], ix [B, N], dy [B, M], iy [B, M]) as int32 indices.
// HMORE_CHAMFER_CPU_TWO_PASS=1 runs y -> x as its own pass instead (kept for the benchmark's comparison).
// ---- spatially pruned exact search for D = 2 ------------------------------------------------------
// Brute force costs N * M distances; for large 2-D clouds (pixel coordinates of boundary points) most
// of them are provably useless. Each cloud is cut into vertical strips of ~sqrt(n) points (contiguous
// chunks of its x-sorted order), each strip sorted by y, with the strip's actual min / max x kept. A
// query visits the strip at its x, then strips outward left / right while the strip's x-gap squared is
// <= the best distance so far; inside a strip it binary-searches its y and walks up / down while the
// y-gap squared is <= best. A vertical line of points (all in strips of x-gap 0) costs O(sqrt(n) log n)
// per query, not O(n).
//
// Exactness (same distances, same indices as brute force): every candidate's distance is computed by
// sqdist2 exactly as in the brute-force tile; the bounds are rounded the same way and are provably <=
// it: for p in a strip left of q, p.x <= hi so fl(q.x - p.x) >= fl(q.x - hi) >= 0 (rounding is
// monotone), hence fl(dx*dx) >= fl(g*g) and fl(fl(dx*dx) + fl(dy*dy)) >= fl(dx*dx); likewise for y.
// A candidate is skipped only when its bound is STRICTLY greater than the best, so every candidate at
// the best distance is evaluated, and the update (d < best, or d == best with a lower index) is the
// lexicographic rule of nn_merge: the result is independent of the visiting order, i.e. exactly the
// brute-force answer (lowest index among the minima; +inf distances never accepted). Non-finite
// coordinates (NaN would break the sort) send the whole call to brute force.
template <typename T>
struct Strips {
  std::vector<T> px, py;          // coordinates in strip order (strips by x, y ascending inside)
  std::vector<int32_t> id;        // original index
  std::vector<int64_t> start;     // strip k = [start[k], start[k + 1])
  std::vector<T> lo, hi;          // min / max x of strip k (non-decreasing in k)
  bool finite = true;

  struct P {
    T x, y;
    int32_t id;
  };
  void build(const T* c0, const T* c1, int64_t n) {
    // Sorting contiguous (x, y, id) records, not indices into the coordinates: no indirect loads in the
    // comparisons (measured 2x faster build at 64k points).
    std::vector<P> o(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(c0[i]) || !std::isfinite(c1[i])) {
        finite = false;
        return;
      }
      o[size_t(i)] = P{c0[i], c1[i], static_cast<int32_t>(i)};
    }
    std::sort(o.begin(), o.end(), [](const P& a, const P& b) { return a.x < b.x || (a.x == b.x && a.id < b.id); });
    const int64_t S = std::max<int64_t>(8, static_cast<int64_t>(std::sqrt(double(n)) * kStripScale));
    const int64_t ns = (n + S - 1) / S;
    start.resize(size_t(ns + 1));
    lo.resize(size_t(ns));
    hi.resize(size_t(ns));
    px.resize(size_t(n));
    py.resize(size_t(n));
    id.resize(size_t(n));
    for (int64_t k = 0; k < ns; ++k) {
      const int64_t a = k * S, e = std::min(n, a + S);
      start[size_t(k)] = a;
      lo[size_t(k)] = o[size_t(a)].x;
      hi[size_t(k)] = o[size_t(e - 1)].x;
      std::sort(o.begin() + a, o.begin() + e,
                [](const P& u, const P& v) { return u.y < v.y || (u.y == v.y && u.id < v.id); });
      for (int64_t j = a; j < e; ++j) {
        px[size_t(j)] = o[size_t(j)].x;
        py[size_t(j)] = o[size_t(j)].y;
        id[size_t(j)] = o[size_t(j)].id;
      }
    }
    start[size_t(ns)] = n;
  }

  // Nearest point of this cloud to (q0, q1): (best, bj) with the tie rule; (+inf, -1) when none.
  inline void query(T q0, T q1, T& best, int32_t& bj) const {
    const int64_t ns = static_cast<int64_t>(lo.size());
    if (ns == 0) return;
    int64_t s = std::lower_bound(hi.begin(), hi.end(), q0) - hi.begin();  // first strip with hi >= q0
    if (s == ns) s = ns - 1;
    scan(s, q0, q1, best, bj);
    // Strips left of s have hi < q0, strips right of s have lo >= hi[s] >= q0 (or s is the last one).
    int64_t l = s - 1, r = s + 1;
    bool lok = l >= 0, rok = r < ns;
    while (lok || rok) {
      if (lok) {
        const T g = q0 - hi[size_t(l)];
        if (g * g > best) {
          lok = false;
        } else {
          scan(l, q0, q1, best, bj);
          lok = --l >= 0;
        }
      }
      if (rok) {
        const T g = lo[size_t(r)] - q0;
        if (g * g > best) {
          rok = false;
        } else {
          scan(r, q0, q1, best, bj);
          rok = ++r < ns;
        }
      }
    }
  }

  inline void scan(int64_t k, T q0, T q1, T& best, int32_t& bj) const {
    const int64_t a = start[size_t(k)], e = start[size_t(k + 1)];
    const T* y = py.data();
    const int64_t p = std::lower_bound(y + a, y + e, q1) - y;
    for (int64_t j = p; j < e; ++j) {
      const T g = y[j] - q1;
      if (g * g > best) break;
      take(sqdist2<T>(q0, q1, px[size_t(j)], y[j]), id[size_t(j)], best, bj);
    }
    for (int64_t j = p - 1; j >= a; --j) {
      const T g = q1 - y[j];
      if (g * g > best) break;
      take(sqdist2<T>(q0, q1, px[size_t(j)], y[j]), id[size_t(j)], best, bj);
    }
  }

  static inline void take(T d, int32_t j, T& best, int32_t& bj) {
    if (d < best || (d == best && j < bj)) {  // bj = -1 with best = +inf: an +inf distance never wins
      best = d;
      bj = j;
    }
  }
};

// Pruned x -> y (and y -> x if both) for D = 2. Returns false (nothing written) when a coordinate is
// not finite; the caller then runs brute force.
template <typename T>
bool nn_pruned(const T* xs_, const T* ys_, int64_t B, int64_t N, int64_t M, const std::vector<int64_t>& nxl,
               const std::vector<int64_t>& nyl, bool both, T* rbest, int32_t* ridx, T* cbest, int32_t* cidx) {
  // Both clouds get strips: the target's for searching, the query cloud's for visiting queries in
  // spatial order (consecutive queries touch the same strips: cache locality).
  std::vector<Strips<T>> sx(static_cast<size_t>(B)), sy(static_cast<size_t>(B));
  // Grains: on a busy machine every parallel region can wait a scheduler time slice for a descheduled
  // helper thread (measured: a flat ~16 ms per call at 1k points under load 3 on 2 cores), so small
  // problems run inline. Work units: ~log2(n) comparisons per point to build, ~64 per query.
  const int64_t nmax = std::max<int64_t>(std::max<int64_t>(N, M), 2);
  const int64_t lg = 64 - __builtin_clzll(static_cast<unsigned long long>(nmax));
  constexpr int64_t kQBlock = 256;
  // Queries [k0, k1) (in the query cloud's strip order) of batch b, direction x -> y or (rev) y -> x.
  // Each query writes its own output slot: deterministic for any thread count.
  auto answer = [&](int64_t b, bool rev, int64_t k0, int64_t k1) {
    const Strips<T>& Q = rev ? sy[size_t(b)] : sx[size_t(b)];
    const Strips<T>& Tg = rev ? sx[size_t(b)] : sy[size_t(b)];
    const int64_t nq = static_cast<int64_t>(Q.id.size()), stride = rev ? M : N;
    T* ob = (rev ? cbest : rbest) + b * stride;
    int32_t* oi = (rev ? cidx : ridx) + b * stride;
    for (int64_t k = k0; k < std::min(k1, nq); ++k) {
      T best = std::numeric_limits<T>::infinity();
      int32_t bj = -1;
      Tg.query(Q.px[size_t(k)], Q.py[size_t(k)], best, bj);
      ob[Q.id[size_t(k)]] = bj < 0 ? T(0) : best;
      oi[Q.id[size_t(k)]] = bj;
    }
    if (k0 == 0) {  // padding past the length (and every query when the other cloud is empty)
      for (int64_t i = nq; i < stride; ++i) {
        ob[i] = T(0);
        oi[i] = -1;
      }
    }
  };
  auto build = [&](int64_t t) {  // t = 2 b (x) or 2 b + 1 (y)
    const int64_t b = t >> 1;
    if (t & 1)
      sy[size_t(b)].build(ys_ + b * 2 * M, ys_ + b * 2 * M + M, nyl[size_t(b)]);
    else
      sx[size_t(b)].build(xs_ + b * 2 * N, xs_ + b * 2 * N + N, nxl[size_t(b)]);
  };
  if (B >= 2 && B >= at::get_num_threads()) {
    // Enough batch elements: one parallel region (each region may cost a time slice), a task per
    // batch element doing its builds and all its queries. Outputs of a batch element with a
    // non-finite coordinate may be left half written: the caller's brute force overwrites them all.
    std::atomic<bool> ok{true};
    at::parallel_for(0, B, grain_for(nmax * (lg + 64)), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        build(2 * b);
        build(2 * b + 1);
        if (!sx[size_t(b)].finite || !sy[size_t(b)].finite) {
          ok = false;
          continue;
        }
        answer(b, false, 0, N);
        if (both) answer(b, true, 0, M);
        // the strips of a finished batch element are no longer needed
        sx[size_t(b)] = Strips<T>();
        sy[size_t(b)] = Strips<T>();
      }
    });
    return ok.load();
  }
  at::parallel_for(0, 2 * B, grain_for(nmax * lg), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) build(t);
  });
  for (int64_t b = 0; b < B; ++b)
    if (!sx[size_t(b)].finite || !sy[size_t(b)].finite) return false;
  // Tasks: (direction, batch, block of kQBlock queries in strip order).
  const int64_t bx = (N + kQBlock - 1) / kQBlock, by = (M + kQBlock - 1) / kQBlock;
  const int64_t nt = B * bx + (both ? B * by : 0);
  at::parallel_for(0, nt, grain_for(kQBlock * 64), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const bool rev = t >= B * bx;
      const int64_t u = rev ? t - B * bx : t, nb = rev ? by : bx;
      const int64_t b = u / nb, q0 = (u - b * nb) * kQBlock;
      answer(b, rev, q0, q0 + kQBlock);
    }
  });
  return true;
}

// Which nearest-neighbour path: HMORE_CHAMFER_CPU_NN=brute / pruned forces one (tests, benchmarks);
// otherwise pruned for D = 2 when the brute-force work is large enough to pay for building the strips.
inline bool use_pruned(int64_t D, const std::vector<int64_t>& nxl, const std::vector<int64_t>& nyl) {
  if (D != 2) return false;
  const char* e = std::getenv("HMORE_CHAMFER_CPU_NN");
  if (e != nullptr && std::string(e) == "brute") return false;
  if (e != nullptr && std::string(e) == "pruned") return true;
  int64_t work = 0;
  for (size_t b = 0; b < nxl.size(); ++b) work += nxl[b] * nyl[b];
  return work >= kPrunedMinWork;
}

template <typename T>
void nn_both(const at::Tensor& x, const at::Tensor& y, const std::vector<int64_t>& nxl,
             const std::vector<int64_t>& nyl, bool both, at::Tensor& dx, at::Tensor& ix, at::Tensor& dy,
             at::Tensor& iy) {
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2);
  at::Tensor xs_ = soa<T>(x), ys_ = soa<T>(y);
  dx = at::empty({B, N}, x.options());
  ix = at::empty({B, N}, x.options().dtype(at::kInt));
  if (both) {
    dy = at::empty({B, M}, x.options());
    iy = at::empty({B, M}, x.options().dtype(at::kInt));
  }
  if (B == 0) return;
  if (N == 0 || M == 0) {  // no pairs at all: everything is "no neighbour"
    dx.zero_();
    ix.fill_(-1);
    if (both) {
      dy.zero_();
      iy.fill_(-1);
    }
    return;
  }
  if (use_pruned(D, nxl, nyl) &&
      nn_pruned<T>(xs_.data_ptr<T>(), ys_.data_ptr<T>(), B, N, M, nxl, nyl, both, dx.data_ptr<T>(),
                   ix.data_ptr<int32_t>(), both ? dy.data_ptr<T>() : nullptr,
                   both ? iy.data_ptr<int32_t>() : nullptr))
    return;
  static const bool two_pass = [] {
    const char* e = std::getenv("HMORE_CHAMFER_CPU_TWO_PASS");
    return e != nullptr && e[0] == '1';
  }();
  if (both && !two_pass) {
    nn_dispatch<T, true>(xs_.data_ptr<T>(), ys_.data_ptr<T>(), B, N, M, int(D), nxl, nyl, dx.data_ptr<T>(),
                         ix.data_ptr<int32_t>(), dy.data_ptr<T>(), iy.data_ptr<int32_t>());
    // A column of y past its length, or whose x cloud is empty, got no candidate: already 0 / -1.
    // Columns past y's length were never visited: force 0 / -1 there.
    T* dyp = dy.data_ptr<T>();
    int32_t* iyp = iy.data_ptr<int32_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = nyl[size_t(b)]; j < M; ++j) {
        dyp[b * M + j] = T(0);
        iyp[b * M + j] = -1;
      }
    return;
  }
  nn_dispatch<T, false>(xs_.data_ptr<T>(), ys_.data_ptr<T>(), B, N, M, int(D), nxl, nyl, dx.data_ptr<T>(),
                        ix.data_ptr<int32_t>(), nullptr, nullptr);
  if (both)
    nn_dispatch<T, false>(ys_.data_ptr<T>(), xs_.data_ptr<T>(), B, M, N, int(D), nyl, nxl, dy.data_ptr<T>(),
                          iy.data_ptr<int32_t>(), nullptr, nullptr);
}

// Per-batch sum_i w_i term_i and sum_i w_i over points with a neighbour, serially in index order.
template <typename T>
void direction_sums(const T* d2, const int32_t* idx, const T* w, int64_t B, int64_t N, bool squared, double* num,
                    double* den) {
  at::parallel_for(0, B, grain_for(N), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T s = T(0), ws = T(0);
      for (int64_t i = 0; i < N; ++i) {
        if (idx[b * N + i] < 0) continue;
        const T wi = w ? w[b * N + i] : T(1);
        s += wi * point_term<T>(d2[b * N + i], squared);
        ws += wi;
      }
      num[b] = double(s);
      den[b] = double(ws);
    }
  });
}


}  // namespace

std::tuple<at::Tensor, at::Tensor> nearest_neighbors_cpu(const at::Tensor& x, const at::Tensor& y,
                                                         const std::optional<at::Tensor>& x_lengths,
                                                         const std::optional<at::Tensor>& y_lengths) {
  check_pair(x, y);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  auto nxl = read_lengths(x_lengths, B, N, "x_lengths", x);
  auto nyl = read_lengths(y_lengths, B, M, "y_lengths", x);
  const at::Tensor bad_x = nonfinite_points(x, x_lengths), bad_y = nonfinite_points(y, y_lengths);
  const at::Tensor xs = search_points(x, bad_x, true), ys = search_points(y, bad_y, true);
  at::Tensor dx, ix, dy, iy;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "nearest_neighbors_cpu",
                             [&] { nn_both<scalar_t>(xs, ys, nxl, nyl, false, dx, ix, dy, iy); });
  at::Tensor il = ix.to(at::kLong);
  mark_nonfinite(dx, il, bad_x);
  return {dx, il};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> chamfer_distance_cpu(
    const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& x_lengths,
    const std::optional<at::Tensor>& y_lengths, const std::optional<at::Tensor>& x_weights,
    const std::optional<at::Tensor>& y_weights, bool squared, const std::string& reduction, bool bidirectional,
    bool deterministic) {
  (void)deterministic;  // the CPU path is always deterministic
  check_pair(x, y);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  auto nxl = read_lengths(x_lengths, B, N, "x_lengths", x);
  auto nyl = read_lengths(y_lengths, B, M, "y_lengths", x);
  at::Tensor wx = read_weights(x_weights, B, N, "x_weights", x);
  at::Tensor wy = read_weights(y_weights, B, M, "y_weights", x);
  const at::Tensor bad_x = nonfinite_points(x, x_lengths), bad_y = nonfinite_points(y, y_lengths);
  const at::Tensor xs = search_points(x, bad_x, true), ys = search_points(y, bad_y, true);
  at::Tensor dx, ix, dy, iy;
  at::Tensor per = at::zeros({B}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "chamfer_distance_cpu", [&] {
    nn_both<scalar_t>(xs, ys, nxl, nyl, bidirectional, dx, ix, dy, iy);
    std::vector<double> num(static_cast<size_t>(B)), den(static_cast<size_t>(B));
    double* pp = per.data_ptr<double>();
    const bool norm = red != ChamferReduction::Sum;
    direction_sums<scalar_t>(dx.data_ptr<scalar_t>(), ix.data_ptr<int32_t>(),
                             wx.defined() ? wx.data_ptr<scalar_t>() : nullptr, B, N, squared, num.data(), den.data());
    for (int64_t b = 0; b < B; ++b) pp[b] = num[size_t(b)] * direction_scale<double>(den[size_t(b)], norm);
    if (bidirectional) {
      direction_sums<scalar_t>(dy.data_ptr<scalar_t>(), iy.data_ptr<int32_t>(),
                               wy.defined() ? wy.data_ptr<scalar_t>() : nullptr, B, M, squared, num.data(),
                               den.data());
      for (int64_t b = 0; b < B; ++b) pp[b] += num[size_t(b)] * direction_scale<double>(den[size_t(b)], norm);
    }
  });
  at::Tensor value = reduce_batch(poison_clouds(per, bad_x, bad_y, bidirectional), red).to(x.scalar_type());
  at::Tensor idx_y = bidirectional ? iy.to(at::kLong) : at::empty({B, 0}, x.options().dtype(at::kLong));
  return {value, ix.to(at::kLong), idx_y};
}

namespace {

// Backward of one direction src -> dst. gsrc, gdst: [B, n, D] / [B, m, D] gradients (accumulated);
// gw: [B, n] or nullptr. gb: per-batch incoming gradient. Serial within a batch element (scatter).
template <typename T>
void direction_backward(const T* src, const T* dst, const int64_t* idx, const T* w, int64_t B, int64_t n, int64_t m,
                        int64_t D, const std::vector<double>& gb, bool squared, bool norm, T* gsrc, T* gdst, T* gw) {
  at::parallel_for(0, B, grain_for(n + m), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* s = src + b * n * D;
      const T* t = dst + b * m * D;
      const int64_t* ib = idx + b * n;
      // sums for the normalisation (same as the forward, over points with a neighbour)
      T num = T(0), den = T(0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = ib[i];
        if (j < 0) continue;
        const T wi = w ? w[b * n + i] : T(1);
        num += wi * point_term<T>(sqdist<T>(s + i * D, t + j * D, int(D)), squared);
        den += wi;
      }
      const T scale = direction_scale<T>(den, norm);
      const T Dv = num * scale;
      const T g = T(gb[size_t(b)]);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = ib[i];
        if (j < 0) continue;
        const T wi = w ? w[b * n + i] : T(1);
        const T d2 = sqdist<T>(s + i * D, t + j * D, int(D));
        if (gw) gw[b * n + i] = g * weight_grad<T>(point_term<T>(d2, squared), Dv, den, norm);
        const T c = g * scale * wi * term_grad_coef<T>(d2, squared);
        for (int64_t k = 0; k < D; ++k) {
          const T v = c * (s[i * D + k] - t[j * D + k]);
          gsrc[(b * n + i) * D + k] += v;
          gdst[(b * m + j) * D + k] -= v;
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& idx_x,
    const at::Tensor& idx_y, const std::optional<at::Tensor>& x_lengths, const std::optional<at::Tensor>& y_lengths,
    const std::optional<at::Tensor>& x_weights, const std::optional<at::Tensor>& y_weights, bool squared,
    const std::string& reduction, bool bidirectional, bool deterministic) {
  (void)deterministic;
  (void)x_lengths;  // the indices already encode the lengths (-1 past them)
  (void)y_lengths;
  check_pair(x, y);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2);
  TORCH_CHECK_VALUE(idx_x.dim() == 2 && idx_x.size(0) == B && idx_x.size(1) == N, "idx_x: expected shape [", B, ", ",
                    N, "], got ", idx_x.sizes());
  if (bidirectional)
    TORCH_CHECK_VALUE(idx_y.dim() == 2 && idx_y.size(0) == B && idx_y.size(1) == M, "idx_y: expected shape [", B,
                      ", ", M, "], got ", idx_y.sizes());
  at::Tensor wx = read_weights(x_weights, B, N, "x_weights", x);
  at::Tensor wy = read_weights(y_weights, B, M, "y_weights", x);
  // Per-batch incoming gradient.
  std::vector<double> gb(static_cast<size_t>(B));
  at::Tensor g64 = grad.to(at::kDouble).contiguous();
  for (int64_t b = 0; b < B; ++b) {
    if (red == ChamferReduction::None)
      gb[size_t(b)] = g64.data_ptr<double>()[b];
    else if (red == ChamferReduction::Sum)
      gb[size_t(b)] = g64.item<double>();
    else
      gb[size_t(b)] = g64.item<double>() / double(B);
  }
  at::Tensor xc = x.contiguous(), yc = y.contiguous();
  at::Tensor ixc = idx_x.to(at::kLong).contiguous(), iyc = idx_y.to(at::kLong).contiguous();
  at::Tensor gx = at::zeros({B, N, D}, x.options()), gy = at::zeros({B, M, D}, x.options());
  at::Tensor gwx = x_weights.has_value() ? at::zeros({B, N}, x.options()) : at::empty({0}, x.options());
  at::Tensor gwy = y_weights.has_value() ? at::zeros({B, M}, x.options()) : at::empty({0}, x.options());
  const bool norm = red != ChamferReduction::Sum;
  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "chamfer_distance_backward_cpu", [&] {
      direction_backward<scalar_t>(xc.data_ptr<scalar_t>(), yc.data_ptr<scalar_t>(), ixc.data_ptr<int64_t>(),
                                   wx.defined() ? wx.data_ptr<scalar_t>() : nullptr, B, N, M, D, gb, squared, norm,
                                   gx.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(),
                                   wx.defined() ? gwx.data_ptr<scalar_t>() : nullptr);
      if (bidirectional)
        direction_backward<scalar_t>(yc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), iyc.data_ptr<int64_t>(),
                                     wy.defined() ? wy.data_ptr<scalar_t>() : nullptr, B, M, N, D, gb, squared, norm,
                                     gy.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(),
                                     wy.defined() ? gwy.data_ptr<scalar_t>() : nullptr);
    });
  }
  if (x_weights.has_value()) gwx = gwx.to(x_weights->scalar_type());
  if (y_weights.has_value()) gwy = gwy.to(y_weights->scalar_type());
  return {gx, gy, gwx, gwy};
}

// ---- patches ------------------------------------------------------------------------------------
namespace {

void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 4 && t.size(1) == 1, name, ": expected a 4-D tensor [B, 1, H, W], got shape ",
                    t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble || t.scalar_type() == at::kBool,
                   name, ": expected float32, float64 or bool on CPU, got ", t.scalar_type());
}

// Local statistics (m, sx, sy) [B, Hp, Wp] of one map; off [B, 2, H, W] or nullptr.
template <typename T>
void patch_stats(const T* w, const T* off, int64_t B, int64_t H, int64_t W, int p, T* m, T* sx, T* sy) {
  const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p;
  at::parallel_for(0, B * Hp, grain_for(W * p), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hp, pi = t - b * Hp;
      const int rows = patch_extent(int(pi), p, int(H));
      T* mr = m + t * Wp;
      T* xr = sx + t * Wp;
      T* yr = sy + t * Wp;
      for (int64_t pj = 0; pj < Wp; ++pj) mr[pj] = xr[pj] = yr[pj] = T(0);
      for (int r = 0; r < rows; ++r) {
        const int64_t i = pi * p + r;
        const T* wr = w + (b * H + i) * W;
        const T* dxr = off ? off + ((b * 2 + 0) * H + i) * W : nullptr;
        const T* dyr = off ? off + ((b * 2 + 1) * H + i) * W : nullptr;
        for (int64_t pj = 0; pj < Wp; ++pj) {
          const int64_t j0 = pj * p, j1 = std::min<int64_t>(j0 + p, W);
          T am = T(0), ax = T(0), ay = T(0);
          for (int64_t j = j0; j < j1; ++j) {
            const T wv = wr[j];
            am += wv;
            ax += wv * (T(j - j0) + (dxr ? dxr[j] : T(0)));
            ay += wv * (T(r) + (dyr ? dyr[j] : T(0)));
          }
          mr[pj] += am;
          xr[pj] += ax;
          yr[pj] += ay;
        }
      }
    }
  });
}

at::Tensor as_float_map(const at::Tensor& t, at::ScalarType st) { return t.to(st).contiguous(); }

}  // namespace

std::tuple<at::Tensor, at::Tensor> patch_centroids_cpu(const at::Tensor& weights, int64_t patch_size,
                                                       const std::optional<at::Tensor>& offsets) {
  check_map(weights, "weights");
  check_int_arg(patch_size, "patch_size", 1, kMaxPatch);
  const at::ScalarType st = weights.scalar_type() == at::kBool ? at::kFloat : weights.scalar_type();
  const int64_t B = weights.size(0), H = weights.size(2), W = weights.size(3);
  if (offsets.has_value()) {
    const at::Tensor& o = *offsets;
    TORCH_CHECK_VALUE(o.dim() == 4 && o.size(0) == B && o.size(1) == 2 && o.size(2) == H && o.size(3) == W,
                      "offsets: expected shape [", B, ", 2, ", H, ", ", W, "], got ", o.sizes());
    TORCH_CHECK_TYPE(o.is_floating_point(), "offsets: expected a floating-point tensor, got ", o.scalar_type());
    check_same_device(o, "offsets", weights, "weights");
  }
  const int p = int(patch_size);
  const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p;
  at::Tensor w = as_float_map(weights, st);
  at::Tensor o = offsets.has_value() ? as_float_map(*offsets, st) : at::Tensor();
  at::Tensor m = at::empty({B, Hp, Wp}, w.options()), cen = at::empty({B, Hp, Wp, 2}, w.options());
  if (m.numel() == 0) return {cen, m};
  AT_DISPATCH_FLOATING_TYPES(st, "patch_centroids_cpu", [&] {
    using T = scalar_t;
    at::Tensor sx = at::empty_like(m), sy = at::empty_like(m);
    patch_stats<T>(w.data_ptr<T>(), o.defined() ? o.data_ptr<T>() : nullptr, B, H, W, p, m.data_ptr<T>(),
                   sx.data_ptr<T>(), sy.data_ptr<T>());
    const T *mp = m.data_ptr<T>(), *xp = sx.data_ptr<T>(), *yp = sy.data_ptr<T>();
    T* cp = cen.data_ptr<T>();
    at::parallel_for(0, B * Hp * Wp, kSmallGrain, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        const int64_t pj = e % Wp, pi = (e / Wp) % Hp;
        T cx, cy;
        local_centroid<T>(mp[e], xp[e], yp[e], patch_extent(int(pi), p, int(H)), patch_extent(int(pj), p, int(W)),
                          T(0), cx, cy);
        cp[2 * e] = cx + T(pj * p);
        cp[2 * e + 1] = cy + T(pi * p);
      }
    });
  });
  return {cen, m};
}

std::tuple<at::Tensor, at::Tensor> patch_centroids_backward_cpu(const at::Tensor& grad_centroids,
                                                                const at::Tensor& grad_mass,
                                                                const at::Tensor& weights,
                                                                const std::optional<at::Tensor>& offsets,
                                                                const at::Tensor& centroids, const at::Tensor& mass,
                                                                int64_t patch_size) {
  check_map(weights, "weights");
  check_int_arg(patch_size, "patch_size", 1, kMaxPatch);
  const at::ScalarType st = weights.scalar_type() == at::kBool ? at::kFloat : weights.scalar_type();
  const int64_t B = weights.size(0), H = weights.size(2), W = weights.size(3);
  const int p = int(patch_size);
  const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p;
  at::Tensor w = as_float_map(weights, st);
  at::Tensor o = offsets.has_value() ? as_float_map(*offsets, st) : at::Tensor();
  at::Tensor gc = grad_centroids.to(st).contiguous(), gm_in = grad_mass.to(st).contiguous();
  at::Tensor cen = centroids.to(st).contiguous(), m = mass.to(st).contiguous();
  at::Tensor gw = at::zeros({B, 1, H, W}, w.options());
  at::Tensor go = offsets.has_value() ? at::zeros({B, 2, H, W}, w.options()) : at::empty({0}, w.options());
  if (gw.numel() == 0) return {gw, go};
  AT_DISPATCH_FLOATING_TYPES(st, "patch_centroids_backward_cpu", [&] {
    using T = scalar_t;
    const T *gcp = gc.data_ptr<T>(), *gmp = gm_in.data_ptr<T>(), *cp = cen.data_ptr<T>(), *mp = m.data_ptr<T>();
    const T* op = o.defined() ? o.data_ptr<T>() : nullptr;
    const T* wp = w.data_ptr<T>();
    T* gwp = gw.data_ptr<T>();
    T* gop = o.defined() ? go.data_ptr<T>() : nullptr;
    at::parallel_for(0, B * H, grain_for(W), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / H, i = r - b * H, pi = i / p;
        for (int64_t j = 0; j < W; ++j) {
          const int64_t pj = j / p;
          const int64_t e = (b * Hp + pi) * Wp + pj;
          T gm = gmp[e], gsx = T(0), gsy = T(0);
          if (mp[e] > T(0)) {
            T a, bx, by;
            const T cx = cp[2 * e] - T(pj * p), cy = cp[2 * e + 1] - T(pi * p);
            local_centroid_backward<T>(mp[e], cx, cy, gcp[2 * e], gcp[2 * e + 1], a, bx, by);
            gm += a;
            gsx = bx;
            gsy = by;
          }
          const T lx = T(j - pj * p) + (op ? op[((b * 2) * H + i) * W + j] : T(0));
          const T ly = T(i - pi * p) + (op ? op[((b * 2 + 1) * H + i) * W + j] : T(0));
          gwp[r * W + j] = gm + gsx * lx + gsy * ly;
          if (gop) {
            const T wv = wp[r * W + j];
            gop[((b * 2) * H + i) * W + j] = wv * gsx;
            gop[((b * 2 + 1) * H + i) * W + j] = wv * gsy;
          }
        }
      }
    });
  });
  if (offsets.has_value()) go = go.to(offsets->scalar_type());
  return {gw, go};
}

namespace {

void check_pcc(const at::Tensor& a, const at::Tensor& b, at::IntArrayRef patch_sizes, double min_mass) {
  check_map(a, "a");
  check_map(b, "b");
  check_pcc_agreement(a, b, patch_sizes, min_mass, kMaxPatch);
}

at::ScalarType pcc_dtype(const at::Tensor& a, const at::Tensor& b) {
  const at::ScalarType sa = a.scalar_type() == at::kBool ? at::kFloat : a.scalar_type();
  const at::ScalarType sb = b.scalar_type() == at::kBool ? at::kFloat : b.scalar_type();
  return at::promote_types(sa, sb);
}

// Statistics at the base size g = gcd(patch sizes), one pass over the pixels: every patch size p is a
// multiple of g, so its patches are unions of g-patches and their statistics are sums of the g-patches'
// ones shifted to the p-patch origin (sx += m * column offset, sy += m * row offset). A g-row strip is first
// reduced to per-column sums (contiguous, vectorised loops over W), then each g-patch sums its g columns.
template <typename T>
void base_stats(const T* w, int64_t B, int64_t H, int64_t W, int g, T* m, T* sx, T* sy) {
  const int64_t Hg = (H + g - 1) / g, Wg = (W + g - 1) / g;
  at::parallel_for(0, B * Hg, grain_for(W * g), [&](int64_t t0, int64_t t1) {
    std::vector<T> cm(static_cast<size_t>(W)), cy(static_cast<size_t>(W));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hg, pi = t - b * Hg;
      const int rows = patch_extent(int(pi), g, int(H));
      std::fill(cm.begin(), cm.end(), T(0));
      std::fill(cy.begin(), cy.end(), T(0));
      for (int r = 0; r < rows; ++r) {
        const T* __restrict wr = w + (b * H + pi * g + r) * W;
        T* __restrict pm = cm.data();
        T* __restrict py = cy.data();
        const T rr = T(r);
        for (int64_t j = 0; j < W; ++j) {
          pm[j] += wr[j];
          py[j] += rr * wr[j];
        }
      }
      T* mr = m + t * Wg;
      T* xr = sx + t * Wg;
      T* yr = sy + t * Wg;
      for (int64_t pj = 0; pj < Wg; ++pj) {
        const int64_t j0 = pj * g, j1 = std::min<int64_t>(j0 + g, W);
        T am = T(0), ax = T(0), ay = T(0);
        for (int64_t j = j0; j < j1; ++j) {
          am += cm[size_t(j)];
          ax += T(j - j0) * cm[size_t(j)];
          ay += cy[size_t(j)];
        }
        mr[pj] = am;
        xr[pj] = ax;
        yr[pj] = ay;
      }
    }
  });
}

// g-statistics [B, Hg, Wg] -> statistics at p = k * g [B, Hp, Wp].
template <typename T>
void aggregate_stats(const T* m, const T* sx, const T* sy, int64_t B, int64_t Hg, int64_t Wg, int g, int k, T* M,
                     T* SX, T* SY) {
  const int64_t Hp = (Hg + k - 1) / k, Wp = (Wg + k - 1) / k;
  at::parallel_for(0, B * Hp, grain_for(Wg * k), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hp, pi = t - b * Hp;
      for (int64_t pj = 0; pj < Wp; ++pj) {
        T am = T(0), ax = T(0), ay = T(0);
        for (int64_t qi = 0; qi < k && pi * k + qi < Hg; ++qi) {
          const int64_t row = (b * Hg + pi * k + qi) * Wg;
          for (int64_t qj = 0; qj < k && pj * k + qj < Wg; ++qj) {
            const int64_t e = row + pj * k + qj;
            am += m[e];
            ax += sx[e] + T(qj * g) * m[e];
            ay += sy[e] + T(qi * g) * m[e];
          }
        }
        M[t * Wp + pj] = am;
        SX[t * Wp + pj] = ax;
        SY[t * Wp + pj] = ay;
      }
    }
  });
}

int64_t gcd_of(at::IntArrayRef ps) {
  int64_t g = 0;
  for (int64_t p : ps) g = std::gcd(g, p);
  return g;
}

// Base statistics of both maps plus, per patch size, the aggregated statistics.
template <typename T>
struct PccStats {
  int g;
  int64_t B, H, W, Hg, Wg;
  std::vector<T> base[6];  // m, sx, sy of a, then of b, at size g
  PccStats(const T* a, const T* b, int64_t B_, int64_t H_, int64_t W_, int g_)
      : g(g_), B(B_), H(H_), W(W_), Hg((H_ + g_ - 1) / g_), Wg((W_ + g_ - 1) / g_) {
    for (auto& v : base) v.resize(size_t(B * Hg * Wg));
    base_stats<T>(a, B, H, W, g, base[0].data(), base[1].data(), base[2].data());
    base_stats<T>(b, B, H, W, g, base[3].data(), base[4].data(), base[5].data());
  }
  // statistics at p (a multiple of g): out[0..5] = m, sx, sy of a, then of b; [B, Hp, Wp]
  void at_scale(int p, std::vector<T>* out) const {
    const int k = p / g;
    const int64_t n = B * ((Hg + k - 1) / k) * ((Wg + k - 1) / k);
    for (int s = 0; s < 6; ++s) out[s].resize(size_t(n));
    for (int s = 0; s < 6; s += 3)
      aggregate_stats<T>(base[s].data(), base[s + 1].data(), base[s + 2].data(), B, Hg, Wg, g, k, out[s].data(),
                         out[s + 1].data(), out[s + 2].data());
  }
};

}  // namespace

at::Tensor patch_centroid_chamfer_cpu(const at::Tensor& a, const at::Tensor& b, at::IntArrayRef patch_sizes,
                                      double min_mass, const std::string& reduction) {
  check_pcc(a, b, patch_sizes, min_mass);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const at::ScalarType st = pcc_dtype(a, b);
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor ac = as_float_map(a, st), bc = as_float_map(b, st);
  at::Tensor per = at::zeros({B}, ac.options());
  if (B > 0 && H > 0 && W > 0) {
    AT_DISPATCH_FLOATING_TYPES(st, "patch_centroid_chamfer_cpu", [&] {
      using T = scalar_t;
      const T mm = T(min_mass);
      // One parallel region over images (inner parallel_for calls then run inline): on a busy machine
      // every parallel region can cost a scheduler time slice, so a call opens one, not one per stage.
      // A single image (B = 1) runs its stages' own parallel loops instead.
      at::parallel_for(0, B, 1, [&](int64_t i0, int64_t i1) {
      const int64_t B = i1 - i0;
      T* pp = per.data_ptr<T>() + i0;
      PccStats<T> base(ac.data_ptr<T>() + i0 * H * W, bc.data_ptr<T>() + i0 * H * W, B, H, W, int(gcd_of(patch_sizes)));
      std::vector<T> st6[6];
      for (int64_t p : patch_sizes) {
        base.at_scale(int(p), st6);
        const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p, np = Hp * Wp;
        at::parallel_for(0, B, grain_for(np * 16), [&](int64_t b0, int64_t b1) {
          for (int64_t bb = b0; bb < b1; ++bb) {
            T sum = T(0);
            int64_t cnt = 0;
            for (int64_t q = 0; q < np; ++q) {
              const size_t e = size_t(bb * np + q);
              const int pi = int(q / Wp), pj = int(q % Wp);
              T term;
              if (pcc_term<T>(st6[0][e], st6[1][e], st6[2][e], st6[3][e], st6[4][e], st6[5][e],
                              patch_extent(pi, int(p), int(H)), patch_extent(pj, int(p), int(W)), int(p), mm, term)) {
                sum += term;
                ++cnt;
              }
            }
            pp[bb] += (cnt > 0 ? sum / T(cnt) : T(0)) / T(patch_sizes.size());
          }
        });
      }
      });
    });
  }
  return reduce_batch(per, red);
}

std::tuple<at::Tensor, at::Tensor> patch_centroid_chamfer_backward_cpu(const at::Tensor& grad, const at::Tensor& a,
                                                                       const at::Tensor& b,
                                                                       at::IntArrayRef patch_sizes, double min_mass,
                                                                       const std::string& reduction) {
  check_pcc(a, b, patch_sizes, min_mass);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const at::ScalarType st = pcc_dtype(a, b);
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor ac = as_float_map(a, st), bc = as_float_map(b, st);
  at::Tensor ga = at::empty({B, 1, H, W}, ac.options()), gbm = at::empty({B, 1, H, W}, ac.options());
  if (B > 0 && H > 0 && W > 0) {
    at::Tensor g64 = grad.to(at::kDouble).contiguous();
    std::vector<double> gb(static_cast<size_t>(B));
    for (int64_t bb = 0; bb < B; ++bb)
      gb[size_t(bb)] = red == ChamferReduction::None ? g64.data_ptr<double>()[bb]
                       : red == ChamferReduction::Sum ? g64.item<double>()
                                                       : g64.item<double>() / double(B);
    AT_DISPATCH_FLOATING_TYPES(st, "patch_centroid_chamfer_backward_cpu", [&] {
      using T = scalar_t;
      const T mm = T(min_mass);
      const int g = int(gcd_of(patch_sizes));
      at::parallel_for(0, B, 1, [&](int64_t i0, int64_t i1) {  // one region over images, as in the forward
      const int64_t B = i1 - i0;
      const double* gbv = gb.data() + i0;
      PccStats<T> base(ac.data_ptr<T>() + i0 * H * W, bc.data_ptr<T>() + i0 * H * W, B, H, W, g);
      const int64_t Hg = base.Hg, Wg = base.Wg;
      // Per g-patch: d loss / d (m, sx, sy) of a and b in the g-patch's local coordinates, summed over
      // scales: a p-patch's (gm, gsx, gsy) reaches its g-patch at offset (oi, oj) as
      // (gm + gsx * oj + gsy * oi, gsx, gsy).
      std::vector<T> G(size_t(B * Hg * Wg) * 6, T(0));
      std::vector<T> st6[6];
      for (int64_t p : patch_sizes) {
        const int pp = int(p), k = pp / g;
        base.at_scale(pp, st6);
        const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p, np = Hp * Wp;
        at::parallel_for(0, B, grain_for(np * 32), [&](int64_t b0, int64_t b1) {
          for (int64_t bb = b0; bb < b1; ++bb) {
            int64_t cnt = 0;
            for (int64_t q = 0; q < np; ++q) {
              const size_t e = size_t(bb * np + q);
              cnt += (st6[0][e] + st6[3][e] > mm) ? 1 : 0;
            }
            if (cnt == 0) continue;
            const T gs = T(gbv[bb]) / (T(cnt) * T(patch_sizes.size()));
            for (int64_t q = 0; q < np; ++q) {
              const size_t e = size_t(bb * np + q);
              const int pi = int(q / Wp), pj = int(q % Wp);
              T o[6];
              pcc_term_backward<T>(st6[0][e], st6[1][e], st6[2][e], st6[3][e], st6[4][e], st6[5][e],
                                   patch_extent(pi, pp, int(H)), patch_extent(pj, pp, int(W)), pp, mm, gs, o[0], o[1],
                                   o[2], o[3], o[4], o[5]);
              if (o[0] == T(0) && o[1] == T(0) && o[2] == T(0) && o[3] == T(0) && o[4] == T(0) && o[5] == T(0)) continue;
              for (int64_t qi = 0; qi < k && pi * k + qi < Hg; ++qi)
                for (int64_t qj = 0; qj < k && pj * k + qj < Wg; ++qj) {
                  T* Gq = G.data() + size_t((bb * Hg + pi * k + qi) * Wg + pj * k + qj) * 6;
                  const T oy = T(qi * g), ox = T(qj * g);
                  Gq[0] += o[0] + o[1] * ox + o[2] * oy;
                  Gq[1] += o[1];
                  Gq[2] += o[2];
                  Gq[3] += o[3] + o[4] * ox + o[5] * oy;
                  Gq[4] += o[4];
                  Gq[5] += o[5];
                }
            }
          }
        });
      }
      // Per pixel, one pass: gm + gsx * (j - j0) + gsy * (i - i0) of its g-patch.
      T* gap = ga.data_ptr<T>() + i0 * H * W;
      T* gbp = gbm.data_ptr<T>() + i0 * H * W;
      at::parallel_for(0, B * H, grain_for(W), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t bb = r / H, i = r - bb * H, pi = i / g;
          const T ly = T(i - pi * g);
          const T* Grow = G.data() + size_t((bb * Hg + pi) * Wg) * 6;
          for (int64_t pj = 0; pj < Wg; ++pj) {
            const T* o = Grow + size_t(pj) * 6;
            const T ca = o[0] + o[2] * ly, cb = o[3] + o[5] * ly;
            const int64_t j0 = pj * g, j1 = std::min<int64_t>(j0 + g, W);
            for (int64_t j = j0; j < j1; ++j) {
              const T lx = T(j - j0);
              gap[r * W + j] = ca + o[1] * lx;
              gbp[r * W + j] = cb + o[4] * lx;
            }
          }
        }
      });
      });
    });
  }
  return {ga.to(a.scalar_type() == at::kBool ? st : a.scalar_type()),
          gbm.to(b.scalar_type() == at::kBool ? st : b.scalar_type())};
}

at::Tensor boundary_chamfer_cpu(const at::Tensor& a, const at::Tensor& b, const std::string& reduction) {
  TORCH_CHECK_VALUE(a.dim() == 4 && a.size(1) == 1, "a: expected a 4-D tensor [B, 1, H, W], got shape ", a.sizes());
  TORCH_CHECK_VALUE(b.dim() == 4 && b.size(1) == 1, "b: expected a 4-D tensor [B, 1, H, W], got shape ", b.sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == at::kBool, "a: expected a bool boundary map, got ", a.scalar_type());
  TORCH_CHECK_TYPE(b.scalar_type() == at::kBool, "b: expected a bool boundary map, got ", b.scalar_type());
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "b: expected shape ", a.sizes(), " like a, got ", b.sizes());
  check_same_device(a, "a", b, "b");
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const int64_t B = a.size(0), HW = a.size(2) * a.size(3);
  at::Tensor per = at::zeros({B}, a.options().dtype(at::kFloat));
  if (B > 0 && HW > 0) {
    at::Tensor ac = a.contiguous(), bc = b.contiguous();
    at::Tensor da = std::get<0>(distance_transform_cpu(ac, false));
    at::Tensor db = std::get<0>(distance_transform_cpu(bc, false));
    const bool* ap = ac.data_ptr<bool>();
    const bool* bp = bc.data_ptr<bool>();
    const float* dap = da.data_ptr<float>();
    const float* dbp = db.data_ptr<float>();
    float* pp = per.data_ptr<float>();
    at::parallel_for(0, B, grain_for(HW), [&](int64_t b0, int64_t b1) {
      for (int64_t bb = b0; bb < b1; ++bb) {
        double sab = 0, sba = 0;
        int64_t na = 0, nb = 0;
        for (int64_t k = bb * HW; k < (bb + 1) * HW; ++k) {
          if (ap[k]) {
            ++na;
            sab += dbp[k];
          }
          if (bp[k]) {
            ++nb;
            sba += dap[k];
          }
        }
        double v;
        if (na == 0 && nb == 0)
          v = 0.0;
        else if (na == 0 || nb == 0)
          v = std::numeric_limits<double>::infinity();
        else
          v = sab / double(na) + sba / double(nb);
        pp[bb] = float(v);
      }
    });
  }
  return reduce_batch(per, red);
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CPU, m) {
  m.impl("nearest_neighbors", &hmore::nearest_neighbors_cpu);
  m.impl("chamfer_distance", &hmore::chamfer_distance_cpu);
  m.impl("_chamfer_distance_backward", &hmore::chamfer_distance_backward_cpu);
  m.impl("patch_centroids", &hmore::patch_centroids_cpu);
  m.impl("_patch_centroids_backward", &hmore::patch_centroids_backward_cpu);
  m.impl("patch_centroid_chamfer", &hmore::patch_centroid_chamfer_cpu);
  m.impl("_patch_centroid_chamfer_backward", &hmore::patch_centroid_chamfer_backward_cpu);
  m.impl("boundary_chamfer", &hmore::boundary_chamfer_cpu);
}
