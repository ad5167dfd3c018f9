// Shared by g++ (CPU kernels) and nvcc (GPU kernels): the same core logic runs on both.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FASTPASS_HD __host__ __device__
#define FASTPASS_INLINE __forceinline__
#else
#define FASTPASS_HD
#define FASTPASS_INLINE inline
#endif
