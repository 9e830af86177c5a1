// distance_transform, CUDA glue: checks, layout, scratch, stream; the kernels are in distance_cuda.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"
#include "edges/distance_cuda.h"
#include "edges/distance_kernels.cuh"
#include "edges/edges.h"

namespace hmore {

std::tuple<at::Tensor, at::Tensor> distance_transform_cuda(const at::Tensor& mask, bool return_indices) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1, "mask: expected shape [B, 1, H, W], got ", mask.sizes());
  TORCH_CHECK_VALUE(mask.is_cuda(), "mask: expected a CUDA tensor, got device ", mask.device());
  const int64_t B = mask.size(0), H = mask.size(2), W = mask.size(3);
  TORCH_CHECK_VALUE(H <= HMORE_DT_MAX_SIDE && W <= HMORE_DT_MAX_SIDE, "mask: expected H, W <= ",
                    HMORE_DT_MAX_SIDE, " (squared distances are exact in int32 up to that), got shape ",
                    mask.sizes());
  const c10::cuda::CUDAGuard guard(mask.device());
  auto opts = mask.options();
  at::Tensor dist = at::empty({B, 1, H, W}, opts.dtype(at::kFloat));
  at::Tensor idx = at::empty(return_indices ? at::IntArrayRef{B, 2, H, W} : at::IntArrayRef{0}, opts.dtype(at::kLong));
  if (dist.numel() == 0) return {dist, idx};
  // Types the kernel reads natively; anything else (integers wider than a byte, complex) becomes bool.
  at::Tensor m = mask;
  int dtype;
  switch (mask.scalar_type()) {
    case at::kBool: dtype = HMORE_BOOL; break;
    case at::kByte: dtype = HMORE_U8; break;
    case at::kChar: dtype = HMORE_U8; break;  // a nonzero int8 is a nonzero byte
    case at::kFloat: dtype = HMORE_F32; break;
    case at::kDouble: dtype = HMORE_F64; break;
    case at::kHalf: dtype = HMORE_F16; break;
    case at::kBFloat16: dtype = HMORE_BF16; break;
    default:
      m = mask.ne(0);
      dtype = HMORE_BOOL;
  }
  m = m.contiguous();
  const int64_t n = dist.numel();
  at::Tensor scratch = at::empty({3, n}, opts.dtype(at::kInt));  // near, envelope columns, envelope values
  int* s = scratch.data_ptr<int>();
  const cudaError_t err = hmore_distance_transform_cuda(
      m.data_ptr(), dtype, B, static_cast<int>(H), static_cast<int>(W), s, s + n, s + 2 * n,
      dist.data_ptr<float>(), return_indices ? reinterpret_cast<long long*>(idx.data_ptr<int64_t>()) : nullptr,
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "distance_transform: CUDA launch failed: ", cudaGetErrorString(err));
  return {dist, idx};
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CUDA, m) { m.impl("distance_transform", &hmore::distance_transform_cuda); }
