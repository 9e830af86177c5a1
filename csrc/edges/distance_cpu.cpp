// distance_transform, CPU: exact Euclidean distance transform (Felzenszwalb-Huttenlocher; the math is
// in distance_kernels.cuh).
//
// Pass 1 (columns) runs over blocks of adjacent columns, sweeping each block down then up a row at a
// time: the mask and the near-row buffer are row-major, so a block reads and writes contiguous runs
// instead of striding by W as one column at a time would. Blocks run in parallel.
// Pass 2 (rows) runs the lower envelope of each row independently, rows in parallel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <tuple>
#include <vector>

#include "common.h"
#include "edges/distance_kernels.cuh"
#include "edges/edges.h"

namespace hmore {
namespace {

// Columns per pass-1 block: wide enough for long contiguous runs, small enough that the two running
// rows (last True row above / below) stay in L1.
constexpr int64_t kColBlock = 512;

void column_pass(const uint8_t* m, int64_t B, int64_t H, int64_t W, int32_t* near) {
  const int64_t nblk = (W + kColBlock - 1) / kColBlock;
  at::parallel_for(0, B * nblk, 1, [&](int64_t t0, int64_t t1) {
    int32_t run[kColBlock];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nblk, j0 = (t - b * nblk) * kColBlock, cb = std::min(kColBlock, W - j0);
      const uint8_t* mb = m + b * H * W + j0;
      int32_t* nb = near + b * H * W + j0;
      for (int64_t j = 0; j < cb; ++j) run[j] = -1;
      for (int64_t i = 0; i < H; ++i) {  // down: last True row at or above i
        const uint8_t* mr = mb + i * W;
        int32_t* nr = nb + i * W;
        const int32_t ii = static_cast<int32_t>(i);
        for (int64_t j = 0; j < cb; ++j) {
          run[j] = mr[j] ? ii : run[j];
          nr[j] = run[j];
        }
      }
      for (int64_t j = 0; j < cb; ++j) run[j] = -1;
      for (int64_t i = H - 1; i >= 0; --i) {  // up: first True row at or below i, then pick
        const uint8_t* mr = mb + i * W;
        int32_t* nr = nb + i * W;
        const int32_t ii = static_cast<int32_t>(i);
        for (int64_t j = 0; j < cb; ++j) {
          run[j] = mr[j] ? ii : run[j];
          nr[j] = hmore_dt_pick(nr[j], run[j], ii);
        }
      }
    }
  });
}

void row_pass(const int32_t* near, int64_t B, int64_t H, int64_t W, float* dist, int64_t* idx) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1));
  at::parallel_for(0, B * H, grain, [&](int64_t r0, int64_t r1) {
    std::unique_ptr<int[]> v(new int[W]), fv(new int[W]);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / H, i = r - b * H;
      const int32_t* nr = near + r * W;
      float* d = dist + r * W;
      const auto near_of = [nr](int k) { return nr[k]; };
      if (idx != nullptr) {
        int64_t* iy = idx + (b * 2 * H + i) * W;  // channel 0 (y) of image b, row i
        int64_t* ix = iy + H * W;                 // channel 1 (x)
        hmore_dt_row(near_of, int(i), int(W), v.get(), fv.get(), [&](int j, int d2, int k) {
          if (k < 0) {
            d[j] = std::numeric_limits<float>::infinity();
            iy[j] = -1;
            ix[j] = -1;
          } else {
            d[j] = static_cast<float>(std::sqrt(static_cast<double>(d2)));
            iy[j] = nr[k];
            ix[j] = k;
          }
        });
      } else {
        hmore_dt_row(near_of, int(i), int(W), v.get(), fv.get(), [&](int j, int d2, int k) {
          d[j] = k < 0 ? std::numeric_limits<float>::infinity()
                       : static_cast<float>(std::sqrt(static_cast<double>(d2)));
        });
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> distance_transform_cpu(const at::Tensor& mask, bool return_indices) {
  check_rank(mask, 4, "mask", "[B, 1, H, W]");
  TORCH_CHECK_VALUE(mask.size(1) == 1, "mask: expected shape [B, 1, H, W], got ", mask.sizes());
  const int64_t B = mask.size(0), H = mask.size(2), W = mask.size(3);
  TORCH_CHECK_VALUE(H <= HMORE_DT_MAX_SIDE && W <= HMORE_DT_MAX_SIDE, "mask: expected H, W <= ",
                    HMORE_DT_MAX_SIDE, " (squared distances are exact in int32 up to that), got shape ",
                    mask.sizes());
  auto opts = mask.options();
  at::Tensor dist = at::empty({B, 1, H, W}, opts.dtype(at::kFloat));
  at::Tensor idx = return_indices ? at::empty({B, 2, H, W}, opts.dtype(at::kLong)) : at::empty({0}, opts.dtype(at::kLong));
  if (dist.numel() == 0) return {dist, idx};
  // True = nonzero. bool, uint8 and int8 are already one byte per pixel with that meaning; anything else
  // (floats, wider ints) is reduced to bool first (NaN counts as nonzero, -0.0 as zero, like `!= 0`).
  const auto st = mask.scalar_type();
  at::Tensor m = (st == at::kBool || st == at::kByte || st == at::kChar) ? mask.contiguous() : mask.ne(0).contiguous();
  const uint8_t* mp = static_cast<const uint8_t*>(m.data_ptr());
  std::unique_ptr<int32_t[]> near(new int32_t[size_t(B * H * W)]);
  column_pass(mp, B, H, W, near.get());
  row_pass(near.get(), B, H, W, dist.data_ptr<float>(), return_indices ? idx.data_ptr<int64_t>() : nullptr);
  return {dist, idx};
}

}  // namespace hmore

TORCH_LIBRARY_IMPL(hmore, CPU, m) { m.impl("distance_transform", &hmore::distance_transform_cpu); }
