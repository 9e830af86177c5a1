// Argument checks of the correlation family, shared by the CPU and CUDA glue so both dispatch keys
// reject bad input with the same message (the Python layer validates too, but torch.ops.hmore.* is
// public). Shapes and conventions: csrc/corr/corr.cpp (schemas) and corr_kernels.cuh (math).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "corr/corr_kernels.cuh"

namespace hmore {
namespace corr {

inline int parse_layout(const std::string& s) {
  if (s == "raft") return kLayoutRaft;
  if (s == "yx") return kLayoutYX;
  TORCH_CHECK_VALUE(false, "layout: expected 'raft' or 'yx', got '", s, "'");
}

// scale=None -> 1/sqrt(D) (docs/ops.md §1).
inline double resolve_scale(c10::optional<double> scale, int64_t D) {
  if (scale.has_value()) {
    TORCH_CHECK_VALUE(std::isfinite(*scale), "scale: expected a finite float or None, got ", *scale);
    return *scale;
  }
  return D > 0 ? 1.0 / std::sqrt(static_cast<double>(D)) : 1.0;
}

inline void check_fmap(const at::Tensor& t, const char* name, bool allow_half) {
  check_rank(t, 4, name, "[B, D, H, W]");
  check_float(t, name, allow_half);
}

// fmap1 [B, D, H1, W1], fmap2 [B, D, H2, W2]; same_size: H2 == H1, W2 == W1 (local_corr).
inline void check_pair(const at::Tensor& f1, const at::Tensor& f2, bool allow_half, bool same_size) {
  check_fmap(f1, "fmap1", allow_half);
  check_fmap(f2, "fmap2", allow_half);
  check_same_device(f1, "fmap1", f2, "fmap2");
  TORCH_CHECK_TYPE(f1.scalar_type() == f2.scalar_type(), "fmap2: expected dtype ", f1.scalar_type(),
                   " like fmap1, got ", f2.scalar_type());
  TORCH_CHECK_VALUE(f2.size(0) == f1.size(0), "fmap2: expected batch size ", f1.size(0), " like fmap1, got shape ",
                    f2.sizes());
  TORCH_CHECK_VALUE(f2.size(1) == f1.size(1), "fmap2: expected D = ", f1.size(1), " channels like fmap1, got shape ",
                    f2.sizes());
  if (same_size) {
    TORCH_CHECK_VALUE(f2.size(2) == f1.size(2) && f2.size(3) == f1.size(3), "fmap2: expected spatial size [",
                      f1.size(2), ", ", f1.size(3), "] like fmap1, got shape ", f2.sizes());
  }
}

inline void check_coords(const at::Tensor& c, int64_t B, int64_t H1, int64_t W1, const at::Tensor& like,
                         const char* like_name) {
  check_rank(c, 4, "coords", "[B, 2, H1, W1]");
  TORCH_CHECK_TYPE(c.scalar_type() == at::kFloat || c.scalar_type() == at::kDouble ||
                       c.scalar_type() == at::kHalf || c.scalar_type() == at::kBFloat16,
                   "coords: expected a floating-point tensor, got ", c.scalar_type());
  TORCH_CHECK_VALUE(c.size(0) == B && c.size(1) == 2 && c.size(2) == H1 && c.size(3) == W1,
                    "coords: expected shape [", B, ", 2, ", H1, ", ", W1, "], got ", c.sizes());
  check_same_device(c, "coords", like, like_name);
}

inline void check_radius(int64_t radius) { check_int_arg(radius, "radius", 0, kMaxRadius); }

inline void check_levels(int64_t num_levels) { check_int_arg(num_levels, "num_levels", 1, kMaxLevels); }

// Every level [N, 1, h0 >> l, w0 >> l], one dtype and device; coords [B, 2, H1, W1] with B*H1*W1 = N.
inline void check_pyramid(at::TensorList pyr, const at::Tensor& coords, bool allow_half) {
  TORCH_CHECK_VALUE(!pyr.empty(), "pyramid: expected a non-empty list of tensors [N, 1, H2>>l, W2>>l], got an empty list");
  const at::Tensor& p0 = pyr[0];
  for (size_t l = 0; l < pyr.size(); ++l) {
    const at::Tensor& p = pyr[l];
    const std::string name = "pyramid[" + std::to_string(l) + "]";
    TORCH_CHECK_VALUE(p.dim() == 4 && p.size(1) == 1, name, ": expected a 4-D tensor [N, 1, h, w], got shape ",
                      p.sizes());
    check_float(p, name.c_str(), allow_half);
    TORCH_CHECK_TYPE(p.scalar_type() == p0.scalar_type(), name, ": expected dtype ", p0.scalar_type(),
                     " like pyramid[0], got ", p.scalar_type());
    TORCH_CHECK_VALUE(p.device() == p0.device(), name, ": expected a tensor on ", p0.device(),
                      " like pyramid[0], got ", p.device());
    TORCH_CHECK_VALUE(p.size(0) == p0.size(0) && p.size(2) == (p0.size(2) >> l) && p.size(3) == (p0.size(3) >> l),
                      name, ": expected shape [", p0.size(0), ", 1, ", p0.size(2) >> l, ", ", p0.size(3) >> l,
                      "] (level 0 pooled ", l, " times, floor), got ", p.sizes());
  }
  check_rank(coords, 4, "coords", "[B, 2, H1, W1]");
  TORCH_CHECK_TYPE(coords.is_floating_point(), "coords: expected a floating-point tensor, got ", coords.scalar_type());
  TORCH_CHECK_VALUE(coords.size(1) == 2 && coords.size(0) * coords.size(2) * coords.size(3) == p0.size(0),
                    "coords: expected shape [B, 2, H1, W1] with B*H1*W1 = ", p0.size(0),
                    " (pyramid[0].size(0)), got ", coords.sizes());
  check_same_device(coords, "coords", p0, "pyramid[0]");
}

inline void check_local_args(int64_t d, int64_t stride, int64_t dilation) {
  check_int_arg(d, "max_displacement", 0, kMaxDisplacement);
  check_int_arg(stride, "stride", 1, kMaxStride);
  check_int_arg(dilation, "dilation", 1, kMaxDilation);
}

// grad of a lookup: [B, L*T, H1, W1].
inline void check_lookup_grad(const at::Tensor& g, int64_t B, int64_t C, int64_t H1, int64_t W1) {
  TORCH_CHECK_VALUE(g.dim() == 4 && g.size(0) == B && g.size(1) == C && g.size(2) == H1 && g.size(3) == W1,
                    "grad: expected shape [", B, ", ", C, ", ", H1, ", ", W1, "], got ", g.sizes());
}

}  // namespace corr
}  // namespace hmore
