// TORCH_LIBRARY_IMPL(hmore, CUDA) for sobel, gradient_magnitude, mask_boundary and flow_edges: argument
// checks, .contiguous(), allocation (outputs and kernel workspaces through PyTorch's caching
// allocator), device guard and current stream, then the extern "C" launchers of edges_cuda.cu.
// Only c10/cuda headers plus ATen core, so this compiles with torch's include paths alone.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "common.h"
#include "edges/edges.h"
#include "edges/edges_checks.h"
#include "edges/edges_cuda.h"
#include "hd.h"

namespace hmore {
namespace {

int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return HMORE_F32;
    case at::kDouble:
      return HMORE_F64;
    case at::kHalf:
      return HMORE_F16;
    case at::kBFloat16:
      return HMORE_BF16;
    case at::kBool:
      return HMORE_BOOL;
    default:
      TORCH_CHECK_TYPE(false, "unsupported dtype ", t.scalar_type());
  }
}

void check_cuda_tensor(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), name, ": expected a CUDA tensor, got one on ", t.device());
}


void check_launch(cudaError_t e, const char* op) {
  TORCH_CHECK(e == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(e));
}

at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({int64_t(std::max<size_t>(bytes, 1))}, like.options().dtype(at::kByte));
}

int clamp_width(int64_t width, int64_t H, int64_t W) {
  check_int_arg(width, "width", 1, kMaxWidth);
  return int(std::min<int64_t>(width, std::max<int64_t>(H, W)));  // a wider window sees the same pixels
}


// mask_boundary on a contiguous [B, 1, H, W] mask (bool or float) on the current stream.
at::Tensor boundary_impl(const at::Tensor& mc, int mode, int w) {
  auto out = at::empty_like(mc);
  if (out.numel() == 0) return out;
  const int64_t B = mc.size(0);
  const int H = int(mc.size(2)), W = int(mc.size(3));
  const int dt = dtype_code(mc);
  auto ws = workspace(hmore_mask_boundary_workspace_bytes(B, H, W, dt, 0), mc);
  check_launch(hmore_mask_boundary_forward_cuda(mc.data_ptr(), out.data_ptr(), ws.data_ptr(), B, H, W, dt, mode, w,
                                                c10::cuda::getCurrentCUDAStream()),
               "mask_boundary");
  return out;
}

void check_cuda_flow(const at::Tensor& flow) {
  check_flow(flow, /*allow_half=*/true);
  check_cuda_tensor(flow, "flow");
}

// The band weights mask_boundary(mask as the flow's dtype, "thick", band), or an undefined tensor.
at::Tensor band_weights(const std::optional<at::Tensor>& mask, std::optional<int64_t> band, const at::Tensor& flow) {
  if (band.has_value()) check_int_arg(*band, "band", 1, kMaxWidth);
  if (!mask.has_value() || !band.has_value()) return at::Tensor();
  const auto mc = mask->to(flow.scalar_type()).contiguous();
  return boundary_impl(mc, int(BoundaryMode::Thick), clamp_width(*band, flow.size(2), flow.size(3)));
}

}  // namespace

at::Tensor sobel_cuda(const at::Tensor& x, bool normalized, const std::string& border_s) {
  check_rank(x, 4, "x", "[B, C, H, W]");
  check_float(x, "x", true);
  check_cuda_tensor(x, "x");
  const int border = int(parse_border(border_s));
  check_size_limits(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  auto out = at::empty({xc.size(0), xc.size(1), 2, xc.size(2), xc.size(3)}, xc.options());
  if (out.numel() == 0) return out;
  check_launch(hmore_sobel_forward_cuda(xc.data_ptr(), out.data_ptr(), xc.size(0) * xc.size(1), int(xc.size(2)),
                                        int(xc.size(3)), dtype_code(xc), border, normalized,
                                        c10::cuda::getCurrentCUDAStream()),
               "sobel");
  return out;
}

at::Tensor sobel_backward_cuda(const at::Tensor& grad, bool normalized, const std::string& border_s) {
  check_rank(grad, 5, "grad", "[B, C, 2, H, W]");
  TORCH_CHECK_VALUE(grad.size(2) == 2, "grad: expected shape [B, C, 2, H, W], got ", grad.sizes());
  check_float(grad, "grad", true);
  check_cuda_tensor(grad, "grad");
  const int border = int(parse_border(border_s));
  check_size_limits(grad, "grad");
  c10::cuda::CUDAGuard guard(grad.device());
  const auto g = grad.contiguous();
  auto out = at::empty({g.size(0), g.size(1), g.size(3), g.size(4)}, g.options());
  if (out.numel() == 0) return out;
  check_launch(hmore_sobel_backward_cuda(g.data_ptr(), out.data_ptr(), g.size(0) * g.size(1), int(g.size(3)),
                                         int(g.size(4)), dtype_code(g), border, normalized,
                                         c10::cuda::getCurrentCUDAStream()),
               "_sobel_backward");
  return out;
}

at::Tensor gradient_magnitude_cuda(const at::Tensor& x, const std::string& kernel_s, const std::string& reduce_s,
                                   double eps) {
  check_rank(x, 4, "x", "[B, C, H, W]");
  check_float(x, "x", true);
  check_cuda_tensor(x, "x");
  const int kernel = int(parse_deriv_kernel(kernel_s));
  const bool sum = parse_reduce(reduce_s);
  TORCH_CHECK_VALUE(eps >= 0, "eps: expected a float >= 0, got ", eps);
  check_size_limits(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const int64_t B = xc.size(0), C = xc.size(1), H = xc.size(2), W = xc.size(3);
  auto out = at::empty({B, sum ? 1 : C, H, W}, xc.options());
  if (out.numel() == 0) return out;
  if (C == 0) return out.fill_(std::sqrt(eps));  // an empty channel sum is 0: sqrt(0 + eps)
  check_launch(hmore_gradient_magnitude_forward_cuda(xc.data_ptr(), out.data_ptr(), B, C, int(H), int(W),
                                                     dtype_code(xc), kernel, sum, eps,
                                                     c10::cuda::getCurrentCUDAStream()),
               "gradient_magnitude");
  return out;
}

at::Tensor gradient_magnitude_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mag,
                                            const std::string& kernel_s, const std::string& reduce_s, double eps) {
  (void)eps;  // enters only through mag
  check_rank(x, 4, "x", "[B, C, H, W]");
  check_rank(grad, 4, "grad", "[B, C or 1, H, W]");
  check_rank(mag, 4, "mag", "[B, C or 1, H, W]");
  check_float(x, "x", true);
  check_float(grad, "grad", true);
  check_float(mag, "mag", true);
  check_cuda_tensor(x, "x");
  check_same_device(grad, "grad", x, "x");
  check_same_device(mag, "mag", x, "x");
  const int kernel = int(parse_deriv_kernel(kernel_s));
  const bool sum = parse_reduce(reduce_s);
  check_size_limits(x, "x");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const std::vector<int64_t> oshape = {B, sum ? 1 : C, H, W};
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef(oshape), "grad: expected shape ", at::IntArrayRef(oshape),
                    ", got ", grad.sizes());
  TORCH_CHECK_VALUE(mag.sizes() == at::IntArrayRef(oshape), "mag: expected shape ", at::IntArrayRef(oshape),
                    ", got ", mag.sizes());
  c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  if (xc.numel() == 0) return at::zeros({B, C, H, W}, xc.options());
  const auto gc = grad.to(xc.scalar_type()).contiguous();
  const auto mc = mag.to(xc.scalar_type()).contiguous();
  auto out = at::empty({B, C, H, W}, xc.options());
  check_launch(hmore_gradient_magnitude_backward_cuda(gc.data_ptr(), xc.data_ptr(), mc.data_ptr(), out.data_ptr(), B,
                                                      C, int(H), int(W), dtype_code(xc), kernel, sum,
                                                      c10::cuda::getCurrentCUDAStream()),
               "_gradient_magnitude_backward");
  return out;
}

at::Tensor mask_boundary_cuda(const at::Tensor& mask, const std::string& mode_s, int64_t width) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1, "mask: expected a 4-D tensor [B, 1, H, W], got shape ", mask.sizes());
  TORCH_CHECK_TYPE(mask.scalar_type() == at::kBool || mask.is_floating_point(),
                   "mask: expected a bool or floating-point tensor, got ", mask.scalar_type());
  check_cuda_tensor(mask, "mask");
  const int mode = int(parse_boundary_mode(mode_s));
  const int w = clamp_width(width, mask.size(2), mask.size(3));
  check_size_limits(mask, "mask");
  c10::cuda::CUDAGuard guard(mask.device());
  return boundary_impl(mask.contiguous(), mode, w);
}

at::Tensor mask_boundary_backward_cuda(const at::Tensor& grad, const at::Tensor& mask, const std::string& mode_s,
                                       int64_t width) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1, "mask: expected a 4-D tensor [B, 1, H, W], got shape ", mask.sizes());
  check_float(mask, "mask", true);
  check_rank(grad, 4, "grad", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(grad.sizes() == mask.sizes(), "grad: expected shape ", mask.sizes(), " like mask, got ",
                    grad.sizes());
  check_float(grad, "grad", true);
  check_cuda_tensor(mask, "mask");
  check_same_device(grad, "grad", mask, "mask");
  const int mode = int(parse_boundary_mode(mode_s));
  const int w = clamp_width(width, mask.size(2), mask.size(3));
  check_size_limits(mask, "mask");
  c10::cuda::CUDAGuard guard(mask.device());
  const auto mc = mask.contiguous();
  const auto gc = grad.to(mc.scalar_type()).contiguous();
  auto out = at::empty_like(mc);
  if (out.numel() == 0) return out;
  const int64_t B = mc.size(0);
  const int H = int(mc.size(2)), W = int(mc.size(3));
  const int dt = dtype_code(mc);
  auto ws = workspace(hmore_mask_boundary_workspace_bytes(B, H, W, dt, 1), mc);
  check_launch(hmore_mask_boundary_backward_cuda(gc.data_ptr(), mc.data_ptr(), out.data_ptr(), ws.data_ptr(), B, H, W,
                                                 dt, mode, w, c10::cuda::getCurrentCUDAStream()),
               "_mask_boundary_backward");
  return out;
}

at::Tensor flow_edges_cuda(const at::Tensor& flow, const std::optional<at::Tensor>& mask, std::optional<int64_t> band,
                           bool normalize) {
  check_cuda_flow(flow);
  if (mask.has_value()) check_mask_like(*mask, flow, "flow");
  c10::cuda::CUDAGuard guard(flow.device());
  const auto fc = flow.contiguous();
  const int64_t B = fc.size(0);
  const int H = int(fc.size(2)), W = int(fc.size(3));
  auto out = at::empty({B, 1, H, W}, fc.options());
  if (out.numel() == 0) return out;
  const at::Tensor bw = band_weights(mask, band, fc);
  const int dt = dtype_code(fc);
  auto ws = workspace(hmore_flow_edges_workspace_bytes(B, H, W, dt, 0), fc);
  check_launch(hmore_flow_edges_forward_cuda(fc.data_ptr(), bw.defined() ? bw.data_ptr() : nullptr, out.data_ptr(),
                                             ws.data_ptr(), B, H, W, dt, normalize,
                                             c10::cuda::getCurrentCUDAStream()),
               "flow_edges");
  return out;
}

at::Tensor flow_edges_backward_cuda(const at::Tensor& grad, const at::Tensor& flow,
                                    const std::optional<at::Tensor>& mask, std::optional<int64_t> band,
                                    bool normalize) {
  check_cuda_flow(flow);
  if (mask.has_value()) check_mask_like(*mask, flow, "flow");
  check_rank(grad, 4, "grad", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(grad.size(0) == flow.size(0) && grad.size(1) == 1 && grad.size(2) == flow.size(2) &&
                        grad.size(3) == flow.size(3),
                    "grad: expected shape [", flow.size(0), ", 1, ", flow.size(2), ", ", flow.size(3), "], got ",
                    grad.sizes());
  check_float(grad, "grad", true);
  check_same_device(grad, "grad", flow, "flow");
  c10::cuda::CUDAGuard guard(flow.device());
  const auto fc = flow.contiguous();
  const int64_t B = fc.size(0);
  const int H = int(fc.size(2)), W = int(fc.size(3));
  if (fc.numel() == 0) return at::zeros({B, 2, H, W}, fc.options());
  const auto gc = grad.to(fc.scalar_type()).contiguous();
  const at::Tensor bw = band_weights(mask, band, fc);
  auto out = at::empty({B, 2, H, W}, fc.options());
  const int dt = dtype_code(fc);
  auto ws = workspace(hmore_flow_edges_workspace_bytes(B, H, W, dt, 1), fc);
  check_launch(hmore_flow_edges_backward_cuda(gc.data_ptr(), fc.data_ptr(), bw.defined() ? bw.data_ptr() : nullptr,
                                              out.data_ptr(), ws.data_ptr(), B, H, W, dt, normalize,
                                              c10::cuda::getCurrentCUDAStream()),
               "_flow_edges_backward");
  return out;
}

TORCH_LIBRARY_IMPL(hmore, CUDA, m) {
  m.impl("sobel", &sobel_cuda);
  m.impl("_sobel_backward", &sobel_backward_cuda);
  m.impl("gradient_magnitude", &gradient_magnitude_cuda);
  m.impl("_gradient_magnitude_backward", &gradient_magnitude_backward_cuda);
  m.impl("mask_boundary", &mask_boundary_cuda);
  m.impl("_mask_boundary_backward", &mask_boundary_backward_cuda);
  m.impl("flow_edges", &flow_edges_cuda);
  m.impl("_flow_edges_backward", &flow_edges_backward_cuda);
}

}  // namespace hmore
