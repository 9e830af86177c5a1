// canny, CPU: OpenCV's Canny(apertureSize=3) on a batch (docs/ops.md §2, §5).
//
// Algorithm, per image:
//   1. gray (BT.601 for RGB; OpenCV's fixed point for uint8),
//   2. unnormalised Sobel dx, dy with replicate border and the magnitude (L1 or L2) of every pixel,
//      into a buffer padded with a ring of zeros (OpenCV's NMS treats the outside as magnitude 0),
//   3. non-maximum suppression with OpenCV's fixed-point sector test, then the two thresholds,
//   4. hysteresis: a stack-based flood fill from every strong pixel through 8-connected weak pixels
//      (as OpenCV does); the work is proportional to the number of edge pixels.
// Stages 2-3 are fused in a rolling 3-row window; stages 1-3 run in parallel over all rows of the
// batch, stage 4 in parallel over images.
// uint8 images run in exact int32 arithmetic; float images in float64 like the reference.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "common.h"
#include "edges/canny_kernels.cuh"
#include "edges/edges.h"
#include "edges/edges_checks.h"

namespace hmore {
namespace {


// Gray image of one image of a contiguous [B, C, H, W] batch into out[H * W].
template <typename In, typename G>
void gray_rows(const In* img, int64_t C, int64_t HW, int64_t W, int64_t r0, int64_t r1, G* out) {
  for (int64_t r = r0; r < r1; ++r) {
    const In* p = img + r * W;
    G* o = out + r * W;
    if (C == 1) {
      for (int64_t j = 0; j < W; ++j) o[j] = static_cast<G>(p[j]);
    } else if constexpr (std::is_same<In, uint8_t>::value) {
      for (int64_t j = 0; j < W; ++j) o[j] = static_cast<G>(hmore_gray_u8(p[j], p[j + HW], p[j + 2 * HW]));
    } else {
      for (int64_t j = 0; j < W; ++j)
        o[j] = static_cast<G>(hmore_gray_f(double(p[j]), double(p[j + HW]), double(p[j + 2 * HW])));
    }
  }
}

// One row of Sobel + magnitude. g: gray [H, W]; dx, dy: [W] for this row; mrow: a padded magnitude row
// (W + 2 wide; mrow[0] and mrow[W + 1] are left alone and stay 0).
template <typename G, typename T, typename D>
void sobel_row(const G* g, int64_t H, int64_t W, int64_t i, bool l2, D* dx, D* dy, T* mrow) {
  const G* a = g + std::max<int64_t>(i - 1, 0) * W;
  const G* b = g + i * W;
  const G* c = g + std::min<int64_t>(i + 1, H - 1) * W;
  auto at = [&](const G* r, int64_t j) { return T(r[std::min<int64_t>(std::max<int64_t>(j, 0), W - 1)]); };
  auto one = [&](int64_t j, T a0, T a1, T a2, T b0, T b2, T c0, T c1, T c2) {
    T x, y;
    hmore_canny_sobel<T>(a0, a1, a2, b0, b2, c0, c1, c2, x, y);
    dx[j] = static_cast<D>(x);
    dy[j] = static_cast<D>(y);
    mrow[j + 1] = hmore_canny_mag<T>(x, y, l2);
  };
  if (W <= 2) {
    for (int64_t j = 0; j < W; ++j)
      one(j, at(a, j - 1), at(a, j), at(a, j + 1), at(b, j - 1), at(b, j + 1), at(c, j - 1), at(c, j),
          at(c, j + 1));
    return;
  }
  one(0, T(a[0]), T(a[0]), T(a[1]), T(b[0]), T(b[1]), T(c[0]), T(c[0]), T(c[1]));
  for (int64_t j = 1; j < W - 1; ++j)  // the interior needs no clamping: a straight loop gcc vectorises
    one(j, T(a[j - 1]), T(a[j]), T(a[j + 1]), T(b[j - 1]), T(b[j + 1]), T(c[j - 1]), T(c[j]), T(c[j + 1]));
  const int64_t e = W - 1;
  one(e, T(a[e - 1]), T(a[e]), T(a[e]), T(b[e - 1]), T(b[e]), T(c[e - 1]), T(c[e]), T(c[e]));
}

// Hysteresis of one image: cls [H, W] holds NONE/WEAK/STRONG; grows STRONG through 8-connected WEAK
// pixels. A pixel is promoted when it is pushed, so each is pushed at most once.
void hysteresis(uint8_t* cls, int64_t H, int64_t W, std::vector<int64_t>& stack) {
  stack.clear();
  const int64_t n = H * W;
  for (int64_t p = 0; p < n; ++p)
    if (cls[p] == HMORE_CANNY_STRONG) stack.push_back(p);
  while (!stack.empty()) {
    const int64_t p = stack.back();
    stack.pop_back();
    const int64_t i = p / W, j = p - i * W;
    const int64_t i0 = std::max<int64_t>(i - 1, 0), i1 = std::min<int64_t>(i + 1, H - 1);
    const int64_t j0 = std::max<int64_t>(j - 1, 0), j1 = std::min<int64_t>(j + 1, W - 1);
    for (int64_t y = i0; y <= i1; ++y)
      for (int64_t x = j0; x <= j1; ++x) {
        const int64_t q = y * W + x;
        if (cls[q] == HMORE_CANNY_WEAK) {
          cls[q] = HMORE_CANNY_STRONG;
          stack.push_back(q);
        }
      }
  }
}

// G: gray storage type; T: arithmetic type (int for uint8 images, double otherwise); Th: threshold type.
template <typename In, typename G, typename T, typename Th>
void canny_impl(const In* img, int64_t B, int64_t C, int64_t H, int64_t W, bool l2, Th lo, Th hi, bool* out) {
  const int64_t HW = H * W, PW = W + 2;
  // Gray is needed only when it is not the input itself (RGB, or a type conversion).
  const bool direct = C == 1 && std::is_same<In, G>::value;
  std::unique_ptr<G[]> gray(direct ? nullptr : new G[size_t(B * HW)]);  // fully written before use
  std::unique_ptr<uint8_t[]> clsbuf(new uint8_t[size_t(B * HW)]);
  uint8_t* cls_data = clsbuf.get();
  auto gray_of = [&](int64_t b) -> const G* {
    return direct ? reinterpret_cast<const G*>(img + b * HW) : gray.get() + b * HW;
  };
  const int64_t grain = std::max<int64_t>(4, 32768 / std::max<int64_t>(W, 1));
  if (!direct) {
    at::parallel_for(0, B * H, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1;) {  // split the range at image boundaries
        const int64_t b = r / H, e = std::min(r1, (b + 1) * H);
        gray_rows<In, G>(img + b * C * HW, C, HW, W, r - b * H, e - b * H, gray.get() + b * HW);
        r = e;
      }
    });
  }
  // Sobel and NMS fused in a rolling window of 3 rows per chunk of rows (OpenCV does the same): NMS of
  // row i needs the magnitudes of rows i-1..i+1 and the derivatives of row i only, so the full-image
  // gradient buffers (4-5x the image in memory traffic) are never materialised. A chunk recomputes the
  // one row above and below it that its neighbours also compute.
  at::parallel_for(0, B * H, grain, [&](int64_t r0, int64_t r1) {
    std::unique_ptr<T[]> ring(new T[size_t(9 * PW)]);  // 3 x (mag, dx, dy) rows, W + 2 wide
    T* mrow[3];
    T* xrow[3];
    T* yrow[3];
    for (int k = 0; k < 3; ++k) {
      mrow[k] = ring.get() + (3 * k) * PW;
      xrow[k] = mrow[k] + PW;
      yrow[k] = xrow[k] + PW;
      mrow[k][0] = mrow[k][W + 1] = T(0);  // magnitude 0 left and right of the image
    }
    auto fill = [&](int k, const G* g, int64_t i) {  // row i (maybe outside the image) into slot k
      if (i < 0 || i >= H) {
        std::fill(mrow[k], mrow[k] + PW, T(0));  // magnitude 0 above and below the image
      } else {
        sobel_row<G, T, T>(g, H, W, i, l2, xrow[k] + 1, yrow[k] + 1, mrow[k]);
      }
    };
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / H, e = std::min(r1, (b + 1) * H);
      const G* g = gray_of(b);
      int64_t i = r - b * H;
      const int64_t iend = e - b * H;
      int up = 0, mid = 1, dn = 2;
      fill(up, g, i - 1);
      fill(mid, g, i);
      for (; i < iend; ++i) {
        fill(dn, g, i + 1);
        const T* mu = mrow[up] + 1;
        const T* mc = mrow[mid] + 1;
        const T* md = mrow[dn] + 1;
        const T* dxr = xrow[mid] + 1;
        const T* dyr = yrow[mid] + 1;
        const T* rows[3] = {mu, mc, md};
        uint8_t* c = cls_data + b * HW + i * W;
        for (int64_t j = 0; j < W; ++j) {
          const T m = mc[j];
          if (!(m > lo)) {  // cheap reject first: most pixels are below the low threshold
            c[j] = HMORE_CANNY_NONE;
            continue;
          }
          const int s = hmore_canny_sector<T>(dxr[j], dyr[j]);
          int di0, dj0, di1, dj1;
          hmore_canny_sector_offsets(s, di0, dj0, di1, dj1);
          const bool keep = hmore_canny_keep<T>(s, m, rows[1 + di0][j + dj0], rows[1 + di1][j + dj1]);
          c[j] = hmore_canny_classify<T, Th>(keep, m, lo, hi);
        }
        const int t = up;  // rotate the window
        up = mid;
        mid = dn;
        dn = t;
      }
      r = e;
    }
  });
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int64_t> stack;
    for (int64_t b = b0; b < b1; ++b) {
      uint8_t* c = cls_data + b * HW;
      hysteresis(c, H, W, stack);
      bool* o = out + b * HW;
      for (int64_t p = 0; p < HW; ++p) o[p] = c[p] == HMORE_CANNY_STRONG;
    }
  });
}

}  // namespace

at::Tensor canny_cpu(const at::Tensor& img, double low, double high, int64_t kernel_size, bool l2_gradient) {
  check_canny_args(img, low, high, kernel_size);
  const auto st = img.scalar_type();
  TORCH_CHECK_TYPE(st == at::kByte || st == at::kFloat || st == at::kDouble,
                   "img: expected uint8, float32 or float64 on CPU, got ", st);
  const int64_t B = img.size(0), C = img.size(1), H = img.size(2), W = img.size(3);
  at::Tensor out = at::zeros({B, 1, H, W}, img.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  at::Tensor x = img.contiguous();
  double lo, hi;
  hmore_canny_thresholds(low, high, l2_gradient, lo, hi);
  bool* o = out.data_ptr<bool>();
  if (st == at::kByte) {
    canny_impl<uint8_t, uint8_t, int, int32_t>(x.data_ptr<uint8_t>(), B, C, H, W, l2_gradient,
                                               hmore_canny_int_threshold(lo), hmore_canny_int_threshold(hi), o);
  } else if (st == at::kFloat) {
    canny_impl<float, double, double, double>(x.data_ptr<float>(), B, C, H, W, l2_gradient, lo, hi, o);
  } else {
    canny_impl<double, double, double, double>(x.data_ptr<double>(), B, C, H, W, l2_gradient, lo, hi, o);
  }
  return out;
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CPU, m) { m.impl("canny", &hmore::canny_cpu); }
