// CUDA kernels of the correlation family: corr_lookup, corr_lookup_otf and local_corr, forward and
// backward (corr_volume / corr_pyramid are GEMMs, done by the glue through cuBLAS). Plain CUDA C++ (no
// torch headers); the per-element math (tap order, level centres, bilinear footprint and weights,
// grid_sample's derivative) is corr_kernels.cuh's, shared with the CPU kernels.
//
// corr_lookup. Blocks of 32 consecutive query pixels (threadIdx.x) x 8 tap lanes (threadIdx.y): the
// coordinates are loaded once per thread and every store out[b, l*T + t, pixel] is coalesced along x.
// One launch covers all levels (up to 8; the glue chunks more) and taps. A tap reads its four corners
// from the query's own [h, w] slice: the (2r+2)^2 window of a query is (2r+2) short rows, read from DRAM
// once and then served by L1 to the other taps of the warp (DRAM traffic per query and level: the
// window's sectors, about (2r+2) * 64 B, against 4 * (2r+1)^2 B written). Backward: the gradient of
// the coordinates is the per-tap derivative, reduced over the 8 tap lanes in shared memory in a fixed
// order; the gradient of the pyramid is a gather over the query's window (each window position sums the
// <= 4 taps whose corners land on it), written with plain stores to the query's own slice: no atomics,
// deterministic.
//
// corr_lookup_otf. One warp per query pixel, looping over the levels (coordinates loaded once, the
// coordinate gradient summed in registers). Per level the lanes compute the (2r+2)^2 window correlations
// <f1(p), f2_l(q)> (channels-last features, float32 accumulation) into shared memory, then the taps
// combine them bilinearly (per-tap positions, exactly corr_lookup's). Backward: the window gradients
// (gathered from the tap gradients) of all levels in shared memory; grad f1 by gather (lanes over D);
// grad of the pooled fmap2 by float atomics (lanes over D: coalesced) or, when deterministic, by writing
// (window gradient, target) entries that the glue sorts stably and hmore_corr_otf_scatter_cuda reduces
// per target in a fixed order (one warp per target, lanes over D).
//
// local_corr. One thread per (output pixel, channel) looping over D (NCHW: a warp reads 32 consecutive
// pixels of a channel plane). Backward: gathers, one thread per (pixel, feature channel) looping over the
// (2d+1)^2 displacement channels -- grad fmap1 at the strided pixels, grad fmap2 from the output pixels
// whose window contains it. No atomics.
//
// Grids: flat block indices along x (< 2^31), y/z grid-stride loops past 65535; indices into volumes
// and feature maps in int64. dtypes: float32, float16, bfloat16 loaded through small wrappers (torch
// builds with __CUDA_NO_HALF_CONVERSIONS__), arithmetic in float.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "corr/corr_cuda.h"
#include "corr/corr_kernels.cuh"
#include "hd.h"

namespace {

using namespace hmore::corr;

constexpr int kMaxLevels = HMORE_CORR_MAX_LEVELS;
constexpr int kQX = 32;  // queries per lookup block (threadIdx.x)
constexpr int kTY = 8;   // tap lanes per lookup block (threadIdx.y)
constexpr int kOtfWarps = 4;
constexpr int kOtfSmemLimit = 48 * 1024;
constexpr int kEW = 256;  // elementwise / local_corr threads per block
constexpr unsigned kMaxGridYZ = 65535;

// Storage types as seen by corr_kernels.cuh's templates: `A(plane[i])` converts with the operator below
// (a half is not implicitly convertible under __CUDA_NO_HALF_CONVERSIONS__).
struct LdHalf {
  __half v;
  __device__ __forceinline__ operator float() const { return __half2float(v); }
};
struct LdBf16 {
  __nv_bfloat16 v;
  __device__ __forceinline__ operator float() const { return __bfloat162float(v); }
};
template <typename T>
struct Ld {
  using type = T;
};
template <>
struct Ld<__half> {
  using type = LdHalf;
};
template <>
struct Ld<__nv_bfloat16> {
  using type = LdBf16;
};

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

struct Levels {
  const void* p[kMaxLevels];
  void* g[kMaxLevels];
  int h[kMaxLevels];
  int w[kMaxLevels];
};

struct OtfLevels {
  int64_t off[kMaxLevels];     // element offset of level l in the pooled-feature buffer
  int64_t tstart[kMaxLevels];  // first flat target index (position) of level l
  int h[kMaxLevels];
  int w[kMaxLevels];
};

unsigned grid_yz(int64_t n) { return unsigned(n < int64_t(kMaxGridYZ) ? (n > 0 ? n : 1) : kMaxGridYZ); }

// Gradient of tap (i - r, j - r) (i: x index, j: y index) of a level, 0 where (i, j) is not a tap.
// g points at the first channel of the level for the query; channels are HW1 apart.
// (Device helper of the window gather: not in corr_kernels.cuh, whose CPU backward scatters per tap.)
__device__ __forceinline__ float grad_tap(const float* __restrict__ g, int64_t HW1, int i, int j, int r, int layout) {
  const int K = 2 * r + 1;
  if (i < 0 || i >= K || j < 0 || j >= K) return 0.f;
  return g[int64_t(tap_index(i - r, j - r, r, layout)) * HW1];
}

// Window gradient of window position (bb, a) (x0 - r + bb, y0 - r + a) of a level whose window weights
// (from the floor of the level centre) are wx0, wx1, wy0, wy1: the taps whose corners land on it.
__device__ __forceinline__ float window_grad(const float* __restrict__ g, int64_t HW1, int bb, int a, float wx0,
                                             float wx1, float wy0, float wy1, int r, int layout) {
  return grad_tap(g, HW1, bb, a, r, layout) * (wx0 * wy0) + grad_tap(g, HW1, bb - 1, a, r, layout) * (wx1 * wy0) +
         grad_tap(g, HW1, bb, a - 1, r, layout) * (wx0 * wy1) + grad_tap(g, HW1, bb - 1, a - 1, r, layout) * (wx1 * wy1);
}

// ---- corr_lookup -----------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kQX* kTY)
    lookup_fwd_kernel(Levels lv, int l0, int nl, int ltot, const float* __restrict__ coords, float* __restrict__ out,
                      int64_t NQ, int64_t HW1, int r, int layout) {
  using L = typename Ld<T>::type;
  const int64_t n = int64_t(blockIdx.x) * kQX + threadIdx.x;
  if (n >= NQ) return;
  const int64_t b = n / HW1, s = n - b * HW1;
  const float cx = coords[b * 2 * HW1 + s], cy = coords[(b * 2 + 1) * HW1 + s];
  const int NT = (2 * r + 1) * (2 * r + 1);
  float* o = out + (b * ltot * NT) * HW1 + s;
  for (int l = 0; l < nl; ++l) {
    const int64_t h = lv.h[l], w = lv.w[l];
    const L* plane = static_cast<const L*>(lv.p[l]) + n * h * w;
    for (int t = threadIdx.y; t < NT; t += kTY) {
      int dx, dy;
      tap_offset(t, r, layout, dx, dy);
      float x, y;
      tap_position(cx, cy, l0 + l, dx, dy, x, y);
      o[int64_t((l0 + l) * NT + t) * HW1] = bilinear_sample<L, float>(plane, h, w, w, 1, x, y);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kQX* kTY)
    lookup_bwd_kernel(Levels lv, int l0, int nl, int ltot, const float* __restrict__ grad,
                      const float* __restrict__ coords, float* __restrict__ gcoords, int accumulate, int64_t NQ,
                      int64_t HW1, int r, int layout) {
  using L = typename Ld<T>::type;
  __shared__ float red[2][kTY][kQX];
  const int64_t n = int64_t(blockIdx.x) * kQX + threadIdx.x;
  const bool valid = n < NQ;
  float gx = 0.f, gy = 0.f;
  int64_t b = 0, s = 0;
  if (valid) {
    b = n / HW1;
    s = n - b * HW1;
    const float cx = coords[b * 2 * HW1 + s], cy = coords[(b * 2 + 1) * HW1 + s];
    const int NT = (2 * r + 1) * (2 * r + 1), S = 2 * r + 2;
    for (int l = 0; l < nl; ++l) {
      const int64_t h = lv.h[l], w = lv.w[l];
      const L* plane = static_cast<const L*>(lv.p[l]) + n * h * w;
      T* gplane = static_cast<T*>(lv.g[l]) + n * h * w;
      const float* g = grad + (b * ltot * NT + int64_t(l0 + l) * NT) * HW1 + s;
      // coordinates: grid_sample's derivative at every tap's own position (the forward's)
      float lx = 0.f, ly = 0.f;
      for (int t = threadIdx.y; t < NT; t += kTY) {
        int dx, dy;
        tap_offset(t, r, layout, dx, dy);
        float x, y, dvx, dvy;
        tap_position(cx, cy, l0 + l, dx, dy, x, y);
        bilinear_sample<L, float>(plane, h, w, w, 1, x, y, &dvx, &dvy);
        const float gt = g[int64_t(t) * HW1];
        lx += gt * dvx;
        ly += gt * dvy;
      }
      const float inv = level_inv_scale<float>(l0 + l);
      gx += lx * inv;
      gy += ly * inv;
      // pyramid: gather over the window of the level centre; only this query's slice is written
      long long x0, y0;
      float wx0, wx1, wy0, wy1;
      bilinear_1d(level_center(cx, l0 + l), x0, wx0, wx1);
      bilinear_1d(level_center(cy, l0 + l), y0, wy0, wy1);
      for (int k = threadIdx.y; k < S * S; k += kTY) {
        const int bb = k % S, a = k / S;
        const long long X = x0 - r + bb, Y = y0 - r + a;
        if (inside(X, w) && inside(Y, h))
          gplane[Y * w + X] = from_f<T>(window_grad(g, HW1, bb, a, wx0, wx1, wy0, wy1, r, layout));
      }
    }
  }
  red[0][threadIdx.y][threadIdx.x] = gx;
  red[1][threadIdx.y][threadIdx.x] = gy;
  __syncthreads();
  if (threadIdx.y == 0 && valid) {
    float sx = 0.f, sy = 0.f;
#pragma unroll
    for (int i = 0; i < kTY; ++i) {  // fixed order: deterministic
      sx += red[0][i][threadIdx.x];
      sy += red[1][i][threadIdx.x];
    }
    float* gc = gcoords + b * 2 * HW1 + s;
    if (accumulate) {
      sx += gc[0];
      sy += gc[HW1];
    }
    gc[0] = sx;
    gc[HW1] = sy;
  }
}

// ---- corr_lookup_otf -------------------------------------------------------------------------------
// Window value at (ix, iy) of a level's (2r+2)^2 window in shared memory; 0 past the window (there the
// bilinear weight is 0, see otf_taps).
__device__ __forceinline__ float win_at(const float* win, long long ix, long long iy, int S) {
  return (ix >= 0 && ix < S && iy >= 0 && iy < S) ? win[iy * S + ix] : 0.f;
}

// The window correlations of level l of query n: win[a*S + bb] = scale * <f1(n), f2_l(x0-r+bb, y0-r+a)>, 0
// outside the level. Lanes over window positions, each looping over D (the D-vector is contiguous).
template <typename T>
__device__ __forceinline__ void otf_window(const T* __restrict__ f1n, const T* __restrict__ f2l, int64_t b,
                                           int64_t h, int64_t w, int64_t D, long long x0, long long y0, int r,
                                           float scale, float* win) {
  const int S = 2 * r + 2;
  for (int k = threadIdx.x; k < S * S; k += 32) {
    const long long X = x0 - r + k % S, Y = y0 - r + k / S;
    float acc = 0.f;
    if (inside(X, w) && inside(Y, h)) {
      const T* q = f2l + ((b * h + Y) * w + X) * D;
      for (int64_t d = 0; d < D; ++d) acc += to_f(f1n[d]) * to_f(q[d]);
    }
    win[k] = acc * scale;
  }
  __syncwarp();
}

// Per-tap bilinear footprint in window coordinates. A tap's floor can exceed the window origin's + d by
// one when centre + d rounds up to an integer; then its far corner (index S) has weight exactly 0.
__device__ __forceinline__ void otf_tap(float cl_x, float cl_y, long long x0, long long y0, int dx, int dy, int r,
                                        long long& ix, long long& iy, float& wx0, float& wx1, float& wy0,
                                        float& wy1) {
  long long tx, ty;
  bilinear_1d(cl_x + float(dx), tx, wx0, wx1);
  bilinear_1d(cl_y + float(dy), ty, wy0, wy1);
  ix = tx - (x0 - r);
  iy = ty - (y0 - r);
}

template <typename T>
__global__ void __launch_bounds__(32 * kOtfWarps)
    otf_fwd_kernel(OtfLevels lv, int nl, const T* __restrict__ f1, const T* __restrict__ f2,
                   const float* __restrict__ coords, float* __restrict__ out, int64_t NQ, int64_t HW1, int64_t D,
                   int r, int layout, float scale) {
  extern __shared__ float smem[];
  const int S = 2 * r + 2, NT = (2 * r + 1) * (2 * r + 1);
  float* win = smem + threadIdx.y * S * S;
  const int64_t n = int64_t(blockIdx.x) * kOtfWarps + threadIdx.y;
  if (n >= NQ) return;  // the whole warp: only __syncwarp is used below
  const int64_t b = n / HW1, s = n - b * HW1;
  const float cx = coords[b * 2 * HW1 + s], cy = coords[(b * 2 + 1) * HW1 + s];
  const T* f1n = f1 + n * D;
  float* o = out + (b * nl * NT) * HW1 + s;
  for (int l = 0; l < nl; ++l) {
    if (lv.h[l] == 0 || lv.w[l] == 0) {  // an empty level reads 0 whatever the coordinate (the reference's
      // rule; a non-finite coordinate's NaN weights times the zero window would give NaN). Warp-uniform.
      for (int t = threadIdx.x; t < NT; t += 32) o[int64_t(l * NT + t) * HW1] = 0.f;
      continue;
    }
    const float clx = level_center(cx, l), cly = level_center(cy, l);
    long long x0, y0;
    float u0, u1;
    bilinear_1d(clx, x0, u0, u1);
    bilinear_1d(cly, y0, u0, u1);
    otf_window(f1n, f2 + lv.off[l], b, lv.h[l], lv.w[l], D, x0, y0, r, scale, win);
    for (int t = threadIdx.x; t < NT; t += 32) {
      int dx, dy;
      tap_offset(t, r, layout, dx, dy);
      long long ix, iy;
      float wx0, wx1, wy0, wy1;
      otf_tap(clx, cly, x0, y0, dx, dy, r, ix, iy, wx0, wx1, wy0, wy1);
      const float v00 = win_at(win, ix, iy, S), v01 = win_at(win, ix + 1, iy, S);
      const float v10 = win_at(win, ix, iy + 1, S), v11 = win_at(win, ix + 1, iy + 1, S);
      o[int64_t(l * NT + t) * HW1] = v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1);
    }
    __syncwarp();
  }
}

template <typename T>
__global__ void __launch_bounds__(32 * kOtfWarps)
    otf_bwd_kernel(OtfLevels lv, int nl, int64_t total, const T* __restrict__ f1, const T* __restrict__ f2,
                   const float* __restrict__ grad, const float* __restrict__ coords, float* __restrict__ gcoords,
                   float* __restrict__ gf1, float* __restrict__ g2, float* __restrict__ gwbuf,
                   int64_t* __restrict__ keys, int deterministic, int64_t NQ, int64_t HW1, int64_t D, int r,
                   int layout, float scale) {
  extern __shared__ float smem[];
  const int S = 2 * r + 2, SS = S * S, NT = (2 * r + 1) * (2 * r + 1);
  float* win = smem + threadIdx.y * SS * (nl + 1);
  float* gws = win + SS;  // [nl][SS] window gradients
  const int64_t n = int64_t(blockIdx.x) * kOtfWarps + threadIdx.y;
  if (n >= NQ) return;
  const int lane = threadIdx.x;
  const int64_t b = n / HW1, s = n - b * HW1;
  const float cx = coords[b * 2 * HW1 + s], cy = coords[(b * 2 + 1) * HW1 + s];
  const T* f1n = f1 + n * D;
  float gx = 0.f, gy = 0.f;
  for (int l = 0; l < nl; ++l) {
    const int64_t h = lv.h[l], w = lv.w[l];
    const float clx = level_center(cx, l), cly = level_center(cy, l);
    long long x0, y0;
    float wx0, wx1, wy0, wy1;
    bilinear_1d(clx, x0, wx0, wx1);
    bilinear_1d(cly, y0, wy0, wy1);
    const float* g = grad + (b * nl * NT + int64_t(l) * NT) * HW1 + s;
    // window gradients (and the deterministic scatter's entries)
    for (int k = lane; k < SS; k += 32) {
      const long long X = x0 - r + k % S, Y = y0 - r + k / S;
      const bool in = inside(X, w) && inside(Y, h);
      const float gw = in ? window_grad(g, HW1, k % S, k / S, wx0, wx1, wy0, wy1, r, layout) : 0.f;
      gws[l * SS + k] = gw;
      if (deterministic) {
        const int64_t e = (n * nl + l) * SS + k;
        gwbuf[e] = gw;
        keys[e] = in ? lv.tstart[l] + (b * h + Y) * w + X : total;
      }
    }
    // coordinates: recomputed window correlations, per-tap derivative
    otf_window(f1n, f2 + lv.off[l], b, h, w, D, x0, y0, r, scale, win);
    float lx = 0.f, ly = 0.f;
    for (int t = lane; t < NT; t += 32) {
      int dx, dy;
      tap_offset(t, r, layout, dx, dy);
      long long ix, iy;
      float ax0, ax1, ay0, ay1;
      otf_tap(clx, cly, x0, y0, dx, dy, r, ix, iy, ax0, ax1, ay0, ay1);
      const float v00 = win_at(win, ix, iy, S), v01 = win_at(win, ix + 1, iy, S);
      const float v10 = win_at(win, ix, iy + 1, S), v11 = win_at(win, ix + 1, iy + 1, S);
      const float gt = g[int64_t(t) * HW1];
      lx += gt * (ay0 * (v01 - v00) + ay1 * (v11 - v10));
      ly += gt * (ax0 * (v10 - v00) + ax1 * (v11 - v01));
    }
    // An empty level adds nothing (its taps are constant 0; with a non-finite coordinate lx, ly are NaN
    // there). A select, not a branch around the loop: the branch made ptxas spill at 64 registers.
    const float inv = level_inv_scale<float>(l);
    const bool full = h > 0 && w > 0;
    gx += full ? lx * inv : 0.f;
    gy += full ? ly * inv : 0.f;
    __syncwarp();
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {  // fixed shuffle tree: deterministic
    gx += __shfl_down_sync(0xffffffffu, gx, o);
    gy += __shfl_down_sync(0xffffffffu, gy, o);
  }
  if (lane == 0) {
    gcoords[b * 2 * HW1 + s] = gx;
    gcoords[(b * 2 + 1) * HW1 + s] = gy;
  }
  // grad f1 (gather; lanes over D, coalesced) and, without determinism, the atomic scatter to fmap2
  for (int64_t d = lane; d < D; d += 32) {
    float acc = 0.f;
    const float f1d = to_f(f1n[d]) * scale;
    for (int l = 0; l < nl; ++l) {
      const int64_t h = lv.h[l], w = lv.w[l];
      long long x0, y0;  // recomputed (cheap) rather than kept in a per-level array (local memory)
      float u0, u1;
      bilinear_1d(level_center(cx, l), x0, u0, u1);
      bilinear_1d(level_center(cy, l), y0, u0, u1);
      for (int k = 0; k < SS; ++k) {
        const long long X = x0 - r + k % S, Y = y0 - r + k / S;
        if (!(inside(X, w) && inside(Y, h))) continue;
        const float gw = gws[l * SS + k];
        const int64_t q = (b * h + Y) * w + X;
        acc += gw * to_f(f2[lv.off[l] + q * D + d]);
        if (!deterministic && gw != 0.f) atomicAdd(g2 + (lv.tstart[l] + q) * D + d, gw * f1d);
      }
    }
    gf1[n * D + d] = acc * scale;
  }
}

template <typename T>
__global__ void __launch_bounds__(32 * kOtfWarps)
    otf_scatter_kernel(const int64_t* __restrict__ order, const int64_t* __restrict__ start,
                       const float* __restrict__ gw, const T* __restrict__ f1, float* __restrict__ g2, int64_t total,
                       int64_t D, int64_t epq, float scale) {
  const int64_t u = int64_t(blockIdx.x) * kOtfWarps + threadIdx.y;
  if (u >= total) return;
  const int64_t e0 = start[u], e1 = start[u + 1];
  for (int64_t d = threadIdx.x; d < D; d += 32) {
    float acc = 0.f;
    for (int64_t e = e0; e < e1; ++e) {  // the stable sort's order: increasing entry index
      const int64_t src = order[e];
      acc += gw[src] * to_f(f1[(src / epq) * D + d]);
    }
    g2[u * D + d] = acc * scale;
  }
}

__global__ void __launch_bounds__(kEW) unpool_add_kernel(float* __restrict__ gf, const float* __restrict__ gc,
                                                         int64_t B, int64_t hf, int64_t wf, int64_t hc, int64_t wc,
                                                         int64_t D) {
  const int64_t total = B * 2 * hc * 2 * wc * D;
  for (int64_t i = int64_t(blockIdx.x) * kEW + threadIdx.x; i < total; i += int64_t(gridDim.x) * kEW) {
    const int64_t d = i % D;
    int64_t rest = i / D;
    const int64_t x = rest % (2 * wc);
    rest /= 2 * wc;
    const int64_t y = rest % (2 * hc);
    const int64_t b = rest / (2 * hc);
    gf[((b * hf + y) * wf + x) * D + d] += 0.25f * gc[((b * hc + y / 2) * wc + x / 2) * D + d];
  }
}

// ---- local_corr ------------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kEW)
    local_fwd_kernel(const T* __restrict__ f1, const T* __restrict__ f2, T* __restrict__ out, int64_t B, int64_t D,
                     int64_t H, int64_t W, int64_t Ho, int64_t Wo, int dm, int stride, int dil, float scale) {
  const int64_t o = int64_t(blockIdx.x) * kEW + threadIdx.x;
  if (o >= Ho * Wo) return;
  const int K = (2 * dm + 1) * (2 * dm + 1);
  const int64_t i = o / Wo, j = o - (o / Wo) * Wo;
  const int64_t y1 = i * stride, x1 = j * stride, HW = H * W;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    const T* a = f1 + b * D * HW + y1 * W + x1;
    for (int c = blockIdx.y; c < K; c += gridDim.y) {
      int dx, dy;
      local_offset(c, dm, dx, dy);
      const int64_t y2 = y1 + int64_t(dy) * dil, x2 = x1 + int64_t(dx) * dil;
      float acc = 0.f;
      if (inside(y2, H) && inside(x2, W)) {
        const T* q = f2 + b * D * HW + y2 * W + x2;
        for (int64_t d = 0; d < D; ++d) acc += to_f(a[d * HW]) * to_f(q[d * HW]);
      }
      out[(b * K + c) * Ho * Wo + o] = from_f<T>(acc * scale);
    }
  }
}

// MODE 0: grad fmap1 at p: sum_c g[c, o(p)] f2(p + off_c) (p on the stride grid, else 0).
// MODE 1: grad fmap2 at q: sum_c g[c, o(q - off_c)] f1(q - off_c) over sources on the stride grid.
template <int MODE, typename T>
__global__ void __launch_bounds__(kEW)
    local_bwd_kernel(const float* __restrict__ g, const T* __restrict__ other, T* __restrict__ out, int64_t B,
                     int64_t D, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int dm, int stride, int dil,
                     float scale) {
  const int64_t p = int64_t(blockIdx.x) * kEW + threadIdx.x;
  const int64_t HW = H * W;
  if (p >= HW) return;
  const int K = (2 * dm + 1) * (2 * dm + 1);
  const int64_t y = p / W, x = p - (p / W) * W;
  for (int64_t z = blockIdx.y; z < B * D; z += gridDim.y) {
    const int64_t b = z / D, d = z - b * D;
    const float* gb = g + b * K * Ho * Wo;
    const T* ob = other + (b * D + d) * HW;
    float acc = 0.f;
    if (MODE == 0) {
      if (y % stride == 0 && x % stride == 0) {
        const int64_t o = (y / stride) * Wo + x / stride;
        for (int c = 0; c < K; ++c) {
          int dx, dy;
          local_offset(c, dm, dx, dy);
          const int64_t y2 = y + int64_t(dy) * dil, x2 = x + int64_t(dx) * dil;
          if (inside(y2, H) && inside(x2, W)) acc += gb[int64_t(c) * Ho * Wo + o] * to_f(ob[y2 * W + x2]);
        }
      }
    } else {
      for (int c = 0; c < K; ++c) {
        int dx, dy;
        local_offset(c, dm, dx, dy);
        const int64_t y1 = y - int64_t(dy) * dil, x1 = x - int64_t(dx) * dil;
        if (inside(y1, H) && inside(x1, W) && y1 % stride == 0 && x1 % stride == 0)
          acc += gb[int64_t(c) * Ho * Wo + (y1 / stride) * Wo + x1 / stride] * to_f(ob[y1 * W + x1]);
      }
    }
    out[(b * D + d) * HW + p] = from_f<T>(acc * scale);
  }
}

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
// ---- dtype dispatch ----------------------------------------------------------------------------------
template <typename F>
cudaError_t dispatch(int dtype, F&& f) {
  switch (dtype) {
    case HMORE_F32:
      return f(float{});
    case HMORE_F16:
      return f(__half{});
    case HMORE_BF16:
      return f(__nv_bfloat16{});
    default:
      return cudaErrorInvalidValue;
  }
}

int otf_smem_per_warp(int r, int nl) { return (2 * r + 2) * (2 * r + 2) * (nl + 1) * int(sizeof(float)); }

#endif  // __CUDACC_RTC__
}  // namespace

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
extern "C" {

cudaError_t hmore_corr_lookup_forward_cuda(const void* const* levels, const int* h, const int* w, int l0, int nl,
                                           int ltot, const float* coords, float* out, int64_t B, int64_t H1,
                                           int64_t W1, int radius, int layout, int dtype, cudaStream_t stream) {
  const int64_t NQ = B * H1 * W1;
  if (NQ == 0 || nl == 0) return cudaSuccess;
  if (nl < 0 || nl > kMaxLevels || radius < 0) return cudaErrorInvalidValue;
  Levels lv{};
  for (int l = 0; l < nl; ++l) {
    lv.p[l] = levels[l];
    lv.h[l] = h[l];
    lv.w[l] = w[l];
  }
  const int64_t blocks = (NQ + kQX - 1) / kQX;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    lookup_fwd_kernel<T><<<unsigned(blocks), dim3(kQX, kTY), 0, stream>>>(lv, l0, nl, ltot, coords, out, NQ,
                                                                          H1 * W1, radius, layout);
    return cudaGetLastError();
  });
}

cudaError_t hmore_corr_lookup_backward_cuda(const void* const* levels, void* const* glevels, const int* h,
                                            const int* w, int l0, int nl, int ltot, const float* grad,
                                            const float* coords, float* gcoords, int accumulate, int64_t B,
                                            int64_t H1, int64_t W1, int radius, int layout, int dtype,
                                            cudaStream_t stream) {
  const int64_t NQ = B * H1 * W1;
  if (NQ == 0 || nl == 0) return cudaSuccess;
  if (nl < 0 || nl > kMaxLevels || radius < 0) return cudaErrorInvalidValue;
  Levels lv{};
  for (int l = 0; l < nl; ++l) {
    lv.p[l] = levels[l];
    lv.g[l] = glevels[l];
    lv.h[l] = h[l];
    lv.w[l] = w[l];
  }
  const int64_t blocks = (NQ + kQX - 1) / kQX;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    lookup_bwd_kernel<T><<<unsigned(blocks), dim3(kQX, kTY), 0, stream>>>(lv, l0, nl, ltot, grad, coords, gcoords,
                                                                          accumulate, NQ, H1 * W1, radius, layout);
    return cudaGetLastError();
  });
}

int hmore_corr_otf_supported(int radius, int num_levels) {
  // the backward keeps one window and the window gradients of every level per warp in shared memory
  return radius >= 0 && radius <= 64 && num_levels >= 1 && num_levels <= kMaxLevels &&
         otf_smem_per_warp(radius, num_levels) * kOtfWarps <= kOtfSmemLimit;
}

cudaError_t hmore_corr_otf_forward_cuda(const void* f1, const void* f2, const int64_t* off, const int* h,
                                        const int* w, int num_levels, const float* coords, float* out, int64_t B,
                                        int64_t H1, int64_t W1, int64_t D, int radius, int layout, float scale,
                                        int dtype, cudaStream_t stream) {
  const int64_t NQ = B * H1 * W1;
  if (NQ == 0) return cudaSuccess;
  if (!hmore_corr_otf_supported(radius, num_levels)) return cudaErrorInvalidValue;
  OtfLevels lv{};
  for (int l = 0; l < num_levels; ++l) {
    lv.off[l] = off[l];
    lv.h[l] = h[l];
    lv.w[l] = w[l];
  }
  const int S = 2 * radius + 2;
  const int64_t blocks = (NQ + kOtfWarps - 1) / kOtfWarps;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    otf_fwd_kernel<T><<<unsigned(blocks), dim3(32, kOtfWarps), size_t(S * S * 4 * kOtfWarps), stream>>>(
        lv, num_levels, static_cast<const T*>(f1), static_cast<const T*>(f2), coords, out, NQ, H1 * W1, D, radius,
        layout, scale);
    return cudaGetLastError();
  });
}

cudaError_t hmore_corr_otf_backward_cuda(const void* f1, const void* f2, const int64_t* off, const int* h,
                                         const int* w, const int64_t* tstart, int64_t total, int num_levels,
                                         const float* grad, const float* coords, float* gcoords, float* gf1,
                                         float* g2, float* gw, int64_t* keys, int deterministic, int64_t B,
                                         int64_t H1, int64_t W1, int64_t D, int radius, int layout, float scale,
                                         int dtype, cudaStream_t stream) {
  const int64_t NQ = B * H1 * W1;
  if (NQ == 0) return cudaSuccess;
  if (!hmore_corr_otf_supported(radius, num_levels)) return cudaErrorInvalidValue;
  if (deterministic && (gw == nullptr || keys == nullptr)) return cudaErrorInvalidValue;
  OtfLevels lv{};
  for (int l = 0; l < num_levels; ++l) {
    lv.off[l] = off[l];
    lv.tstart[l] = tstart[l];
    lv.h[l] = h[l];
    lv.w[l] = w[l];
  }
  const size_t smem = size_t(otf_smem_per_warp(radius, num_levels)) * kOtfWarps;
  if (smem > size_t(kOtfSmemLimit)) return cudaErrorInvalidValue;
  const int64_t blocks = (NQ + kOtfWarps - 1) / kOtfWarps;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    otf_bwd_kernel<T><<<unsigned(blocks), dim3(32, kOtfWarps), smem, stream>>>(
        lv, num_levels, total, static_cast<const T*>(f1), static_cast<const T*>(f2), grad, coords, gcoords, gf1, g2,
        gw, keys, deterministic, NQ, H1 * W1, D, radius, layout, scale);
    return cudaGetLastError();
  });
}

cudaError_t hmore_corr_otf_scatter_cuda(const int64_t* order, const int64_t* start, const float* gw,
                                        const void* f1, float* g2, int64_t total, int64_t D,
                                        int64_t entries_per_query, float scale, int dtype, cudaStream_t stream) {
  if (total == 0 || D == 0) return cudaSuccess;
  const int64_t blocks = (total + kOtfWarps - 1) / kOtfWarps;
  if (blocks > 0x7fffffff || entries_per_query <= 0) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    otf_scatter_kernel<T><<<unsigned(blocks), dim3(32, kOtfWarps), 0, stream>>>(
        order, start, gw, static_cast<const T*>(f1), g2, total, D, entries_per_query, scale);
    return cudaGetLastError();
  });
}

cudaError_t hmore_corr_unpool_add_cuda(float* g_fine, const float* g_coarse, int64_t B, int64_t hf, int64_t wf,
                                       int64_t hc, int64_t wc, int64_t D, cudaStream_t stream) {
  const int64_t total = B * 2 * hc * 2 * wc * D;
  if (total == 0) return cudaSuccess;
  if (2 * hc > hf || 2 * wc > wf) return cudaErrorInvalidValue;
  int64_t blocks = (total + kEW - 1) / kEW;
  if (blocks > 1048576) blocks = 1048576;  // grid-stride beyond
  unpool_add_kernel<<<unsigned(blocks), kEW, 0, stream>>>(g_fine, g_coarse, B, hf, wf, hc, wc, D);
  return cudaGetLastError();
}

cudaError_t hmore_local_corr_forward_cuda(const void* f1, const void* f2, void* out, int64_t B, int64_t D,
                                          int64_t H, int64_t W, int max_displacement, int stride, int dilation,
                                          float scale, int dtype, cudaStream_t stream) {
  const int64_t Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
  const int64_t K = int64_t(2 * max_displacement + 1) * (2 * max_displacement + 1);
  if (B == 0 || Ho * Wo == 0) return cudaSuccess;
  const int64_t bx = (Ho * Wo + kEW - 1) / kEW;
  if (bx > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(bx), grid_yz(K), grid_yz(B));
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    local_fwd_kernel<T><<<grid, kEW, 0, stream>>>(static_cast<const T*>(f1), static_cast<const T*>(f2),
                                                  static_cast<T*>(out), B, D, H, W, Ho, Wo, max_displacement, stride,
                                                  dilation, scale);
    return cudaGetLastError();
  });
}

cudaError_t hmore_local_corr_backward_cuda(const float* grad, const void* f1, const void* f2, void* g1, void* g2,
                                           int64_t B, int64_t D, int64_t H, int64_t W, int max_displacement,
                                           int stride, int dilation, float scale, int dtype, cudaStream_t stream) {
  const int64_t Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
  if (B == 0 || D == 0 || H * W == 0) return cudaSuccess;
  const int64_t bx = (H * W + kEW - 1) / kEW;
  if (bx > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(bx), grid_yz(B * D));
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    local_bwd_kernel<0, T><<<grid, kEW, 0, stream>>>(grad, static_cast<const T*>(f2), static_cast<T*>(g1), B, D, H,
                                                     W, Ho, Wo, max_displacement, stride, dilation, scale);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    local_bwd_kernel<1, T><<<grid, kEW, 0, stream>>>(grad, static_cast<const T*>(f1), static_cast<T*>(g2), B, D, H,
                                                     W, Ho, Wo, max_displacement, stride, dilation, scale);
    return cudaGetLastError();
  });
}

}  // extern "C"
#endif  // __CUDACC_RTC__
