#include "bind_util.h"
#include "fastpass/passk_api.h"

namespace py = pybind11;

namespace fastpass {

void bind_passk(py::module_& m) {
  m.def(
      "passk_cpu",
      [](std::uintptr_t n, std::uintptr_t c, int64_t num_problems, std::uintptr_t ks,
         int64_t num_ks, int estimator, std::uintptr_t out, std::uintptr_t mean, int threads) {
        py::gil_scoped_release release;
        passk_cpu(ptr<const int64_t>(n), ptr<const int64_t>(c), num_problems,
                  ptr<const int64_t>(ks), num_ks, estimator, ptr<double>(out), ptr<double>(mean),
                  threads);
      },
      "pass@k for sorted ks over problems (host pointers; out [P, nks] and mean [nks] nullable)");
  m.def(
      "passk_cuda",
      [](std::uintptr_t n, std::uintptr_t c, int64_t num_problems, std::uintptr_t col_of_k,
         int64_t kmax, int64_t num_ks, int estimator, std::uintptr_t out, std::uintptr_t mean,
         std::uintptr_t stream) {
        require_cuda();
#ifdef FASTPASS_WITH_CUDA
        check_cuda(passk_cuda(ptr<const int64_t>(n), ptr<const int64_t>(c), num_problems,
                              ptr<const int32_t>(col_of_k), kmax, num_ks, estimator,
                              ptr<double>(out), ptr<double>(mean), ptr<void>(stream)),
                   "passk_cuda");
#endif
      },
      "pass@k on the GPU (device pointers; col_of_k int32[kmax], -1 = k not requested)");
}

}  // namespace fastpass
