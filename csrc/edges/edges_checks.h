// Argument checks of the edge family shared by the CPU and CUDA glue, so both dispatch keys reject bad
// input with the same message (the Python layer validates too, but torch.ops.hmore.* is public).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "common.h"

namespace hmore {

inline void check_size_limits(const at::Tensor& t, const char* name) {
  // Kernels index a plane with int and planes with int64; arg maps store a plane index in int32.
  TORCH_CHECK_VALUE(t.size(-1) < (int64_t{1} << 31) && t.size(-2) < (int64_t{1} << 31) &&
                        t.size(-1) * t.size(-2) < (int64_t{1} << 31),
                    name, ": H * W must be below 2^31, got shape ", t.sizes());
}

inline void check_mask_like(const at::Tensor& mask, const at::Tensor& ref, const char* ref_name) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1 && mask.size(0) == ref.size(0) && mask.size(2) == ref.size(2) &&
                        mask.size(3) == ref.size(3),
                    "mask: expected shape [", ref.size(0), ", 1, ", ref.size(2), ", ", ref.size(3), "] to match ",
                    ref_name, ", got ", mask.sizes());
  TORCH_CHECK_TYPE(mask.scalar_type() == at::kBool || mask.is_floating_point(),
                   "mask: expected a bool or floating-point tensor, got ", mask.scalar_type());
  check_same_device(mask, "mask", ref, ref_name);
}

// allow_half: float16/bfloat16 are GPU-only (docs/ops.md).
inline void check_flow(const at::Tensor& flow, bool allow_half) {
  check_rank(flow, 4, "flow", "[B, 2, H, W]");
  TORCH_CHECK_VALUE(flow.size(1) == 2, "flow: expected 2 channels [B, 2, H, W], got shape ", flow.sizes());
  check_float(flow, "flow", allow_half);
  check_size_limits(flow, "flow");
}

inline void check_canny_args(const at::Tensor& img, double low, double high, int64_t kernel_size) {
  check_rank(img, 4, "img", "[B, 1 or 3, H, W]");
  TORCH_CHECK_VALUE(img.size(1) == 1 || img.size(1) == 3, "img: expected 1 or 3 channels, got shape ",
                    img.sizes());
  TORCH_CHECK_VALUE(kernel_size == 3, "kernel_size: only 3 is supported, got ", kernel_size);
  TORCH_CHECK_VALUE(!std::isnan(low), "low: expected a number, got nan");
  TORCH_CHECK_VALUE(!std::isnan(high), "high: expected a number, got nan");
}

}  // namespace hmore
