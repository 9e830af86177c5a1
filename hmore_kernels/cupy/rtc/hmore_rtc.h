// What NVRTC lacks and the kernel sources use: the fixed-width integers of <cstdint>, INFINITY, std::sqrt.
// Also stood in for: the runtime-API headers that the extern "C" launcher declarations of *_cuda.h name (the launchers
// themselves are compiled by nvcc only: they sit behind #ifndef __CUDACC_RTC__). NVRTC has no C or C++
// standard library headers; the files beside this one (cstdint, cstddef, cmath, math.h, cuda_runtime.h,
// cuda_runtime_api.h) stand in for them and include only this file. Used by hmore_kernels/cupy alone,
// never by nvcc or g++ (only the CuPy backend puts this folder on an include path).
#pragma once
#ifndef __CUDACC_RTC__
#error "hmore_kernels/cupy/rtc holds stand-ins for NVRTC only"
#endif

typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long int64_t;  // LP64: the same types nvcc sees on Linux, so the mangled kernel names agree
typedef unsigned long uint64_t;
typedef unsigned long size_t;
typedef long ptrdiff_t;

#ifndef INFINITY
#define INFINITY (__int_as_float(0x7f800000))
#endif
#ifndef NAN
#define NAN (__int_as_float(0x7fffffff))
#endif

namespace std {
using ::int32_t;
using ::int64_t;
using ::uint32_t;
using ::uint64_t;
using ::uint8_t;
using ::size_t;
__device__ __forceinline__ float sqrt(float v) { return ::sqrtf(v); }
__device__ __forceinline__ double sqrt(double v) { return ::sqrt(v); }
}  // namespace std

// cudaError_t and cudaStream_t (named by the launcher declarations of *_cuda.h) are NVRTC built-ins.
