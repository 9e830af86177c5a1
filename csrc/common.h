// Shared helpers for the torch-facing glue (CPU and CUDA): argument parsing and checks.
// Kernels themselves never include this file; they take raw pointers so that nvcc, g++ and
// NVRTC (CuPy) can all compile them without torch headers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>

namespace hmore {

// Largest value of each integer argument, the same on every backend (hmore_kernels/_validate.py,
// INT_LIMITS, says why each is what it is). The schemas take int64; the kernels index in 32 bits.
constexpr int64_t kMaxRadius = 1024;             // (2r+1)^2 taps per query pixel
constexpr int64_t kMaxDisplacement = 1024;       // (2d+1)^2 output channels
constexpr int64_t kMaxLevels = 62;               // level l is scaled by 2^-l
constexpr int64_t kMaxDilation = int64_t{1} << 20;  // d * dilation is a 32-bit tap offset
constexpr int64_t kMaxStride = 2147483647;       // i * stride in 32 bits
constexpr int64_t kMaxWidth = (int64_t{1} << 30) - 1;  // 2 * width + 1 (mask_boundary width, flow_edges band)
constexpr int64_t kMaxPatch = 46340;             // p * p in 32 bits

// An integer argument in [lo, hi]; the message matches the Python layer's.
inline void check_int_arg(int64_t v, const char* name, int64_t lo, int64_t hi) {
  TORCH_CHECK_VALUE(v >= lo, name, ": expected an int >= ", lo, ", got ", v);
  TORCH_CHECK_VALUE(v <= hi, name, ": expected an int <= ", hi, ", got ", v);
}

// Border handling shared by every stencil op. The integer values are part of the ABI of the
// extern "C" CUDA launchers (they receive an int), so never renumber them.
enum class Border : int { Replicate = 0, Reflect101 = 1, Zeros = 2 };

inline Border parse_border(const std::string& s) {
  if (s == "replicate") return Border::Replicate;
  if (s == "reflect101") return Border::Reflect101;
  if (s == "zeros") return Border::Zeros;
  TORCH_CHECK_VALUE(false, "border: expected 'replicate', 'reflect101' or 'zeros', got '", s, "'");
}

// 0 = Sobel (normalised by 1/8), 1 = Scharr (normalised by 1/32).
enum class DerivKernel : int { Sobel = 0, Scharr = 1 };

inline DerivKernel parse_deriv_kernel(const std::string& s) {
  if (s == "sobel") return DerivKernel::Sobel;
  if (s == "scharr") return DerivKernel::Scharr;
  TORCH_CHECK_VALUE(false, "kernel: expected 'sobel' or 'scharr', got '", s, "'");
}

// mask_boundary modes.
enum class BoundaryMode : int { Inner = 0, Outer = 1, Thick = 2 };

inline BoundaryMode parse_boundary_mode(const std::string& s) {
  if (s == "inner") return BoundaryMode::Inner;
  if (s == "outer") return BoundaryMode::Outer;
  if (s == "thick") return BoundaryMode::Thick;
  TORCH_CHECK_VALUE(false, "mode: expected 'inner', 'outer' or 'thick', got '", s, "'");
}

inline bool parse_reduce(const std::string& s) {  // true = sum over channels
  if (s == "sum") return true;
  if (s == "none") return false;
  TORCH_CHECK_VALUE(false, "reduce: expected 'sum' or 'none', got '", s, "'");
}

inline void check_rank(const at::Tensor& t, int64_t rank, const char* name, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == rank, name, ": expected a ", rank, "-D tensor ", layout, ", got shape ",
                    t.sizes());
}

inline void check_float(const at::Tensor& t, const char* name, bool allow_half) {
  auto st = t.scalar_type();
  bool ok = st == at::kFloat || st == at::kDouble ||
            (allow_half && (st == at::kHalf || st == at::kBFloat16));
  TORCH_CHECK_TYPE(ok, name, ": expected a floating-point tensor (float32, float64",
                   allow_half ? ", float16, bfloat16" : "", "), got ", st);
}

inline void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK_VALUE(a.device() == b.device(), an, " and ", bn, " must be on the same device, got ",
                    a.device(), " and ", b.device());
}

}  // namespace hmore
