// CUDA kernels of sobel, gradient_magnitude, mask_boundary and flow_edges (forward and backward).
// Plain CUDA C++ (no torch headers): nvcc compile-checks it without a GPU, and the per-element math
// comes from edges_kernels.cuh, shared with the CPU kernels.
//
// Layout: stencil kernels use 32x8 thread blocks over (x, y), so a warp reads 32 consecutive pixels of
// a row (coalesced); the tiles of a plane are numbered along grid x (any H * W < 2^31 fits), with grid
// z over planes (grid-stride past 65535). Each block stages its tile plus
// a one-pixel halo (two for the fused gradient_magnitude backward) in shared memory, with the border
// map applied while loading. Morphology is separable (a row pass and a column pass, one thread per
// pixel), so its cost is O(width) per pixel instead of O(width^2).
//
// Determinism: every backward is a gather (each output element is written by one thread, in a fixed
// summation order). flow_edges' per-image max uses atomicMax on the float bits (exact, order-free); its
// tie count uses integer atomics (exact); its per-image dot product (accumulated in double, like the
// CPU kernel: a sum over the whole image feeding the tie correction) is reduced from per-block partial
// sums by one block per image in a fixed order. No floating-point atomics anywhere.
//
// dtypes: float32, float64, float16, bfloat16; arithmetic in float (double for float64). Conversions
// use the intrinsics, because torch builds with __CUDA_NO_HALF_CONVERSIONS__.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "edges/edges_cuda.h"
#include "edges/edges_kernels.cuh"
#include "hd.h"

namespace {

using namespace hmore::edges;

constexpr int TX = 32;
constexpr int TY = 8;
constexpr int NT = TX * TY;
constexpr int EW_THREADS = 256;  // elementwise kernels

__device__ __forceinline__ float acc_of(float v) { return v; }
__device__ __forceinline__ double acc_of(double v) { return v; }
__device__ __forceinline__ float acc_of(__half v) { return __half2float(v); }
__device__ __forceinline__ float acc_of(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float acc_of(uint8_t v) { return v ? 1.f : 0.f; }

template <typename T>
struct Cvt;
template <>
struct Cvt<float> {
  static __device__ __forceinline__ float to(float v) { return v; }
};
template <>
struct Cvt<double> {
  static __device__ __forceinline__ double to(double v) { return v; }
};
template <>
struct Cvt<__half> {
  static __device__ __forceinline__ __half to(float v) { return __float2half_rn(v); }
};
template <>
struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 to(float v) { return __float2bfloat16_rn(v); }
};
template <>
struct Cvt<uint8_t> {  // bool masks: the boundary is true where it is > 0
  static __device__ __forceinline__ uint8_t to(float v) { return v > 0.f ? 1 : 0; }
};

// Round through the storage type (identity for float/double): keeps half results on the same grid
// as the reference's half arithmetic between steps.
template <typename T, typename A>
__device__ __forceinline__ A round_as(A v) {
  return acc_of(Cvt<T>::to(v));
}

// Tile of (TY + 2*HALO) x (TX + 2*HALO) starting at (i0 - HALO, j0 - HALO), border-mapped.
// HALO = 2 is only used with the replicate border (clamping is valid at any distance); for HALO = 1
// the map is asked only for -1..n, and tile cells further out (past the image's far edge) are unused.
template <int HALO, typename T, typename A>
__device__ __forceinline__ void load_tile(A* tile, const T* __restrict__ plane, int H, int W, int i0, int j0,
                                          int border) {
  constexpr int PW = TX + 2 * HALO, PH = TY + 2 * HALO;
#pragma unroll 1
  for (int k = threadIdx.y * TX + threadIdx.x; k < PW * PH; k += NT) {
    const int a = i0 - HALO + k / PW, b = j0 - HALO + k % PW;
    int si, sj;
    if (border == kReplicate) {
      si = clampi(a, 0, H - 1);
      sj = clampi(b, 0, W - 1);
    } else {
      si = (a >= -1 && a <= H) ? map_border(a, H, border) : -1;
      sj = (b >= -1 && b <= W) ? map_border(b, W, border) : -1;
    }
    tile[k] = (si >= 0 && sj >= 0) ? A(acc_of(plane[int64_t(si) * W + sj])) : A(0);
  }
}

// Origin (i0, j0) of this block's tile. The tiles of a plane are numbered row-major along gridDim.x
// alone (see tile_grid): with y tiles on gridDim.y, an image taller than 8 * 65535 rows (valid: only
// H * W < 2^31 is required) could not be launched at all. One integer division per block.
__device__ __forceinline__ void tile_origin(int W, int& i0, int& j0) {
  const int tiles_x = int((int64_t(W) + TX - 1) / TX);
  const int ty = int(blockIdx.x) / tiles_x;
  i0 = ty * TY;
  j0 = (int(blockIdx.x) - ty * tiles_x) * TX;
}

template <int PW, typename A>
__device__ __forceinline__ void gather3x3(const A* tile, int r0, int c0, A v[3][3]) {
#pragma unroll
  for (int r = 0; r < 3; ++r)
#pragma unroll
    for (int c = 0; c < 3; ++c) v[r][c] = tile[(r0 + r) * PW + c0 + c];
}

// Block-wide reduction of a 32x8 block; the result is valid in thread 0. Fixed shuffle/tree pattern,
// so the sum is deterministic. Ends with a barrier so `red` and the tiles can be reused.
template <bool MAX, typename A>
__device__ __forceinline__ A block_reduce(A v, A* red) {
  const int tid = threadIdx.y * TX + threadIdx.x;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A u = __shfl_down_sync(0xffffffffu, v, o);
    v = MAX ? nan_max(v, u) : v + u;
  }
  if ((tid & 31) == 0) red[tid >> 5] = v;
  __syncthreads();
  if (tid < 32) {
    v = tid < NT / 32 ? red[tid] : A(0);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const A u = __shfl_down_sync(0xffffffffu, v, o);
      v = MAX ? nan_max(v, u) : v + u;
    }
  }
  __syncthreads();
  return v;
}

// Non-negative IEEE floats order like their bit patterns read as unsigned integers.
__device__ __forceinline__ void atomic_max_nonneg(float* a, float v) {
  atomicMax(reinterpret_cast<unsigned int*>(a), __float_as_uint(v));
}
__device__ __forceinline__ void atomic_max_nonneg(double* a, double v) {
  atomicMax(reinterpret_cast<unsigned long long*>(a), static_cast<unsigned long long>(__double_as_longlong(v)));
}

// ---- sobel --------------------------------------------------------------------------------------
// out[n, 0] = gx, out[n, 1] = gy of plane n (edges_kernels.cuh gives the separable formula).
template <typename T, typename A>
__global__ void __launch_bounds__(NT) sobel_forward_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t N,
                                                           int H, int W, int border, A so, A sc, A inv) {
  constexpr int PW = TX + 2;
  __shared__ A tile[(TY + 2) * PW];
  int i0, j0;
  tile_origin(W, i0, j0);
  const int i = i0 + threadIdx.y, j = j0 + threadIdx.x;
  const int64_t HW = int64_t(H) * W;
  for (int64_t n = blockIdx.z; n < N; n += gridDim.z) {
    load_tile<1>(tile, x + n * HW, H, W, i0, j0, border);
    __syncthreads();
    if (i < H && j < W) {
      A v[3][3], gx, gy;
      gather3x3<PW>(tile, threadIdx.y, threadIdx.x, v);
      deriv3x3(v, so, sc, inv, gx, gy);
      T* o = out + n * 2 * HW + int64_t(i) * W + j;
      o[0] = Cvt<T>::to(gx);
      o[HW] = Cvt<T>::to(gy);
    }
    __syncthreads();
  }
}

// Adjoint: xbar(p) = sum over the 3x3 neighbourhood of the incoming gradients times the folded taps of
// edges_kernels.cuh::adjoint_taps (the plain flipped taps away from the border). Gather form: one
// thread per input pixel, no atomics. G is [N, 2, H, W] of type TG (T, or the float workspace of
// flow_edges' backward).
template <typename TG, typename T, typename A>
__global__ void __launch_bounds__(NT) sobel_backward_kernel(const TG* __restrict__ g, T* __restrict__ out, int64_t N,
                                                            int H, int W, int border, A so, A sc, A inv) {
  constexpr int PW = TX + 2;
  __shared__ A tx[(TY + 2) * PW], ty[(TY + 2) * PW];
  int i0, j0;
  tile_origin(W, i0, j0);
  const int i = i0 + threadIdx.y, j = j0 + threadIdx.x;
  const int64_t HW = int64_t(H) * W;
  for (int64_t n = blockIdx.z; n < N; n += gridDim.z) {
    // zeros outside the image: those gradients do not exist (their coefficients are 0 anyway)
    load_tile<1>(tx, g + n * 2 * HW, H, W, i0, j0, kZeros);
    load_tile<1>(ty, g + n * 2 * HW + HW, H, W, i0, j0, kZeros);
    __syncthreads();
    if (i < H && j < W) {
      A csr[3], cdr[3], csc[3], cdc[3], vx[3][3], vy[3][3];
      adjoint_taps(i, H, border, so, sc, csr, cdr);
      adjoint_taps(j, W, border, so, sc, csc, cdc);
      gather3x3<PW>(tx, threadIdx.y, threadIdx.x, vx);
      gather3x3<PW>(ty, threadIdx.y, threadIdx.x, vy);
      out[n * HW + int64_t(i) * W + j] = Cvt<T>::to(adjoint3x3(vx, vy, csr, cdr, csc, cdc, inv));
    }
    __syncthreads();
  }
}

// ---- gradient_magnitude ---------------------------------------------------------------------------
// m = sqrt(sum gx^2 + gy^2 + eps) over the C channels of image z (reduce_sum) or over plane z alone.
template <typename T, typename A>
__global__ void __launch_bounds__(NT)
    gradmag_forward_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t P, int64_t C, int H, int W,
                           bool reduce_sum, A so, A sc, A inv, A eps) {
  constexpr int PW = TX + 2;
  __shared__ A tile[(TY + 2) * PW];
  int i0, j0;
  tile_origin(W, i0, j0);
  const int i = i0 + threadIdx.y, j = j0 + threadIdx.x;
  const bool inb = i < H && j < W;
  const int64_t HW = int64_t(H) * W;
  const int64_t nc = reduce_sum ? C : 1;
  for (int64_t z = blockIdx.z; z < P; z += gridDim.z) {
    A acc = A(0);
    for (int64_t c = 0; c < nc; ++c) {
      load_tile<1>(tile, x + (z * nc + c) * HW, H, W, i0, j0, kReplicate);
      __syncthreads();
      if (inb) {
        A v[3][3], gx, gy;
        gather3x3<PW>(tile, threadIdx.y, threadIdx.x, v);
        deriv3x3(v, so, sc, inv, gx, gy);
        acc += gx * gx + gy * gy;
      }
      __syncthreads();
    }
    if (inb) out[z * HW + int64_t(i) * W + j] = Cvt<T>::to(safe_sqrt(acc + eps));
  }
}

// Fused backward of one plane: the tile with a 2-pixel halo gives gx, gy on the tile plus a 1-pixel
// halo, scaled there by grad / mag (shared memory), and the adjoint gathers from those. Nothing of the
// forward is stored.
template <typename T, typename A>
__global__ void __launch_bounds__(NT)
    gradmag_backward_kernel(const T* __restrict__ grad, const T* __restrict__ x, const T* __restrict__ mag,
                            T* __restrict__ out, int64_t B, int64_t C, int H, int W, bool reduce_sum, A so, A sc,
                            A inv) {
  constexpr int XW = TX + 4, GW = TX + 2;
  __shared__ A xt[(TY + 4) * XW];
  __shared__ A gbx[(TY + 2) * GW], gby[(TY + 2) * GW];
  int i0, j0;
  tile_origin(W, i0, j0);
  const int i = i0 + threadIdx.y, j = j0 + threadIdx.x;
  const int tid = threadIdx.y * TX + threadIdx.x;
  const int64_t HW = int64_t(H) * W;
  for (int64_t z = blockIdx.z; z < B * C; z += gridDim.z) {
    const int64_t gplane = reduce_sum ? z / C : z;
    load_tile<2>(xt, x + z * HW, H, W, i0, j0, kReplicate);
    __syncthreads();
    for (int k = tid; k < (TY + 2) * GW; k += NT) {
      const int r = k / GW, c = k % GW;
      const int qi = i0 - 1 + r, qj = j0 - 1 + c;
      A bx = A(0), by = A(0);
      if (qi >= 0 && qi < H && qj >= 0 && qj < W) {
        A v[3][3], gx, gy;
        gather3x3<XW>(xt, r, c, v);
        deriv3x3(v, so, sc, inv, gx, gy);
        const int64_t q = gplane * HW + int64_t(qi) * W + qj;
        const A f = mag_grad_factor(A(acc_of(grad[q])), A(acc_of(mag[q])));
        bx = f * gx;
        by = f * gy;
      }
      gbx[k] = bx;
      gby[k] = by;
    }
    __syncthreads();
    if (i < H && j < W) {
      A csr[3], cdr[3], csc[3], cdc[3], vx[3][3], vy[3][3];
      adjoint_taps(i, H, kReplicate, so, sc, csr, cdr);
      adjoint_taps(j, W, kReplicate, so, sc, csc, cdc);
      gather3x3<GW>(gbx, threadIdx.y, threadIdx.x, vx);
      gather3x3<GW>(gby, threadIdx.y, threadIdx.x, vy);
      out[z * HW + int64_t(i) * W + j] = Cvt<T>::to(adjoint3x3(vx, vy, csr, cdr, csc, cdc, inv));
    }
    __syncthreads();
  }
}

// ---- mask_boundary --------------------------------------------------------------------------------
// Row pass: extremum (and its first source column) over clamp(j - w .. j + w). One thread per pixel,
// consecutive threads on consecutive columns.
template <typename T, typename A>
__global__ void morph_rows_kernel(const T* __restrict__ m, A* __restrict__ hval, int32_t* __restrict__ hcol,
                                  int64_t total, int W, int w, bool want_max) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int j = int(idx % W);
    const T* row = m + (idx - j);
    int c;
    const A v = hscan<A>([row](int k) { return A(acc_of(row[k])); }, j, W, w, want_max, c);
    hval[idx] = v;
    if (hcol) hcol[idx] = c;
  }
}

// Column pass of the forward: erode/dilate from the row extrema, then the boundary.
template <typename T, typename A>
__global__ void boundary_forward_kernel(const T* __restrict__ m, const A* __restrict__ hmin,
                                        const A* __restrict__ hmax, T* __restrict__ out, int64_t total, int H, int W,
                                        int w, int mode) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / W;
    const int j = int(idx - r * W);
    const int i = int(r % H);
    const int64_t base = (r - i) * W + j;  // column j of row 0 of this image
    const int lo = i - w < 0 ? 0 : i - w, hi = i + w > H - 1 ? H - 1 : i + w;
    A ero = A(0), dil = A(0);
    if (hmin) {
      ero = hmin[base + int64_t(lo) * W];
      for (int k = lo + 1; k <= hi; ++k) {
        const A v = hmin[base + int64_t(k) * W];
        ero = v < ero ? v : ero;
      }
    }
    if (hmax) {
      dil = hmax[base + int64_t(lo) * W];
      for (int k = lo + 1; k <= hi; ++k) {
        const A v = hmax[base + int64_t(k) * W];
        dil = v > dil ? v : dil;
      }
    }
    out[idx] = Cvt<T>::to(boundary_value(mode, A(acc_of(m[idx])), ero, dil));
  }
}

// Column pass of the backward: the first row (in increasing order) whose row extremum is strictly
// better gives the lexicographically first extremal pixel of the window (torch max_pool2d's rule).
template <typename A>
__global__ void morph_args_kernel(const A* __restrict__ hval, const int32_t* __restrict__ hcol,
                                  int32_t* __restrict__ arg, int64_t total, int H, int W, int w, bool want_max) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / W;
    const int j = int(idx - r * W);
    const int i = int(r % H);
    const int64_t base = (r - i) * W + j;
    const int lo = i - w < 0 ? 0 : i - w, hi = i + w > H - 1 ? H - 1 : i + w;
    A best = hval[base + int64_t(lo) * W];
    int br = lo;
    for (int k = lo + 1; k <= hi; ++k) {
      const A v = hval[base + int64_t(k) * W];
      if (better(v, best, want_max)) {
        best = v;
        br = k;
      }
    }
    arg[idx] = int32_t(br * W + hcol[base + int64_t(br) * W]);
  }
}

// Gather: p sums the gradients of the outputs q in its window whose arg-extremum is p.
template <typename T, typename A>
__global__ void boundary_backward_kernel(const T* __restrict__ g, const int32_t* __restrict__ aero,
                                         const int32_t* __restrict__ adil, T* __restrict__ out, int64_t total, int H,
                                         int W, int w, int mode) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / W;
    const int j = int(idx - r * W);
    const int i = int(r % H);
    const int64_t img = (r - i) * W;
    const int32_t self = int32_t(i * W + j);
    const int lo = i - w < 0 ? 0 : i - w, hi = i + w > H - 1 ? H - 1 : i + w;
    const int clo = j - w < 0 ? 0 : j - w, chi = j + w > W - 1 ? W - 1 : j + w;
    A acc = boundary_self_grad(mode, A(acc_of(g[idx])));
    for (int k = lo; k <= hi; ++k)
      for (int c = clo; c <= chi; ++c) {
        const int64_t q = img + int64_t(k) * W + c;
        if (adil && adil[q] == self) acc += A(acc_of(g[q]));
        if (aero && aero[q] == self) acc -= A(acc_of(g[q]));
      }
    out[idx] = Cvt<T>::to(acc);
  }
}

// ---- flow_edges ---------------------------------------------------------------------------------------
// One pass over the flow: both channels' Sobel, the magnitude and the per-image max (block reduction,
// then one atomicMax per block). Forward (BWD = false) writes m to out; backward keeps m and the four
// derivatives in float workspaces and writes each block's partial sum of grad * band * m (in double).
template <bool BWD, typename T, typename A>
__global__ void __launch_bounds__(NT)
    flow_mag_kernel(const T* __restrict__ flow, const T* __restrict__ grad, const T* __restrict__ band,
                    T* __restrict__ out, A* __restrict__ mt, A* __restrict__ G, A* __restrict__ Mbuf,
                    double* __restrict__ partial, int64_t B, int H, int W, A so, A sc, A inv) {
  constexpr int PW = TX + 2;
  __shared__ A t0[(TY + 2) * PW], t1[(TY + 2) * PW];
  __shared__ A red[NT / 32];
  __shared__ double dred[NT / 32];
  int i0, j0;
  tile_origin(W, i0, j0);
  const int i = i0 + threadIdx.y, j = j0 + threadIdx.x;
  const int64_t HW = int64_t(H) * W;
  const int64_t nblk = gridDim.x;  // tiles per image (tile_grid)
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    load_tile<1>(t0, flow + b * 2 * HW, H, W, i0, j0, kReplicate);
    load_tile<1>(t1, flow + b * 2 * HW + HW, H, W, i0, j0, kReplicate);
    __syncthreads();
    A m = A(0);
    double dot = 0.0;
    if (i < H && j < W) {
      A v[3][3], gx0, gy0, gx1, gy1;
      gather3x3<PW>(t0, threadIdx.y, threadIdx.x, v);
      deriv3x3(v, so, sc, inv, gx0, gy0);
      gather3x3<PW>(t1, threadIdx.y, threadIdx.x, v);
      deriv3x3(v, so, sc, inv, gx1, gy1);
      m = safe_sqrt(gx0 * gx0 + gy0 * gy0 + gx1 * gx1 + gy1 * gy1);
      const int64_t p = b * HW + int64_t(i) * W + j;
      if (!BWD) {
        out[p] = Cvt<T>::to(m);
      } else {
        const int64_t pg = b * 4 * HW + int64_t(i) * W + j;
        mt[p] = m;
        G[pg] = gx0;
        G[pg + HW] = gy0;
        G[pg + 2 * HW] = gx1;
        G[pg + 3 * HW] = gy1;
        // the CPU kernel's rounding: grad * band in the working type, the product with m in double
        dot = double(A(acc_of(grad[p])) * (band ? A(acc_of(band[p])) : A(1))) * double(m);
      }
    }
    const A bm = block_reduce<true>(m, red);
    if (threadIdx.x == 0 && threadIdx.y == 0) atomic_max_nonneg(Mbuf + b, bm);
    if (BWD) {
      const double bs = block_reduce<false>(dot, dred);
      if (threadIdx.x == 0 && threadIdx.y == 0) partial[b * nblk + blockIdx.x] = bs;
    }
  }
}

// Light second pass over m: (m / max) * band, rounding through the storage type between the steps
// like the reference does.
template <typename T, typename A>
__global__ void flow_scale_kernel(T* __restrict__ out, const T* __restrict__ band, const A* __restrict__ Mbuf,
                                  int64_t total, int64_t HW, bool normalize) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    A v = A(acc_of(out[idx]));
    if (normalize) {
      const A M = round_as<T>(Mbuf[idx / HW]);
      v = normalizes(M) ? round_as<T>(v / M) : A(0);
    }
    if (band) v = v * A(acc_of(band[idx]));
    out[idx] = Cvt<T>::to(v);
  }
}

// One block per image: the per-block partial sums in a fixed order (deterministic).
template <typename A>
__global__ void __launch_bounds__(NT) flow_dot_kernel(const double* __restrict__ partial, A* __restrict__ dot,
                                                      int64_t nblk) {
  __shared__ double red[NT / 32];
  const int tid = threadIdx.y * TX + threadIdx.x;
  double s = 0.0;
  for (int64_t k = tid; k < nblk; k += NT) s += partial[blockIdx.x * nblk + k];
  s = block_reduce<false>(s, red);
  if (tid == 0) dot[blockIdx.x] = A(s);  // rounded once, like the CPU's T(dot)
}

// How many pixels reach the image's max (torch's amax backward splits evenly among ties).
template <typename A>
__global__ void flow_count_kernel(const A* __restrict__ mt, const A* __restrict__ Mbuf, unsigned int* __restrict__ cnt,
                                  int64_t total, int64_t HW) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = idx / HW;
    const A M = Mbuf[b];
    if (M > A(0) && mt[idx] == M) atomicAdd(cnt + b, 1u);
  }
}

// d out / d m (edges_kernels.cuh::flow_edges_mbar), then through the magnitude onto the four
// derivatives, in place in G ([B, 2, 2, H, W], the layout the Sobel adjoint reads).
template <typename T, typename A>
__global__ void flow_grad_kernel(const T* __restrict__ grad, const T* __restrict__ band, const A* __restrict__ mt,
                                 const A* __restrict__ Mbuf, const A* __restrict__ dot,
                                 const unsigned int* __restrict__ cnt, A* __restrict__ G, int64_t total, int64_t HW,
                                 bool normalize) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = idx / HW, p = idx - b * HW;
    const A m = mt[idx];
    const A count = A(cnt[b] > 0 ? cnt[b] : 1u);
    const A mb = flow_edges_mbar(A(acc_of(grad[idx])), band ? A(acc_of(band[idx])) : A(1), m, normalize, Mbuf[b],
                                 dot[b], count);
    const A f = mag_grad_factor(mb, m);
    A* g = G + b * 4 * HW + p;
    g[0] *= f;
    g[HW] *= f;
    g[2 * HW] *= f;
    g[3 * HW] *= f;
  }
}

// ---- launch helpers ---------------------------------------------------------------------------------
#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
template <typename F>
cudaError_t dispatch_float(int dtype, F&& f) {
  switch (dtype) {
    case HMORE_F32:
      return f(float{}, float{});
    case HMORE_F64:
      return f(double{}, double{});
    case HMORE_F16:
      return f(__half{}, float{});
    case HMORE_BF16:
      return f(__nv_bfloat16{}, float{});
    default:
      return cudaErrorInvalidValue;
  }
}

// Tiles of one plane, all on grid x (tile_origin), planes on grid z (grid-stride past 65535).
int64_t tiles_per_plane(int H, int W) { return ((int64_t(W) + TX - 1) / TX) * ((int64_t(H) + TY - 1) / TY); }

bool tile_grid(int64_t planes, int H, int W, dim3& grid) {
  const int64_t nt = tiles_per_plane(H, W);
  if (nt > 2147483647) return false;  // cannot happen while H * W < 2^31
  grid = dim3(unsigned(nt), 1u, unsigned(planes < 65535 ? planes : 65535));
  return true;
}

unsigned ew_blocks(int64_t total) {
  const int64_t b = (total + EW_THREADS - 1) / EW_THREADS;
  return unsigned(b < 65536 ? b : 65536);  // grid-stride beyond
}

size_t align_up(size_t n) { return (n + 255) & ~size_t(255); }

size_t acc_size(int dtype) { return dtype == HMORE_F64 ? sizeof(double) : sizeof(float); }

// Carves consecutive 256-byte-aligned pieces out of a workspace.
struct Carve {
  char* p;
  template <typename U>
  U* take(size_t count) {
    U* r = reinterpret_cast<U*>(p);
    p += align_up(count * sizeof(U));
    return r;
  }
};

template <typename T, typename A>
cudaError_t boundary_impl(const T* m, const T* g, T* out, void* ws, int64_t B, int H, int W, int mode, int w,
                          bool backward, cudaStream_t st) {
  const int64_t total = B * int64_t(H) * W;
  const unsigned nb = ew_blocks(total);
  Carve cv{static_cast<char*>(ws)};
  A* hmin = cv.take<A>(total);
  A* hmax = cv.take<A>(total);
  cudaError_t e;
  if (!backward) {
    if (mode_needs_erode(mode)) {
      morph_rows_kernel<T, A><<<nb, EW_THREADS, 0, st>>>(m, hmin, nullptr, total, W, w, false);
      if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if (mode_needs_dilate(mode)) {
      morph_rows_kernel<T, A><<<nb, EW_THREADS, 0, st>>>(m, hmax, nullptr, total, W, w, true);
      if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    boundary_forward_kernel<T, A><<<nb, EW_THREADS, 0, st>>>(m, mode_needs_erode(mode) ? hmin : nullptr,
                                                             mode_needs_dilate(mode) ? hmax : nullptr, out, total, H,
                                                             W, w, mode);
    return cudaGetLastError();
  }
  int32_t* hcol = cv.take<int32_t>(total);
  int32_t* aero = cv.take<int32_t>(total);
  int32_t* adil = cv.take<int32_t>(total);
  for (int k = 0; k < 2; ++k) {
    const bool want_max = k == 1;
    if (want_max ? !mode_needs_dilate(mode) : !mode_needs_erode(mode)) continue;
    morph_rows_kernel<T, A><<<nb, EW_THREADS, 0, st>>>(m, hmin, hcol, total, W, w, want_max);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    morph_args_kernel<A><<<nb, EW_THREADS, 0, st>>>(hmin, hcol, want_max ? adil : aero, total, H, W, w, want_max);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  boundary_backward_kernel<T, A><<<nb, EW_THREADS, 0, st>>>(g, mode_needs_erode(mode) ? aero : nullptr,
                                                            mode_needs_dilate(mode) ? adil : nullptr, out, total, H,
                                                            W, w, mode);
  return cudaGetLastError();
}

#endif  // __CUDACC_RTC__
}  // namespace

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
extern "C" {

cudaError_t hmore_sobel_forward_cuda(const void* x, void* out, int64_t N, int H, int W, int dtype, int border,
                                     int normalized, cudaStream_t stream) {
  if (N == 0 || H == 0 || W == 0) return cudaSuccess;
  dim3 grid;
  if (!tile_grid(N, H, W, grid)) return cudaErrorInvalidConfiguration;
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    A so, sc, inv;
    deriv_taps(kSobel, normalized != 0, so, sc, inv);
    sobel_forward_kernel<T, A><<<grid, dim3(TX, TY), 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out), N,
                                                                  H, W, border, so, sc, inv);
    return cudaGetLastError();
  });
}

cudaError_t hmore_sobel_backward_cuda(const void* grad, void* out, int64_t N, int H, int W, int dtype, int border,
                                      int normalized, cudaStream_t stream) {
  if (N == 0 || H == 0 || W == 0) return cudaSuccess;
  dim3 grid;
  if (!tile_grid(N, H, W, grid)) return cudaErrorInvalidConfiguration;
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    A so, sc, inv;
    deriv_taps(kSobel, normalized != 0, so, sc, inv);
    sobel_backward_kernel<T, T, A><<<grid, dim3(TX, TY), 0, stream>>>(static_cast<const T*>(grad),
                                                                      static_cast<T*>(out), N, H, W, border, so, sc,
                                                                      inv);
    return cudaGetLastError();
  });
}

cudaError_t hmore_gradient_magnitude_forward_cuda(const void* x, void* out, int64_t B, int64_t C, int H, int W,
                                                  int dtype, int kernel, int reduce_sum, double eps,
                                                  cudaStream_t stream) {
  if (B == 0 || C == 0 || H == 0 || W == 0) return cudaSuccess;
  const int64_t P = reduce_sum ? B : B * C;
  dim3 grid;
  if (!tile_grid(P, H, W, grid)) return cudaErrorInvalidConfiguration;
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    A so, sc, inv;
    deriv_taps(kernel, true, so, sc, inv);
    gradmag_forward_kernel<T, A><<<grid, dim3(TX, TY), 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(out), P, C, H, W, reduce_sum != 0, so, sc, inv, A(eps));
    return cudaGetLastError();
  });
}

cudaError_t hmore_gradient_magnitude_backward_cuda(const void* grad, const void* x, const void* mag, void* out,
                                                   int64_t B, int64_t C, int H, int W, int dtype, int kernel,
                                                   int reduce_sum, cudaStream_t stream) {
  if (B == 0 || C == 0 || H == 0 || W == 0) return cudaSuccess;
  dim3 grid;
  if (!tile_grid(B * C, H, W, grid)) return cudaErrorInvalidConfiguration;
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    A so, sc, inv;
    deriv_taps(kernel, true, so, sc, inv);
    gradmag_backward_kernel<T, A><<<grid, dim3(TX, TY), 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(x), static_cast<const T*>(mag), static_cast<T*>(out), B,
        C, H, W, reduce_sum != 0, so, sc, inv);
    return cudaGetLastError();
  });
}

size_t hmore_mask_boundary_workspace_bytes(int64_t B, int H, int W, int dtype, int backward) {
  const size_t n = size_t(B) * size_t(H) * size_t(W);
  size_t bytes = 2 * align_up(n * acc_size(dtype));
  if (backward) bytes += 3 * align_up(n * sizeof(int32_t));
  return bytes;
}

cudaError_t hmore_mask_boundary_forward_cuda(const void* mask, void* out, void* workspace, int64_t B, int H, int W,
                                             int dtype, int mode, int width, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  if (dtype == HMORE_BOOL)
    return boundary_impl<uint8_t, float>(static_cast<const uint8_t*>(mask), nullptr, static_cast<uint8_t*>(out),
                                         workspace, B, H, W, mode, width, false, stream);
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    return boundary_impl<T, A>(static_cast<const T*>(mask), nullptr, static_cast<T*>(out), workspace, B, H, W, mode,
                               width, false, stream);
  });
}

cudaError_t hmore_mask_boundary_backward_cuda(const void* grad, const void* mask, void* out, void* workspace,
                                              int64_t B, int H, int W, int dtype, int mode, int width,
                                              cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    return boundary_impl<T, A>(static_cast<const T*>(mask), static_cast<const T*>(grad), static_cast<T*>(out),
                               workspace, B, H, W, mode, width, true, stream);
  });
}

size_t hmore_flow_edges_workspace_bytes(int64_t B, int H, int W, int dtype, int backward) {
  const size_t a = acc_size(dtype);
  const size_t n = size_t(B) * size_t(H) * size_t(W);
  const size_t nblk = size_t(tiles_per_plane(H, W));  // flow_mag_kernel's blocks per image
  size_t bytes = align_up(size_t(B) * a);  // per-image max
  if (backward) {
    bytes += align_up(size_t(B) * a);                     // per-image dot
    bytes += align_up(size_t(B) * sizeof(unsigned int));  // tie counts
    bytes += align_up(size_t(B) * nblk * sizeof(double));  // per-block partial dots (double)
    bytes += align_up(n * a) + align_up(4 * n * a);       // m, the four derivatives
  }
  return bytes;
}

cudaError_t hmore_flow_edges_forward_cuda(const void* flow, const void* band, void* out, void* workspace, int64_t B,
                                          int H, int W, int dtype, int normalize, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  dim3 grid;
  if (!tile_grid(B, H, W, grid)) return cudaErrorInvalidConfiguration;
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    Carve cv{static_cast<char*>(workspace)};
    A* Mbuf = cv.take<A>(B);
    cudaError_t e = cudaMemsetAsync(Mbuf, 0, size_t(B) * sizeof(A), stream);
    if (e != cudaSuccess) return e;
    A so, sc, inv;
    deriv_taps(kSobel, true, so, sc, inv);
    flow_mag_kernel<false, T, A><<<grid, dim3(TX, TY), 0, stream>>>(
        static_cast<const T*>(flow), nullptr, nullptr, static_cast<T*>(out), nullptr, nullptr, Mbuf, nullptr, B, H, W,
        so, sc, inv);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    if (!normalize && !band) return cudaSuccess;
    const int64_t total = B * int64_t(H) * W;
    flow_scale_kernel<T, A><<<ew_blocks(total), EW_THREADS, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(band), Mbuf, total, int64_t(H) * W, normalize != 0);
    return cudaGetLastError();
  });
}

cudaError_t hmore_flow_edges_backward_cuda(const void* grad, const void* flow, const void* band, void* out,
                                           void* workspace, int64_t B, int H, int W, int dtype, int normalize,
                                           cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  dim3 grid, grid2;
  if (!tile_grid(B, H, W, grid) || !tile_grid(2 * B, H, W, grid2)) return cudaErrorInvalidConfiguration;
  if (B > 2147483647) return cudaErrorInvalidConfiguration;  // one block per image for the dot
  return dispatch_float(dtype, [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    const int64_t HW = int64_t(H) * W, total = B * HW;
    const int64_t nblk = grid.x;  // = tiles_per_plane, as in the workspace size
    Carve cv{static_cast<char*>(workspace)};
    A* Mbuf = cv.take<A>(B);
    A* dot = cv.take<A>(B);
    unsigned int* cnt = cv.take<unsigned int>(B);
    double* partial = cv.take<double>(B * nblk);
    A* mt = cv.take<A>(total);
    A* G = cv.take<A>(4 * total);
    cudaError_t e = cudaMemsetAsync(Mbuf, 0, size_t(B) * sizeof(A), stream);
    if (e != cudaSuccess) return e;
    if ((e = cudaMemsetAsync(cnt, 0, size_t(B) * sizeof(unsigned int), stream)) != cudaSuccess) return e;
    A so, sc, inv;
    deriv_taps(kSobel, true, so, sc, inv);
    const T* bandp = static_cast<const T*>(band);
    const T* gradp = static_cast<const T*>(grad);
    flow_mag_kernel<true, T, A><<<grid, dim3(TX, TY), 0, stream>>>(static_cast<const T*>(flow), gradp, bandp, nullptr,
                                                                    mt, G, Mbuf, partial, B, H, W, so, sc, inv);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    if (normalize) {
      flow_dot_kernel<A><<<unsigned(B), dim3(TX, TY), 0, stream>>>(partial, dot, nblk);
      if ((e = cudaGetLastError()) != cudaSuccess) return e;
      flow_count_kernel<A><<<ew_blocks(total), EW_THREADS, 0, stream>>>(mt, Mbuf, cnt, total, HW);
      if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    flow_grad_kernel<T, A><<<ew_blocks(total), EW_THREADS, 0, stream>>>(gradp, bandp, mt, Mbuf, dot, cnt, G, total,
                                                                        HW, normalize != 0);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    sobel_backward_kernel<A, T, A><<<grid2, dim3(TX, TY), 0, stream>>>(G, static_cast<T*>(out), 2 * B, H, W,
                                                                       kReplicate, so, sc, inv);
    return cudaGetLastError();
  });
}

}  // extern "C"
#endif  // __CUDACC_RTC__
