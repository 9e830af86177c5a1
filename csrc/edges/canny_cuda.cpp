// canny, CUDA glue: checks, layout, scratch, stream; the kernels are in canny_cuda.cu. No host
// synchronisation anywhere: the launcher enqueues a fixed sequence of kernels on the current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>

#include "common.h"
#include "edges/canny_cuda.h"
#include "edges/canny_kernels.cuh"
#include "edges/edges.h"
#include "edges/edges_checks.h"

namespace hmore {

at::Tensor canny_cuda(const at::Tensor& img, double low, double high, int64_t kernel_size, bool l2_gradient) {
  check_canny_args(img, low, high, kernel_size);
  TORCH_CHECK_VALUE(img.is_cuda(), "img: expected a CUDA tensor, got device ", img.device());
  const auto st = img.scalar_type();
  int dtype;
  switch (st) {
    case at::kByte: dtype = HMORE_U8; break;
    case at::kFloat: dtype = HMORE_F32; break;
    case at::kDouble: dtype = HMORE_F64; break;
    case at::kHalf: dtype = HMORE_F16; break;
    case at::kBFloat16: dtype = HMORE_BF16; break;
    default:
      TORCH_CHECK_TYPE(false, "img: expected uint8, float32, float64, float16 or bfloat16, got ", st);
  }
  const int64_t B = img.size(0), C = img.size(1), H = img.size(2), W = img.size(3);
  at::Tensor out = at::empty({B, 1, H, W}, img.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  // The union-find labels pixels of the whole batch with int32 indices.
  TORCH_CHECK_VALUE(out.numel() < (int64_t(1) << 31) - 1, "img: expected fewer than 2^31 pixels in the batch, got shape ",
                    img.sizes());
  const c10::cuda::CUDAGuard guard(img.device());
  at::Tensor x = img.contiguous();
  at::Tensor parent = at::empty({out.numel()}, img.options().dtype(at::kInt));
  at::Tensor root_strong = at::empty({out.numel()}, img.options().dtype(at::kByte));
  double lo, hi;
  hmore_canny_thresholds(low, high, l2_gradient, lo, hi);
  const cudaError_t err = hmore_canny_cuda(x.data_ptr(), dtype, B, static_cast<int>(C), static_cast<int>(H),
                                           static_cast<int>(W), l2_gradient ? 1 : 0, lo, hi,
                                           parent.data_ptr<int>(), root_strong.data_ptr<uint8_t>(),
                                           out.data_ptr<bool>(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "canny: CUDA launch failed: ", cudaGetErrorString(err));
  return out;
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CUDA, m) { m.impl("canny", &hmore::canny_cuda); }
