// Host entry points of the pass@k kernels. ks: sorted requested k values (each >= 1);
// out: [P, nks] row-major (nullable); mean: [nks] (nullable, overwritten).
#pragma once
#include <cstdint>

namespace fastpass {

void passk_cpu(const int64_t* n, const int64_t* c, int64_t num_problems, const int64_t* ks,
               int64_t num_ks, int estimator, double* out, double* mean, int num_threads);

// Device pointers; col_of_k [kmax]: output column of k = j + 1, or -1 when k is not requested.
// Returns a cudaError_t value (0 on success).
int passk_cuda(const int64_t* n, const int64_t* c, int64_t num_problems, const int32_t* col_of_k,
               int64_t kmax, int64_t num_ks, int estimator, double* out, double* mean,
               void* stream);

// Number of visible CUDA devices, or -(cudaError_t) when the runtime cannot be used.
int cuda_device_count();
const char* cuda_error_string(int code);

}  // namespace fastpass
