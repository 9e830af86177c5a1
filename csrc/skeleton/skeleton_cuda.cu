// CUDA kernels of the skeleton family (docs/ops.md §4, §5). Plain CUDA C++ (no torch headers): nvcc
// compile-checks it without a GPU; the per-element math comes from skeleton_kernels.cuh, shared with the
// CPU kernels (which the CPU tests run).
//
// skeleton_match / skeleton_offset_map: one thread per pixel, 256 pixels (row-major, so mask reads and
// index/offset writes are coalesced) per block. The block stages the image's points, CHUNK at a time,
// in shared memory as (x, y, w) records; every thread then scans them in index order with the shared
// cost and update rule, so each warp reads one broadcast record per step. No [B, H*W, Q] matrix is
// formed, and a block whose pixels all lie outside the mask skips the scan (__syncthreads_or).
// skeleton_points: one thread per sampled point; its backward: one thread per joint, gathering over the
// bones in order (no atomics: deterministic).
#include <cuda_runtime.h>

#include <cstdint>

#include "hd.h"
#include "skeleton/skeleton_cuda.h"
#include "skeleton/skeleton_kernels.cuh"

namespace {

using namespace hmore::skel;
using hmore::mul_rn;

constexpr int THREADS = 256;
constexpr int CHUNK = 256;  // points staged per round: 256 x 16 B (float) or 32 B (double) of shared memory
constexpr long long MAX_GRID_Y = 65535;

template <typename T>
struct alignas(4 * sizeof(T)) Rec {  // one 16-byte (float) shared-memory load per point and step
  T x, y, w, pad;
};

template <typename T>
__global__ void __launch_bounds__(THREADS)
    match_kernel(const T* __restrict__ pts, const T* __restrict__ pts1, const T* __restrict__ w,
                 const unsigned char* __restrict__ mask, long long B, int Q, int H, int W, long long* __restrict__ idx,
                 T* __restrict__ off, unsigned char* __restrict__ valid) {
  __shared__ Rec<T> rec[CHUNK];
  const long long HW = static_cast<long long>(H) * W;
  const long long p = static_cast<long long>(blockIdx.x) * THREADS + threadIdx.x;
  const bool active = p < HW;
  const int i = active ? static_cast<int>(p / W) : 0;
  const int j = active ? static_cast<int>(p - static_cast<long long>(i) * W) : 0;
  const T px = T(j), py = T(i);
  for (long long b = blockIdx.y; b < B; b += gridDim.y) {
    const bool inside = active && mask[b * HW + p] != 0;
    T best = T(0);
    int bi = -1;
    if (__syncthreads_or(inside)) {  // uniform per block: every thread takes part in the staging
      for (int q0 = 0; q0 < Q; q0 += CHUNK) {
        const int nq = min(CHUNK, Q - q0);
        __syncthreads();  // the previous round's records are consumed
        for (int t = threadIdx.x; t < nq; t += THREADS) {
          const long long q = b * Q + q0 + t;
          rec[t] = Rec<T>{pts[2 * q], pts[2 * q + 1], w[q], T(0)};
        }
        __syncthreads();
        if (inside) {
          for (int t = 0; t < nq; ++t) {
            const Rec<T> r = rec[t];
            const T c = cost(px, py, r.x, r.y, r.w);
            if (better(c, best, bi)) {
              best = c;
              bi = q0 + t;
            }
          }
        }
      }
    }
    if (!active) continue;
    if (idx != nullptr) idx[b * HW + p] = bi;
    if (off != nullptr) {
      T ox = T(0), oy = T(0);
      if (bi >= 0) {
        const long long q = b * Q + bi;
        ox = pts1[2 * q] - pts[2 * q];
        oy = pts1[2 * q + 1] - pts[2 * q + 1];
      }
      off[(2 * b) * HW + p] = ox;
      off[(2 * b + 1) * HW + p] = oy;
      valid[b * HW + p] = bi >= 0 ? 1 : 0;
    }
  }
}

template <typename T>
__global__ void points_forward_kernel(const T* __restrict__ joints, const T* __restrict__ conf,
                                      const long long* __restrict__ bones, long long B, int J, int E, int n,
                                      T* __restrict__ pts, T* __restrict__ pconf) {
  const long long total = B * E * n;
  for (long long q = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; q < total;
       q += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(q % n);
    const long long be = q / n;
    const int e = static_cast<int>(be % E);
    const long long b = be / E;
    const long long a = bones[2 * e], c = bones[2 * e + 1];
    double sd, td;
    bone_weights(k, n, &sd, &td);
    const T s = T(sd), t = T(td);
    const T* jb = joints + b * J * 2;
    const T* cb = conf + b * J;
    pts[2 * q] = lerp(s, jb[2 * a], t, jb[2 * c]);
    pts[2 * q + 1] = lerp(s, jb[2 * a + 1], t, jb[2 * c + 1]);
    pconf[q] = lerp(s, cb[a], t, cb[c]);
  }
}

template <typename T>
__global__ void points_backward_kernel(const T* __restrict__ gp, const T* __restrict__ gc,
                                       const long long* __restrict__ bones, long long B, int J, int E, int n,
                                       T* __restrict__ gj, T* __restrict__ gjc) {
  const long long total = B * J;
  for (long long r = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; r < total;
       r += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long b = r / J;
    const long long j = r - b * J;
    T ax = T(0), ay = T(0), ac = T(0);
    for (int e = 0; e < E; ++e) {
      const bool is_a = bones[2 * e] == j, is_b = bones[2 * e + 1] == j;
      if (!is_a && !is_b) continue;
      for (int k = 0; k < n; ++k) {
        double sd, td;
        bone_weights(k, n, &sd, &td);
        const T wk = T((is_a ? sd : 0.0) + (is_b ? td : 0.0));
        const long long q = (b * E + e) * n + k;
        // the CPU kernel's order: a product rounded on its own, then the sum
        ax = ax + mul_rn(wk, gp[2 * q]);
        ay = ay + mul_rn(wk, gp[2 * q + 1]);
        ac = ac + mul_rn(wk, gc[q]);
      }
    }
    gj[2 * r] = ax;
    gj[2 * r + 1] = ay;
    gjc[r] = ac;
  }
}

unsigned grid_1d(long long total) {
  long long g = (total + THREADS - 1) / THREADS;
  return static_cast<unsigned>(g < 65536 * 8 ? (g > 0 ? g : 1) : 65536 * 8);  // grid-stride past that
}

}  // namespace

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
extern "C" {

cudaError_t hmore_skeleton_points_forward_cuda(const void* joints, const void* conf, const long long* bones,
                                               int dtype, long long B, int J, int E, int n, void* pts, void* pconf,
                                               cudaStream_t stream) {
  const long long total = B * E * n;
  if (total == 0) return cudaSuccess;
  if (dtype == HMORE_F32) {
    points_forward_kernel<float><<<grid_1d(total), THREADS, 0, stream>>>(
        static_cast<const float*>(joints), static_cast<const float*>(conf), bones, B, J, E, n,
        static_cast<float*>(pts), static_cast<float*>(pconf));
  } else if (dtype == HMORE_F64) {
    points_forward_kernel<double><<<grid_1d(total), THREADS, 0, stream>>>(
        static_cast<const double*>(joints), static_cast<const double*>(conf), bones, B, J, E, n,
        static_cast<double*>(pts), static_cast<double*>(pconf));
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t hmore_skeleton_points_backward_cuda(const void* grad_points, const void* grad_conf,
                                                const long long* bones, int dtype, long long B, int J, int E, int n,
                                                void* grad_joints, void* grad_jconf, cudaStream_t stream) {
  const long long total = B * J;
  if (total == 0) return cudaSuccess;
  if (dtype == HMORE_F32) {
    points_backward_kernel<float><<<grid_1d(total), THREADS, 0, stream>>>(
        static_cast<const float*>(grad_points), static_cast<const float*>(grad_conf), bones, B, J, E, n,
        static_cast<float*>(grad_joints), static_cast<float*>(grad_jconf));
  } else if (dtype == HMORE_F64) {
    points_backward_kernel<double><<<grid_1d(total), THREADS, 0, stream>>>(
        static_cast<const double*>(grad_points), static_cast<const double*>(grad_conf), bones, B, J, E, n,
        static_cast<double*>(grad_joints), static_cast<double*>(grad_jconf));
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t hmore_skeleton_match_cuda(const void* pts, const void* pts1, const void* w, const unsigned char* mask,
                                      int dtype, long long B, int Q, int H, int W, long long* idx, void* off,
                                      unsigned char* valid, cudaStream_t stream) {
  const long long HW = static_cast<long long>(H) * W;
  if (B == 0 || HW == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((HW + THREADS - 1) / THREADS),
                  static_cast<unsigned>(B < MAX_GRID_Y ? B : MAX_GRID_Y));
  if (dtype == HMORE_F32) {
    match_kernel<float><<<grid, THREADS, 0, stream>>>(
        static_cast<const float*>(pts), static_cast<const float*>(pts1), static_cast<const float*>(w), mask, B, Q, H,
        W, idx, static_cast<float*>(off), valid);
  } else if (dtype == HMORE_F64) {
    match_kernel<double><<<grid, THREADS, 0, stream>>>(
        static_cast<const double*>(pts), static_cast<const double*>(pts1), static_cast<const double*>(w), mask, B,
        Q, H, W, idx, static_cast<double*>(off), valid);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // extern "C"
#endif  // __CUDACC_RTC__
