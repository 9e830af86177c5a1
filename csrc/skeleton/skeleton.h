// The skeleton family (docs/ops.md §4, §5): declarations of the per-dispatch-key implementations, and the
// argument checks and preprocessing shared by the CPU and CUDA glue (so both keys reject bad input with
// the same message and compute the same point weights; the Python layer validates too, but
// torch.ops.hmore.* is public).
//
// Shapes: joints [B, J, 2] (x, y) in pixels, joint confidences [B, J], bones int64 [E, 2] (joint
// indices), sampled points [B, Q, 2] with confidences [B, Q], masks [B, 1, H, W].
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "common.h"

namespace hmore {

// skeleton_points: (points [B, E*n, 2], conf [B, E*n], bone int64 [E*n]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> skeleton_points_cpu(const at::Tensor& joints, const at::Tensor& conf,
                                                                   const at::Tensor& bones, int64_t points_per_bone);
// grads of points [B, E*n, 2] and conf [B, E*n] -> (grad joints [B, J, 2], grad conf [B, J]); a gather
// per joint (no atomics, deterministic).
std::tuple<at::Tensor, at::Tensor> skeleton_points_backward_cpu(const at::Tensor& grad_points,
                                                                const at::Tensor& grad_conf, const at::Tensor& bones,
                                                                int64_t num_joints, int64_t points_per_bone);
// skeleton_match: idx int64 [B, H, W] (-1 outside the mask / no candidate).
at::Tensor skeleton_match_cpu(const at::Tensor& points, const at::Tensor& conf, const at::Tensor& mask, double eps);
// skeleton_offset_map: (offset [B, 2, H, W] dtype of points_t, valid bool [B, 1, H, W]).
std::tuple<at::Tensor, at::Tensor> skeleton_offset_map_cpu(const at::Tensor& points_t, const at::Tensor& points_t1,
                                                           const at::Tensor& conf, const at::Tensor& mask, double eps);

std::tuple<at::Tensor, at::Tensor, at::Tensor> skeleton_points_cuda(const at::Tensor& joints, const at::Tensor& conf,
                                                                    const at::Tensor& bones, int64_t points_per_bone);
std::tuple<at::Tensor, at::Tensor> skeleton_points_backward_cuda(const at::Tensor& grad_points,
                                                                 const at::Tensor& grad_conf, const at::Tensor& bones,
                                                                 int64_t num_joints, int64_t points_per_bone);
at::Tensor skeleton_match_cuda(const at::Tensor& points, const at::Tensor& conf, const at::Tensor& mask, double eps);
std::tuple<at::Tensor, at::Tensor> skeleton_offset_map_cuda(const at::Tensor& points_t, const at::Tensor& points_t1,
                                                            const at::Tensor& conf, const at::Tensor& mask,
                                                            double eps);

namespace skel {

// points [B, N, 2] float and conf [B, N] of the same dtype and device. pn/cn: argument names; what: the
// name of N ("J" or "Q").
inline void check_points(const at::Tensor& pts, const char* pn, const at::Tensor& conf, const char* cn,
                         const char* what, bool allow_half) {
  TORCH_CHECK_VALUE(pts.dim() == 3 && pts.size(2) == 2, pn, ": expected a 3-D tensor [B, ", what,
                    ", 2] of (x, y), got shape ", pts.sizes());
  check_float(pts, pn, allow_half);
  TORCH_CHECK_VALUE(conf.dim() == 2 && conf.size(0) == pts.size(0) && conf.size(1) == pts.size(1), cn,
                    ": expected shape [", pts.size(0), ", ", pts.size(1), "] to match ", pn, ", got ", conf.sizes());
  TORCH_CHECK_TYPE(conf.scalar_type() == pts.scalar_type(), cn, ": expected dtype ", pts.scalar_type(),
                   " like ", pn, ", got ", conf.scalar_type());
  check_same_device(conf, cn, pts, pn);
}

inline void check_points_per_bone(int64_t n) {
  TORCH_CHECK_VALUE(n >= 1 && n <= (int64_t{1} << 20), "points_per_bone: expected an int in [1, 2^20], got ", n);
}

// bones: [E, 2] integer joint indices in [0, J). Returns them as a contiguous int64 tensor on the CPU
// (the range check reads the values; CUDA callers copy the result to the device themselves).
inline at::Tensor check_bones(const at::Tensor& bones, int64_t J) {
  TORCH_CHECK_VALUE(bones.dim() == 2 && bones.size(1) == 2, "bones: expected a 2-D tensor [E, 2] of joint indices, got shape ",
                    bones.sizes());
  TORCH_CHECK_TYPE(at::isIntegralType(bones.scalar_type(), /*includeBool=*/false),
                   "bones: expected an integer tensor (int64), got ", bones.scalar_type());
  TORCH_CHECK_VALUE(bones.size(0) < (int64_t{1} << 31), "bones: expected fewer than 2^31 bones, got ", bones.size(0));
  at::Tensor b = bones.to(at::kCPU, at::kLong).contiguous();
  const int64_t* p = b.data_ptr<int64_t>();
  for (int64_t i = 0; i < b.numel(); ++i) {
    TORCH_CHECK_VALUE(p[i] >= 0 && p[i] < J, "bones: expected joint indices in [0, ", J, ") (J = ", J,
                      " joints), got ", p[i], " in bone ", i / 2);
  }
  return b;
}

inline void check_eps(double eps) {
  TORCH_CHECK_VALUE(eps > 0.0 && eps < 0.5, "eps: expected a float in (0, 0.5), got ", eps);
}

inline void check_no_grad(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(!t.requires_grad(), name, ": ", op,
                    " produces training targets and has no gradient; pass a tensor that does not require grad "
                    "(e.g. ", name, ".detach())");
}

// mask [B, 1, H, W]: bool, uint8 or floating point; nonzero = inside.
inline void check_mask(const at::Tensor& mask, const at::Tensor& pts, const char* pn) {
  TORCH_CHECK_VALUE(mask.dim() == 4 && mask.size(1) == 1, "mask: expected a 4-D tensor [B, 1, H, W], got shape ",
                    mask.sizes());
  TORCH_CHECK_VALUE(mask.size(0) == pts.size(0), "mask: expected batch size ", pts.size(0), " like ", pn,
                    ", got shape ", mask.sizes());
  const auto st = mask.scalar_type();
  TORCH_CHECK_TYPE(st == at::kBool || st == at::kByte || mask.is_floating_point(),
                   "mask: expected a bool, uint8 or floating-point tensor, got ", st);
  check_same_device(mask, "mask", pts, pn);
  TORCH_CHECK_VALUE(mask.size(2) < (int64_t{1} << 24) && mask.size(3) < (int64_t{1} << 24) &&
                        mask.size(2) * mask.size(3) < (int64_t{1} << 31),
                    "mask: expected H, W < 2^24 (pixel coordinates exact in float32) and H * W < 2^31, got shape ",
                    mask.sizes());
}

// All checks of skeleton_match / skeleton_offset_map (pts1: points_t1 or undefined).
inline void check_match_args(const at::Tensor& pts, const char* pn, const at::Tensor* pts1, const at::Tensor& conf,
                             const at::Tensor& mask, double eps, const char* op, bool allow_half) {
  check_points(pts, pn, conf, "conf", "Q", allow_half);
  if (pts1 != nullptr) {
    TORCH_CHECK_VALUE(pts1->sizes() == pts.sizes(), "points_t1: expected shape ", pts.sizes(), " like ", pn,
                      ", got ", pts1->sizes());
    TORCH_CHECK_TYPE(pts1->scalar_type() == pts.scalar_type(), "points_t1: expected dtype ", pts.scalar_type(),
                     " like ", pn, ", got ", pts1->scalar_type());
    check_same_device(*pts1, "points_t1", pts, pn);
  }
  check_mask(mask, pts, pn);
  check_eps(eps);
  TORCH_CHECK_VALUE(pts.size(1) < (int64_t{1} << 31), pn, ": expected fewer than 2^31 points, got shape ", pts.sizes());
  check_no_grad(pts, pn, op);
  if (pts1 != nullptr) check_no_grad(*pts1, "points_t1", op);
  check_no_grad(conf, "conf", op);
  check_no_grad(mask, "mask", op);
}

// w_q = -log(min(c_q, 1 - eps)) for c_q > eps, NaN otherwise (excluded), computed in float64 and rounded
// to `dt`. The same ATen op sequence as hmore_kernels/reference/skeleton.py::point_weights, on the same
// contiguous [B, Q] shape, so the CPU kernel and the reference see bit-identical weights.
inline at::Tensor point_weights(const at::Tensor& conf, double eps, at::ScalarType dt) {
  at::Tensor c = conf.to(at::kDouble).contiguous();
  at::Tensor w = c.clamp_max(1.0 - eps).log().neg();
  w = at::where(c.gt(eps), w, std::numeric_limits<double>::quiet_NaN());
  return w.to(dt).contiguous();
}

// The mask as one byte per pixel, nonzero = inside, contiguous [B, H, W].
inline at::Tensor mask_bytes(const at::Tensor& mask) {
  const auto st = mask.scalar_type();
  at::Tensor m = (st == at::kBool || st == at::kByte) ? mask : mask.ne(0);
  return m.contiguous();
}

}  // namespace skel
}  // namespace hmore
