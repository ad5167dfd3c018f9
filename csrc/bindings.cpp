// fastpass._C: each area registers its ops from its own bind_<area>.cpp.
#include "bind_util.h"

namespace py = pybind11;

namespace fastpass {
void bind_attention(py::module_& m);
void bind_passk(py::module_& m);
void bind_regex(py::module_& m);
}  // namespace fastpass

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastpass native kernels (CPU always; CUDA when built with nvcc)";
#ifdef FASTPASS_WITH_CUDA
  m.attr("built_with_cuda") = true;
  m.def("cuda_device_count", &fastpass::cuda_device_count,
        "visible CUDA devices, or -(cudaError_t) when the runtime cannot be used");
#else
  m.attr("built_with_cuda") = false;
  m.def("cuda_device_count", []() { return 0; });
#endif
  fastpass::bind_attention(m);
  fastpass::bind_passk(m);
  fastpass::bind_regex(m);
}
