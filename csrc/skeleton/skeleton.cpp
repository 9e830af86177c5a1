// Schemas of the skeleton family (docs/ops.md §4, §5). Kernels are registered per dispatch key in
// skeleton_cpu.cpp and skeleton_cuda.cpp; fake kernels and autograd are registered from Python
// (hmore_kernels/_meta_skeleton.py) once this library has loaded.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hmore, m) {
  m.def("skeleton_points(Tensor joints, Tensor conf, Tensor bones, int points_per_bone=8) -> (Tensor, Tensor, Tensor)");
  m.def("_skeleton_points_backward(Tensor grad_points, Tensor grad_conf, Tensor bones, int num_joints, "
        "int points_per_bone) -> (Tensor, Tensor)");
  m.def("skeleton_match(Tensor points, Tensor conf, Tensor mask, float eps=1e-4) -> Tensor");
  m.def("skeleton_offset_map(Tensor points_t, Tensor points_t1, Tensor conf, Tensor mask, float eps=1e-4) "
        "-> (Tensor, Tensor)");
}
