// extern "C" launchers of the skeleton family's CUDA kernels (skeleton_cuda.cu). Plain C types only.
// dtype: HMORE_F32 or HMORE_F64 (the glue converts float16/bfloat16 to float32). All tensors contiguous.
#pragma once

#include <cuda_runtime.h>

#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

// joints [B, J, 2], conf [B, J], bones int64 [E, 2] (checked in [0, J)) -> pts [B, E*n, 2], pconf [B, E*n].
cudaError_t hmore_skeleton_points_forward_cuda(const void* joints, const void* conf, const long long* bones,
                                               int dtype, long long B, int J, int E, int n, void* pts, void* pconf,
                                               cudaStream_t stream);
// grad_points [B, E*n, 2], grad_conf [B, E*n] -> grad_joints [B, J, 2], grad_jconf [B, J] (gather per joint).
cudaError_t hmore_skeleton_points_backward_cuda(const void* grad_points, const void* grad_conf,
                                                const long long* bones, int dtype, long long B, int J, int E, int n,
                                                void* grad_joints, void* grad_jconf, cudaStream_t stream);
// pts [B, Q, 2], w [B, Q] point weights (NaN = excluded), mask bytes [B, H, W] (nonzero = inside),
// pts1 [B, Q, 2] or null. Writes idx int64 [B, H, W] if not null, and off [B, 2, H, W] + valid
// (bytes, [B, H, W]) if not null (offset = pts1 - pts of the matched point).
cudaError_t hmore_skeleton_match_cuda(const void* pts, const void* pts1, const void* w, const unsigned char* mask,
                                      int dtype, long long B, int Q, int H, int W, long long* idx, void* off,
                                      unsigned char* valid, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
