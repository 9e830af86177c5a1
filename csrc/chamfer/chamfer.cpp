// Schemas of the Chamfer family (docs/ops.md §3, §5). Kernels are registered per dispatch key in
// chamfer_cpu.cpp and chamfer_cuda.cpp; fake kernels and autograd from Python
// (hmore_kernels/_meta_chamfer.py) once this library has loaded. The Triton twins (hmore_triton::) use
// these schemas verbatim.
//
// Points x [B, N, D], y [B, M, D]; lengths [B] int64 (None = all points); weights [B, N] / [B, M].
// Distances are float32 for float16/bfloat16 points (squared pixel distances overflow float16),
// float64 for float64 points. Ties go to the lowest index; padded results are 0 / index -1.
// deterministic: the backward uses no float atomics.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hmore, m) {
  // -> (dist [B, N] squared L2 to the nearest point of y, idx [B, N] int64); not differentiable
  m.def("nearest_neighbors(Tensor x, Tensor y, Tensor? x_lengths=None, Tensor? y_lengths=None) -> (Tensor, Tensor)");
  // -> (value: [] for 'mean'/'sum', [B] for 'none'; idx_x [B, N]; idx_y [B, M] (empty [B, 0] when
  //    bidirectional=False)). Both directions in one pass over the distance tiles. The Python API returns
  //    only the value; the indices are saved for the backward.
  m.def("chamfer_distance(Tensor x, Tensor y, Tensor? x_lengths=None, Tensor? y_lengths=None, "
        "Tensor? x_weights=None, Tensor? y_weights=None, bool squared=True, str reduction='mean', "
        "bool bidirectional=True, bool deterministic=False) -> (Tensor, Tensor, Tensor)");
  // -> (grad x, grad y, grad x_weights, grad y_weights); a weight grad is an empty tensor when that
  //    weight was None
  m.def("_chamfer_distance_backward(Tensor grad, Tensor x, Tensor y, Tensor idx_x, Tensor idx_y, "
        "Tensor? x_lengths, Tensor? y_lengths, Tensor? x_weights, Tensor? y_weights, bool squared, "
        "str reduction, bool bidirectional, bool deterministic) -> (Tensor, Tensor, Tensor, Tensor)");
  // weights [B, 1, H, W], offsets [B, 2, H, W] or None -> (centroids [B, ceil(H/p), ceil(W/p), 2] (x, y),
  // mass [B, ceil(H/p), ceil(W/p)]); a patch with zero mass gets the centre of its in-image pixels
  m.def("patch_centroids(Tensor weights, int patch_size, Tensor? offsets=None) -> (Tensor, Tensor)");
  // -> (grad weights, grad offsets (empty when offsets was None))
  m.def("_patch_centroids_backward(Tensor grad_centroids, Tensor grad_mass, Tensor weights, Tensor? offsets, "
        "Tensor centroids, Tensor mass, int patch_size) -> (Tensor, Tensor)");
  // a, b [B, 1, H, W] soft edge maps -> [] ('mean', 'sum') or [B] ('none'), the H-MoRe boundary term
  m.def("patch_centroid_chamfer(Tensor a, Tensor b, int[] patch_sizes=[8, 16, 32], float min_mass=0.001, "
        "str reduction='mean') -> Tensor");
  m.def("_patch_centroid_chamfer_backward(Tensor grad, Tensor a, Tensor b, int[] patch_sizes, float min_mass, "
        "str reduction) -> (Tensor, Tensor)");
  // a, b [B, 1, H, W] bool -> float32 [] or [B]: exact symmetric Chamfer via distance_transform; no gradient
  m.def("boundary_chamfer(Tensor a, Tensor b, str reduction='mean') -> Tensor");
}
