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

// Multiply / add with IEEE rounding and no FMA contraction, so that the CPU (g++ on x86-64 emits no
// FMA without -mfma) and the GPU (nvcc contracts a*b+c by default) compute bit-identical results where
// exact comparisons decide an index (nearest neighbours, skeleton matching: ties must resolve the same
// way on every backend). __CUDA_ARCH__ (not HMORE_DEVICE_CODE, which nvcc's host pass sees too): the
// device pass takes the never-contracted intrinsics, every host pass the plain operators.
namespace hmore {
HMORE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
HMORE_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
HMORE_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
HMORE_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
}  // namespace hmore
