// extern "C" launchers of the Chamfer-family CUDA kernels (chamfer_cuda.cu), called by the torch glue
// (chamfer_cuda.cpp). Raw pointers to contiguous tensors, sizes, a dtype code (HmoreDtype in hd.h:
// HMORE_F32, HMORE_F16 or HMORE_BF16 for points and maps; weights, factors and every accumulation buffer
// are float32) and a stream; each returns the first CUDA error it saw (cudaErrorInvalidValue for a dtype
// or size it does not take). Buffers are allocated by the caller through PyTorch's caching allocator.
//
// Packed keys: (float bits of a squared distance) << 32 | index, as unsigned 64-bit; distances are >= 0,
// so the keys order like (distance, index) and atomicMin merges partial nearest neighbours with ties to
// the lowest index. HMORE_CHAMFER_KEY_NONE (all ones, i.e. int64 -1) = no neighbour.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#define HMORE_CHAMFER_KEY_NONE (~0ULL)

#ifdef __cplusplus
extern "C" {
#endif

// x [B, N, D], y [B, M, D]; lengths [B] or null (clamped to [0, N] / [0, M] on the device).
// kx [B, N] must hold KEY_NONE on entry (row minima: stored or atomically merged); ky [B, M] likewise, or
// null (no column minima: nearest_neighbors, bidirectional=False).
cudaError_t hmore_chamfer_pairs_cuda(const void* x, const void* y, const int64_t* x_lengths, const int64_t* y_lengths,
                                     unsigned long long* kx, unsigned long long* ky, int64_t B, int64_t N, int64_t M,
                                     int64_t D, int dtype, cudaStream_t stream);

// Number of per-cloud partials of the unpack / stats kernels (part is [B, tiles, 2]).
int64_t hmore_chamfer_tiles(int64_t N);

// keys [B, N] -> idx [B, N] int64 (-1: padding or no neighbour), dist [B, N] float32 squared distance
// (0 where idx is -1; may be null), part [B, tiles, 2] = (sum w d, sum w) per block, d squared or plain
// L2; w [B, N] float32 or null (= 1).
cudaError_t hmore_chamfer_unpack_cuda(const unsigned long long* keys, const int64_t* lengths, const float* w,
                                      int64_t* idx, float* dist, float* part, int64_t B, int64_t N, int squared,
                                      cudaStream_t stream);

// Backward, one direction src [B, N, D] -> dst [B, M, D] with idx [B, N] (-1 = no term).
// part [B, tiles, 2] = (sum w d, sum w), d recomputed from the indices.
cudaError_t hmore_chamfer_dir_stats_cuda(const void* src, const void* dst, const int64_t* idx, const float* w,
                                         float* part, int64_t B, int64_t N, int64_t M, int64_t D, int dtype,
                                         int squared, cudaStream_t stream);
// With c_i = coef[b] * w_i * term_grad_coef(d2): gs[i] += c_i (s_i - d_j) (gs float32 [B, N, D]); -c_i (s_i - d_j)
// is atomically added to gd [B, M, D] (contrib null) or stored in contrib [B * N, D] (deterministic path).
// gw [B, N] (or null) = gb[b] * weight_grad(d_i, val[b], den[b], normalise).
cudaError_t hmore_chamfer_dir_grad_cuda(const void* src, const void* dst, const int64_t* idx, const float* w,
                                        const float* coef, const float* val, const float* den, const float* gb,
                                        float* gs, float* gd, float* contrib, float* gw, int64_t B, int64_t N,
                                        int64_t M, int64_t D, int dtype, int squared, int normalise,
                                        cudaStream_t stream);
// out[q] += sum of contrib[perm[r]] for r in [start[q], start[q + 1]) in that order; q < total (flat dst).
cudaError_t hmore_chamfer_segsum_cuda(float* out, const float* contrib, const int64_t* perm, const int64_t* start,
                                      int64_t total, int64_t D, cudaStream_t stream);

// weights [B, H, W], offsets [B, 2, H, W] or null (weights' dtype) -> centroids [B, Hp, Wp, 2], mass [B, Hp, Wp]
// (weights' dtype).
cudaError_t hmore_patch_centroids_forward_cuda(const void* w, const void* off, void* centroids, void* mass, int64_t B,
                                               int64_t H, int64_t W, int64_t p, int dtype, cudaStream_t stream);
// grad_centroids, centroids [B, Hp, Wp, 2], grad_mass, mass [B, Hp, Wp] -> gw [B, H, W], go [B, 2, H, W]
// (null when offsets is null); everything in the weights' dtype.
cudaError_t hmore_patch_centroids_backward_cuda(const void* grad_centroids, const void* grad_mass, const void* w,
                                                const void* off, const void* centroids, const void* mass, void* gw,
                                                void* go, int64_t B, int64_t H, int64_t W, int64_t p, int dtype,
                                                cudaStream_t stream);

// One scale of patch_centroid_chamfer: a, b [B, H, W] -> term, count [B, Hp * Wp] float32 (term 0 and count 0
// where the patch does not count) and, if coef is not null, [B, Hp * Wp, 6] the gradient of the term w.r.t.
// (m_a, sx_a, sy_a, m_b, sx_b, sy_b) for a unit upstream gradient (pcc_term_backward with g = 1).
cudaError_t hmore_pcc_scale_cuda(const void* a, const void* b, float* term, float* count, float* coef, int64_t B,
                                 int64_t H, int64_t W, int64_t p, double min_mass, int dtype, cudaStream_t stream);
// ga, gb [B, H, W] float32 = sum over the scales s of fac[b, s] * (gm + gsx (j - j0) + gsy (i - i0)) of the
// pixel's patch. coef: the scales' coefficient arrays back to back, scale s starting at bases[s] floats;
// sizes, bases: host arrays of nscales entries; fac [B, nscales] float32 on the device.
cudaError_t hmore_pcc_backward_cuda(const float* coef, const float* fac, const int64_t* sizes, const int64_t* bases,
                                    int64_t nscales, float* ga, float* gb, int64_t B, int64_t H, int64_t W,
                                    cudaStream_t stream);

// boundary_chamfer's masked reduction: a, b [B, H * W] bytes (bool), da, db [B, H * W] float32 distance
// transforms -> part [B, tiles, 4] float64 = (#a, sum over a of db, #b, sum over b of da) per block.
int64_t hmore_boundary_chamfer_tiles(int64_t HW);
cudaError_t hmore_boundary_chamfer_reduce_cuda(const uint8_t* a, const uint8_t* b, const float* da, const float* db,
                                               double* part, int64_t B, int64_t HW, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
