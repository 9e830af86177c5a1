// The skeleton family through the PyTorch dispatcher (boxed calls, as a TorchScript or C++ user would),
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

// body must throw a c10::ValueError whose message contains `what`.
void expect_value_error(const std::string& name, const std::string& what, const std::function<void()>& body) {
  try {
    body();
    check(false, name + ": no error raised");
  } catch (const c10::ValueError& e) {
    check(std::string(e.what()).find(what) != std::string::npos, name + ": message lacks '" + what + "': " + e.what());
  } catch (const std::exception& e) {
    check(false, name + ": wrong exception type: " + e.what());
  }
}

}  // namespace

int main() {
  for (const char* name : {"skeleton_points", "_skeleton_points_backward", "skeleton_match", "skeleton_offset_map"}) {
    auto h = c10::Dispatcher::singleton().findSchema({std::string("hmore::") + name, ""});
    check(h.has_value(), std::string("schema registered: hmore::") + name);
  }

  // One bone from (0, 0) to (7, 14), confidences 1 -> 0: points k = (k, 2k), confidence 1 - k/7.
  run("skeleton_points", [] {
    auto joints = at::tensor({0.0, 0.0, 7.0, 14.0}, at::kDouble).view({1, 2, 2});
    auto conf = at::tensor({1.0, 0.0}, at::kDouble).view({1, 2});
    auto bones = at::tensor({int64_t(0), int64_t(1)}, at::kLong).view({1, 2});
    auto out = call("skeleton_points", {joints, conf, bones, int64_t(8)});
    auto pts = out[0].toTensor(), pc = out[1].toTensor(), bone = out[2].toTensor();
    check(pts.sizes() == at::IntArrayRef({1, 8, 2}) && pc.sizes() == at::IntArrayRef({1, 8}), "skeleton_points shapes");
    auto k = at::arange(8, at::kDouble);
    check(at::allclose(pts[0].select(1, 0), k) && at::allclose(pts[0].select(1, 1), 2 * k), "points (k, 2k)");
    check(at::allclose(pc[0], 1 - k / 7), "confidence 1 - k/7");
    check(bone.scalar_type() == at::kLong && bone.eq(0).all().item<bool>(), "bone index 0");
    // backward: all-ones gradients put sum_k s_k = 4 on each end joint (n = 8)
    auto g = call("_skeleton_points_backward", {at::ones({1, 8, 2}, at::kDouble), at::ones({1, 8}, at::kDouble), bones,
                                                 int64_t(2), int64_t(8)});
    auto gj = g[0].toTensor(), gc = g[1].toTensor();
    check(at::allclose(gj, at::full({1, 2, 2}, 4.0, at::kDouble)), "joint gradient 4");
    check(at::allclose(gc, at::full({1, 2}, 4.0, at::kDouble)), "joint confidence gradient 4");
    // n = 1: the midpoint
    auto mid = call("skeleton_points", {joints, conf, bones, int64_t(1)})[0].toTensor();
    check(mid[0][0][0].item<double>() == 3.5 && mid[0][0][1].item<double>() == 7.0, "n = 1 gives the midpoint");
  });

  // Two points at (2, 2) and (6, 2), equal confidence, on a 5 x 9 mask: columns 0..3 match point 0,
  // column 4 is a tie (lowest index: 0), 5..8 match point 1; outside the mask -1.
  run("skeleton_match", [] {
    auto pts = at::tensor({2.0f, 2.0f, 6.0f, 2.0f}).view({1, 2, 2});
    auto conf = at::full({1, 2}, 0.7f);
    auto mask = at::ones({1, 1, 5, 9}, at::kBool);
    mask[0][0][0][0] = false;
    auto idx = call("skeleton_match", {pts, conf, mask, 1e-4})[0].toTensor();
    check(idx.sizes() == at::IntArrayRef({1, 5, 9}) && idx.scalar_type() == at::kLong, "skeleton_match shape");
    check(idx[0][0][0].item<int64_t>() == -1, "outside the mask: -1");
    check(idx[0].narrow(1, 1, 4).eq(0).all().item<bool>(), "left columns + the tie column match point 0");
    check(idx[0].narrow(1, 5, 4).eq(1).all().item<bool>(), "right columns match point 1");
    auto none = call("skeleton_match", {pts, at::zeros({1, 2}), mask, 1e-4})[0].toTensor();
    check(none.eq(-1).all().item<bool>(), "no confident point: all -1");
  });

  run("skeleton_offset_map", [] {
    auto p0 = at::tensor({2.0f, 2.0f, 6.0f, 2.0f}).view({1, 2, 2});
    auto p1 = p0 + at::tensor({1.0f, -1.0f, 3.0f, 0.5f}).view({1, 2, 2});
    auto mask = at::ones({1, 1, 5, 9}, at::kFloat);
    auto out = call("skeleton_offset_map", {p0, p1, at::full({1, 2}, 0.7f), mask, 1e-4});
    auto off = out[0].toTensor(), valid = out[1].toTensor();
    check(off.sizes() == at::IntArrayRef({1, 2, 5, 9}) && valid.scalar_type() == at::kBool, "offset shapes");
    check(valid.all().item<bool>(), "every pixel valid");
    check(off[0][0][3][0].item<float>() == 1.f && off[0][1][3][0].item<float>() == -1.f, "offset of point 0");
    check(off[0][0][3][8].item<float>() == 3.f && off[0][1][3][8].item<float>() == 0.5f, "offset of point 1");
  });

  expect_value_error("bones out of range", "bones: expected joint indices in [0, 2)", [] {
    call("skeleton_points", {at::zeros({1, 2, 2}), at::zeros({1, 2}), at::tensor({int64_t(0), int64_t(2)}).view({1, 2}),
                             int64_t(8)});
  });
  expect_value_error("eps", "eps: expected a float in (0, 0.5)", [] {
    call("skeleton_match", {at::zeros({1, 2, 2}), at::zeros({1, 2}), at::ones({1, 1, 3, 3}, at::kBool), 0.5});
  });
  expect_value_error("mask batch", "mask: expected batch size 1", [] {
    call("skeleton_match", {at::zeros({1, 2, 2}), at::zeros({1, 2}), at::ones({2, 1, 3, 3}, at::kBool), 1e-4});
  });

  std::cout << g_pass << " passed, " << g_fail << " failed\n";
  return g_fail == 0 ? 0 : 1;
}
