// The small harness every dispatcher test (tests/cpp/test_*.cpp) shares: count checks, call an hmore op
// boxed through the PyTorch dispatcher (as a TorchScript or C++ user would), and turn an exception in
// one case into a failed check so the remaining cases still run.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace hmore_test {

inline int g_pass = 0, g_fail = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_pass;
  } else {
    ++g_fail;
    std::cerr << "FAILED: " << what << "\n";
  }
}

// Boxed call of hmore::<name>: returns the whole output stack.
inline std::vector<c10::IValue> call(const std::string& name, std::vector<c10::IValue> args) {
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow(("hmore::" + name).c_str(), "");
  torch::jit::Stack stack(args.begin(), args.end());
  op.callBoxed(&stack);
  return stack;
}

inline void run(const std::string& name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    check(false, name + " threw: " + e.what());
  }
}

}  // namespace hmore_test
