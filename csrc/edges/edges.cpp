// Schemas of the edge/boundary family. Kernels are registered per dispatch key in edges_cpu.cpp,
// canny_cpu.cpp, distance_cpu.cpp and their *_cuda.cpp twins; fake kernels and autograd are
// registered from Python (hmore_kernels/_fake.py, _autograd.py) once this library has loaded.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hmore, m) {
  m.def("sobel(Tensor x, bool normalized=True, str border='replicate') -> Tensor");
  m.def("_sobel_backward(Tensor grad, bool normalized, str border) -> Tensor");
  m.def("gradient_magnitude(Tensor x, str kernel='sobel', str reduce='sum', float eps=0.0) -> Tensor");
  m.def("_gradient_magnitude_backward(Tensor grad, Tensor x, Tensor mag, str kernel, str reduce, "
        "float eps) -> Tensor");
  m.def("mask_boundary(Tensor mask, str mode='inner', int width=1) -> Tensor");
  m.def("_mask_boundary_backward(Tensor grad, Tensor mask, str mode, int width) -> Tensor");
  m.def("flow_edges(Tensor flow, Tensor? mask=None, int? band=3, bool normalize=True) -> Tensor");
  m.def("_flow_edges_backward(Tensor grad, Tensor flow, Tensor? mask, int? band, bool normalize) -> Tensor");
  m.def("canny(Tensor img, float low, float high, int kernel_size=3, bool l2_gradient=False) -> Tensor");
  m.def("distance_transform(Tensor mask, bool return_indices=False) -> (Tensor, Tensor)");
}
