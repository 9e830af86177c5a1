// Per-pixel math of canny (docs/ops.md §2, §5), shared by the CPU kernel (g++) and the CUDA kernel (nvcc).
// No torch headers. Semantics are OpenCV's Canny(apertureSize=3) as pinned by
// hmore_kernels/reference/edges.py::canny, which is the oracle.
//
// Two arithmetic flavours, chosen by the caller through the template type T:
//   T = int     uint8 images. The gray image is integer, so everything below is exact in int32:
//               |dx|, |dy| <= 4 * 255 = 1020, so L2 magnitudes stay below 2^21 and the sector test's
//               products below 2^27.
//   T = double  float images. The reference computes in float64; doing the same operations in the same
//               order in double gives the same bits (products like ax * 13573 exceed float32's 24-bit
//               mantissa, which is why float32 would not do).
#pragma once

#include <math.h>

#include "hd.h"

// OpenCV's fixed-point tan(22.5 deg) * 2^15 (rounded) and the shift it is scaled by.
#define HMORE_CANNY_TG22 13573
#define HMORE_CANNY_SHIFT 15

// BT.601 gray of an RGB uint8 pixel with OpenCV 5's 15-bit fixed-point rounding (cvtColor RGB2GRAY),
// so that the result is the very integer OpenCV would see. The result is always 0..255; the products
// stay below 2^23.
HMORE_HD int hmore_gray_u8(int r, int g, int b) { return (r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15; }

// Products and sums that must round exactly as the reference's separate float64 operations do. nvcc
// contracts a * b + c into one fma by default, which rounds once instead of twice and would change the
// last bit of gray values and L2 magnitudes; the _rn intrinsics are never contracted.
HMORE_HD double hmore_mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
HMORE_HD double hmore_add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
HMORE_HD int hmore_mul(int a, int b) { return a * b; }
HMORE_HD int hmore_add(int a, int b) { return a + b; }

// BT.601 gray of a float RGB pixel, in the reference's float64 evaluation order.
HMORE_HD double hmore_gray_f(double r, double g, double b) {
  return hmore_add(hmore_add(hmore_mul(0.299, r), hmore_mul(0.587, g)), hmore_mul(0.114, b));
}

// Unnormalised 3x3 Sobel from the 3x3 neighbourhood a<row><col> (rows top to bottom, columns left to
// right). With integer gray any order is exact. With non-integer float gray the rounding depends on the
// order of the operations, and a last-bit difference can flip an NMS tie or a threshold test; so this is
// the reference's order exactly: differences first (which also makes a constant image give exactly 0),
// then the outer rows' (columns') differences added, then twice the centre one.
template <typename T>
HMORE_HD void hmore_canny_sobel(T a00, T a01, T a02, T a10, T a12, T a20, T a21, T a22, T& dx, T& dy) {
  dx = hmore_add(hmore_add(a02 - a00, a22 - a20), T(2) * (a12 - a10));
  dy = hmore_add(hmore_add(a20 - a00, a22 - a02), T(2) * (a21 - a01));
}

template <typename T>
HMORE_HD T hmore_abs(T v) {
  return v < T(0) ? -v : v;
}

template <typename T>
HMORE_HD T hmore_canny_mag(T dx, T dy, bool l2) {
  return l2 ? hmore_add(hmore_mul(dx, dx), hmore_mul(dy, dy)) : hmore_abs(dx) + hmore_abs(dy);
}

// OpenCV's direction sectors. The gradient direction decides which pair of neighbours a pixel must
// beat to survive non-maximum suppression.
enum HmoreCannySector : int {
  HMORE_CANNY_HORIZ = 0,  // compare with (i, j-1), (i, j+1)
  HMORE_CANNY_VERT = 1,   // compare with (i-1, j), (i+1, j)
  HMORE_CANNY_DIAG_POS = 2,  // dx*dy >= 0: compare with (i-1, j-1), (i+1, j+1)
  HMORE_CANNY_DIAG_NEG = 3,  // dx*dy < 0: compare with (i-1, j+1), (i+1, j-1)
};

// The sector test in OpenCV's fixed point: y = |dy| * 2^15 against |dx| * tan(22.5) * 2^15 and
// |dx| * tan(67.5) * 2^15 (= tg22x + |dx| * 2^16). The sign test uses the product's sign like the
// reference (dx * dy >= 0), which equals OpenCV's sign-bit xor on integer derivatives.
template <typename T>
HMORE_HD int hmore_canny_sector(T dx, T dy) {
  T ax = hmore_abs(dx), ay = hmore_abs(dy);
  // Every product rounds on its own (hmore_mul/hmore_add are never contracted): nvcc could otherwise
  // fuse ax * 13573 into the addition below as one fma, which rounds differently from the reference's
  // separate float64 operations and can move a pixel across a sector boundary.
  T y = hmore_mul(ay, T(1 << HMORE_CANNY_SHIFT));
  T tg22x = hmore_mul(ax, T(HMORE_CANNY_TG22));
  if (y < tg22x) return HMORE_CANNY_HORIZ;
  T tg67x = hmore_add(tg22x, hmore_mul(ax, T(1 << (HMORE_CANNY_SHIFT + 1))));
  if (y > tg67x) return HMORE_CANNY_VERT;
  return (dx * dy >= T(0)) ? HMORE_CANNY_DIAG_POS : HMORE_CANNY_DIAG_NEG;
}

// Neighbour offsets (di, dj) of the two pixels a pixel of a sector is compared with. The first must be
// strictly smaller; the second too, except in the horizontal and vertical sectors where OpenCV keeps
// ties with the later pixel (">=" toward +x / +y): that breaks plateaus of equal magnitude the same way.
HMORE_HD void hmore_canny_sector_offsets(int sector, int& di0, int& dj0, int& di1, int& dj1) {
  switch (sector) {
    case HMORE_CANNY_HORIZ: di0 = 0; dj0 = -1; di1 = 0; dj1 = 1; break;
    case HMORE_CANNY_VERT: di0 = -1; dj0 = 0; di1 = 1; dj1 = 0; break;
    case HMORE_CANNY_DIAG_POS: di0 = -1; dj0 = -1; di1 = 1; dj1 = 1; break;
    default: di0 = -1; dj0 = 1; di1 = 1; dj1 = -1; break;
  }
}

// Non-maximum suppression given the magnitudes m0 (first neighbour) and m1 (second neighbour).
template <typename T>
HMORE_HD bool hmore_canny_keep(int sector, T m, T m0, T m1) {
  bool ties_ok = sector == HMORE_CANNY_HORIZ || sector == HMORE_CANNY_VERT;
  return m > m0 && (ties_ok ? m >= m1 : m > m1);
}

// Pixel classes after NMS and thresholds. Values are chosen so that "edge" can be tested as == 2.
enum HmoreCannyClass : unsigned char {
  HMORE_CANNY_NONE = 0,
  HMORE_CANNY_WEAK = 1,    // NMS survivor with m > low: an edge if 8-connected to a strong pixel
  HMORE_CANNY_STRONG = 2,  // NMS survivor with m > high (high >= low, so also weak)
};

template <typename T, typename Th>
HMORE_HD unsigned char hmore_canny_classify(bool nms, T m, Th lo, Th hi) {
  if (!nms || !(m > lo)) return HMORE_CANNY_NONE;
  return m > hi ? HMORE_CANNY_STRONG : HMORE_CANNY_WEAK;
}

// The reference's canny_thresholds (OpenCV's): L2 clamps to 32767 and squares positive values; both are
// floored; swapped if low > high.
HMORE_HD void hmore_canny_thresholds(double low, double high, bool l2, double& lo, double& hi) {
  if (l2) {
    low = low < 32767.0 ? low : 32767.0;
    high = high < 32767.0 ? high : 32767.0;
    if (low > 0) low = low * low;
    if (high > 0) high = high * high;
  }
  lo = floor(low);
  hi = floor(high);
  if (lo > hi) {
    const double t = lo;
    lo = hi;
    hi = t;
  }
}

// Integer (uint8-path) magnitudes are >= 0 and < 2^31: clamping a threshold to [-1, INT32_MAX] leaves
// every "m > t" unchanged while making it an exact int comparison.
HMORE_HD int hmore_canny_int_threshold(double t) {
  if (t < -1.0) return -1;
  if (t > 2147483647.0) return 2147483647;
  return static_cast<int>(t);
}
