// hmore::_build_info() -> str: how this library was built, as "key=value" lines. Registered with
// the dispatcher (not pybind) so the CMake-built library and the C++ tests can report it too.
#include <torch/library.h>

#include <sstream>
#include <string>

#ifndef HMORE_CUDA_ARCHS
#define HMORE_CUDA_ARCHS ""
#endif

namespace {
std::string build_info() {
  std::ostringstream s;
#ifdef HMORE_WITH_CUDA
  s << "cuda=1\n";
#else
  s << "cuda=0\n";
#endif
  s << "cuda_archs=" << HMORE_CUDA_ARCHS << "\n";
#ifdef _OPENMP
  s << "openmp=" << _OPENMP << "\n";
#else
  s << "openmp=0\n";
#endif
#if defined(__clang__)
  s << "compiler=clang " << __clang_major__ << "." << __clang_minor__ << "\n";
#elif defined(__GNUC__)
  s << "compiler=gcc " << __GNUC__ << "." << __GNUC_MINOR__ << "\n";
#endif
#ifdef NDEBUG
  s << "ndebug=1\n";
#endif
  return s.str();
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(hmore, m) { m.def("_build_info() -> str", &build_info); }
