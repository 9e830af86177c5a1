// The edge/boundary op family (docs/ops.md §2). Shapes: images [B, C, H, W], masks [B, 1, H, W].
// Each function here is the implementation registered for one dispatch key; the schemas live in
// edges.cpp. Strings select modes exactly as the Python API spells them.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

namespace hmore {

// sobel: x [B, C, H, W] -> [B, C, 2, H, W] (d/dx, d/dy); 3x3 Sobel, /8 when normalized.
at::Tensor sobel_cpu(const at::Tensor& x, bool normalized, const std::string& border);
// adjoint of sobel: grad [B, C, 2, H, W] -> [B, C, H, W]
at::Tensor sobel_backward_cpu(const at::Tensor& grad, bool normalized, const std::string& border);

// gradient_magnitude: x [B, C, H, W] -> [B, 1, H, W] (reduce="sum") or [B, C, H, W] ("none");
// sqrt(sum gx^2 + gy^2 + eps), replicate border, normalised Sobel (/8) or Scharr (/32).
at::Tensor gradient_magnitude_cpu(const at::Tensor& x, const std::string& kernel, const std::string& reduce,
                                  double eps);
// grad like the output, x the input, mag the forward output -> grad wrt x [B, C, H, W]
at::Tensor gradient_magnitude_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mag,
                                           const std::string& kernel, const std::string& reduce, double eps);

// mask_boundary: mask [B, 1, H, W] (bool or float) -> same shape and dtype.
at::Tensor mask_boundary_cpu(const at::Tensor& mask, const std::string& mode, int64_t width);
// float masks only: grad [B, 1, H, W], mask [B, 1, H, W] -> grad wrt mask
at::Tensor mask_boundary_backward_cpu(const at::Tensor& grad, const at::Tensor& mask, const std::string& mode,
                                      int64_t width);

// flow_edges: flow [B, 2, H, W], mask [B, 1, H, W] or none, band >= 0 or none -> [B, 1, H, W]
at::Tensor flow_edges_cpu(const at::Tensor& flow, const std::optional<at::Tensor>& mask,
                          std::optional<int64_t> band, bool normalize);
// grad [B, 1, H, W] -> grad wrt flow [B, 2, H, W] (the mask has no gradient)
at::Tensor flow_edges_backward_cpu(const at::Tensor& grad, const at::Tensor& flow,
                                   const std::optional<at::Tensor>& mask, std::optional<int64_t> band,
                                   bool normalize);

// canny: img [B, 1 or 3, H, W] (uint8 or float, values 0..255) -> bool [B, 1, H, W]
at::Tensor canny_cpu(const at::Tensor& img, double low, double high, int64_t kernel_size, bool l2_gradient);

// distance_transform: mask [B, 1, H, W] (True = nonzero) -> (dist float32 [B, 1, H, W],
// indices int64 [B, 2, H, W] (y, x) or an empty [0] tensor when return_indices is false)
std::tuple<at::Tensor, at::Tensor> distance_transform_cpu(const at::Tensor& mask, bool return_indices);

// CUDA twins (built only with CUDA); same contracts.
at::Tensor sobel_cuda(const at::Tensor& x, bool normalized, const std::string& border);
at::Tensor sobel_backward_cuda(const at::Tensor& grad, bool normalized, const std::string& border);
at::Tensor gradient_magnitude_cuda(const at::Tensor& x, const std::string& kernel, const std::string& reduce,
                                   double eps);
at::Tensor gradient_magnitude_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mag,
                                            const std::string& kernel, const std::string& reduce, double eps);
at::Tensor mask_boundary_cuda(const at::Tensor& mask, const std::string& mode, int64_t width);
at::Tensor mask_boundary_backward_cuda(const at::Tensor& grad, const at::Tensor& mask, const std::string& mode,
                                       int64_t width);
at::Tensor flow_edges_cuda(const at::Tensor& flow, const std::optional<at::Tensor>& mask,
                           std::optional<int64_t> band, bool normalize);
at::Tensor flow_edges_backward_cuda(const at::Tensor& grad, const at::Tensor& flow,
                                    const std::optional<at::Tensor>& mask, std::optional<int64_t> band,
                                    bool normalize);
at::Tensor canny_cuda(const at::Tensor& img, double low, double high, int64_t kernel_size, bool l2_gradient);
std::tuple<at::Tensor, at::Tensor> distance_transform_cuda(const at::Tensor& mask, bool return_indices);

}  // namespace hmore
