#include <algorithm>
#include <thread>
#include <vector>

#include "fastpass/passk.h"
#include "fastpass/passk_api.h"

namespace fastpass {
namespace {

void passk_range(const int64_t* n, const int64_t* c, int64_t begin, int64_t end,
                 const int64_t* ks, int64_t num_ks, int estimator, double* out, double* mean) {
  const int64_t kmax = ks[num_ks - 1];
  for (int64_t p = begin; p < end; ++p) {
    const double np = (double)n[p], cp = (double)c[p];
    double log_miss = 0.0;
    int64_t col = 0;
    for (int64_t j = 0; j < kmax && col < num_ks; ++j) {
      if (estimator == kUnbiased) log_miss += passk_log_miss_term(np, cp, j);
      while (col < num_ks && ks[col] == j + 1) {
        const double v = estimator == kUnbiased ? passk_from_log_miss(log_miss)
                                                : passk_plugin(np, cp, j + 1);
        if (out) out[p * num_ks + col] = v;
        if (mean) mean[col] += v;
        ++col;
      }
    }
  }
}

}  // namespace

void passk_cpu(const int64_t* n, const int64_t* c, int64_t num_problems, const int64_t* ks,
               int64_t num_ks, int estimator, double* out, double* mean, int num_threads) {
  if (num_ks == 0 || num_problems == 0) {
    if (mean) std::fill(mean, mean + num_ks, 0.0);
    return;
  }
  const int64_t work = num_problems * ks[num_ks - 1];
  int threads = std::max(1, num_threads);
  if (work < (1 << 16)) threads = 1;  // thread start-up costs more than small inputs
  threads = (int)std::min<int64_t>(threads, num_problems);
  std::vector<std::vector<double>> partial(threads, std::vector<double>(num_ks, 0.0));
  std::vector<std::thread> pool;
  const int64_t chunk = (num_problems + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(num_problems, b + chunk);
    double* part = mean ? partial[t].data() : nullptr;
    if (t == threads - 1) {
      passk_range(n, c, b, e, ks, num_ks, estimator, out, part);
    } else {
      pool.emplace_back(passk_range, n, c, b, e, ks, num_ks, estimator, out, part);
    }
  }
  for (auto& th : pool) th.join();
  if (mean) {
    for (int64_t k = 0; k < num_ks; ++k) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += partial[t][k];
      mean[k] = s / (double)num_problems;
    }
  }
}

}  // namespace fastpass
