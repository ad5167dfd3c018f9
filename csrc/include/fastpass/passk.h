// Unbiased pass@k in log space: 1 - C(n-c, k)/C(n, k) = 1 - prod_{j<k} (1 - c/(n-j)).
// A running sum of log1p terms gives every k <= n in O(n), exact to ~1e-15 even at n = 1e5,
// where the binomial form overflows and the plain product loses digits.
#pragma once
#include <cmath>
#include "fastpass/common.h"

namespace fastpass {

enum PasskEstimator : int { kUnbiased = 0, kPlugin = 1 };

// log of factor j of the probability that a k-subset misses every correct sample.
FASTPASS_HD FASTPASS_INLINE double passk_log_miss_term(double n, double c, int64_t j) {
  if (n - c - (double)j <= 0.0) return -INFINITY;  // a k-subset must contain a correct one
  return log1p(-c / (n - (double)j));
}

FASTPASS_HD FASTPASS_INLINE double passk_from_log_miss(double log_miss) {
  return 0.0 - expm1(log_miss);  // 0.0 - x, not -x: c = 0 gives +0.0, not -0.0
}

// 1 - (1 - c/n)^k: the estimate that treats c/n as the true rate (biased low for k > 1).
FASTPASS_HD FASTPASS_INLINE double passk_plugin(double n, double c, int64_t k) {
  if (c >= n) return 1.0;
  return 0.0 - expm1((double)k * log1p(-c / n));
}

}  // namespace fastpass
