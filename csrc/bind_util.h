// Helpers for the thin pybind11 layer: pointers arrive as integers (tensor.data_ptr()),
// so the module never links torch and one build serves any torch version.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "fastpass/passk_api.h"

namespace fastpass {

template <typename T>
inline T* ptr(std::uintptr_t address) { return reinterpret_cast<T*>(address); }

// Raises one clear error when a GPU kernel is asked for where none can run.
inline void require_cuda() {
#ifndef FASTPASS_WITH_CUDA
  throw std::runtime_error(
      "fastpass was built without CUDA kernels (no nvcc at build time): reinstall with nvcc "
      "on PATH, or run on CPU tensors");
#else
  static int count = cuda_device_count();
  if (count <= 0)
    throw std::runtime_error(std::string("no CUDA device is usable (") +
                             (count < 0 ? cuda_error_string(-count) : "no device found") +
                             "): run on CPU tensors or on a GPU machine");
#endif
}

inline void check_cuda(int code, const char* what) {
#ifdef FASTPASS_WITH_CUDA
  if (code != 0)
    throw std::runtime_error(std::string(what) + " failed: " + cuda_error_string(code));
#else
  (void)code; (void)what;
#endif
}

}  // namespace fastpass
