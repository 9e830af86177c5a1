// canny, CUDA: OpenCV's Canny(apertureSize=3) with the hysteresis on the device and no host sync.
//
// Four launches, always the same four whatever the image holds:
//   1. nms_kernel: per 32x8 tile, the gray tile with a 2-pixel replicate halo goes to shared memory, the
//      magnitudes of the tile plus a 1-pixel ring (0 outside the image, as OpenCV's NMS sees it) are
//      computed there, then each pixel runs the sector test and the thresholds. Candidates (weak) get
//      parent = own index, others -1; the output temporarily holds the "strong" flag.
//   2. merge_kernel: union-find connected-component labelling of the candidates (Playne & Hawick, "A New
//      Algorithm for Parallel Connected-Component Labelling on GPUs", IEEE TPDS 2018): every candidate
//      unites with its candidate neighbours left, up-left, up and up-right (the other four are covered by
//      symmetry). Roots are the smallest index of their set; unions link with atomicMin, so parents only
//      ever decrease and the forest stays acyclic under any interleaving.
//   3. flatten_kernel: every candidate points straight at its root; a set containing a strong pixel
//      marks its root.
//   4. output_kernel: edge = candidate whose root is marked.
// Hysteresis = "weak pixels 8-connected through weak pixels to a strong one" is exactly "the connected
// component of the candidate graph contains a strong pixel", so a complete labelling decides it in a fixed
// number of launches, where iterative propagation would need a data-dependent number (and a host check).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "edges/canny_cuda.h"
#include "edges/canny_kernels.cuh"

namespace {

constexpr int kTW = 32;  // tile width: one warp per tile row, so the loads of a row are coalesced
constexpr int kTH = 8;

template <typename In>
__device__ __forceinline__ double to_double(In v) {
  return static_cast<double>(v);
}
template <>
__device__ __forceinline__ double to_double<__half>(__half v) {
  return static_cast<double>(__half2float(v));
}
template <>
__device__ __forceinline__ double to_double<__nv_bfloat16>(__nv_bfloat16 v) {
  return static_cast<double>(__bfloat162float(v));
}

// Gray value of pixel `off` of one image (plane = H*W). T = int for uint8 (exact), double otherwise.
template <typename In, typename T>
__device__ __forceinline__ T load_gray(const In* img, int C, long long plane, long long off) {
  if constexpr (sizeof(In) == 1) {  // uint8
    if (C == 1) return static_cast<T>(img[off]);
    return static_cast<T>(hmore_gray_u8(img[off], img[off + plane], img[off + 2 * plane]));
  } else {
    if (C == 1) return static_cast<T>(to_double(img[off]));
    return static_cast<T>(
        hmore_gray_f(to_double(img[off]), to_double(img[off + plane]), to_double(img[off + 2 * plane])));
  }
}

template <typename In, typename T, typename Th>
__global__ void __launch_bounds__(kTW* kTH)
    nms_kernel(const In* __restrict__ img, int C, int H, int W, long long b0, bool l2, Th lo, Th hi,
               int* __restrict__ parent, unsigned char* __restrict__ root_strong, bool* __restrict__ out) {
  __shared__ T g[kTH + 4][kTW + 4];
  __shared__ T mg[kTH + 2][kTW + 2];
  const long long b = b0 + blockIdx.z;
  const long long plane = static_cast<long long>(H) * W;
  const In* im = img + b * C * plane;
  // Tiles numbered row-major along grid x alone (launch_nms): gridDim.y's 65535 would cap H at 524280.
  const int tiles_x = static_cast<int>((static_cast<long long>(W) + kTW - 1) / kTW);
  const int ty = static_cast<int>(blockIdx.x) / tiles_x;
  const int x0 = (static_cast<int>(blockIdx.x) - ty * tiles_x) * kTW, y0 = ty * kTH;
  const int tid = threadIdx.y * kTW + threadIdx.x;

  for (int k = tid; k < (kTH + 4) * (kTW + 4); k += kTW * kTH) {
    const int r = k / (kTW + 4), c = k - r * (kTW + 4);
    const int gi = min(max(y0 - 2 + r, 0), H - 1), gj = min(max(x0 - 2 + c, 0), W - 1);  // replicate
    g[r][c] = load_gray<In, T>(im, C, plane, static_cast<long long>(gi) * W + gj);
  }
  __syncthreads();
  for (int k = tid; k < (kTH + 2) * (kTW + 2); k += kTW * kTH) {
    const int r = k / (kTW + 2), c = k - r * (kTW + 2);
    const int pi = y0 - 1 + r, pj = x0 - 1 + c;
    T m = T(0);
    if (pi >= 0 && pi < H && pj >= 0 && pj < W) {
      T dx, dy;
      hmore_canny_sobel<T>(g[r][c], g[r][c + 1], g[r][c + 2], g[r + 1][c], g[r + 1][c + 2], g[r + 2][c],
                           g[r + 2][c + 1], g[r + 2][c + 2], dx, dy);
      m = hmore_canny_mag<T>(dx, dy, l2);
    }
    mg[r][c] = m;
  }
  __syncthreads();

  const int i = y0 + threadIdx.y, j = x0 + threadIdx.x;
  if (i >= H || j >= W) return;
  const int r = threadIdx.y + 1, c = threadIdx.x + 1;  // this pixel in mg; in g it is (r + 1, c + 1)
  T dx, dy;
  hmore_canny_sobel<T>(g[r][c], g[r][c + 1], g[r][c + 2], g[r + 1][c], g[r + 1][c + 2], g[r + 2][c],
                       g[r + 2][c + 1], g[r + 2][c + 2], dx, dy);
  const T m = mg[r][c];
  unsigned char cls = HMORE_CANNY_NONE;
  if (m > lo) {
    const int s = hmore_canny_sector<T>(dx, dy);
    int di0, dj0, di1, dj1;
    hmore_canny_sector_offsets(s, di0, dj0, di1, dj1);
    cls = hmore_canny_classify<T, Th>(hmore_canny_keep<T>(s, m, mg[r + di0][c + dj0], mg[r + di1][c + dj1]),
                                      m, lo, hi);
  }
  const int p = static_cast<int>(b * plane + static_cast<long long>(i) * W + j);
  parent[p] = cls != HMORE_CANNY_NONE ? p : -1;
  root_strong[p] = 0;
  out[p] = cls == HMORE_CANNY_STRONG;
}

// Root of x. Reads go through a volatile pointer because other threads lower parents concurrently; any
// value read is still an ancestor (parents only decrease along a chain), so a stale read is safe.
__device__ __forceinline__ int find_root(const volatile int* parent, int x) {
  int p = parent[x];
  while (p != x) {
    x = p;
    p = parent[x];
  }
  return x;
}

// Playne & Hawick's union: link the larger root under the smaller with atomicMin. If the root was
// re-linked meanwhile, atomicMin returns its new parent and the union continues from there; a link it
// overwrote is restored by that continuation, so no equivalence is lost.
__device__ void unite(int* parent, int a, int b) {
  while (true) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) return;
    if (a < b) {
      const int t = a;
      a = b;
      b = t;
    }
    const int old = atomicMin(parent + a, b);
    if (old == a) return;
    a = old;
  }
}

__global__ void merge_kernel(int* __restrict__ parent, int H, int W, int n) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n || parent[p] < 0) return;
  const int plane = H * W;
  const int q = p % plane, i = q / W, j = q - i * W;
  if (j > 0 && parent[p - 1] >= 0) unite(parent, p, p - 1);
  if (i > 0) {
    const int up = p - W;
    if (j > 0 && parent[up - 1] >= 0) unite(parent, p, up - 1);
    if (parent[up] >= 0) unite(parent, p, up);
    if (j + 1 < W && parent[up + 1] >= 0) unite(parent, p, up + 1);
  }
}

__global__ void flatten_kernel(int* __restrict__ parent, const bool* __restrict__ strong,
                               unsigned char* __restrict__ root_strong, int n) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n || parent[p] < 0) return;
  // All unions are done (previous launch), so the forest is fixed; concurrent compressions only write
  // roots, which are valid parents for any concurrent find.
  const int r = find_root(parent, p);
  parent[p] = r;
  if (strong[p]) root_strong[r] = 1;  // racing writers all store 1
}

__global__ void output_kernel(const int* __restrict__ parent, const unsigned char* __restrict__ root_strong,
                              bool* __restrict__ out, int n) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  const int r = parent[p];
  out[p] = r >= 0 && root_strong[r] != 0;
}

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
template <typename In, typename T, typename Th>
cudaError_t launch_nms(const void* img, long long B, int C, int H, int W, bool l2, Th lo, Th hi, int* parent,
                       unsigned char* root_strong, bool* out, cudaStream_t stream) {
  const dim3 block(kTW, kTH);
  // gridDim.z is limited to 65535: larger batches go in chunks (a count fixed by the shape, not the data).
  for (long long b0 = 0; b0 < B; b0 += 65535) {
    const unsigned nb = static_cast<unsigned>(B - b0 < 65535 ? B - b0 : 65535);
    const long long tiles =
        ((static_cast<long long>(W) + kTW - 1) / kTW) * ((static_cast<long long>(H) + kTH - 1) / kTH);
    const dim3 grid(static_cast<unsigned>(tiles), 1, nb);  // tiles < B*H*W < 2^31
    nms_kernel<In, T, Th><<<grid, block, 0, stream>>>(static_cast<const In*>(img), C, H, W, b0, l2, lo, hi,
                                                     parent, root_strong, out);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

#endif  // __CUDACC_RTC__
}  // namespace

#ifndef __CUDACC_RTC__  // host launchers: nvcc only (NVRTC compiles the kernels above for the CuPy backend)
extern "C" cudaError_t hmore_canny_cuda(const void* img, int dtype, long long B, int C, int H, int W,
                                        int l2_gradient, double lo, double hi, int* parent,
                                        unsigned char* root_strong, bool* out, cudaStream_t stream) {
  const long long n64 = B * H * static_cast<long long>(W);
  if (n64 == 0) return cudaSuccess;
  if (n64 >= 2147483647LL || (C != 1 && C != 3)) return cudaErrorInvalidValue;
  const bool l2 = l2_gradient != 0;
  cudaError_t e;
  switch (dtype) {
    case HMORE_U8:
      e = launch_nms<unsigned char, int, int>(img, B, C, H, W, l2, hmore_canny_int_threshold(lo), hmore_canny_int_threshold(hi),
                                             parent, root_strong, out, stream);
      break;
    case HMORE_F32:
      e = launch_nms<float, double, double>(img, B, C, H, W, l2, lo, hi, parent, root_strong, out, stream);
      break;
    case HMORE_F64:
      e = launch_nms<double, double, double>(img, B, C, H, W, l2, lo, hi, parent, root_strong, out, stream);
      break;
    case HMORE_F16:
      e = launch_nms<__half, double, double>(img, B, C, H, W, l2, lo, hi, parent, root_strong, out, stream);
      break;
    case HMORE_BF16:
      e = launch_nms<__nv_bfloat16, double, double>(img, B, C, H, W, l2, lo, hi, parent, root_strong, out,
                                                    stream);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  if (e != cudaSuccess) return e;
  const int n = static_cast<int>(n64);
  const int threads = 256;
  const int blocks = (n + threads - 1) / threads;
  merge_kernel<<<blocks, threads, 0, stream>>>(parent, H, W, n);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  flatten_kernel<<<blocks, threads, 0, stream>>>(parent, out, root_strong, n);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  output_kernel<<<blocks, threads, 0, stream>>>(parent, root_strong, out, n);
  return cudaGetLastError();
}
#endif  // __CUDACC_RTC__
