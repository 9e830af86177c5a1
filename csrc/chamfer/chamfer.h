// The Chamfer op family (docs/ops.md §3, §5). Each function here is the implementation registered for one
// dispatch key; the schemas (with shapes) live in chamfer.cpp, the per-element math in
// chamfer_kernels.cuh. Points x [B, N, D], y [B, M, D]; lengths [B] int64; weights [B, N] / [B, M].
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace hmore {

// -> (dist [B, N] squared L2 to the nearest point of y, idx [B, N] int64; 0 / -1 past x_lengths and when
// y is empty)
std::tuple<at::Tensor, at::Tensor> nearest_neighbors_cpu(const at::Tensor& x, const at::Tensor& y,
                                                         const std::optional<at::Tensor>& x_lengths,
                                                         const std::optional<at::Tensor>& y_lengths);

// -> (value [] or [B], idx_x [B, N], idx_y [B, M] or [B, 0])
std::tuple<at::Tensor, at::Tensor, at::Tensor> chamfer_distance_cpu(
    const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& x_lengths,
    const std::optional<at::Tensor>& y_lengths, const std::optional<at::Tensor>& x_weights,
    const std::optional<at::Tensor>& y_weights, bool squared, const std::string& reduction, bool bidirectional,
    bool deterministic);

// -> (grad x [B, N, D], grad y [B, M, D], grad x_weights [B, N] or empty, grad y_weights [B, M] or empty)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& idx_x,
    const at::Tensor& idx_y, const std::optional<at::Tensor>& x_lengths, const std::optional<at::Tensor>& y_lengths,
    const std::optional<at::Tensor>& x_weights, const std::optional<at::Tensor>& y_weights, bool squared,
    const std::string& reduction, bool bidirectional, bool deterministic);

// weights [B, 1, H, W], offsets [B, 2, H, W] or none -> (centroids [B, Hp, Wp, 2], mass [B, Hp, Wp])
std::tuple<at::Tensor, at::Tensor> patch_centroids_cpu(const at::Tensor& weights, int64_t patch_size,
                                                       const std::optional<at::Tensor>& offsets);
// -> (grad weights [B, 1, H, W], grad offsets [B, 2, H, W] or empty)
std::tuple<at::Tensor, at::Tensor> patch_centroids_backward_cpu(const at::Tensor& grad_centroids,
                                                                const at::Tensor& grad_mass,
                                                                const at::Tensor& weights,
                                                                const std::optional<at::Tensor>& offsets,
                                                                const at::Tensor& centroids, const at::Tensor& mass,
                                                                int64_t patch_size);

// a, b [B, 1, H, W] -> [] or [B]
at::Tensor patch_centroid_chamfer_cpu(const at::Tensor& a, const at::Tensor& b, at::IntArrayRef patch_sizes,
                                      double min_mass, const std::string& reduction);
std::tuple<at::Tensor, at::Tensor> patch_centroid_chamfer_backward_cpu(const at::Tensor& grad, const at::Tensor& a,
                                                                       const at::Tensor& b,
                                                                       at::IntArrayRef patch_sizes, double min_mass,
                                                                       const std::string& reduction);

// a, b [B, 1, H, W] bool -> float32 [] or [B]
at::Tensor boundary_chamfer_cpu(const at::Tensor& a, const at::Tensor& b, const std::string& reduction);

// Reductions of chamfer_distance / patch_centroid_chamfer / boundary_chamfer.
// The integer values are ABI of the extern "C" CUDA launchers: never renumber.
enum class ChamferReduction : int { Mean = 0, Sum = 1, None = 2 };

inline ChamferReduction parse_chamfer_reduction(const std::string& s) {
  if (s == "mean") return ChamferReduction::Mean;
  if (s == "sum") return ChamferReduction::Sum;
  if (s == "none") return ChamferReduction::None;
  TORCH_CHECK_VALUE(false, "reduction: expected 'mean', 'sum' or 'none', got '", s, "'");
}

}  // namespace hmore
