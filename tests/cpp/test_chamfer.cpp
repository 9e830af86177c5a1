// The Chamfer family through the PyTorch dispatcher (boxed calls, as a TorchScript or C++ user would),
// checked against closed forms, so the CMake build is tested on its own, without Python. Prints
// "N passed, N failed" and exits non-zero on any failure.
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

bool near(double a, double b, double tol = 1e-6) { return std::abs(a - b) <= tol * (1 + std::abs(b)); }

at::Tensor pts(std::vector<float> v, int64_t n) { return at::tensor(v, at::kFloat).view({1, n, 2}); }

}  // namespace

int main() {
  const char* ops[] = {"nearest_neighbors",  "chamfer_distance",        "_chamfer_distance_backward",
                       "patch_centroids",    "_patch_centroids_backward", "patch_centroid_chamfer",
                       "_patch_centroid_chamfer_backward", "boundary_chamfer"};
  for (const char* name : ops) {
    auto h = c10::Dispatcher::singleton().findSchema({std::string("hmore::") + name, ""});
    check(h.has_value(), std::string("schema registered: hmore::") + name);
  }

  // x0 ties between y0 and y2 (distance 1): lowest index; x1 -> y1 (its duplicate y3 loses).
  run("nearest_neighbors ties", [] {
    auto x = pts({0, 0, 3, 0}, 2);
    auto y = pts({1, 0, 3, 1, -1, 0, 3, 1}, 4);
    auto out = call("nearest_neighbors", {x, y, c10::IValue(), c10::IValue()});
    auto d = out[0].toTensor(), i = out[1].toTensor();
    check(i[0][0].item<int64_t>() == 0 && i[0][1].item<int64_t>() == 1, "ties go to the lowest index");
    check(d[0][0].item<float>() == 1.f && d[0][1].item<float>() == 1.f, "squared distances are 1");
  });

  // Pixel coordinates near 4096: the direct sum keeps the tie exact.
  run("nearest_neighbors large coordinates", [] {
    auto x = pts({4095, 4095}, 1);
    auto y = pts({4094, 4094, 4094, 4095, 4095, 4094}, 3);
    auto out = call("nearest_neighbors", {x, y, c10::IValue(), c10::IValue()});
    check(out[1].toTensor()[0][0].item<int64_t>() == 1 && out[0].toTensor()[0][0].item<float>() == 1.f,
          "exact tie at (4095, 4095) resolves to index 1");
  });

  // x = {(0,0), (2,0)}, y = {(0,1)}: x->y d = 1, 5 (mean 3), y->x 1: total 4; sum 7; plain L2.
  run("chamfer_distance closed form", [] {
    auto x = pts({0, 0, 2, 0}, 2), y = pts({0, 1}, 1);
    auto none = c10::IValue();
    auto v = call("chamfer_distance", {x, y, none, none, none, none, true, std::string("mean"), true, false});
    check(near(v[0].toTensor().item<double>(), 4.0), "chamfer mean = 4");
    check(v[1].toTensor().sizes() == at::IntArrayRef({1, 2}) && v[2].toTensor().sizes() == at::IntArrayRef({1, 1}),
          "index shapes");
    auto s = call("chamfer_distance", {x, y, none, none, none, none, true, std::string("sum"), true, false});
    check(near(s[0].toTensor().item<double>(), 7.0), "chamfer sum = 7");
    auto l2 = call("chamfer_distance", {x, y, none, none, none, none, false, std::string("mean"), true, false});
    check(near(l2[0].toTensor().item<double>(), (1 + std::sqrt(5.0)) / 2 + 1), "plain L2");
    // gradient of the squared mean w.r.t. x: x->y term (1/2) * 2 (x_i - y) ; y->x adds 2 (x0 - y) to x0
    auto g = call("_chamfer_distance_backward", {at::ones({}), x, y, v[1], v[2], none, none, none, none, true,
                                                 std::string("mean"), true, false});
    auto gx = g[0].toTensor();
    check(near(gx[0][0][1].item<double>(), -1.0 - 2.0) && near(gx[0][1][0].item<double>(), 2.0),
          "chamfer backward closed form");
    check(g[2].toTensor().numel() == 0, "no weight gradient without weights");
  });

  // Empty y cloud (length 0): the batch element contributes 0, indices are -1.
  run("chamfer_distance ragged", [] {
    auto x = at::rand({2, 5, 2}), y = at::rand({2, 4, 2});
    auto yl = at::tensor({int64_t(4), int64_t(0)});
    auto none = c10::IValue();
    auto v = call("chamfer_distance", {x, y, none, yl, none, none, true, std::string("none"), true, false});
    check(v[0].toTensor()[1].item<float>() == 0.f, "empty y contributes 0");
    check(v[1].toTensor()[1].eq(-1).all().item<bool>(), "idx -1 when y is empty");
  });

  // One patch of 4x4 with mass 2 at (1,1) and (2,3): centroid (1.5, 2); the empty partial patch gets its
  // centre.
  run("patch_centroids", [] {
    auto w = at::zeros({1, 1, 4, 6});
    w[0][0][1][1] = 2.0;
    w[0][0][3][2] = 2.0;
    auto out = call("patch_centroids", {w, int64_t(4), c10::IValue()});
    auto c = out[0].toTensor(), m = out[1].toTensor();
    check(near(m[0][0][0].item<double>(), 4.0), "mass 4");
    check(near(c[0][0][0][0].item<double>(), 1.5) && near(c[0][0][0][1].item<double>(), 2.0), "centroid (1.5, 2)");
    check(near(c[0][0][1][0].item<double>(), 4.5) && near(c[0][0][1][1].item<double>(), 1.5),
          "empty partial patch: centre (4.5, 1.5)");
  });

  // Two single pixels 3 apart in one 8x8 patch: r = 1/8 each, term 3/64; identical maps give 0.
  run("patch_centroid_chamfer", [] {
    auto a = at::zeros({1, 1, 8, 8}), b = at::zeros({1, 1, 8, 8});
    a[0][0][2][2] = 1.0;
    b[0][0][2][5] = 1.0;
    std::vector<int64_t> ps = {8};
    auto v = call("patch_centroid_chamfer", {a, b, ps, 1e-3, std::string("mean")})[0].toTensor();
    check(near(v.item<double>(), 3.0 / 64), "term r_a r_b |c_a - c_b| = 3/64");
    auto z = call("patch_centroid_chamfer", {a, a, std::vector<int64_t>{8, 16, 32}, 1e-3, std::string("mean")});
    check(z[0].toTensor().item<float>() == 0.f, "identical maps give 0");
    auto g = call("_patch_centroid_chamfer_backward", {at::ones({}), a, a, std::vector<int64_t>{8}, 1e-3,
                                                       std::string("mean")});
    check(at::isfinite(g[0].toTensor()).all().item<bool>(), "gradient finite (0, not NaN) at c_a == c_b");
  });

  // Single pixels at (1,1) and (4,4): symmetric Chamfer = 2 * sqrt(18); empty vs non-empty = inf.
  run("boundary_chamfer", [] {
    auto a = at::zeros({1, 1, 5, 5}, at::kBool), b = at::zeros({1, 1, 5, 5}, at::kBool);
    a[0][0][1][1] = true;
    b[0][0][4][4] = true;
    auto v = call("boundary_chamfer", {a, b, std::string("mean")})[0].toTensor();
    check(near(v.item<double>(), 2 * std::sqrt(18.0)), "2 sqrt(18)");
    auto e = call("boundary_chamfer", {a, at::zeros_like(b), std::string("mean")})[0].toTensor();
    check(std::isinf(e.item<float>()), "inf when exactly one map is empty");
    auto z = call("boundary_chamfer", {at::zeros_like(a), at::zeros_like(b), std::string("mean")})[0].toTensor();
    check(z.item<float>() == 0.f, "0 when both maps are empty");
  });

  run("bad input", [] {
    auto expect_throw = [](const std::function<void()>& f, const std::string& needle, const std::string& what) {
      bool ok = false;
      try {
        f();
      } catch (const c10::Error& e) {
        ok = std::string(e.what()).find(needle) != std::string::npos;
      }
      check(ok, what);
    };
    auto none = c10::IValue();
    expect_throw([&] { call("nearest_neighbors", {at::rand({2, 3, 2}), at::rand({2, 3, 3}), none, none}); }, "D = 2",
                 "D mismatch names D");
    expect_throw([&] { call("nearest_neighbors", {at::rand({2, 3, 2}), at::rand({2, 3, 2}), at::tensor({int64_t(4), int64_t(1)}), none}); },
                 "x_lengths", "lengths out of range names x_lengths");
    expect_throw([&] { call("patch_centroid_chamfer", {at::rand({1, 1, 4, 4}), at::rand({1, 1, 4, 4}), std::vector<int64_t>{}, 1e-3, std::string("mean")}); },
                 "patch_sizes", "empty patch_sizes");
    expect_throw([&] { call("boundary_chamfer", {at::rand({1, 1, 4, 4}), at::rand({1, 1, 4, 4}), std::string("mean")}); },
                 "bool", "boundary_chamfer wants bool maps");
  });

  std::cout << g_pass << " passed, " << g_fail << " failed" << std::endl;
  return g_fail == 0 ? 0 : 1;
}
