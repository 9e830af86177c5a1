// TORCH_LIBRARY_IMPL(hmore, CUDA) for the Chamfer family: argument checks, .contiguous(), allocation through
// PyTorch's caching allocator, device guard and current stream, then the extern "C" launchers of
// chamfer_cuda.cu. The few per-cloud / per-scale partial sums the kernels leave are reduced with ATen
// (fixed order: deterministic). Nothing is read back to the host: lengths and weights are not range-checked
// here (the kernels clamp lengths), unlike on the CPU.
//
// float64 is not supported on the GPU backends (TypeError naming the argument); float16/bfloat16 are.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "chamfer/chamfer.h"
#include "chamfer/chamfer_checks.h"
#include "chamfer/chamfer_cuda.h"
#include "common.h"
#include "hd.h"

namespace hmore {
namespace {

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_launch(cudaError_t e, const char* op) {
  TORCH_CHECK(e == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(e));
}

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), name, ": expected a CUDA tensor, got one on ", t.device());
}

// dtype code of a point set / map the kernels read natively.
int float_code(at::ScalarType st, const char* name) {
  switch (st) {
    case at::kFloat: return HMORE_F32;
    case at::kHalf: return HMORE_F16;
    case at::kBFloat16: return HMORE_BF16;
    case at::kDouble:
      TORCH_CHECK_TYPE(false, name, ": the cuda backend supports float32, float16 and bfloat16, got float64 (use "
                       "backend='cpu' or 'reference' for float64)");
    default:
      TORCH_CHECK_TYPE(false, name, ": expected a floating-point tensor (float32, float16, bfloat16), got ", st);
  }
  return -1;  // unreachable
}

void check_points(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 3, name, ": expected a 3-D tensor [B, N, D], got shape ", t.sizes());
  check_cuda(t, name);
  float_code(t.scalar_type(), name);
  TORCH_CHECK_VALUE(t.size(1) < (int64_t{1} << 31), name, ": expected fewer than 2^31 points, got ", t.size(1));
}

void check_pair(const at::Tensor& x, const at::Tensor& y) {
  check_points(x, "x");
  check_points(y, "y");
  check_pair_agreement(x, y);
}

// [B] int64 on x's device, contiguous; undefined when absent. docs/ops.md: a length out of [0, N] is an error,
// never clamped; it is asserted on the device (torch._assert_async: no host synchronisation).
at::Tensor lengths_arg(const std::optional<at::Tensor>& l, int64_t B, int64_t N, const char* name,
                       const at::Tensor& x) {
  if (!l.has_value()) return at::Tensor();
  const at::Tensor& t = *l;
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == B, name, ": expected shape [", B, "], got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, ": expected int64, got ", t.scalar_type());
  check_same_device(t, name, x, "x");
  if (B > 0)
    at::_assert_async(((t >= 0) & (t <= N)).all(),
                      std::string(name) + ": expected values in [0, " + std::to_string(N) + "]");
  return t.contiguous();
}

// [B, N] as float32 contiguous (the kernels read float weights); undefined when absent.
at::Tensor weights_arg(const std::optional<at::Tensor>& w, int64_t B, int64_t N, const char* name,
                       const at::Tensor& x) {
  if (!w.has_value()) return at::Tensor();
  const at::Tensor& t = *w;
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == B && t.size(1) == N, name, ": expected shape [", B, ", ", N,
                    "], got ", t.sizes());
  TORCH_CHECK_TYPE(t.is_floating_point(), name, ": expected a floating-point tensor, got ", t.scalar_type());
  check_same_device(t, name, x, "x");
  return t.to(at::kFloat).contiguous();
}

template <typename P>
P* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? static_cast<P*>(t.data_ptr()) : nullptr;
}

unsigned long long* keys_of(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<unsigned long long*>(t.data_ptr<int64_t>()) : nullptr;
}


// The per-cloud value of one direction from (sum w d, sum w): docs/ops.md §5, 0 when sum w is 0.
at::Tensor direction_value(const at::Tensor& num, const at::Tensor& den, ChamferReduction red) {
  if (red == ChamferReduction::Sum) return num;
  const auto pos = den > 0;
  return at::where(pos, num / at::where(pos, den, at::ones_like(den)), at::zeros_like(num));
}

// dLoss / d(per-cloud value), [B] float32.
at::Tensor batch_grad(const at::Tensor& grad, int64_t B, ChamferReduction red) {
  at::Tensor g = grad.to(at::kFloat);
  if (red == ChamferReduction::None) {
    TORCH_CHECK_VALUE(g.numel() == B, "grad: expected shape [", B, "], got ", grad.sizes());
    return g.reshape({B}).contiguous();
  }
  TORCH_CHECK_VALUE(g.numel() == 1, "grad: expected a scalar, got shape ", grad.sizes());
  g = g.reshape({}).expand({B});
  return (red == ChamferReduction::Mean ? g / double(B) : g).contiguous();
}

// Keys [B, N] -> (idx [B, N] int64, dist [B, N] float32 if wanted, (sum w d, sum w) [B] each).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> unpack(const at::Tensor& keys, const at::Tensor& len,
                                                                  const at::Tensor& w, bool squared, bool want_dist) {
  const int64_t B = keys.size(0), N = keys.size(1);
  auto opts = keys.options();
  at::Tensor idx = at::empty({B, N}, opts.dtype(at::kLong));
  at::Tensor dist = want_dist ? at::empty({B, N}, opts.dtype(at::kFloat)) : at::Tensor();
  at::Tensor part = at::zeros({B, hmore_chamfer_tiles(N), 2}, opts.dtype(at::kFloat));
  check_launch(hmore_chamfer_unpack_cuda(keys_of(keys), ptr_or_null<const int64_t>(len), ptr_or_null<const float>(w),
                                         idx.data_ptr<int64_t>(), ptr_or_null<float>(dist), part.data_ptr<float>(), B,
                                         N, squared ? 1 : 0, stream()),
               "chamfer_distance");
  at::Tensor s = part.sum(1);
  return {idx, dist, s.select(1, 0), s.select(1, 1)};
}

// Packed keys of both directions in one pass: kx [B, N], ky [B, M] (undefined unless cols).
std::pair<at::Tensor, at::Tensor> key_pass(const at::Tensor& x, const at::Tensor& y, const at::Tensor& xl,
                                           const at::Tensor& yl, bool cols, const char* op) {
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2);
  auto opts = x.options().dtype(at::kLong);
  at::Tensor kx = at::full({B, N}, -1, opts);  // all ones: HMORE_CHAMFER_KEY_NONE
  at::Tensor ky = cols ? at::full({B, M}, -1, opts) : at::Tensor();
  TORCH_CHECK_VALUE(D <= 11776, "x: the cuda backend supports D <= 11776, got shape ", x.sizes());
  check_launch(hmore_chamfer_pairs_cuda(x.data_ptr(), y.data_ptr(), ptr_or_null<const int64_t>(xl),
                                        ptr_or_null<const int64_t>(yl), keys_of(kx), keys_of(ky), B, N, M, D,
                                        float_code(x.scalar_type(), "x"), stream()),
               op);
  return {kx, ky};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> nearest_neighbors_cuda(const at::Tensor& x, const at::Tensor& y,
                                                          const std::optional<at::Tensor>& x_lengths,
                                                          const std::optional<at::Tensor>& y_lengths) {
  check_pair(x, y);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  at::Tensor xl = lengths_arg(x_lengths, B, N, "x_lengths", x);
  at::Tensor yl = lengths_arg(y_lengths, B, M, "y_lengths", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor bad_x = nonfinite_points(x, x_lengths), bad_y = nonfinite_points(y, y_lengths);
  if (B * N == 0 || M == 0) {
    at::Tensor dist = at::zeros({B, N}, x.options().dtype(at::kFloat)), idx = at::full({B, N}, -1, x.options().dtype(at::kLong));
    mark_nonfinite(dist, idx, bad_x);
    return {dist, idx};
  }
  const at::Tensor xc = search_points(x, bad_x, false).contiguous(), yc = search_points(y, bad_y, false).contiguous();
  auto keys = key_pass(xc, yc, xl, yl, false, "nearest_neighbors");
  auto r = unpack(keys.first, xl, at::Tensor(), true, true);
  at::Tensor dist = std::get<1>(r), idx = std::get<0>(r);
  mark_nonfinite(dist, idx, bad_x);
  return {dist, idx};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> chamfer_distance_cuda(
    const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& x_lengths,
    const std::optional<at::Tensor>& y_lengths, const std::optional<at::Tensor>& x_weights,
    const std::optional<at::Tensor>& y_weights, bool squared, const std::string& reduction, bool bidirectional,
    bool deterministic) {
  (void)deterministic;  // the forward has no float atomics: its integer atomicMin merge is order-free
  check_pair(x, y);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  at::Tensor xl = lengths_arg(x_lengths, B, N, "x_lengths", x);
  at::Tensor yl = lengths_arg(y_lengths, B, M, "y_lengths", x);
  at::Tensor wx = weights_arg(x_weights, B, N, "x_weights", x);
  at::Tensor wy = weights_arg(y_weights, B, M, "y_weights", x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto lopts = x.options().dtype(at::kLong);
  if (B == 0 || N == 0 || M == 0) {  // every point lacks a neighbour: distance 0, index -1, value 0
    at::Tensor per = poison_clouds(at::zeros({B}, x.options().dtype(at::kFloat)), nonfinite_points(x, x_lengths),
                                   nonfinite_points(y, y_lengths), bidirectional);
    return {reduce_batch(per, red), at::full({B, N}, -1, lopts), at::full({B, bidirectional ? M : 0}, -1, lopts)};
  }
  const at::Tensor bad_x = nonfinite_points(x, x_lengths), bad_y = nonfinite_points(y, y_lengths);
  const at::Tensor xc = search_points(x, bad_x, false).contiguous(), yc = search_points(y, bad_y, false).contiguous();
  auto keys = key_pass(xc, yc, xl, yl, bidirectional, "chamfer_distance");
  auto rx = unpack(keys.first, xl, wx, squared, false);
  at::Tensor per = direction_value(std::get<2>(rx), std::get<3>(rx), red);
  at::Tensor idx_y;
  if (bidirectional) {
    auto ry = unpack(keys.second, yl, wy, squared, false);
    per = per + direction_value(std::get<2>(ry), std::get<3>(ry), red);
    idx_y = std::get<0>(ry);
  } else {
    idx_y = at::empty({B, 0}, lopts);
  }
  return {reduce_batch(poison_clouds(per, bad_x, bad_y, bidirectional), red), std::get<0>(rx), idx_y};
}

namespace {

// Backward of one direction src [B, n, D] -> dst [B, m, D]: gather into gs, scatter into gd (atomics, or
// the deterministic sort + segment sum), weight gradient into gw (if defined). All float32 buffers.
void direction_backward(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& idx, const at::Tensor& w,
                        const at::Tensor& gbatch, bool squared, bool normalise, bool deterministic, at::Tensor& gs,
                        at::Tensor& gd, at::Tensor& gw) {
  const int64_t B = src.size(0), n = src.size(1), m = dst.size(1), D = src.size(2);
  const int dt = float_code(src.scalar_type(), "x");
  auto fopts = src.options().dtype(at::kFloat);
  at::Tensor part = at::zeros({B, hmore_chamfer_tiles(n), 2}, fopts);
  check_launch(hmore_chamfer_dir_stats_cuda(src.data_ptr(), dst.data_ptr(), idx.data_ptr<int64_t>(),
                                            ptr_or_null<const float>(w), part.data_ptr<float>(), B, n, m, D, dt,
                                            squared ? 1 : 0, stream()),
               "_chamfer_distance_backward");
  const at::Tensor s = part.sum(1);
  const at::Tensor num = s.select(1, 0), den = s.select(1, 1);
  at::Tensor scale;
  if (normalise) {
    const auto pos = den > 0;
    scale = at::where(pos, 1.0 / at::where(pos, den, at::ones_like(den)), at::zeros_like(den));
  } else {
    scale = at::ones_like(den);
  }
  const at::Tensor val = (num * scale).contiguous();
  const at::Tensor coef = (gbatch * scale).contiguous();
  const at::Tensor denc = den.contiguous();
  at::Tensor contrib = deterministic ? at::empty({B * n, D}, fopts) : at::Tensor();
  check_launch(hmore_chamfer_dir_grad_cuda(src.data_ptr(), dst.data_ptr(), idx.data_ptr<int64_t>(),
                                           ptr_or_null<const float>(w), coef.data_ptr<float>(),
                                           val.data_ptr<float>(), denc.data_ptr<float>(), gbatch.data_ptr<float>(),
                                           gs.data_ptr<float>(), gd.data_ptr<float>(), ptr_or_null<float>(contrib),
                                           ptr_or_null<float>(gw), B, n, m, D, dt, squared ? 1 : 0,
                                           normalise ? 1 : 0, stream()),
               "_chamfer_distance_backward");
  if (deterministic) {
    // Stable sort of the (neighbour, point) pairs by neighbour: each dst point's segment lists its sources
    // in increasing order, summed in that order (bit-reproducible). No neighbour sorts last.
    auto lopts = idx.options();
    const at::Tensor base = (at::arange(B, lopts) * m).unsqueeze(1);
    const at::Tensor key = at::where(idx >= 0, idx + base, at::full({}, B * m, lopts)).reshape({-1});
    auto sorted = at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor skey = std::get<0>(sorted).contiguous();
    const at::Tensor perm = std::get<1>(sorted).contiguous();
    const at::Tensor start = at::searchsorted(skey, at::arange(B * m + 1, lopts)).contiguous();
    check_launch(hmore_chamfer_segsum_cuda(gd.data_ptr<float>(), contrib.data_ptr<float>(), perm.data_ptr<int64_t>(),
                                           start.data_ptr<int64_t>(), B * m, D, stream()),
                 "_chamfer_distance_backward");
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& idx_x,
    const at::Tensor& idx_y, const std::optional<at::Tensor>& x_lengths, const std::optional<at::Tensor>& y_lengths,
    const std::optional<at::Tensor>& x_weights, const std::optional<at::Tensor>& y_weights, bool squared,
    const std::string& reduction, bool bidirectional, bool deterministic) {
  (void)x_lengths;  // the indices already encode the lengths (-1 past them)
  (void)y_lengths;
  check_pair(x, y);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2);
  TORCH_CHECK_VALUE(idx_x.dim() == 2 && idx_x.size(0) == B && idx_x.size(1) == N, "idx_x: expected shape [", B, ", ",
                    N, "], got ", idx_x.sizes());
  if (bidirectional)
    TORCH_CHECK_VALUE(idx_y.dim() == 2 && idx_y.size(0) == B && idx_y.size(1) == M, "idx_y: expected shape [", B,
                      ", ", M, "], got ", idx_y.sizes());
  check_same_device(grad, "grad", x, "x");
  at::Tensor wx = weights_arg(x_weights, B, N, "x_weights", x);
  at::Tensor wy = weights_arg(y_weights, B, M, "y_weights", x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto fopts = x.options().dtype(at::kFloat);
  at::Tensor gx = at::zeros({B, N, D}, fopts), gy = at::zeros({B, M, D}, fopts);
  at::Tensor gwx = wx.defined() ? at::zeros({B, N}, fopts) : at::Tensor();
  at::Tensor gwy = wy.defined() ? at::zeros({B, M}, fopts) : at::Tensor();
  if (B * N > 0 && M > 0 && D > 0) {
    const at::Tensor gb = batch_grad(grad, B, red);
    const bool norm = red != ChamferReduction::Sum;
    const at::Tensor xc = x.contiguous(), yc = y.contiguous();
    direction_backward(xc, yc, idx_x.to(at::kLong).contiguous(), wx, gb, squared, norm, deterministic, gx, gy, gwx);
    if (bidirectional)
      direction_backward(yc, xc, idx_y.to(at::kLong).contiguous(), wy, gb, squared, norm, deterministic, gy, gx,
                         gwy);
  }
  at::Tensor ow = x_weights.has_value() ? gwx.to(x_weights->scalar_type()) : at::empty({0}, x.options());
  at::Tensor owy = y_weights.has_value() ? gwy.to(y_weights->scalar_type()) : at::empty({0}, x.options());
  return {gx.to(x.scalar_type()), gy.to(y.scalar_type()), ow, owy};
}

// ---- patches --------------------------------------------------------------------------------------
namespace {

void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 4 && t.size(1) == 1, name, ": expected a 4-D tensor [B, 1, H, W], got shape ",
                    t.sizes());
  check_cuda(t, name);
  if (t.scalar_type() != at::kBool) float_code(t.scalar_type(), name);
}

at::ScalarType map_dtype(const at::Tensor& t) { return t.scalar_type() == at::kBool ? at::kFloat : t.scalar_type(); }

}  // namespace

std::tuple<at::Tensor, at::Tensor> patch_centroids_cuda(const at::Tensor& weights, int64_t patch_size,
                                                        const std::optional<at::Tensor>& offsets) {
  check_map(weights, "weights");
  check_int_arg(patch_size, "patch_size", 1, kMaxPatch);
  const at::ScalarType st = map_dtype(weights);
  const int64_t B = weights.size(0), H = weights.size(2), W = weights.size(3), p = patch_size;
  if (offsets.has_value()) {
    const at::Tensor& o = *offsets;
    TORCH_CHECK_VALUE(o.dim() == 4 && o.size(0) == B && o.size(1) == 2 && o.size(2) == H && o.size(3) == W,
                      "offsets: expected shape [", B, ", 2, ", H, ", ", W, "], got ", o.sizes());
    TORCH_CHECK_TYPE(o.is_floating_point(), "offsets: expected a floating-point tensor, got ", o.scalar_type());
    check_same_device(o, "offsets", weights, "weights");
  }
  const c10::cuda::CUDAGuard guard(weights.device());
  const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p;
  const at::Tensor w = weights.to(st).contiguous();
  const at::Tensor o = offsets.has_value() ? offsets->to(st).contiguous() : at::Tensor();
  at::Tensor cen = at::empty({B, Hp, Wp, 2}, w.options());
  at::Tensor mass = at::empty({B, Hp, Wp}, w.options());
  if (cen.numel() == 0) return {cen, mass};
  check_launch(hmore_patch_centroids_forward_cuda(w.data_ptr(), ptr_or_null<const void>(o), cen.data_ptr(),
                                                  mass.data_ptr(), B, H, W, p, float_code(st, "weights"), stream()),
               "patch_centroids");
  return {cen, mass};
}

std::tuple<at::Tensor, at::Tensor> patch_centroids_backward_cuda(const at::Tensor& grad_centroids,
                                                                 const at::Tensor& grad_mass,
                                                                 const at::Tensor& weights,
                                                                 const std::optional<at::Tensor>& offsets,
                                                                 const at::Tensor& centroids, const at::Tensor& mass,
                                                                 int64_t patch_size) {
  check_map(weights, "weights");
  check_int_arg(patch_size, "patch_size", 1, kMaxPatch);
  const at::ScalarType st = map_dtype(weights);
  const int64_t B = weights.size(0), H = weights.size(2), W = weights.size(3), p = patch_size;
  const int64_t Hp = (H + p - 1) / p, Wp = (W + p - 1) / p;
  TORCH_CHECK_VALUE(grad_centroids.numel() == B * Hp * Wp * 2 && centroids.numel() == B * Hp * Wp * 2,
                    "grad_centroids: expected shape [", B, ", ", Hp, ", ", Wp, ", 2], got ", grad_centroids.sizes());
  TORCH_CHECK_VALUE(grad_mass.numel() == B * Hp * Wp && mass.numel() == B * Hp * Wp, "grad_mass: expected shape [", B,
                    ", ", Hp, ", ", Wp, "], got ", grad_mass.sizes());
  const c10::cuda::CUDAGuard guard(weights.device());
  const at::Tensor w = weights.to(st).contiguous();
  const at::Tensor o = offsets.has_value() ? offsets->to(st).contiguous() : at::Tensor();
  const at::Tensor gc = grad_centroids.to(st).contiguous(), gm = grad_mass.to(st).contiguous();
  const at::Tensor cen = centroids.to(st).contiguous(), m = mass.to(st).contiguous();
  at::Tensor gw = at::empty({B, 1, H, W}, w.options());
  at::Tensor go = o.defined() ? at::empty({B, 2, H, W}, w.options()) : at::empty({0}, w.options());
  if (gw.numel() > 0)
    check_launch(hmore_patch_centroids_backward_cuda(gc.data_ptr(), gm.data_ptr(), w.data_ptr(),
                                                     ptr_or_null<const void>(o), cen.data_ptr(), m.data_ptr(),
                                                     gw.data_ptr(), o.defined() ? go.data_ptr() : nullptr, B, H, W, p,
                                                     float_code(st, "weights"), stream()),
                 "_patch_centroids_backward");
  if (offsets.has_value()) go = go.to(offsets->scalar_type());
  return {gw, go};
}

namespace {

void check_pcc(const at::Tensor& a, const at::Tensor& b, at::IntArrayRef patch_sizes, double min_mass) {
  check_map(a, "a");
  check_map(b, "b");
  check_pcc_agreement(a, b, patch_sizes, min_mass, kMaxPatch);
}

// Per scale: term and count arrays [B, Hp * Wp]; coef (if defined) receives [B, Hp * Wp, 6] at `offset` floats.
void pcc_scale(const at::Tensor& a, const at::Tensor& b, int64_t p, double min_mass, at::Tensor& term,
               at::Tensor& count, float* coef, const char* op) {
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  const int64_t np = ((H + p - 1) / p) * ((W + p - 1) / p);
  auto fopts = a.options().dtype(at::kFloat);
  term = at::empty({B, np}, fopts);
  count = at::empty({B, np}, fopts);
  check_launch(hmore_pcc_scale_cuda(a.data_ptr(), b.data_ptr(), term.data_ptr<float>(), count.data_ptr<float>(), coef,
                                    B, H, W, p, min_mass, float_code(a.scalar_type(), "a"), stream()),
               op);
}

}  // namespace

at::Tensor patch_centroid_chamfer_cuda(const at::Tensor& a, const at::Tensor& b, at::IntArrayRef patch_sizes,
                                       double min_mass, const std::string& reduction) {
  check_pcc(a, b, patch_sizes, min_mass);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const at::ScalarType st = at::promote_types(map_dtype(a), map_dtype(b));
  float_code(st, "a");
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor per = at::zeros({B}, a.options().dtype(at::kFloat));
  if (B > 0 && H > 0 && W > 0) {
    const at::Tensor ac = a.to(st).contiguous(), bc = b.to(st).contiguous();
    for (int64_t p : patch_sizes) {
      at::Tensor term, count;
      pcc_scale(ac, bc, p, min_mass, term, count, nullptr, "patch_centroid_chamfer");
      const at::Tensor s = term.sum(1), n = count.sum(1);
      per = per + at::where(n > 0, s / n.clamp_min(1), at::zeros_like(s));
    }
    per = per / double(patch_sizes.size());
  }
  return reduce_batch(per.to(st), red);
}

std::tuple<at::Tensor, at::Tensor> patch_centroid_chamfer_backward_cuda(const at::Tensor& grad, const at::Tensor& a,
                                                                        const at::Tensor& b,
                                                                        at::IntArrayRef patch_sizes, double min_mass,
                                                                        const std::string& reduction) {
  check_pcc(a, b, patch_sizes, min_mass);
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const at::ScalarType st = at::promote_types(map_dtype(a), map_dtype(b));
  float_code(st, "a");
  check_same_device(grad, "grad", a, "a");
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3), S = int64_t(patch_sizes.size());
  auto fopts = a.options().dtype(at::kFloat);
  at::Tensor ga = at::zeros({B, 1, H, W}, fopts), gbm = at::zeros({B, 1, H, W}, fopts);
  if (ga.numel() > 0) {
    const at::Tensor ac = a.to(st).contiguous(), bc = b.to(st).contiguous();
    const at::Tensor g = batch_grad(grad, B, red);
    std::vector<int64_t> sizes(patch_sizes.begin(), patch_sizes.end()), bases;
    int64_t total = 0;
    for (int64_t p : sizes) {
      bases.push_back(total);
      total += B * ((H + p - 1) / p) * ((W + p - 1) / p) * 6;
    }
    at::Tensor coef = at::empty({total}, fopts);
    std::vector<at::Tensor> facs;
    for (size_t s = 0; s < sizes.size(); ++s) {
      at::Tensor term, count;
      pcc_scale(ac, bc, sizes[s], min_mass, term, count, coef.data_ptr<float>() + bases[s],
                "_patch_centroid_chamfer_backward");
      const at::Tensor n = count.sum(1);
      // the term is linear in its upstream gradient: g_b / (count_b * S), 0 where nothing counted
      facs.push_back(at::where(n > 0, g / (n.clamp_min(1) * double(S)), at::zeros_like(n)));
    }
    const at::Tensor fac = at::stack(facs, 1).contiguous();  // [B, S]
    check_launch(hmore_pcc_backward_cuda(coef.data_ptr<float>(), fac.data_ptr<float>(), sizes.data(), bases.data(), S,
                                         ga.data_ptr<float>(), gbm.data_ptr<float>(), B, H, W, stream()),
                 "_patch_centroid_chamfer_backward");
  }
  return {ga.to(a.scalar_type() == at::kBool ? st : a.scalar_type()),
          gbm.to(b.scalar_type() == at::kBool ? st : b.scalar_type())};
}

at::Tensor boundary_chamfer_cuda(const at::Tensor& a, const at::Tensor& b, const std::string& reduction) {
  TORCH_CHECK_VALUE(a.dim() == 4 && a.size(1) == 1, "a: expected a 4-D tensor [B, 1, H, W], got shape ", a.sizes());
  TORCH_CHECK_VALUE(b.dim() == 4 && b.size(1) == 1, "b: expected a 4-D tensor [B, 1, H, W], got shape ", b.sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == at::kBool, "a: expected a bool boundary map, got ", a.scalar_type());
  TORCH_CHECK_TYPE(b.scalar_type() == at::kBool, "b: expected a bool boundary map, got ", b.scalar_type());
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "b: expected shape ", a.sizes(), " like a, got ", b.sizes());
  check_cuda(a, "a");
  check_same_device(a, "a", b, "b");
  const ChamferReduction red = parse_chamfer_reduction(reduction);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t B = a.size(0), HW = a.size(2) * a.size(3);
  if (a.numel() == 0) return reduce_batch(at::zeros({B}, a.options().dtype(at::kFloat)), red);
  // The edge family's CUDA distance transform, through the dispatcher (no link-time coupling).
  static const auto dt_op = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("hmore::distance_transform", "")
                                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, bool)>();
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  const at::Tensor da = std::get<0>(dt_op.call(ac, false)).contiguous();
  const at::Tensor db = std::get<0>(dt_op.call(bc, false)).contiguous();
  at::Tensor part = at::zeros({B, hmore_boundary_chamfer_tiles(HW), 4}, a.options().dtype(at::kDouble));
  check_launch(hmore_boundary_chamfer_reduce_cuda(static_cast<const uint8_t*>(ac.data_ptr()),
                                                  static_cast<const uint8_t*>(bc.data_ptr()), da.data_ptr<float>(),
                                                  db.data_ptr<float>(), part.data_ptr<double>(), B, HW, stream()),
               "boundary_chamfer");
  const at::Tensor s = part.sum(1);
  const at::Tensor na = s.select(1, 0), sab = s.select(1, 1), nb = s.select(1, 2), sba = s.select(1, 3);
  at::Tensor per = sab / na.clamp_min(1) + sba / nb.clamp_min(1);
  per = at::where((na == 0).logical_and(nb == 0), at::zeros_like(per), per);
  per = at::where((na == 0).logical_xor(nb == 0), at::full_like(per, INFINITY), per);
  return reduce_batch(per.to(at::kFloat), red);
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CUDA, m) {
  m.impl("nearest_neighbors", &hmore::nearest_neighbors_cuda);
  m.impl("chamfer_distance", &hmore::chamfer_distance_cuda);
  m.impl("_chamfer_distance_backward", &hmore::chamfer_distance_backward_cuda);
  m.impl("patch_centroids", &hmore::patch_centroids_cuda);
  m.impl("_patch_centroids_backward", &hmore::patch_centroids_backward_cuda);
  m.impl("patch_centroid_chamfer", &hmore::patch_centroid_chamfer_cuda);
  m.impl("_patch_centroid_chamfer_backward", &hmore::patch_centroid_chamfer_backward_cuda);
  m.impl("boundary_chamfer", &hmore::boundary_chamfer_cuda);
}
