// extern "C" launchers of the correlation-family CUDA kernels (corr_cuda.cu), called by the torch glue
// (corr_cuda.cpp). Raw pointers to contiguous tensors, sizes, a dtype code (HmoreDtype in hd.h: F32, F16
// or BF16 -- float64 is not supported on the GPU) and a stream; each returns the first CUDA error it saw
// (cudaErrorInvalidValue for arguments it cannot launch). Layout codes are corr_kernels.cuh's
// (kLayoutRaft, kLayoutYX). corr_volume / corr_pyramid are GEMMs done by the glue (cuBLAS via ATen).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#ifdef __cplusplus
extern "C" {
#endif

#define HMORE_CORR_MAX_LEVELS 8  // pyramid levels per lookup launch (the glue loops over chunks)

// corr_lookup forward for levels l0 .. l0+nl-1 (nl <= HMORE_CORR_MAX_LEVELS) of a pyramid of ltot levels.
// levels[i]: [N, h[i], w[i]] of `dtype`, N = B*H1*W1; coords [B, 2, H1, W1] float32;
// out [B, ltot*(2r+1)^2, H1, W1] float32 (channels of these levels written).
cudaError_t hmore_corr_lookup_forward_cuda(const void* const* levels, const int* h, const int* w, int l0, int nl,
                                           int ltot, const float* coords, float* out, int64_t B, int64_t H1,
                                           int64_t W1, int radius, int layout, int dtype, cudaStream_t stream);
// Backward: grad [B, ltot*T, H1, W1] float32 -> glevels[i] (zero-filled by the caller, dtype of the
// pyramid; only the window of each query is written) and gcoords [B, 2, H1, W1] float32 (accumulate:
// add to it instead of overwriting, for the chunks after the first).
cudaError_t hmore_corr_lookup_backward_cuda(const void* const* levels, void* const* glevels, const int* h,
                                            const int* w, int l0, int nl, int ltot, const float* grad,
                                            const float* coords, float* gcoords, int accumulate, int64_t B,
                                            int64_t H1, int64_t W1, int radius, int layout, int dtype,
                                            cudaStream_t stream);

// corr_lookup_otf. f1 [N, D] channels-last (N = B*H1*W1); f2: the pooled fmap2 levels channels-last in one
// buffer, level l = [B, h[l], w[l], D] at element offset off[l]; both of `dtype`. coords float32.
// num_levels <= HMORE_CORR_MAX_LEVELS; the (2r+2)^2 window of a level must fit the shared memory
// (hmore_corr_otf_supported).
int hmore_corr_otf_supported(int radius, int num_levels);
// out [B, L*T, H1, W1] float32
cudaError_t hmore_corr_otf_forward_cuda(const void* f1, const void* f2, const int64_t* off, const int* h,
                                        const int* w, int num_levels, const float* coords, float* out, int64_t B,
                                        int64_t H1, int64_t W1, int64_t D, int radius, int layout, float scale,
                                        int dtype, cudaStream_t stream);
// Backward. grad [B, L*T, H1, W1] float32 -> gcoords [B, 2, H1, W1] float32, gf1 [N, D] float32, and the
// gradient of the pooled levels g2 (float32, channels-last, level l at element offset goff[l] =
// tstart[l] * D, zero-filled by the caller):
//  deterministic == 0: scattered with float atomics here (gw, keys unused, may be null);
//  deterministic != 0: gw [N, L, (2r+2)^2] float32 and keys [N, L, (2r+2)^2] int64 (flat target index
//  tstart[l] + (b*h + y)*w + x, or `total` where none) are written for hmore_corr_otf_scatter_cuda.
cudaError_t hmore_corr_otf_backward_cuda(const void* f1, const void* f2, const int64_t* off, const int* h,
                                         const int* w, const int64_t* tstart, int64_t total, int num_levels,
                                         const float* grad, const float* coords, float* gcoords, float* gf1,
                                         float* g2, float* gw, int64_t* keys, int deterministic, int64_t B,
                                         int64_t H1, int64_t W1, int64_t D, int radius, int layout, float scale,
                                         int dtype, cudaStream_t stream);
// Deterministic scatter: order [E] = stable argsort of keys, start [total + 1] = segment starts of each
// target in the sorted keys; g2[u, :] = scale * sum_{e in segment u, in order} gw[order[e]] f1(n(e), :),
// n(e) = order[e] / entries_per_query.
cudaError_t hmore_corr_otf_scatter_cuda(const int64_t* order, const int64_t* start, const float* gw,
                                        const void* f1, float* g2, int64_t total, int64_t D,
                                        int64_t entries_per_query, float scale, int dtype, cudaStream_t stream);
// Adjoint of avg_pool2d(2, floor) on channels-last float32: g_fine[b, y, x, :] += g_coarse[b, y/2, x/2, :] / 4
// for y < 2*hc, x < 2*wc. g_fine [B, hf, wf, D], g_coarse [B, hc, wc, D].
cudaError_t hmore_corr_unpool_add_cuda(float* g_fine, const float* g_coarse, int64_t B, int64_t hf, int64_t wf,
                                       int64_t hc, int64_t wc, int64_t D, cudaStream_t stream);

// local_corr: fmap1, fmap2 [B, D, H, W] of `dtype` -> out [B, (2d+1)^2, Ho, Wo] of `dtype`.
cudaError_t hmore_local_corr_forward_cuda(const void* f1, const void* f2, void* out, int64_t B, int64_t D,
                                          int64_t H, int64_t W, int max_displacement, int stride, int dilation,
                                          float scale, int dtype, cudaStream_t stream);
// grad [B, (2d+1)^2, Ho, Wo] float32 -> g1, g2 [B, D, H, W] of `dtype` (gathers, every element written once).
cudaError_t hmore_local_corr_backward_cuda(const float* grad, const void* f1, const void* f2, void* g1, void* g2,
                                           int64_t B, int64_t D, int64_t H, int64_t W, int max_displacement,
                                           int stride, int dilation, float scale, int dtype, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
