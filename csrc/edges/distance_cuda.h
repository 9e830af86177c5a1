// extern "C" launcher of distance_transform's CUDA kernels (distance_cuda.cu). Plain C types only.
#pragma once

#include <cuda_runtime.h>

#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

// mask: contiguous [B, 1, H, W] of dtype (HMORE_BOOL, HMORE_U8, HMORE_F32, HMORE_F64, HMORE_F16,
// HMORE_BF16), True = nonzero; near, env_v, env_f: int32 scratch [B*H*W] each; dist: float32
// [B, 1, H, W]; idx: int64 [B, 2, H, W] or null. Requires H, W <= 32768.
cudaError_t hmore_distance_transform_cuda(const void* mask, int dtype, long long B, int H, int W, int* near,
                                          int* env_v, int* env_f, float* dist, long long* idx,
                                          cudaStream_t stream);

#ifdef __cplusplus
}
#endif
