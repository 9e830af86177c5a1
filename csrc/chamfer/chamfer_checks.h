// Argument checks and small tensor helpers shared by the CPU and CUDA glue of the Chamfer family. The
// per-tensor dtype/device rules differ per backend (float64 on CPU, float16/bfloat16 on CUDA) and stay
// in each file; what the two tensors of an op must agree on lives here once.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

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

// ---- Non-finite points (docs/ops.md, "Non-finite values and value checks") -----------------------------
// A point with a non-finite coordinate is never anyone's nearest point; its own distance is NaN and its
// index -1, and a Chamfer value over a cloud that holds one (inside its length) is NaN. The kernels
// compare `d < best`, so a NaN distance never wins; an infinite coordinate, though, gives an inf or a
// NaN distance depending on the other point. So the search runs on clouds whose non-finite points have
// all-NaN coordinates (search_points), then the searched points' own results are marked (mark_nonfinite).

// [B, N] bool: point n of cloud b is inside its length (all true without lengths).
inline at::Tensor valid_points(const at::Tensor& p, const std::optional<at::Tensor>& lengths) {
  const int64_t B = p.size(0), N = p.size(1);
  auto bopts = p.options().dtype(at::kBool);
  if (!lengths.has_value()) return at::ones({B, N}, bopts);
  return at::arange(N, lengths->options()).unsqueeze(0) < lengths->unsqueeze(1);
}

// [B, N] bool: point inside its length with a non-finite coordinate.
inline at::Tensor nonfinite_points(const at::Tensor& p, const std::optional<at::Tensor>& lengths) {
  if (p.size(2) == 0) return at::zeros({p.size(0), p.size(1)}, p.options().dtype(at::kBool));
  return at::isfinite(p).all(-1).logical_not().logical_and(valid_points(p, lengths));
}

// p with every non-finite point's coordinates set to NaN (p itself when `check_first` finds none: the
// host check is free on CPU; on a GPU it would synchronise, so the copy is made unconditionally).
inline at::Tensor search_points(const at::Tensor& p, const at::Tensor& bad, bool check_first) {
  if (p.numel() == 0 || (check_first && !bad.any().item<bool>())) return p;
  return at::where(bad.unsqueeze(-1), at::full({}, std::numeric_limits<double>::quiet_NaN(), p.options()), p);
}

// dist [B, N] := NaN and idx [B, N] := -1 at the non-finite points (in place).
inline void mark_nonfinite(at::Tensor& dist, at::Tensor& idx, const at::Tensor& bad) {
  if (dist.numel() == 0) return;
  dist.masked_fill_(bad, std::numeric_limits<double>::quiet_NaN());
  idx.masked_fill_(bad, -1);
}

// per-cloud values [B] + NaN where a searched cloud holds a non-finite point.
inline at::Tensor poison_clouds(const at::Tensor& per, const at::Tensor& bad_x, const at::Tensor& bad_y,
                                bool bidirectional) {
  at::Tensor bad = bad_x.any(1);
  if (bidirectional) bad = bad.logical_or(bad_y.any(1));
  return at::where(bad.to(per.device()), at::full({}, std::numeric_limits<double>::quiet_NaN(), per.options()), per);
}

}  // namespace hmore
