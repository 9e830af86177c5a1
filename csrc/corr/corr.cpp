// Schemas of the correlation family (docs/ops.md §1). Kernels are registered per dispatch key in
// corr_cpu.cpp and corr_cuda.cpp; fake kernels and autograd from Python (hmore_kernels/_meta_corr.py)
// once this library has loaded. The Triton twins (hmore_triton::) use these schemas verbatim.
//
// Shapes: fmap1, fmap2 [B, D, H, W] (fmap2 may differ in H, W for corr_volume/corr_pyramid);
// coords [B, 2, H1, W1] float32 pixels of level 0 (x, y); a pyramid level l is [B*H1*W1, 1, H2>>l, W2>>l].
// scale=None means 1/sqrt(D). layout: 'raft' (tap (dx+r)*(2r+1)+(dy+r), dx slowest) or 'yx' (dy slowest).
// deterministic: the backward uses no float atomics (the Python API passes
// torch.are_deterministic_algorithms_enabled() when the user gives None).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hmore, m) {
  // [B, H1, W1, H2, W2] = <f1(p), f2(q)> * scale, in the features' dtype (float32 accumulation)
  m.def("corr_volume(Tensor fmap1, Tensor fmap2, float? scale=None) -> Tensor");
  m.def("_corr_volume_backward(Tensor grad, Tensor fmap1, Tensor fmap2, float? scale) -> (Tensor, Tensor)");
  // num_levels tensors [B*H1*W1, 1, H2>>l, W2>>l]: RAFT's CorrBlock pyramid (avg_pool2d 2x2, floor)
  m.def("corr_pyramid(Tensor fmap1, Tensor fmap2, int num_levels=4, float? scale=None) -> Tensor[]");
  // grads: one per level, None where that level got no gradient
  m.def("_corr_pyramid_backward(Tensor?[] grads, Tensor fmap1, Tensor fmap2, float? scale) -> (Tensor, Tensor)");
  // [B, L*(2r+1)^2, H1, W1], float32 (float64 for a float64 pyramid)
  m.def("corr_lookup(Tensor[] pyramid, Tensor coords, int radius=4, str layout='raft', "
        "bool deterministic=False) -> Tensor");
  // -> (grad of every pyramid level, like the pyramid; grad of coords [B, 2, H1, W1])
  m.def("_corr_lookup_backward(Tensor grad, Tensor[] pyramid, Tensor coords, int radius, str layout, "
        "bool deterministic) -> (Tensor[], Tensor)");
  // same numbers as corr_lookup(corr_pyramid(fmap1, fmap2, num_levels, scale), coords, radius, layout)
  m.def("corr_lookup_otf(Tensor fmap1, Tensor fmap2, Tensor coords, int radius=4, int num_levels=4, "
        "float? scale=None, str layout='raft', bool deterministic=False) -> Tensor");
  // -> (grad fmap1, grad fmap2, grad coords); never materialises a volume-sized tensor
  m.def("_corr_lookup_otf_backward(Tensor grad, Tensor fmap1, Tensor fmap2, Tensor coords, int radius, "
        "int num_levels, float? scale, str layout, bool deterministic) -> (Tensor, Tensor, Tensor)");
  // [B, (2d+1)^2, ceil(H/stride), ceil(W/stride)], channel (dy+d)*(2d+1)+(dx+d), zero padding
  m.def("local_corr(Tensor fmap1, Tensor fmap2, int max_displacement, int stride=1, int dilation=1, "
        "float? scale=None) -> Tensor");
  m.def("_local_corr_backward(Tensor grad, Tensor fmap1, Tensor fmap2, int max_displacement, int stride, "
        "int dilation, float? scale) -> (Tensor, Tensor)");
}
