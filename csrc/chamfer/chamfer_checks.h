// Argument checks and small tensor helpers shared by the CPU and CUDA glue of the Chamfer family. The
// per-tensor dtype/device rules differ per backend (float64 on CPU, float16/bfloat16 on CUDA) and stay
// in each file; what the two tensors of an op must agree on lives here once.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

#include "chamfer/chamfer.h"
#include "common.h"

namespace hmore {

// x [B, N, D] and y [B, M, D], each already checked on its own: same device, batch, D and dtype.
inline void check_pair_agreement(const at::Tensor& x, const at::Tensor& y) {
  check_same_device(x, "x", y, "y");
  TORCH_CHECK_VALUE(x.size(0) == y.size(0), "y: expected batch size ", x.size(0), " like x, got shape ", y.sizes());
  TORCH_CHECK_VALUE(x.size(2) == y.size(2), "y: expected D = ", x.size(2), " like x, got shape ", y.sizes());
  TORCH_CHECK_VALUE(x.size(2) >= 1 || x.size(1) == 0 || y.size(1) == 0, "x: expected D >= 1, got shape ",
                    x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == y.scalar_type(), "y: expected dtype ", x.scalar_type(), " like x, got ",
                   y.scalar_type());
}

// per-cloud values [B] -> the op's reduction over the batch ('mean' of an empty batch is 0, not NaN)
inline at::Tensor reduce_batch(const at::Tensor& per, ChamferReduction red) {
  if (red == ChamferReduction::None) return per;
  if (red == ChamferReduction::Sum) return per.sum();
  return per.numel() ? per.mean() : per.sum();
}

// patch_centroid_chamfer: a and b (each already checked on its own) agree; patch sizes in
// [1, max_patch] (the backend's limit); min_mass finite and >= 0.
inline void check_pcc_agreement(const at::Tensor& a, const at::Tensor& b, at::IntArrayRef patch_sizes,
                                double min_mass, int64_t max_patch) {
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "b: expected shape ", a.sizes(), " like a, got ", b.sizes());
  check_same_device(a, "a", b, "b");
  TORCH_CHECK_VALUE(!patch_sizes.empty(), "patch_sizes: expected at least one patch size, got an empty list");
  for (int64_t p : patch_sizes)
    TORCH_CHECK_VALUE(p >= 1 && p <= max_patch, "patch_sizes: expected ints in [1, ", max_patch, "], got ",
                      patch_sizes);
  TORCH_CHECK_VALUE(min_mass >= 0 && std::isfinite(min_mass), "min_mass: expected a finite float >= 0, got ",
                    min_mass);
}

}  // namespace hmore
