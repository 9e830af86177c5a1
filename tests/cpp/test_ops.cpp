// Calls every registered hmore op through the PyTorch dispatcher (boxed calls, as a TorchScript or
// C++ user would) and checks results with known closed forms, so the CMake build is tested on its
// own, without Python. Prints "N passed, N failed" and exits non-zero on any failure.
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

}  // namespace

int main() {
  const char* ops[] = {"sobel", "_sobel_backward", "gradient_magnitude", "_gradient_magnitude_backward",
                       "mask_boundary", "_mask_boundary_backward", "flow_edges", "_flow_edges_backward",
                       "canny", "distance_transform", "_build_info"};
  for (const char* name : ops) {
    auto h = c10::Dispatcher::singleton().findSchema({std::string("hmore::") + name, ""});
    check(h.has_value(), std::string("schema registered: hmore::") + name);
  }

  run("build_info", [] {
    auto s = call("_build_info", {})[0].toStringRef();
    std::cout << "build info:\n" << s;
    check(s.find("openmp=") != std::string::npos, "build_info reports OpenMP");
  });

  // A ramp of slope 1 along x: normalised Sobel gives d/dx = 1 inside, 0.5 on the replicated
  // left/right columns, and d/dy = 0 everywhere.
  run("sobel ramp", [] {
    auto x = at::arange(7, at::kFloat).view({1, 1, 1, 7}).expand({2, 3, 5, 7}).contiguous();
    auto g = call("sobel", {x, true, std::string("replicate")})[0].toTensor();
    check(g.sizes() == at::IntArrayRef({2, 3, 2, 5, 7}), "sobel shape");
    auto gx = g.select(2, 0), gy = g.select(2, 1);
    check(at::allclose(gx.narrow(3, 1, 5), at::ones({2, 3, 5, 5})), "sobel d/dx = 1 inside");
    check(at::allclose(gx.narrow(3, 0, 1), at::full({2, 3, 5, 1}, 0.5)), "sobel d/dx = 0.5 at the border");
    check(gy.abs().max().item<float>() == 0.f, "sobel d/dy = 0");
  });

  // Magnitude of the ramp summed over 3 channels: sqrt(3) inside.
  run("gradient_magnitude", [] {
    auto x = at::arange(7, at::kDouble).view({1, 1, 1, 7}).expand({1, 3, 4, 7}).contiguous();
    auto m = call("gradient_magnitude", {x, std::string("sobel"), std::string("sum"), 0.0})[0].toTensor();
    check(m.sizes() == at::IntArrayRef({1, 1, 4, 7}), "gradient_magnitude shape");
    check(std::abs(m[0][0][2][3].item<double>() - std::sqrt(3.0)) < 1e-12, "gradient_magnitude = sqrt(3)");
  });

  // A filled square: its inner boundary is the square's outline.
  run("mask_boundary", [] {
    auto mask = at::zeros({1, 1, 9, 9}, at::kBool);
    mask.narrow(2, 2, 5).narrow(3, 2, 5).fill_(true);
    auto b = call("mask_boundary", {mask, std::string("inner"), int64_t(1)})[0].toTensor();
    check(b.scalar_type() == at::kBool, "mask_boundary keeps bool");
    check(b.sum().item<int64_t>() == 16, "inner boundary of a 5x5 square has 16 pixels");
    auto t = call("mask_boundary", {mask, std::string("thick"), int64_t(1)})[0].toTensor();
    check(t.sum().item<int64_t>() == 16 + 24, "thick boundary = inner 16 + outer 24");
  });

  // A flow that is a ramp in u: constant magnitude inside, normalised to max 1.
  run("flow_edges", [] {
    auto flow = at::zeros({1, 2, 6, 8});
    flow.select(1, 0).copy_(at::arange(8, at::kFloat).view({1, 1, 8}).expand({1, 6, 8}));
    auto e = call("flow_edges", {flow, c10::IValue(), c10::IValue(), true})[0].toTensor();
    check(std::abs(e.max().item<float>() - 1.f) < 1e-6, "flow_edges normalised max = 1");
    auto z = call("flow_edges", {at::ones({1, 2, 6, 8}), c10::IValue(), int64_t(3), true})[0].toTensor();
    check(z.abs().max().item<float>() == 0.f, "constant flow gives zeros");
  });

  // A vertical step edge: Canny marks one column, and nothing else.
  run("canny", [] {
    auto img = at::zeros({1, 1, 12, 12}, at::kByte);
    img.narrow(3, 6, 6).fill_(200);
    auto e = call("canny", {img, 50.0, 150.0, int64_t(3), false})[0].toTensor();
    check(e.scalar_type() == at::kBool, "canny returns bool");
    auto cols = e.sum({0, 1, 2});
    check(e.sum().item<int64_t>() == 12 && cols.max().item<int64_t>() == 12, "canny: one full column of edges");
  });

  // One True pixel at (y, x) = (2, 3): distances are exact Euclidean distances to it.
  run("distance_transform", [] {
    auto mask = at::zeros({1, 1, 6, 9}, at::kBool);
    mask[0][0][2][3] = true;
    auto out = call("distance_transform", {mask, true});
    auto d = out[0].toTensor(), idx = out[1].toTensor();
    check(std::abs(d[0][0][5][8].item<float>() - std::sqrt(9.f + 25.f)) < 1e-6, "distance to (2,3) from (5,8)");
    check(idx[0][0].eq(2).all().item<bool>() && idx[0][1].eq(3).all().item<bool>(), "indices point at (2,3)");
    auto empty = call("distance_transform", {at::zeros({1, 1, 3, 3}, at::kBool), false})[0].toTensor();
    check(std::isinf(empty.max().item<float>()), "empty mask gives inf");
  });

  // Bad input is a clear error, not a crash.
  run("bad input", [] {
    bool threw = false;
    try {
      call("sobel", {at::zeros({3, 4}), true, std::string("replicate")});
    } catch (const c10::ValueError& e) {
      // the message starts with the argument's name and says what was expected (any message holding
      // an "x" used to pass)
      threw = e.msg().rfind("x: expected a 4-D tensor", 0) == 0;
    }
    check(threw, "sobel rejects a 2-D tensor with a ValueError starting 'x: expected a 4-D tensor'");
  });

  std::cout << g_pass << " passed, " << g_fail << " failed" << std::endl;
  return g_fail == 0 ? 0 : 1;
}
