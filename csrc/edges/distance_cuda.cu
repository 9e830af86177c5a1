// distance_transform, CUDA: exact Euclidean distance transform (Felzenszwalb-Huttenlocher; the math,
// shared with the CPU kernel, is in distance_kernels.cuh). Two launches:
//   1. column_kernel: one thread per column, sweeping down then up. Threads of a warp own adjacent
//      columns, so every step of the sweep reads one contiguous row segment (coalesced) and writes the
//      near-row map the same way.
//   2. row_kernel: one thread per row builds the row's lower envelope of parabolas in global scratch
//      (v, f: W ints per row) and sweeps it. Each thread walks its own row sequentially, so its reads
//      stay within a few cache lines at a time, which L1 serves across the warp.
// All integer; squared distances fit in int32 for H, W <= 32768 (checked by the caller).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include "edges/distance_cuda.h"
#include "edges/distance_kernels.cuh"

namespace {

// True = nonzero, with NaN nonzero and -0.0 zero (the semantics of `mask != 0`).
template <typename In>
__device__ __forceinline__ bool is_set(In v) {
  return v != In(0);
}
template <>
__device__ __forceinline__ bool is_set<__half>(__half v) {
  return __half2float(v) != 0.0f;
}
template <>
__device__ __forceinline__ bool is_set<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v) != 0.0f;
}

template <typename In>
__global__ void column_kernel(const In* __restrict__ mask, int H, int W, long long B, int* __restrict__ near) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  const long long b = blockIdx.y + static_cast<long long>(blockIdx.z) * gridDim.y;
  if (j >= W || b >= B) return;
  const long long base = b * H * static_cast<long long>(W) + j;
  int run = -1;
  for (int i = 0; i < H; ++i) {  // nearest True row at or above i
    const long long o = base + static_cast<long long>(i) * W;
    if (is_set(mask[o])) run = i;
    near[o] = run;
  }
  run = -1;
  for (int i = H - 1; i >= 0; --i) {  // nearest at or below, then the nearer of the two
    const long long o = base + static_cast<long long>(i) * W;
    if (is_set(mask[o])) run = i;
    near[o] = hmore_dt_pick(near[o], run, i);
  }
}

__global__ void row_kernel(const int* __restrict__ near, long long rows, int H, int W, int* __restrict__ env_v,
                           int* __restrict__ env_f, float* __restrict__ dist, long long* __restrict__ idx) {
  const long long r = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const long long b = r / H;
  const int i = static_cast<int>(r - b * H);
  const long long off = r * W;
  const int* nr = near + off;
  float* d = dist + off;
  const auto near_of = [nr](int k) { return nr[k]; };
  if (idx != nullptr) {
    long long* iy = idx + (b * 2 * H + i) * static_cast<long long>(W);
    long long* ix = iy + static_cast<long long>(H) * W;
    hmore_dt_row(near_of, i, W, env_v + off, env_f + off, [&](int j, int d2, int k) {
      if (k < 0) {
        d[j] = INFINITY;
        iy[j] = -1;
        ix[j] = -1;
      } else {
        d[j] = __double2float_rn(sqrt(static_cast<double>(d2)));  // the reference's float(sqrt(double))
        iy[j] = nr[k];
        ix[j] = k;
      }
    });
  } else {
    hmore_dt_row(near_of, i, W, env_v + off, env_f + off, [&](int j, int d2, int k) {
      d[j] = k < 0 ? INFINITY : __double2float_rn(sqrt(static_cast<double>(d2)));
    });
  }
}

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
template <typename In>
cudaError_t launch_columns(const void* mask, long long B, int H, int W, int* near, cudaStream_t stream) {
  const int threads = 128;
  // Batch on grid y (<= 65535) and z, so any B up to 65535^2 fits in one launch.
  const unsigned gy = static_cast<unsigned>(B < 65535 ? B : 65535);
  const unsigned gz = static_cast<unsigned>((B + gy - 1) / gy);
  const dim3 grid((W + threads - 1) / threads, gy, gz);
  column_kernel<In><<<grid, threads, 0, stream>>>(static_cast<const In*>(mask), H, W, B, near);
  return cudaGetLastError();
}

#endif  // __CUDACC_RTC__
}  // namespace

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
extern "C" cudaError_t hmore_distance_transform_cuda(const void* mask, int dtype, long long B, int H, int W,
                                                     int* near, int* env_v, int* env_f, float* dist,
                                                     long long* idx, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  if (H > HMORE_DT_MAX_SIDE || W > HMORE_DT_MAX_SIDE || B > 65535LL * 65535LL) return cudaErrorInvalidValue;
  cudaError_t e;
  switch (dtype) {
    case HMORE_BOOL:
    case HMORE_U8: e = launch_columns<unsigned char>(mask, B, H, W, near, stream); break;
    case HMORE_F32: e = launch_columns<float>(mask, B, H, W, near, stream); break;
    case HMORE_F64: e = launch_columns<double>(mask, B, H, W, near, stream); break;
    case HMORE_F16: e = launch_columns<__half>(mask, B, H, W, near, stream); break;
    case HMORE_BF16: e = launch_columns<__nv_bfloat16>(mask, B, H, W, near, stream); break;
    default: return cudaErrorInvalidValue;
  }
  if (e != cudaSuccess) return e;
  const long long rows = B * H;
  const int threads = 128;
  row_kernel<<<static_cast<unsigned>((rows + threads - 1) / threads), threads, 0, stream>>>(near, rows, H, W, env_v,
                                                                                           env_f, dist, idx);
  return cudaGetLastError();
}
#endif  // __CUDACC_RTC__
