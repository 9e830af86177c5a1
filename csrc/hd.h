// Plain-C/C++ helpers shared by host and device code: no torch headers, so g++ (CPU kernels), nvcc
// (CUDA kernels) and NVRTC (CuPy) can all include it.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__) || defined(__CUDACC_RTC__)
#define HMORE_HD __host__ __device__ __forceinline__
#define HMORE_DEVICE_CODE 1
#else
#define HMORE_HD inline
#endif

// dtype codes passed to the extern "C" CUDA launchers (they take void* data). Part of the ABI
// between *_cuda.cpp and *_cuda.cu: never renumber.
enum HmoreDtype : int {
  HMORE_F32 = 0,
  HMORE_F64 = 1,
  HMORE_F16 = 2,
  HMORE_BF16 = 3,
  HMORE_U8 = 4,
  HMORE_BOOL = 5,
};
