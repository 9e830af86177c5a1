// RAFT's pyramid pooling as the CPU and CUDA glue of the corr family both use it (ATen ops, so one
// source serves either device).
#pragma once

#include <ATen/ATen.h>

namespace hmore {

// avg_pool2d (2, stride 2, floor) that also accepts a side shorter than 2 or an empty tensor (D = 0 or
// B = 0) (-> an empty level, where at::avg_pool2d would raise).
inline at::Tensor pool2(const at::Tensor& x) {
  if (x.numel() == 0 || x.size(-1) < 2 || x.size(-2) < 2) {
    auto sz = x.sizes().vec();
    sz[sz.size() - 1] /= 2;
    sz[sz.size() - 2] /= 2;
    return at::zeros(sz, x.options());
  }
  return at::avg_pool2d(x, {2, 2}, {2, 2});
}

// Adjoint of pool2: g (pooled grad) -> grad of `like`'s shape.
inline at::Tensor unpool2(const at::Tensor& g, const at::Tensor& like) {
  if (g.numel() == 0 || like.numel() == 0) return at::zeros(like.sizes(), g.options());
  return at::avg_pool2d_backward(g, like, {2, 2}, {2, 2}, {0, 0}, false, true, c10::nullopt);
}

}  // namespace hmore
