// The skeleton family's CUDA glue: checks (shared with the CPU glue, skeleton.h), dtype conversion,
// allocation, stream; the kernels are in skeleton_cuda.cu.
//
// float16/bfloat16 points/joints are converted to float32 here (the coordinates and costs are float32;
// docs/ops.md), and the results rounded back to the input dtype; float32 and float64 run natively.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"
#include "skeleton/skeleton.h"
#include "skeleton/skeleton_cuda.h"

namespace hmore {
namespace {

at::ScalarType compute_type(at::ScalarType st) {
  return st == at::kDouble ? at::kDouble : at::kFloat;
}

int dtype_code(at::ScalarType st) { return st == at::kDouble ? HMORE_F64 : HMORE_F32; }

void check_cuda_tensor(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), name, ": expected a CUDA tensor, got device ", t.device());
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> skeleton_points_cuda(const at::Tensor& joints, const at::Tensor& conf,
                                                                    const at::Tensor& bones, int64_t points_per_bone) {
  skel::check_points(joints, "joints", conf, "conf", "J", /*allow_half=*/true);
  skel::check_points_per_bone(points_per_bone);
  check_cuda_tensor(joints, "joints");
  const int64_t B = joints.size(0), J = joints.size(1), n = points_per_bone;
  at::Tensor bl = skel::check_bones(bones, J);  // CPU int64 (a CUDA bones tensor is read back once)
  const int64_t E = bl.size(0);
  TORCH_CHECK_VALUE(E * n < (int64_t{1} << 31), "points_per_bone: expected E * points_per_bone < 2^31, got ", E, " * ",
                    n);
  TORCH_CHECK_VALUE(J < (int64_t{1} << 31), "joints: expected fewer than 2^31 joints, got shape ", joints.sizes());
  const c10::cuda::CUDAGuard guard(joints.device());
  at::Tensor bone = at::arange(E, joints.options().dtype(at::kLong)).repeat_interleave(n);
  const auto ct = compute_type(joints.scalar_type());
  at::Tensor pts = at::empty({B, E * n, 2}, joints.options().dtype(ct));
  at::Tensor pc = at::empty({B, E * n}, joints.options().dtype(ct));
  if (pts.numel() > 0) {
    at::Tensor jc = joints.to(ct).contiguous(), cc = conf.to(ct).contiguous();
    at::Tensor bd = bl.to(joints.device());
    check_launch(hmore_skeleton_points_forward_cuda(jc.data_ptr(), cc.data_ptr(),
                                                    reinterpret_cast<const long long*>(bd.data_ptr<int64_t>()),
                                                    dtype_code(ct), B, int(J), int(E), int(n), pts.data_ptr(),
                                                    pc.data_ptr(), stream()),
                 "skeleton_points");
  }
  return {pts.to(joints.scalar_type()), pc.to(joints.scalar_type()), bone};
}

std::tuple<at::Tensor, at::Tensor> skeleton_points_backward_cuda(const at::Tensor& grad_points,
                                                                 const at::Tensor& grad_conf, const at::Tensor& bones,
                                                                 int64_t num_joints, int64_t points_per_bone) {
  skel::check_points(grad_points, "grad_points", grad_conf, "grad_conf", "E*n", /*allow_half=*/true);
  skel::check_points_per_bone(points_per_bone);
  check_cuda_tensor(grad_points, "grad_points");
  TORCH_CHECK_VALUE(num_joints >= 0 && num_joints < (int64_t{1} << 31), "num_joints: expected an int in [0, 2^31), got ",
                    num_joints);
  at::Tensor bl = skel::check_bones(bones, num_joints);
  const int64_t B = grad_points.size(0), E = bl.size(0), n = points_per_bone, J = num_joints;
  TORCH_CHECK_VALUE(grad_points.size(1) == E * n, "grad_points: expected shape [", B, ", ", E * n, ", 2] (E = ", E,
                    " bones x ", n, " points), got ", grad_points.sizes());
  const c10::cuda::CUDAGuard guard(grad_points.device());
  const auto ct = compute_type(grad_points.scalar_type());
  at::Tensor gj = at::empty({B, J, 2}, grad_points.options().dtype(ct));
  at::Tensor gc = at::empty({B, J}, grad_points.options().dtype(ct));
  if (gj.numel() > 0) {
    at::Tensor gpc = grad_points.to(ct).contiguous(), gcc = grad_conf.to(ct).contiguous();
    at::Tensor bd = bl.to(grad_points.device());
    check_launch(hmore_skeleton_points_backward_cuda(gpc.data_ptr(), gcc.data_ptr(),
                                                     reinterpret_cast<const long long*>(bd.data_ptr<int64_t>()),
                                                     dtype_code(ct), B, int(J), int(E), int(n), gj.data_ptr(),
                                                     gc.data_ptr(), stream()),
                 "_skeleton_points_backward");
  }
  return {gj.to(grad_points.scalar_type()), gc.to(grad_points.scalar_type())};
}

namespace {

// The shared body of skeleton_match (pts1 undefined) and skeleton_offset_map.
void match_cuda(const at::Tensor& pts, const at::Tensor* pts1, const at::Tensor& conf, const at::Tensor& mask,
                double eps, at::Tensor* idx, at::Tensor* off, at::Tensor* valid) {
  const int64_t B = pts.size(0), Q = pts.size(1), H = mask.size(2), W = mask.size(3);
  const auto ct = compute_type(pts.scalar_type());
  at::Tensor p0 = pts.to(ct).contiguous();
  at::Tensor p1 = pts1 != nullptr ? pts1->to(ct).contiguous() : at::Tensor();
  at::Tensor w = skel::point_weights(conf, eps, ct);
  at::Tensor m = skel::mask_bytes(mask);
  check_launch(hmore_skeleton_match_cuda(
                   p0.data_ptr(), pts1 != nullptr ? p1.data_ptr() : nullptr, w.data_ptr(),
                   static_cast<const unsigned char*>(m.data_ptr()), dtype_code(ct), B, int(Q), int(H), int(W),
                   idx != nullptr ? reinterpret_cast<long long*>(idx->data_ptr<int64_t>()) : nullptr,
                   off != nullptr ? off->data_ptr() : nullptr,
                   valid != nullptr ? static_cast<unsigned char*>(valid->data_ptr()) : nullptr, stream()),
               pts1 != nullptr ? "skeleton_offset_map" : "skeleton_match");
}

}  // namespace

at::Tensor skeleton_match_cuda(const at::Tensor& points, const at::Tensor& conf, const at::Tensor& mask, double eps) {
  skel::check_match_args(points, "points", nullptr, conf, mask, eps, "skeleton_match", /*allow_half=*/true);
  check_cuda_tensor(points, "points");
  const c10::cuda::CUDAGuard guard(points.device());
  at::Tensor idx = at::empty({points.size(0), mask.size(2), mask.size(3)}, points.options().dtype(at::kLong));
  if (idx.numel() == 0) return idx;
  match_cuda(points, nullptr, conf, mask, eps, &idx, nullptr, nullptr);
  return idx;
}

std::tuple<at::Tensor, at::Tensor> skeleton_offset_map_cuda(const at::Tensor& points_t, const at::Tensor& points_t1,
                                                            const at::Tensor& conf, const at::Tensor& mask,
                                                            double eps) {
  skel::check_match_args(points_t, "points_t", &points_t1, conf, mask, eps, "skeleton_offset_map",
                         /*allow_half=*/true);
  check_cuda_tensor(points_t, "points_t");
  const c10::cuda::CUDAGuard guard(points_t.device());
  const int64_t B = points_t.size(0), H = mask.size(2), W = mask.size(3);
  const auto ct = compute_type(points_t.scalar_type());
  at::Tensor off = at::empty({B, 2, H, W}, points_t.options().dtype(ct));
  at::Tensor valid = at::empty({B, 1, H, W}, points_t.options().dtype(at::kBool));
  if (valid.numel() == 0) return {off.to(points_t.scalar_type()), valid};
  match_cuda(points_t, &points_t1, conf, mask, eps, nullptr, &off, &valid);
  return {off.to(points_t.scalar_type()), valid};
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CUDA, m) {
  m.impl("skeleton_points", &hmore::skeleton_points_cuda);
  m.impl("_skeleton_points_backward", &hmore::skeleton_points_backward_cuda);
  m.impl("skeleton_match", &hmore::skeleton_match_cuda);
  m.impl("skeleton_offset_map", &hmore::skeleton_offset_map_cuda);
}
