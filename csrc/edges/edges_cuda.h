// extern "C" launchers of the edge-family CUDA kernels (edges_cuda.cu), called by the torch glue
// (edges_cuda.cpp). Raw pointers to contiguous tensors, sizes, a dtype code (HmoreDtype in hd.h) and a
// stream; each returns the first CUDA error it saw. Integer mode codes are the enums of common.h
// (Border, DerivKernel, BoundaryMode). Workspaces are allocated by the caller (sizes from the
// *_workspace_bytes functions) so that memory comes from PyTorch's caching allocator.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#ifdef __cplusplus
extern "C" {
#endif

// x [N, H, W] -> out [N, 2, H, W]
cudaError_t hmore_sobel_forward_cuda(const void* x, void* out, int64_t N, int H, int W, int dtype, int border,
                                     int normalized, cudaStream_t stream);
// grad [N, 2, H, W] -> out [N, H, W]
cudaError_t hmore_sobel_backward_cuda(const void* grad, void* out, int64_t N, int H, int W, int dtype, int border,
                                      int normalized, cudaStream_t stream);
// x [B, C, H, W] -> out [B, 1 or C, H, W]; C >= 1
cudaError_t hmore_gradient_magnitude_forward_cuda(const void* x, void* out, int64_t B, int64_t C, int H, int W,
                                                  int dtype, int kernel, int reduce_sum, double eps,
                                                  cudaStream_t stream);
// grad, mag [B, 1 or C, H, W], x [B, C, H, W] -> out [B, C, H, W]
cudaError_t hmore_gradient_magnitude_backward_cuda(const void* grad, const void* x, const void* mag, void* out,
                                                   int64_t B, int64_t C, int H, int W, int dtype, int kernel,
                                                   int reduce_sum, cudaStream_t stream);

// mask [B, H, W] (dtype: float types or HMORE_BOOL) -> out [B, H, W] of the same dtype
size_t hmore_mask_boundary_workspace_bytes(int64_t B, int H, int W, int dtype, int backward);
cudaError_t hmore_mask_boundary_forward_cuda(const void* mask, void* out, void* workspace, int64_t B, int H, int W,
                                             int dtype, int mode, int width, cudaStream_t stream);
// grad, mask [B, H, W] float types -> out [B, H, W]
cudaError_t hmore_mask_boundary_backward_cuda(const void* grad, const void* mask, void* out, void* workspace,
                                              int64_t B, int H, int W, int dtype, int mode, int width,
                                              cudaStream_t stream);

// flow [B, 2, H, W], band [B, H, W] of the flow's dtype or null -> out [B, H, W]
size_t hmore_flow_edges_workspace_bytes(int64_t B, int H, int W, int dtype, int backward);
cudaError_t hmore_flow_edges_forward_cuda(const void* flow, const void* band, void* out, void* workspace, int64_t B,
                                          int H, int W, int dtype, int normalize, cudaStream_t stream);
// grad [B, H, W], flow [B, 2, H, W], band or null -> out [B, 2, H, W]
cudaError_t hmore_flow_edges_backward_cuda(const void* grad, const void* flow, const void* band, void* out,
                                           void* workspace, int64_t B, int H, int W, int dtype, int normalize,
                                           cudaStream_t stream);

#ifdef __cplusplus
}
#endif
