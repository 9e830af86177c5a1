// extern "C" launcher of canny's CUDA kernels (canny_cuda.cu). Plain C types only, so the torch glue
// (canny_cuda.cpp), nvcc and NVRTC users can all include it.
#pragma once

#include <cuda_runtime.h>

#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

// img: contiguous [B, C, H, W] (C = 1 or 3) of dtype (HMORE_U8, HMORE_F32, HMORE_F64, HMORE_F16,
// HMORE_BF16); lo, hi: thresholds after canny_thresholds (floored, ordered, squared for L2);
// parent: int32 scratch [B*H*W]; root_strong: uint8 scratch [B*H*W]; out: bool [B, 1, H, W].
// Requires B*H*W < 2^31. A fixed sequence of launches on `stream`; never synchronises with the host.
cudaError_t hmore_canny_cuda(const void* img, int dtype, long long B, int C, int H, int W, int l2_gradient,
                             double lo, double hi, int* parent, unsigned char* root_strong, bool* out,
                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif
