// One warp per problem: lanes take 32 consecutive k, an inclusive warp scan of the log terms
// plus a running carry gives log P(miss) for every k in O(n) per problem. col_of_k[k-1] is the
// output column of k, or -1 when k was not requested.
#include <cuda_runtime.h>

#include "fastpass/passk.h"
#include "fastpass/passk_api.h"

namespace fastpass {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void passk_kernel(const int64_t* __restrict__ n, const int64_t* __restrict__ c,
                             int64_t num_problems, const int32_t* __restrict__ col_of_k,
                             int64_t kmax, int64_t num_ks, int estimator,
                             double* __restrict__ out, double* __restrict__ mean) {
  extern __shared__ double block_mean[];  // [num_ks] when mean is requested
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (mean) {
    for (int64_t i = threadIdx.x; i < num_ks; i += blockDim.x) block_mean[i] = 0.0;
    __syncthreads();
  }
  for (int64_t p = (int64_t)blockIdx.x * kWarpsPerBlock + warp; p < num_problems;
       p += (int64_t)gridDim.x * kWarpsPerBlock) {
    const double np = (double)n[p], cp = (double)c[p];
    double carry = 0.0;
    for (int64_t base = 0; base < kmax; base += 32) {
      const int64_t j = base + lane;
      double v = (estimator == kUnbiased && j < kmax) ? passk_log_miss_term(np, cp, j) : 0.0;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const double up = __shfl_up_sync(0xffffffffu, v, off);
        if (lane >= off) v += up;
      }
      const double log_miss = carry + v;
      carry += __shfl_sync(0xffffffffu, v, 31);
      // Lane j owns k = j + 1; with every k requested the stores are coalesced.
      const int col = j < kmax ? col_of_k[j] : -1;
      if (col >= 0) {
        const double r = estimator == kUnbiased ? passk_from_log_miss(log_miss)
                                                : passk_plugin(np, cp, j + 1);
        if (out) out[p * num_ks + col] = r;
        if (mean) atomicAdd(&block_mean[col], r);
      }
    }
  }
  if (mean) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < num_ks; i += blockDim.x)
      atomicAdd(&mean[i], block_mean[i] / (double)num_problems);
  }
}

}  // namespace

int passk_cuda(const int64_t* n, const int64_t* c, int64_t num_problems, const int32_t* col_of_k,
               int64_t kmax, int64_t num_ks, int estimator, double* out, double* mean,
               void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (mean) {
    cudaError_t e = cudaMemsetAsync(mean, 0, num_ks * sizeof(double), s);
    if (e != cudaSuccess) return (int)e;
  }
  if (num_problems == 0 || num_ks == 0 || kmax == 0) return (int)cudaSuccess;
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t needed = (num_problems + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int blocks = (int)std::min<int64_t>(needed, (int64_t)std::max(sms, 1) * 16);
  const size_t smem = mean ? num_ks * sizeof(double) : 0;
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(passk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) return (int)e;
  }
  passk_kernel<<<blocks, kWarpsPerBlock * 32, smem, s>>>(n, c, num_problems, col_of_k, kmax,
                                                         num_ks, estimator, out, mean);
  return (int)cudaGetLastError();
}

int cuda_device_count() {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return -(int)e;
  return count;
}

const char* cuda_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }

}  // namespace fastpass
