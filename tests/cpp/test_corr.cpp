// Calls every hmore correlation op through the PyTorch dispatcher (boxed calls, as a TorchScript or C++
// user would) and checks closed forms, so the CMake build of the corr family is tested without Python.
// Prints "N passed, N failed" and exits non-zero on any failure.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "harness.h"

#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace hmore_test;

bool throws_naming(const std::function<void()>& body, const std::string& word) {
  try {
    body();
  } catch (const c10::Error& e) {
    return std::string(e.what()).find(word) != std::string::npos;
  }
  return false;
}

}  // namespace

int main() {
  const char* ops[] = {"corr_volume", "_corr_volume_backward", "corr_pyramid", "_corr_pyramid_backward",
                       "corr_lookup", "_corr_lookup_backward", "corr_lookup_otf", "_corr_lookup_otf_backward",
                       "local_corr", "_local_corr_backward"};
  for (const char* name : ops) {
    auto h = c10::Dispatcher::singleton().findSchema({std::string("hmore::") + name, ""});
    check(h.has_value(), std::string("schema registered: hmore::") + name);
  }

  // Features that are one-hot in D = 4 channels: <f1(p), f2(q)> = [class(p) == class(q)], scaled by
  // 1/sqrt(4) = 0.5 by default.
  auto onehot = [](int64_t H, int64_t W) {
    auto cls = (at::arange(H * W, at::kLong) % 4).view({H, W});
    return at::one_hot(cls, 4).permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).contiguous();
  };

  run("corr_volume", [&] {
    auto f = onehot(3, 5);
    auto v = call("corr_volume", {f, f, c10::IValue()})[0].toTensor();
    check(v.sizes() == at::IntArrayRef({1, 3, 5, 3, 5}), "corr_volume shape");
    check(v[0][1][2][1][2].item<float>() == 0.5f, "corr_volume diagonal = 1/sqrt(D)");
    check(v[0][0][0][0][1].item<float>() == 0.f, "corr_volume of different classes = 0");
    auto v2 = call("corr_volume", {f, f, 2.0})[0].toTensor();
    check(v2[0][0][0][0][0].item<float>() == 2.f, "corr_volume scale = 2");
  });

  run("corr_pyramid", [&] {
    auto f1 = at::ones({1, 4, 2, 2}), f2 = at::ones({1, 4, 5, 7});
    auto pyr = call("corr_pyramid", {f1, f2, int64_t(4), 1.0})[0].toTensorList();
    check(pyr.size() == 4, "corr_pyramid has 4 levels");
    check(pyr.get(1).sizes() == at::IntArrayRef({4, 1, 2, 3}), "level 1 is [4, 1, 5>>1, 7>>1]");
    check(pyr.get(3).sizes() == at::IntArrayRef({4, 1, 0, 0}), "level 3 of a 5x7 map is empty");
    check(at::allclose(pyr.get(2), at::full({4, 1, 1, 1}, 4.0)), "pooling a constant volume keeps it");
  });

  // A lookup of a linear ramp v(x, y) = x + 10 y is exact under bilinear sampling: tap (dx, dy) around
  // (cx, cy) gives cx + dx + 10 (cy + dy) inside the level; the raft tap order has dx slowest.
  run("corr_lookup ramp", [] {
    auto xs = at::arange(8, at::kDouble).view({1, 1, 1, 8}).expand({1, 1, 6, 8});
    auto ys = at::arange(6, at::kDouble).view({1, 1, 6, 1}).expand({1, 1, 6, 8});
    auto lvl = (xs + 10 * ys).contiguous();
    auto coords = at::empty({1, 2, 1, 1}, at::kDouble);
    coords[0][0][0][0] = 3.25;
    coords[0][1][0][0] = 2.5;
    std::vector<at::Tensor> pyr{lvl};
    auto out = call("corr_lookup", {at::TensorList(pyr), coords, int64_t(1), std::string("raft"), false})[0].toTensor();
    check(out.sizes() == at::IntArrayRef({1, 9, 1, 1}), "corr_lookup shape");
    bool ok = true;
    for (int dx = -1; dx <= 1; ++dx)
      for (int dy = -1; dy <= 1; ++dy) {
        const double want = 3.25 + dx + 10 * (2.5 + dy);
        ok = ok && std::abs(out[0][(dx + 1) * 3 + (dy + 1)][0][0].item<double>() - want) < 1e-12;
      }
    check(ok, "corr_lookup samples the ramp exactly, dx slowest");
    auto g = call("_corr_lookup_backward",
                  {at::ones({1, 9, 1, 1}, at::kDouble), at::TensorList(pyr), coords, int64_t(1), std::string("yx"), true});
    auto gc = g[1].toTensor();
    check(std::abs(gc[0][0][0][0].item<double>() - 9.0) < 1e-12, "d(sum of taps)/dx = 9");
    check(std::abs(gc[0][1][0][0].item<double>() - 90.0) < 1e-12, "d(sum of taps)/dy = 90");
    check(std::abs(g[0].toTensorList().get(0).sum().item<double>() - 9.0) < 1e-12, "pyramid grad sums to 9 weights");
  });

  run("corr_lookup_otf = lookup of the pyramid", [] {
    auto f1 = at::randn({1, 3, 3, 4}, at::kDouble), f2 = at::randn({1, 3, 5, 6}, at::kDouble);
    auto c = at::rand({1, 2, 3, 4}, at::kDouble) * 6 - 1;
    auto pyr = call("corr_pyramid", {f1, f2, int64_t(2), c10::IValue()})[0].toTensorList();
    std::vector<at::Tensor> p{pyr.get(0), pyr.get(1)};
    auto a = call("corr_lookup", {at::TensorList(p), c, int64_t(2), std::string("raft"), false})[0].toTensor();
    auto b = call("corr_lookup_otf", {f1, f2, c, int64_t(2), int64_t(2), c10::IValue(), std::string("raft"), false})[0]
                 .toTensor();
    check(at::allclose(a, b, 1e-10, 1e-12), "corr_lookup_otf equals corr_lookup(corr_pyramid)");
  });

  run("local_corr", [&] {
    auto f = onehot(4, 5);
    auto out = call("local_corr", {f, f, int64_t(1), int64_t(1), int64_t(1), 1.0})[0].toTensor();
    check(out.sizes() == at::IntArrayRef({1, 9, 4, 5}), "local_corr shape");
    check(at::allclose(out.select(1, 4), at::ones({1, 4, 5})), "centre tap = <f, f> = 1");
    // dx = +1 (channel 5): class (k + 1) % 4 != k % 4 inside a row -> 0; the last column reads padding
    check(out.select(1, 5).abs().max().item<float>() == 0.f, "dx = +1 tap of one-hot classes is 0");
    auto s2 = call("local_corr", {f, f, int64_t(0), int64_t(2), int64_t(1), c10::IValue()})[0].toTensor();
    check(s2.sizes() == at::IntArrayRef({1, 1, 2, 3}), "stride 2 gives ceil(H/2) x ceil(W/2)");
  });

  run("bad input", [] {
    auto f = at::zeros({1, 4, 3, 3});
    auto c = at::zeros({1, 2, 3, 3});
    check(throws_naming([&] { call("corr_volume", {f[0], f, c10::IValue()}); }, "fmap1"), "corr_volume rank");
    check(throws_naming([&] { call("corr_volume", {f, at::zeros({1, 5, 3, 3}), c10::IValue()}); }, "fmap2"),
          "corr_volume D mismatch");
    check(throws_naming([&] { call("corr_pyramid", {f, f, int64_t(0), c10::IValue()}); }, "num_levels"),
          "corr_pyramid num_levels < 1");
    check(throws_naming([&] { call("corr_lookup_otf", {f, f, c, int64_t(-1), int64_t(1), c10::IValue(), std::string("raft"), false}); },
                        "radius"),
          "corr_lookup_otf radius < 0");
    check(throws_naming([&] { call("corr_lookup_otf", {f, f, c, int64_t(1), int64_t(1), c10::IValue(), std::string("xy"), false}); },
                        "layout"),
          "corr_lookup_otf unknown layout");
    std::vector<at::Tensor> bad{at::zeros({9, 1, 4, 4}), at::zeros({9, 1, 3, 2})};
    check(throws_naming([&] { call("corr_lookup", {at::TensorList(bad), c, int64_t(1), std::string("raft"), false}); },
                        "pyramid[1]"),
          "corr_lookup inconsistent levels");
    check(throws_naming([&] { call("local_corr", {f, f, int64_t(1), int64_t(0), int64_t(1), c10::IValue()}); }, "stride"),
          "local_corr stride < 1");
    check(throws_naming([&] { call("local_corr", {f, f, int64_t(-1), int64_t(1), int64_t(1), c10::IValue()}); },
                        "max_displacement"),
          "local_corr max_displacement < 0");
  });

  std::cout << g_pass << " passed, " << g_fail << " failed" << std::endl;
  return g_fail == 0 ? 0 : 1;
}
