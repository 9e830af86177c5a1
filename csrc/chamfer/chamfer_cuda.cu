// CUDA kernels of the Chamfer family (docs/ops.md §3, §5). Plain CUDA C++ (no torch headers): nvcc
// compile-checks it without a GPU, and the per-element math (squared distances without FMA contraction,
// point terms, gradient coefficients, patch centroids and the patch-centroid term with its backward) comes
// from chamfer_kernels.cuh, shared with the CPU kernels.
//
// Distance pass (nearest_neighbors, chamfer_distance), both directions in one pass over the tiles:
//   * a block of 256 threads owns 1024 points of x, 4 per thread in registers (coordinates for D = 2, 3;
//     generic D reads them through L1), and streams tiles of 256 points of y through shared memory
//     (every lane reads the same y: a broadcast, no bank conflicts);
//   * row minima (x -> y) stay in registers, strict '<' over increasing y: ties to the lowest index;
//   * column minima (y -> x): per y, each thread takes the min of its 4 distances, the warp reduces the
//     float bits with one redux.sync (__reduce_min_sync, sm_80+; non-negative floats order like their
//     bits), the lowest lane holding the minimum is found with a ballot (lanes own consecutive x
//     indices, so that is the lowest index). Lane l keeps the key of the l-th y of each group of 32 and
//     merges it into a per-block shared key array (64-bit shared atomicMin); after the tile, one global
//     atomicMin per column and block. Keys are (distance bits) << 32 | index: the merge is order-free,
//     so the result is deterministic despite the atomics.
//   * small batches: the y range is split over several blocks (grid = B x x-tiles x splits, enough
//     blocks for about two waves; ranges of >= 64 points); the row minima of the splits then merge with
//     the same atomicMin.
//   Ragged lengths are read on the device and clamped; nothing is read back to the host.
// Unpack: one thread per point turns keys into (index, distance) and per-block partial sums (fixed
// shuffle tree: deterministic); the glue sums the few partials with ATen.
// Backward: per direction, one thread per point recomputes d from the saved index; its own gradient is
// a gather; the neighbour's is a float atomicAdd, or, deterministic, a stored contribution that a
// segment-sum kernel adds per neighbour in increasing point order (the glue sorts the pairs stably).
// Patches: one block per patch (threads stride over its pixels row-major: coalesced within patch rows),
// fixed-order block reduction, then thread 0 applies the shared per-patch math. patch_centroid_chamfer
// computes both maps' statistics and the term (and, for the backward, the per-patch gradient of the
// statistics) in the same block; the pixel kernels of the backward are gathers. No float atomics outside
// the non-deterministic chamfer scatter.
//
// dtypes: float32, float16, bfloat16 points/maps; all arithmetic in float32 (float64 is not supported on
// the GPU backends: the glue raises TypeError).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include <cstdint>

#include "chamfer/chamfer_cuda.h"
#include "chamfer/chamfer_kernels.cuh"
#include "hd.h"

namespace {

using namespace hmore::chamfer;
using hmore::add_rn;
using hmore::mul_rn;
using ull = unsigned long long;

constexpr int NT = 256;       // threads of the distance kernel
constexpr int XP = 4;         // x points per thread
constexpr int BX = NT * XP;   // x points per block
constexpr int BMY = 256;      // y points per shared-memory tile
constexpr int EW = 256;       // threads of the per-point / per-pixel kernels
constexpr unsigned FULL = 0xffffffffu;
constexpr unsigned INF_BITS = 0x7f800000u;  // bits of +inf: every finite non-negative float is below
constexpr int kMaxGridY = 65535;
constexpr int kSplitGrain = 64;  // y points: the granularity of the split y ranges
constexpr int kSmemFloats = 12288 - 2 * BMY;  // 48 KiB of dynamic + static (colkey) shared memory

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
struct Cvt;
template <>
struct Cvt<float> {
  static __device__ __forceinline__ float to(float v) { return v; }
};
template <>
struct Cvt<__half> {
  static __device__ __forceinline__ __half to(float v) { return __float2half_rn(v); }
};
template <>
struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 to(float v) { return __float2bfloat16_rn(v); }
};

__device__ __forceinline__ int clamp_len(const int64_t* len, int64_t b, int64_t n) {
  if (len == nullptr) return int(n);
  const int64_t v = len[b];
  return int(v < 0 ? 0 : (v > n ? n : v));
}

// Warp minimum of an unsigned value, in every lane: one redux.sync on sm_80+, a butterfly below (should
// someone build for sm_75 through TORCH_CUDA_ARCH_LIST).
__device__ __forceinline__ unsigned warp_min_u32(unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_min_sync(FULL, v);
#else
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned u = __shfl_xor_sync(FULL, v, o);
    v = u < v ? u : v;
  }
  return v;
#endif
}

__device__ __forceinline__ ull pack(float d, int idx) {
  return (ull(__float_as_uint(d)) << 32) | ull(unsigned(idx));
}

// Block sum of NV values per thread (blockDim.x a multiple of 32, at most 1024), fixed shuffle tree:
// deterministic. red: shared scratch of 32 * NV values. The result is valid in thread 0; ends with a
// barrier so red can be reused.
template <int NV, typename A>
__device__ __forceinline__ void block_sum(A (&v)[NV], A* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v[k] += __shfl_down_sync(FULL, v[k], o);
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < NV; ++k) red[warp * NV + k] = v[k];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      A s = lane < nw ? red[lane * NV + k] : A(0);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(FULL, s, o);
      v[k] = s;
    }
  }
  __syncthreads();
}

// ---- distance pass --------------------------------------------------------------------------------
// Squared distance of x point k (registers for DC = 2, 3; global memory for the generic DC = 0) to the
// y point at ys (shared memory, float). Invalid x points (past the length) give +inf.
template <typename T, int DC>
struct XPoints {
  float c[XP][DC > 0 ? DC : 1];  // DC > 0: coordinates in registers (+inf past the length)
  const T* base;                 // DC == 0: this thread's first point; coordinates read through L1
  int nvalid;                    // DC == 0: how many of the XP points are valid

  __device__ __forceinline__ void load(const T* xb, int first, int lx, int D) {
    nvalid = lx - first;
    base = xb + int64_t(first < lx ? first : 0) * D;
    if constexpr (DC > 0) {
#pragma unroll
      for (int k = 0; k < XP; ++k) {
        const bool ok = k < nvalid;
#pragma unroll
        for (int q = 0; q < DC; ++q) c[k][q] = ok ? to_f(base[k * DC + q]) : INFINITY;
      }
    }
  }

  // d[k] = squared distance of point k to the y point at ys (shared memory), +inf past the length.
  __device__ __forceinline__ void dist(const float* ys, int D, float (&d)[XP]) const {
    if constexpr (DC == 2) {
#pragma unroll
      for (int k = 0; k < XP; ++k) d[k] = sqdist2<float>(c[k][0], c[k][1], ys[0], ys[1]);
    } else if constexpr (DC == 3) {
#pragma unroll
      for (int k = 0; k < XP; ++k) d[k] = sqdist3<float>(c[k][0], c[k][1], c[k][2], ys[0], ys[1], ys[2]);
    } else {
      // generic D, one loop over the dimension for all XP points: chamfer_kernels.cuh's sqdist order
      // (q ascending from the q = 0 square, no FMA)
      // (the block's x points are contiguous: XP * D elements from base, in bounds when k < nvalid;
      // invalid points read point 0's coordinates and are discarded below)
      const int last = (nvalid < XP ? (nvalid > 0 ? nvalid : 1) : XP) - 1;
      {
        const float y0 = ys[0];
#pragma unroll
        for (int k = 0; k < XP; ++k) {
          const float e = to_f(__ldg(base + (k <= last ? k : 0) * D)) - y0;
          d[k] = mul_rn(e, e);
        }
      }
      for (int q = 1; q < D; ++q) {
        const float yq = ys[q];
#pragma unroll
        for (int k = 0; k < XP; ++k) {
          const float e = to_f(__ldg(base + (k <= last ? k : 0) * D + q)) - yq;
          d[k] = add_rn(d[k], mul_rn(e, e));
        }
      }
#pragma unroll
      for (int k = 0; k < XP; ++k)
        if (k >= nvalid) d[k] = INFINITY;
    }
  }
};

template <typename T, int DC, bool COLS, bool ROW_ATOMIC>
__global__ void __launch_bounds__(NT, 1) pair_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                                  const int64_t* __restrict__ xlen, const int64_t* __restrict__ ylen,
                                                  ull* __restrict__ kx, ull* __restrict__ ky, int64_t N, int64_t M,
                                                  int D, unsigned tiles_x, unsigned splits, int64_t span,
                                                  int tile) {
  extern __shared__ float ys[];  // tile * D floats (tile <= BMY)
  __shared__ ull colkey[BMY];
  // 32-bit decomposition of the flat block index (the launcher keeps the grid below 2^31): no 64-bit
  // division subroutine (its call spills registers)
  const unsigned blk = blockIdx.x;
  const unsigned s = blk % splits;
  const unsigned t = blk / splits;
  const unsigned tx = t % tiles_x;
  const int64_t b = t / tiles_x;
  const int lx = clamp_len(xlen, b, N), ly = clamp_len(ylen, b, M);
  const int x0 = int(int64_t(tx) * BX);
  if (x0 >= lx) return;  // block-uniform: no valid x point here (kx already holds KEY_NONE)
  const int64_t jb64 = int64_t(s) * span;
  if (jb64 >= ly) return;
  const int jb = int(jb64);
  const int je = int(jb64 + span < ly ? jb64 + span : ly);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // lanes own consecutive index groups: a lower lane holds lower indices (the column tie rule)
  const int first = x0 + warp * 32 * XP + lane * XP;
  XPoints<T, DC> xp;
  xp.load(x + b * N * D, first, lx, D);
  float best[XP];
  int barg[XP];
#pragma unroll
  for (int k = 0; k < XP; ++k) {
    best[k] = INFINITY;
    barg[k] = -1;
  }
  const T* yb = y + b * M * D;
  for (int j0 = jb; j0 < je; j0 += tile) {
    const int cnt = je - j0 < tile ? je - j0 : tile;
    __syncthreads();  // the previous tile is consumed
    for (int e = threadIdx.x; e < cnt * D; e += NT) ys[e] = to_f(yb[int64_t(j0) * D + e]);
    if (COLS)
      for (int e = threadIdx.x; e < BMY; e += NT) colkey[e] = HMORE_CHAMFER_KEY_NONE;
    __syncthreads();
    for (int g0 = 0; g0 < cnt; g0 += 32) {
      const int lim = cnt - g0 < 32 ? cnt - g0 : 32;
      ull mykey = HMORE_CHAMFER_KEY_NONE;
      for (int l = 0; l < lim; ++l) {  // warp-uniform trip count: full-warp collectives below
        const int jj = g0 + l;
        const float* yv = ys + jj * D;
        float d[XP];
        xp.dist(yv, D, d);
        float m = INFINITY;
        int a = 0;
#pragma unroll
        for (int k = 0; k < XP; ++k) {
          if (d[k] < best[k]) {
            best[k] = d[k];
            barg[k] = j0 + jj;
          }
          if (COLS && d[k] < m) {  // strict: the lowest slot on ties
            m = d[k];
            a = k;
          }
        }
        if (COLS) {
          const unsigned bits = __float_as_uint(m);  // NaN bits exceed +inf's: never a minimum
          const unsigned wmin = warp_min_u32(bits);
          const unsigned owners = __ballot_sync(FULL, bits == wmin);
          const int src = __ffs(owners) - 1;
          const int aa = __shfl_sync(FULL, a, src);
          if (lane == l && wmin < INF_BITS)
            mykey = (ull(wmin) << 32) | ull(unsigned(x0 + warp * 32 * XP + src * XP + aa));
        }
      }
      if (COLS && lane < lim && mykey != HMORE_CHAMFER_KEY_NONE) atomicMin(&colkey[g0 + lane], mykey);
    }
    if (COLS) {
      __syncthreads();
      for (int e = threadIdx.x; e < cnt; e += NT) {
        const ull k = colkey[e];
        if (k != HMORE_CHAMFER_KEY_NONE) atomicMin(&ky[b * M + j0 + e], k);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < XP; ++k) {
    const int i = first + k;
    // +inf (overflow) counts as no neighbour, as in the reference
    if (i < lx && barg[k] >= 0 && __float_as_uint(best[k]) < INF_BITS) {
      const ull key = pack(best[k], barg[k]);
      if (ROW_ATOMIC)
        atomicMin(&kx[b * N + i], key);
      else
        kx[b * N + i] = key;
    }
  }
}

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
template <typename T, int DC, bool COLS, bool RA>
cudaError_t launch_pairs_t(const void* x, const void* y, const int64_t* xl, const int64_t* yl, ull* kx, ull* ky,
                           int64_t blocks, int64_t N, int64_t M, int D, int64_t tiles_x, int64_t splits, int64_t span,
                           cudaStream_t stream) {
  // blocks < 2^31 (checked by the caller), hence tiles_x and splits fit in 32 bits
  // y tile: BMY points, fewer for D > 48 so that it fits the default 48 KiB of shared memory
  const int tile = D <= kSmemFloats / BMY ? BMY : (kSmemFloats / D > 0 ? kSmemFloats / D : 1);
  const size_t smem = size_t(tile) * size_t(D) * sizeof(float);
  pair_kernel<T, DC, COLS, RA><<<unsigned(blocks), NT, smem, stream>>>(static_cast<const T*>(x),
                                                                      static_cast<const T*>(y), xl, yl, kx, ky, N, M,
                                                                      D, unsigned(tiles_x), unsigned(splits), span, tile);
  return cudaGetLastError();
}

template <typename T, int DC>
cudaError_t launch_pairs_d(bool cols, bool ra, const void* x, const void* y, const int64_t* xl, const int64_t* yl,
                           ull* kx, ull* ky, int64_t blocks, int64_t N, int64_t M, int D, int64_t tiles_x,
                           int64_t splits, int64_t span, cudaStream_t st) {
  if (cols)
    return ra ? launch_pairs_t<T, DC, true, true>(x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st)
              : launch_pairs_t<T, DC, true, false>(x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st);
  return ra ? launch_pairs_t<T, DC, false, true>(x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st)
            : launch_pairs_t<T, DC, false, false>(x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st);
}

template <typename T>
cudaError_t launch_pairs(bool cols, bool ra, const void* x, const void* y, const int64_t* xl, const int64_t* yl,
                         ull* kx, ull* ky, int64_t blocks, int64_t N, int64_t M, int D, int64_t tiles_x,
                         int64_t splits, int64_t span, cudaStream_t st) {
  if (D == 2) return launch_pairs_d<T, 2>(cols, ra, x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st);
  if (D == 3) return launch_pairs_d<T, 3>(cols, ra, x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st);
  return launch_pairs_d<T, 0>(cols, ra, x, y, xl, yl, kx, ky, blocks, N, M, D, tiles_x, splits, span, st);
}

#endif  // __CUDACC_RTC__
// ---- unpack ---------------------------------------------------------------------------------------
__global__ void __launch_bounds__(EW) unpack_kernel(const ull* __restrict__ keys, const int64_t* __restrict__ len,
                                                    const float* __restrict__ w, int64_t* __restrict__ idx,
                                                    float* __restrict__ dist, float* __restrict__ part, int64_t B,
                                                    int64_t N, int64_t tiles, int squared) {
  __shared__ float red[64];
  const int64_t i = int64_t(blockIdx.x) * EW + threadIdx.x;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    const int n = clamp_len(len, b, N);
    float v[2] = {0.f, 0.f};
    if (i < N) {
      const int64_t o = b * N + i;
      const ull key = keys[o];
      const bool ok = i < n && key != HMORE_CHAMFER_KEY_NONE;
      const float d2 = ok ? __uint_as_float(unsigned(key >> 32)) : 0.f;
      idx[o] = ok ? int64_t(key & 0xffffffffull) : int64_t(HMORE_CHAMFER_NO_INDEX);
      if (dist != nullptr) dist[o] = d2;
      if (ok) {
        const float wi = w != nullptr ? w[o] : 1.f;
        v[0] = wi * point_term<float>(d2, squared != 0);
        v[1] = wi;
      }
    }
    block_sum<2>(v, red);
    if (threadIdx.x == 0) {
      part[(b * tiles + blockIdx.x) * 2] = v[0];
      part[(b * tiles + blockIdx.x) * 2 + 1] = v[1];
    }
  }
}

// ---- backward -------------------------------------------------------------------------------------
// Squared distance between src point sp and dst point dp (the forward's order and rounding).
template <typename T, int DC>
__device__ __forceinline__ float pair_dist(const T* sp, const T* dp, int D) {
  if (DC == 2) return sqdist2<float>(to_f(sp[0]), to_f(sp[1]), to_f(dp[0]), to_f(dp[1]));
  if (DC == 3)
    return sqdist3<float>(to_f(sp[0]), to_f(sp[1]), to_f(sp[2]), to_f(dp[0]), to_f(dp[1]), to_f(dp[2]));
  const float e0 = to_f(sp[0]) - to_f(dp[0]);
  float s = mul_rn(e0, e0);
  for (int q = 1; q < D; ++q) {
    const float e = to_f(sp[q]) - to_f(dp[q]);
    s = add_rn(s, mul_rn(e, e));
  }
  return s;
}

template <typename T, int DC>
__global__ void __launch_bounds__(EW) dir_stats_kernel(const T* __restrict__ src, const T* __restrict__ dst,
                                                       const int64_t* __restrict__ idx, const float* __restrict__ w,
                                                       float* __restrict__ part, int64_t B, int64_t N, int64_t M,
                                                       int D, int64_t tiles, int squared) {
  __shared__ float red[64];
  const int64_t i = int64_t(blockIdx.x) * EW + threadIdx.x;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    float v[2] = {0.f, 0.f};
    if (i < N) {
      const int64_t o = b * N + i;
      const int64_t j = idx[o];
      if (j >= 0 && j < M) {
        const float d2 = pair_dist<T, DC>(src + o * D, dst + (b * M + j) * D, D);
        const float wi = w != nullptr ? w[o] : 1.f;
        v[0] = wi * point_term<float>(d2, squared != 0);
        v[1] = wi;
      }
    }
    block_sum<2>(v, red);
    if (threadIdx.x == 0) {
      part[(b * tiles + blockIdx.x) * 2] = v[0];
      part[(b * tiles + blockIdx.x) * 2 + 1] = v[1];
    }
  }
}

template <typename T, int DC>
__global__ void __launch_bounds__(EW) dir_grad_kernel(const T* __restrict__ src, const T* __restrict__ dst,
                                                      const int64_t* __restrict__ idx, const float* __restrict__ w,
                                                      const float* __restrict__ coef, const float* __restrict__ val,
                                                      const float* __restrict__ den, const float* __restrict__ gbatch,
                                                      float* __restrict__ gs, float* __restrict__ gd,
                                                      float* __restrict__ contrib, float* __restrict__ gw, int64_t B,
                                                      int64_t N, int64_t M, int D, int squared, int normalise) {
  const int64_t total = B * N;
  for (int64_t o = int64_t(blockIdx.x) * EW + threadIdx.x; o < total; o += int64_t(gridDim.x) * EW) {
    const int64_t b = o / N;
    const int64_t j = idx[o];
    const bool ok = j >= 0 && j < M;
    if (!ok) {
      if (contrib != nullptr)
        for (int q = 0; q < D; ++q) contrib[o * D + q] = 0.f;
      if (gw != nullptr) gw[o] = 0.f;
      continue;
    }
    const T* sp = src + o * D;
    const T* dp = dst + (b * M + j) * D;
    const float d2 = pair_dist<T, DC>(sp, dp, D);
    const float wi = w != nullptr ? w[o] : 1.f;
    const float c = coef[b] * wi * term_grad_coef<float>(d2, squared != 0);
    for (int q = 0; q < D; ++q) {
      const float v = c * (to_f(sp[q]) - to_f(dp[q]));
      gs[o * D + q] += v;  // this thread owns point o: a gather
      if (contrib != nullptr)
        contrib[o * D + q] = -v;
      else
        atomicAdd(&gd[(b * M + j) * D + q], -v);
    }
    if (gw != nullptr)
      gw[o] = gbatch[b] * weight_grad<float>(point_term<float>(d2, squared != 0), val[b], den[b], normalise != 0);
  }
}

__global__ void __launch_bounds__(EW) segsum_kernel(float* __restrict__ out, const float* __restrict__ contrib,
                                                    const int64_t* __restrict__ perm,
                                                    const int64_t* __restrict__ start, int64_t total, int D) {
  for (int64_t q = int64_t(blockIdx.x) * EW + threadIdx.x; q < total; q += int64_t(gridDim.x) * EW) {
    const int64_t r0 = start[q], r1 = start[q + 1];
    if (r0 == r1) continue;
    for (int k = 0; k < D; ++k) {
      float acc = 0.f;
      for (int64_t r = r0; r < r1; ++r) acc += contrib[perm[r] * D + k];  // increasing point order
      out[q * D + k] += acc;
    }
  }
}

// ---- patches --------------------------------------------------------------------------------------
__host__ __device__ __forceinline__ int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Patch-local sums (m, sx, sy) of one map over patch (pi, pj): block-strided over its pixels row-major.
// Partial sums per thread (the caller block-reduces them).
template <typename T>
__device__ __forceinline__ void patch_partial(const T* __restrict__ w, const T* __restrict__ off, int64_t H,
                                              int64_t W, int64_t p, int64_t pi, int64_t pj, int rows, int cols,
                                              float& m, float& sx, float& sy) {
  const int64_t HW = H * W;
  const int n = rows * cols;
  for (int e = threadIdx.x; e < n; e += blockDim.x) {
    const int r = e / cols, c = e - (e / cols) * cols;
    const int64_t o = (pi * p + r) * W + pj * p + c;
    const float v = to_f(w[o]);
    float lx = float(c), ly = float(r);
    if (off != nullptr) {
      lx += to_f(off[o]);
      ly += to_f(off[HW + o]);
    }
    m += v;
    sx += v * lx;
    sy += v * ly;
  }
}

__host__ __device__ __forceinline__ int patch_threads(int64_t p) {
  const int64_t n = p * p;
  return n >= 256 ? 256 : int(cdiv(n, 32) * 32);
}

template <typename T>
__global__ void __launch_bounds__(256) patch_centroids_kernel(const T* __restrict__ w, const T* __restrict__ off,
                                                              T* __restrict__ cen, T* __restrict__ mass, int64_t H,
                                                              int64_t W, int64_t Hp, int64_t Wp, int64_t p) {
  __shared__ float red[96];
  const int64_t patch = blockIdx.x;  // (b, pi, pj) flat
  const int64_t pj = patch % Wp, pi = (patch / Wp) % Hp, b = patch / (Wp * Hp);
  const int rows = patch_extent(int(pi), int(p), int(H)), cols = patch_extent(int(pj), int(p), int(W));
  float v[3] = {0.f, 0.f, 0.f};
  patch_partial(w + b * H * W, off != nullptr ? off + b * 2 * H * W : nullptr, H, W, p, pi, pj, rows, cols, v[0],
                v[1], v[2]);
  block_sum<3>(v, red);
  if (threadIdx.x == 0) {
    float cx, cy;
    local_centroid<float>(v[0], v[1], v[2], rows, cols, 0.f, cx, cy);
    cen[patch * 2] = Cvt<T>::to(cx + float(pj * p));
    cen[patch * 2 + 1] = Cvt<T>::to(cy + float(pi * p));
    mass[patch] = Cvt<T>::to(v[0]);
  }
}

// Gather: pixel (i, j) of patch P reads P's centroid, mass and incoming gradients. For m > 0,
// c = sum w (pos + off) / m: dc/dw = (pos + off - c) / m, dc/doff = w / m; dm/dw = 1. Local coordinates.
template <typename T>
__global__ void __launch_bounds__(EW) patch_centroids_bwd_kernel(
    const T* __restrict__ gc, const T* __restrict__ gm, const T* __restrict__ w, const T* __restrict__ off,
    const T* __restrict__ cen, const T* __restrict__ mass, T* __restrict__ gw, T* __restrict__ go, int64_t B,
    int64_t H, int64_t W, int64_t Hp, int64_t Wp, int64_t p) {
  const int64_t HW = H * W, total = B * HW;
  for (int64_t o = int64_t(blockIdx.x) * EW + threadIdx.x; o < total; o += int64_t(gridDim.x) * EW) {
    const int64_t b = o / HW, r = o - b * HW, i = r / W, j = r - (r / W) * W;
    const int64_t pi = i / p, pj = j / p;
    const int64_t P = (b * Hp + pi) * Wp + pj;
    const float m = to_f(mass[P]);
    const float gcx = to_f(gc[P * 2]), gcy = to_f(gc[P * 2 + 1]);
    const float lcx = to_f(cen[P * 2]) - float(pj * p), lcy = to_f(cen[P * 2 + 1]) - float(pi * p);
    float px = float(j - pj * p), py = float(i - pi * p);
    const int64_t ob = b * 2 * HW + r;
    if (off != nullptr) {
      px += to_f(off[ob]);
      py += to_f(off[ob + HW]);
    }
    const float inv = m > 0.f ? 1.f / m : 0.f;
    gw[o] = Cvt<T>::to(to_f(gm[P]) + (gcx * (px - lcx) + gcy * (py - lcy)) * inv);
    if (go != nullptr) {
      const float wv = to_f(w[o]);
      go[ob] = Cvt<T>::to(gcx * wv * inv);
      go[ob + HW] = Cvt<T>::to(gcy * wv * inv);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(256) pcc_scale_kernel(const T* __restrict__ a, const T* __restrict__ bm,
                                                        float* __restrict__ term, float* __restrict__ count,
                                                        float* __restrict__ coef, int64_t H, int64_t W, int64_t Hp,
                                                        int64_t Wp, int64_t p, float min_mass) {
  __shared__ float red[192];
  const int64_t patch = blockIdx.x;
  const int64_t pj = patch % Wp, pi = (patch / Wp) % Hp, b = patch / (Wp * Hp);
  const int rows = patch_extent(int(pi), int(p), int(H)), cols = patch_extent(int(pj), int(p), int(W));
  float v[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  patch_partial<T>(a + b * H * W, nullptr, H, W, p, pi, pj, rows, cols, v[0], v[1], v[2]);
  patch_partial<T>(bm + b * H * W, nullptr, H, W, p, pi, pj, rows, cols, v[3], v[4], v[5]);
  block_sum<6>(v, red);
  if (threadIdx.x == 0) {
    float t;
    const bool counted = pcc_term<float>(v[0], v[1], v[2], v[3], v[4], v[5], rows, cols, int(p), min_mass, t);
    term[patch] = t;
    count[patch] = counted ? 1.f : 0.f;
    if (coef != nullptr) {
      float g[6];
      pcc_term_backward<float>(v[0], v[1], v[2], v[3], v[4], v[5], rows, cols, int(p), min_mass, 1.f, g[0], g[1],
                               g[2], g[3], g[4], g[5]);
#pragma unroll
      for (int k = 0; k < 6; ++k) coef[patch * 6 + k] = g[k];
    }
  }
}

constexpr int kMaxScales = 8;  // per launch; more scales take several accumulating launches
struct Scales {
  int n;
  int64_t p[kMaxScales];
  int64_t base[kMaxScales];
};

__global__ void __launch_bounds__(EW) pcc_bwd_kernel(const float* __restrict__ coef, const float* __restrict__ fac,
                                                     Scales sc, int64_t s0, int64_t S, float* __restrict__ ga,
                                                     float* __restrict__ gb, int64_t B, int64_t H, int64_t W,
                                                     int accumulate) {
  const int64_t HW = H * W, total = B * HW;
  for (int64_t o = int64_t(blockIdx.x) * EW + threadIdx.x; o < total; o += int64_t(gridDim.x) * EW) {
    const int64_t b = o / HW, r = o - b * HW, i = r / W, j = r - (r / W) * W;
    float sa = accumulate ? ga[o] : 0.f, sb = accumulate ? gb[o] : 0.f;
    for (int s = 0; s < sc.n; ++s) {
      const int64_t p = sc.p[s];
      const int64_t Hp = cdiv(H, p), Wp = cdiv(W, p), pi = i / p, pj = j / p;
      const float f = fac[b * S + s0 + s];
      const float* c = coef + sc.base[s] + ((b * Hp + pi) * Wp + pj) * 6;
      const float lx = float(j - pj * p), ly = float(i - pi * p);
      sa += f * (c[0] + c[1] * lx + c[2] * ly);
      sb += f * (c[3] + c[4] * lx + c[5] * ly);
    }
    ga[o] = sa;
    gb[o] = sb;
  }
}

// ---- boundary_chamfer ----------------------------------------------------------------------------
constexpr int BC_BLOCK = 1024;  // pixels per block (4 per thread)

__global__ void __launch_bounds__(EW) bc_reduce_kernel(const uint8_t* __restrict__ a, const uint8_t* __restrict__ b,
                                                       const float* __restrict__ da, const float* __restrict__ db,
                                                       double* __restrict__ part, int64_t B, int64_t HW,
                                                       int64_t tiles) {
  __shared__ double red[128];
  for (int64_t bi = blockIdx.y; bi < B; bi += gridDim.y) {
    double v[4] = {0.0, 0.0, 0.0, 0.0};
    for (int k = 0; k < BC_BLOCK / EW; ++k) {
      const int64_t i = int64_t(blockIdx.x) * BC_BLOCK + k * EW + threadIdx.x;
      if (i < HW) {
        const int64_t o = bi * HW + i;
        if (a[o]) {
          v[0] += 1.0;
          v[1] += double(db[o]);
        }
        if (b[o]) {
          v[2] += 1.0;
          v[3] += double(da[o]);
        }
      }
    }
    block_sum<4>(v, red);
    if (threadIdx.x == 0)
      for (int k = 0; k < 4; ++k) part[(bi * tiles + blockIdx.x) * 4 + k] = v[k];
  }
}

unsigned grid_y(int64_t B) { return unsigned(B < kMaxGridY ? B : kMaxGridY); }

unsigned ew_blocks(int64_t total) {
  const int64_t n = cdiv(total, EW);
  return unsigned(n < (int64_t(1) << 20) ? n : (int64_t(1) << 20));  // grid-stride beyond
}

#ifndef __CUDACC_RTC__  // host only (the launchers' split heuristic)
int sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 132;
  return n > 0 ? n : 132;
}
#endif

}  // namespace

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
// ---- launchers ------------------------------------------------------------------------------------
extern "C" cudaError_t hmore_chamfer_pairs_cuda(const void* x, const void* y, const int64_t* x_lengths,
                                                const int64_t* y_lengths, unsigned long long* kx,
                                                unsigned long long* ky, int64_t B, int64_t N, int64_t M, int64_t D,
                                                int dtype, cudaStream_t stream) {
  if (B == 0 || N == 0 || M == 0) return cudaSuccess;
  if (D < 1 || D > kSmemFloats || N >= (int64_t(1) << 31) || M >= (int64_t(1) << 31)) return cudaErrorInvalidValue;
  // Split the y range (in chunks of kSplitGrain points) until there are about two waves of blocks (3-4
  // resident per SM at 56-72 registers): small batches of small clouds would otherwise leave most SMs
  // idle. Each split costs one extra atomicMin per row.
  const int64_t tiles_x = cdiv(N, BX), chunks = cdiv(M, kSplitGrain);
  const int64_t target = int64_t(sm_count()) * 8;
  int64_t splits = cdiv(target, B * tiles_x);
  if (splits > chunks) splits = chunks;
  if (splits < 1) splits = 1;
  const int64_t span = cdiv(chunks, splits) * kSplitGrain;
  splits = cdiv(M, span);
  const int64_t blocks = B * tiles_x * splits;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  const bool cols = ky != nullptr, ra = splits > 1;
  switch (dtype) {
    case HMORE_F32:
      return launch_pairs<float>(cols, ra, x, y, x_lengths, y_lengths, kx, ky, blocks, N, M, int(D), tiles_x, splits,
                                 span, stream);
    case HMORE_F16:
      return launch_pairs<__half>(cols, ra, x, y, x_lengths, y_lengths, kx, ky, blocks, N, M, int(D), tiles_x,
                                  splits, span, stream);
    case HMORE_BF16:
      return launch_pairs<__nv_bfloat16>(cols, ra, x, y, x_lengths, y_lengths, kx, ky, blocks, N, M, int(D), tiles_x,
                                         splits, span, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

extern "C" int64_t hmore_chamfer_tiles(int64_t N) { return N > 0 ? cdiv(N, EW) : 1; }

extern "C" cudaError_t hmore_chamfer_unpack_cuda(const unsigned long long* keys, const int64_t* lengths,
                                                 const float* w, int64_t* idx, float* dist, float* part, int64_t B,
                                                 int64_t N, int squared, cudaStream_t stream) {
  if (B == 0 || N == 0) return cudaSuccess;
  const int64_t tiles = hmore_chamfer_tiles(N);
  if (tiles > 0x7fffffffLL) return cudaErrorInvalidValue;
  unpack_kernel<<<dim3(unsigned(tiles), grid_y(B)), EW, 0, stream>>>(keys, lengths, w, idx, dist, part, B, N, tiles,
                                                                     squared);
  return cudaGetLastError();
}

namespace {
template <typename T>
cudaError_t stats_t(const void* s, const void* d, const int64_t* idx, const float* w, float* part, int64_t B,
                    int64_t N, int64_t M, int64_t D, int64_t tiles, int squared, cudaStream_t st) {
  const dim3 grid(unsigned(tiles), grid_y(B));
  const T* sp = static_cast<const T*>(s);
  const T* dp = static_cast<const T*>(d);
  if (D == 2)
    dir_stats_kernel<T, 2><<<grid, EW, 0, st>>>(sp, dp, idx, w, part, B, N, M, int(D), tiles, squared);
  else if (D == 3)
    dir_stats_kernel<T, 3><<<grid, EW, 0, st>>>(sp, dp, idx, w, part, B, N, M, int(D), tiles, squared);
  else
    dir_stats_kernel<T, 0><<<grid, EW, 0, st>>>(sp, dp, idx, w, part, B, N, M, int(D), tiles, squared);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grad_t(const void* s, const void* d, const int64_t* idx, const float* w, const float* coef,
                   const float* val, const float* den, const float* gbatch, float* gs, float* gd, float* contrib,
                   float* gw, int64_t B, int64_t N, int64_t M, int64_t D, int squared, int normalise,
                   cudaStream_t st) {
  const unsigned blocks = ew_blocks(B * N);
  const T* sp = static_cast<const T*>(s);
  const T* dp = static_cast<const T*>(d);
  if (D == 2)
    dir_grad_kernel<T, 2><<<blocks, EW, 0, st>>>(sp, dp, idx, w, coef, val, den, gbatch, gs, gd, contrib, gw, B, N, M,
                                                 int(D), squared, normalise);
  else if (D == 3)
    dir_grad_kernel<T, 3><<<blocks, EW, 0, st>>>(sp, dp, idx, w, coef, val, den, gbatch, gs, gd, contrib, gw, B, N, M,
                                                 int(D), squared, normalise);
  else
    dir_grad_kernel<T, 0><<<blocks, EW, 0, st>>>(sp, dp, idx, w, coef, val, den, gbatch, gs, gd, contrib, gw, B, N, M,
                                                 int(D), squared, normalise);
  return cudaGetLastError();
}
}  // namespace

extern "C" cudaError_t hmore_chamfer_dir_stats_cuda(const void* src, const void* dst, const int64_t* idx,
                                                    const float* w, float* part, int64_t B, int64_t N, int64_t M,
                                                    int64_t D, int dtype, int squared, cudaStream_t stream) {
  if (B == 0 || N == 0) return cudaSuccess;
  const int64_t tiles = hmore_chamfer_tiles(N);
  if (tiles > 0x7fffffffLL || D < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case HMORE_F32: return stats_t<float>(src, dst, idx, w, part, B, N, M, D, tiles, squared, stream);
    case HMORE_F16: return stats_t<__half>(src, dst, idx, w, part, B, N, M, D, tiles, squared, stream);
    case HMORE_BF16: return stats_t<__nv_bfloat16>(src, dst, idx, w, part, B, N, M, D, tiles, squared, stream);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t hmore_chamfer_dir_grad_cuda(const void* src, const void* dst, const int64_t* idx,
                                                   const float* w, const float* coef, const float* val,
                                                   const float* den, const float* gb, float* gs, float* gd,
                                                   float* contrib, float* gw, int64_t B, int64_t N, int64_t M,
                                                   int64_t D, int dtype, int squared, int normalise,
                                                   cudaStream_t stream) {
  if (B == 0 || N == 0) return cudaSuccess;
  if (D < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case HMORE_F32:
      return grad_t<float>(src, dst, idx, w, coef, val, den, gb, gs, gd, contrib, gw, B, N, M, D, squared, normalise,
                           stream);
    case HMORE_F16:
      return grad_t<__half>(src, dst, idx, w, coef, val, den, gb, gs, gd, contrib, gw, B, N, M, D, squared, normalise,
                            stream);
    case HMORE_BF16:
      return grad_t<__nv_bfloat16>(src, dst, idx, w, coef, val, den, gb, gs, gd, contrib, gw, B, N, M, D, squared,
                                   normalise, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t hmore_chamfer_segsum_cuda(float* out, const float* contrib, const int64_t* perm,
                                                 const int64_t* start, int64_t total, int64_t D, cudaStream_t stream) {
  if (total == 0) return cudaSuccess;
  segsum_kernel<<<ew_blocks(total), EW, 0, stream>>>(out, contrib, perm, start, total, int(D));
  return cudaGetLastError();
}

extern "C" cudaError_t hmore_patch_centroids_forward_cuda(const void* w, const void* off, void* centroids, void* mass,
                                                          int64_t B, int64_t H, int64_t W, int64_t p, int dtype,
                                                          cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  if (p < 1 || p > 46340) return cudaErrorInvalidValue;  // p * p pixels indexed in int
  const int64_t Hp = cdiv(H, p), Wp = cdiv(W, p), blocks = B * Hp * Wp;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  const int th = patch_threads(p);
  switch (dtype) {
    case HMORE_F32:
      patch_centroids_kernel<float><<<unsigned(blocks), th, 0, stream>>>(
          static_cast<const float*>(w), static_cast<const float*>(off), static_cast<float*>(centroids),
          static_cast<float*>(mass), H, W, Hp, Wp, p);
      break;
    case HMORE_F16:
      patch_centroids_kernel<__half><<<unsigned(blocks), th, 0, stream>>>(
          static_cast<const __half*>(w), static_cast<const __half*>(off), static_cast<__half*>(centroids),
          static_cast<__half*>(mass), H, W, Hp, Wp, p);
      break;
    case HMORE_BF16:
      patch_centroids_kernel<__nv_bfloat16><<<unsigned(blocks), th, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(w), static_cast<const __nv_bfloat16*>(off),
          static_cast<__nv_bfloat16*>(centroids), static_cast<__nv_bfloat16*>(mass), H, W, Hp, Wp, p);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

namespace {
template <typename T>
void pc_bwd_t(const void* gc, const void* gm, const void* w, const void* off, const void* cen, const void* mass,
              void* gw, void* go, int64_t B, int64_t H, int64_t W, int64_t p, cudaStream_t st) {
  patch_centroids_bwd_kernel<T><<<ew_blocks(B * H * W), EW, 0, st>>>(
      static_cast<const T*>(gc), static_cast<const T*>(gm), static_cast<const T*>(w), static_cast<const T*>(off),
      static_cast<const T*>(cen), static_cast<const T*>(mass), static_cast<T*>(gw), static_cast<T*>(go), B, H, W,
      cdiv(H, p), cdiv(W, p), p);
}
template <typename T>
void pcc_scale_t(const void* a, const void* b, float* term, float* count, float* coef, int64_t blocks, int th,
                 int64_t H, int64_t W, int64_t p, float min_mass, cudaStream_t st) {
  pcc_scale_kernel<T><<<unsigned(blocks), th, 0, st>>>(static_cast<const T*>(a), static_cast<const T*>(b), term,
                                                       count, coef, H, W, cdiv(H, p), cdiv(W, p), p, min_mass);
}
}  // namespace

extern "C" cudaError_t hmore_patch_centroids_backward_cuda(const void* grad_centroids, const void* grad_mass,
                                                           const void* w, const void* off, const void* centroids,
                                                           const void* mass, void* gw, void* go, int64_t B, int64_t H,
                                                           int64_t W, int64_t p, int dtype, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  if (p < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case HMORE_F32: pc_bwd_t<float>(grad_centroids, grad_mass, w, off, centroids, mass, gw, go, B, H, W, p, stream); break;
    case HMORE_F16: pc_bwd_t<__half>(grad_centroids, grad_mass, w, off, centroids, mass, gw, go, B, H, W, p, stream); break;
    case HMORE_BF16:
      pc_bwd_t<__nv_bfloat16>(grad_centroids, grad_mass, w, off, centroids, mass, gw, go, B, H, W, p, stream);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

extern "C" cudaError_t hmore_pcc_scale_cuda(const void* a, const void* b, float* term, float* count, float* coef,
                                            int64_t B, int64_t H, int64_t W, int64_t p, double min_mass, int dtype,
                                            cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  if (p < 1 || p > 46340) return cudaErrorInvalidValue;
  const int64_t blocks = B * cdiv(H, p) * cdiv(W, p);
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  const int th = patch_threads(p);
  const float mm = float(min_mass);
  switch (dtype) {
    case HMORE_F32: pcc_scale_t<float>(a, b, term, count, coef, blocks, th, H, W, p, mm, stream); break;
    case HMORE_F16: pcc_scale_t<__half>(a, b, term, count, coef, blocks, th, H, W, p, mm, stream); break;
    case HMORE_BF16: pcc_scale_t<__nv_bfloat16>(a, b, term, count, coef, blocks, th, H, W, p, mm, stream); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

extern "C" cudaError_t hmore_pcc_backward_cuda(const float* coef, const float* fac, const int64_t* sizes,
                                               const int64_t* bases, int64_t nscales, float* ga, float* gb, int64_t B,
                                               int64_t H, int64_t W, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0 || nscales == 0) return cudaSuccess;
  for (int64_t s0 = 0; s0 < nscales; s0 += kMaxScales) {
    Scales sc;
    sc.n = int(nscales - s0 < kMaxScales ? nscales - s0 : kMaxScales);
    for (int k = 0; k < kMaxScales; ++k) {
      sc.p[k] = k < sc.n ? sizes[s0 + k] : 1;
      sc.base[k] = k < sc.n ? bases[s0 + k] : 0;
    }
    pcc_bwd_kernel<<<ew_blocks(B * H * W), EW, 0, stream>>>(coef, fac, sc, s0, nscales, ga, gb, B, H, W, s0 > 0);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

extern "C" int64_t hmore_boundary_chamfer_tiles(int64_t HW) { return HW > 0 ? cdiv(HW, BC_BLOCK) : 1; }

extern "C" cudaError_t hmore_boundary_chamfer_reduce_cuda(const uint8_t* a, const uint8_t* b, const float* da,
                                                          const float* db, double* part, int64_t B, int64_t HW,
                                                          cudaStream_t stream) {
  if (B == 0 || HW == 0) return cudaSuccess;
  const int64_t tiles = hmore_boundary_chamfer_tiles(HW);
  if (tiles > 0x7fffffffLL) return cudaErrorInvalidValue;
  bc_reduce_kernel<<<dim3(unsigned(tiles), grid_y(B)), EW, 0, stream>>>(a, b, da, db, part, B, HW, tiles);
  return cudaGetLastError();
}
#endif  // __CUDACC_RTC__
