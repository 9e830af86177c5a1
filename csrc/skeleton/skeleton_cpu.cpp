// The skeleton family on the CPU (docs/ops.md §4, §5); the per-element math is in skeleton_kernels.cuh.
//
// skeleton_match / skeleton_offset_map never build the [B, H*W, Q] cost matrix. One task is one image
// row: its inside-mask pixels are gathered into a compact list of x coordinates, then the points are
// visited in increasing index order, each one updating the running (best cost, index) of every listed
// pixel. The inner loop runs over pixels with the point fixed: branch-free, so it vectorises (sqrt
// included, thanks to -fno-math-errno), and dy*dy is hoisted per row. The per-(pixel, point) arithmetic
// and the update rule are those of skeleton_kernels.cuh, so the result is the per-pixel scan's (and the
// GPU's). Points excluded by their confidence (NaN weight) are dropped from the list up front: a NaN
// cost never wins, so dropping them cannot change the answer.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "common.h"
#include "skeleton/skeleton.h"
#include "skeleton/skeleton_kernels.cuh"

namespace hmore {
namespace {


// ---- skeleton_points -------------------------------------------------------------------------------
template <typename T>
void points_forward(const T* joints, const T* conf, const int64_t* bones, int64_t B, int64_t J, int64_t E, int n,
                    T* pts, T* pconf) {
  // A few thousand points per task: waking the thread pool costs more than a small skeleton.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(E * n, 1));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* jb = joints + b * J * 2;
      const T* cb = conf + b * J;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t a = bones[2 * e], c = bones[2 * e + 1];
        for (int k = 0; k < n; ++k) {
          double sd, td;
          skel::bone_weights(k, n, &sd, &td);
          const T s = T(sd), t = T(td);
          const int64_t q = (b * E + e) * n + k;
          pts[2 * q] = skel::lerp(s, jb[2 * a], t, jb[2 * c]);
          pts[2 * q + 1] = skel::lerp(s, jb[2 * a + 1], t, jb[2 * c + 1]);
          pconf[q] = skel::lerp(s, cb[a], t, cb[c]);
        }
      }
    }
  });
}

// Gather: joint j of image b sums s_k * g over the points of the bones starting at j and t_k * g over
// those ending at j, bones in order, points in order.
template <typename T>
void points_backward(const T* gp, const T* gc, const int64_t* bones, int64_t B, int64_t J, int64_t E, int n, T* gj,
                     T* gjc) {
  const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(E * n, 1));
  at::parallel_for(0, B * J, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / J, j = r - b * J;
      T ax = 0, ay = 0, ac = 0;
      for (int64_t e = 0; e < E; ++e) {
        const bool is_a = bones[2 * e] == j, is_b = bones[2 * e + 1] == j;
        if (!is_a && !is_b) continue;
        for (int k = 0; k < n; ++k) {
          double sd, td;
          skel::bone_weights(k, n, &sd, &td);
          const T w = T((is_a ? sd : 0.0) + (is_b ? td : 0.0));  // a bone from j to j gets both
          const int64_t q = (b * E + e) * n + k;
          ax += mul_rn(w, gp[2 * q]);
          ay += mul_rn(w, gp[2 * q + 1]);
          ac += mul_rn(w, gc[q]);
        }
      }
      gj[2 * r] = ax;
      gj[2 * r + 1] = ay;
      gjc[r] = ac;
    }
  });
}

// ---- skeleton_match ----------------------------------------------------------------------------------
template <typename T>
struct Candidates {  // the points of one image that can be matched (finite weight), in index order
  std::vector<T> x, y, w, kx, ky;
  std::vector<int64_t> index;
};

// The running argmin of n pixels (x coordinates xp, all on row y = py) over nc points in index order:
// the inner loop runs over pixels with the point fixed, branch-free so that it vectorises (dy*dy hoisted:
// the same rounded value). skel::better, written with bitwise ops.
template <typename T>
inline void scan_impl(const T* __restrict__ xp, int n, const T* __restrict__ cx, const T* __restrict__ cy,
                      const T* __restrict__ cw, int32_t nc, T py, T* __restrict__ bp, int32_t* __restrict__ ip) {
  for (int32_t k = 0; k < nc; ++k) {
    const T qx = cx[k], wq = cw[k];
    const T dy = py - cy[k];
    const T dy2 = mul_rn(dy, dy);
    for (int m = 0; m < n; ++m) {
      const T dx = xp[m] - qx;
      const T cost = skel::cost_from(mul_rn(dx, dx), dy2, wq);
      const bool take = (cost < bp[m]) | ((ip[m] < 0) & (cost == cost));
      bp[m] = take ? cost : bp[m];
      ip[m] = take ? k : ip[m];
    }
  }
}

// An AVX2 clone beside the baseline one, picked at load time: twice the lanes for sqrt and the compares.
// AVX2 does not imply FMA, so the products still round on their own (the same results as the baseline).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HMORE_SKEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HMORE_SKEL_CLONES
#endif

HMORE_SKEL_CLONES void scan(const float* xp, int n, const float* cx, const float* cy, const float* cw, int32_t nc,
                            float py, float* bp, int32_t* ip) {
  scan_impl(xp, n, cx, cy, cw, nc, py, bp, ip);
}

HMORE_SKEL_CLONES void scan(const double* xp, int n, const double* cx, const double* cy, const double* cw,
                            int32_t nc, double py, double* bp, int32_t* ip) {
  scan_impl(xp, n, cx, cy, cw, nc, py, bp, ip);
}

// pts [B, Q, 2], w [B, Q] (NaN = excluded), pts1 [B, Q, 2] or null; mask [B, H, W] bytes.
// idx [B, H, W] or null; off [B, 2, H, W] and valid [B, H, W] or null.
template <typename T>
void match(const T* pts, const T* pts1, const T* w, const uint8_t* mask, int64_t B, int64_t Q, int64_t H,
           int64_t W, int64_t* idx, T* off, bool* valid) {
  std::vector<Candidates<T>> cand(size_t(std::max<int64_t>(B, 0)));
  for (int64_t b = 0; b < B; ++b) {
    Candidates<T>& c = cand[b];
    for (int64_t q = 0; q < Q; ++q) {
      const T wq = w[b * Q + q];
      if (!(wq == wq)) continue;
      const T* p = pts + (b * Q + q) * 2;
      c.x.push_back(p[0]);
      c.y.push_back(p[1]);
      c.w.push_back(wq);
      c.index.push_back(q);
      if (pts1 != nullptr) {
        const T* p1 = pts1 + (b * Q + q) * 2;
        c.kx.push_back(p1[0] - p[0]);
        c.ky.push_back(p1[1] - p[1]);
      }
    }
  }
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(W, 1));
  at::parallel_for(0, B * H, grain, [&](int64_t r0, int64_t r1) {
    const size_t Wn = static_cast<size_t>(W);
    std::vector<T> xs(Wn), best(Wn);
    std::vector<int32_t> bi(Wn), cols(Wn);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / H, i = r - b * H;
      const uint8_t* mr = mask + r * W;
      int64_t* ir = idx != nullptr ? idx + r * W : nullptr;
      T* ox = off != nullptr ? off + (b * 2 * H + i) * W : nullptr;
      T* oy = off != nullptr ? ox + H * W : nullptr;
      bool* vr = valid != nullptr ? valid + r * W : nullptr;
      if (ir) std::fill(ir, ir + W, int64_t(-1));
      if (ox) {
        std::fill(ox, ox + W, T(0));
        std::fill(oy, oy + W, T(0));
        std::fill(vr, vr + W, false);
      }
      int n = 0;
      for (int64_t j = 0; j < W; ++j) {
        if (mr[j]) {
          cols[n] = int32_t(j);
          xs[n] = T(j);
          best[n] = std::numeric_limits<T>::infinity();
          bi[n] = -1;
          ++n;
        }
      }
      if (n == 0) continue;
      const Candidates<T>& c = cand[b];
      const int32_t nc = int32_t(c.index.size());
      scan(xs.data(), n, c.x.data(), c.y.data(), c.w.data(), nc, T(i), best.data(), bi.data());
      for (int m = 0; m < n; ++m) {
        const int32_t k = bi[m];
        if (k < 0) continue;
        const int64_t j = cols[m];
        if (ir) ir[j] = c.index[k];
        if (ox) {
          ox[j] = c.kx[k];
          oy[j] = c.ky[k];
          vr[j] = true;
        }
      }
    }
  });
}

void check_points_args(const at::Tensor& joints, const at::Tensor& conf, int64_t n) {
  skel::check_points(joints, "joints", conf, "conf", "J", /*allow_half=*/false);
  skel::check_points_per_bone(n);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> skeleton_points_cpu(const at::Tensor& joints, const at::Tensor& conf,
                                                                   const at::Tensor& bones, int64_t points_per_bone) {
  check_points_args(joints, conf, points_per_bone);
  const int64_t B = joints.size(0), J = joints.size(1);
  at::Tensor bl = skel::check_bones(bones, J);
  const int64_t E = bl.size(0), n = points_per_bone;
  TORCH_CHECK_VALUE(E * n < (int64_t{1} << 31), "points_per_bone: expected E * points_per_bone < 2^31, got ", E, " * ",
                    n);
  at::Tensor pts = at::empty({B, E * n, 2}, joints.options());
  at::Tensor pc = at::empty({B, E * n}, conf.options());
  at::Tensor bone = at::arange(E, bones.options().dtype(at::kLong).device(joints.device())).repeat_interleave(n);
  if (pts.numel() == 0) return {pts, pc, bone};
  at::Tensor jc = joints.contiguous(), cc = conf.contiguous();
  AT_DISPATCH_FLOATING_TYPES(joints.scalar_type(), "skeleton_points_cpu", [&] {
    points_forward<scalar_t>(jc.data_ptr<scalar_t>(), cc.data_ptr<scalar_t>(), bl.data_ptr<int64_t>(), B, J, E, int(n),
                             pts.data_ptr<scalar_t>(), pc.data_ptr<scalar_t>());
  });
  return {pts, pc, bone};
}

std::tuple<at::Tensor, at::Tensor> skeleton_points_backward_cpu(const at::Tensor& grad_points,
                                                                const at::Tensor& grad_conf, const at::Tensor& bones,
                                                                int64_t num_joints, int64_t points_per_bone) {
  skel::check_points(grad_points, "grad_points", grad_conf, "grad_conf", "E*n", /*allow_half=*/false);
  skel::check_points_per_bone(points_per_bone);
  TORCH_CHECK_VALUE(num_joints >= 0, "num_joints: expected an int >= 0, got ", num_joints);
  at::Tensor bl = skel::check_bones(bones, num_joints);
  const int64_t B = grad_points.size(0), E = bl.size(0), n = points_per_bone, J = num_joints;
  TORCH_CHECK_VALUE(grad_points.size(1) == E * n, "grad_points: expected shape [", B, ", ", E * n, ", 2] (E = ", E,
                    " bones x ", n, " points), got ", grad_points.sizes());
  at::Tensor gj = at::empty({B, J, 2}, grad_points.options());
  at::Tensor gc = at::empty({B, J}, grad_points.options());
  if (gj.numel() == 0) return {gj, gc};
  at::Tensor gpc = grad_points.contiguous(), gcc = grad_conf.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad_points.scalar_type(), "skeleton_points_backward_cpu", [&] {
    points_backward<scalar_t>(gpc.data_ptr<scalar_t>(), gcc.data_ptr<scalar_t>(), bl.data_ptr<int64_t>(), B, J, E,
                              int(n), gj.data_ptr<scalar_t>(), gc.data_ptr<scalar_t>());
  });
  return {gj, gc};
}

at::Tensor skeleton_match_cpu(const at::Tensor& points, const at::Tensor& conf, const at::Tensor& mask, double eps) {
  skel::check_match_args(points, "points", nullptr, conf, mask, eps, "skeleton_match", /*allow_half=*/false);
  const int64_t B = points.size(0), Q = points.size(1), H = mask.size(2), W = mask.size(3);
  at::Tensor idx = at::empty({B, H, W}, points.options().dtype(at::kLong));
  if (idx.numel() == 0) return idx;
  at::Tensor w = skel::point_weights(conf, eps, points.scalar_type());
  at::Tensor m = skel::mask_bytes(mask);
  at::Tensor pc = points.contiguous();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "skeleton_match_cpu", [&] {
    match<scalar_t>(pc.data_ptr<scalar_t>(), nullptr, w.data_ptr<scalar_t>(), static_cast<const uint8_t*>(m.data_ptr()),
                    B, Q, H, W, idx.data_ptr<int64_t>(), nullptr, nullptr);
  });
  return idx;
}

std::tuple<at::Tensor, at::Tensor> skeleton_offset_map_cpu(const at::Tensor& points_t, const at::Tensor& points_t1,
                                                           const at::Tensor& conf, const at::Tensor& mask, double eps) {
  skel::check_match_args(points_t, "points_t", &points_t1, conf, mask, eps, "skeleton_offset_map",
                         /*allow_half=*/false);
  const int64_t B = points_t.size(0), Q = points_t.size(1), H = mask.size(2), W = mask.size(3);
  at::Tensor off = at::empty({B, 2, H, W}, points_t.options());
  at::Tensor valid = at::empty({B, 1, H, W}, points_t.options().dtype(at::kBool));
  if (valid.numel() == 0) return {off, valid};
  at::Tensor w = skel::point_weights(conf, eps, points_t.scalar_type());
  at::Tensor m = skel::mask_bytes(mask);
  at::Tensor p0 = points_t.contiguous(), p1 = points_t1.contiguous();
  AT_DISPATCH_FLOATING_TYPES(points_t.scalar_type(), "skeleton_offset_map_cpu", [&] {
    match<scalar_t>(p0.data_ptr<scalar_t>(), p1.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                    static_cast<const uint8_t*>(m.data_ptr()), B, Q, H, W, nullptr, off.data_ptr<scalar_t>(),
                    valid.data_ptr<bool>());
  });
  return {off, valid};
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CPU, m) {
  m.impl("skeleton_points", &hmore::skeleton_points_cpu);
  m.impl("_skeleton_points_backward", &hmore::skeleton_points_backward_cpu);
  m.impl("skeleton_match", &hmore::skeleton_match_cpu);
  m.impl("skeleton_offset_map", &hmore::skeleton_offset_map_cpu);
}
