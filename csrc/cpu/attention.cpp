// CPU tier of split decode attention: each prompt's prefix K/V is read once per block of query
// rows (samples x the query heads of one kv head), each row then reads its own suffix; one softmax
// spans both parts, which is the log-sum-exp merge of the two partial attentions done in place.
//
// The hot loops are plain C++ that GCC vectorises; target_clones builds them for AVX-512, AVX2
// and baseline x86-64 and picks one at load time (the wheel itself targets plain x86-64).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "fastpass/attention_api.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FASTPASS_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define FASTPASS_CLONES
#endif

namespace fastpass {
namespace {

constexpr int64_t kKeyBlock = 64;  // keys per block: K^T and V blocks stay in L1

// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp), written so GCC vectorises the loop that
// calls it: rounding by the 1.5 * 2^23 trick, 2^n assembled from its bits.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// o[0, D) += sum over j in [lo, hi) of p[j] * v[j * D, j * D + D). Accumulators live in registers
// for 64 columns at a time, two keys per step (independent FMA chains): accumulating through
// memory was store-forwarding bound at a third of the FMA rate.
__attribute__((always_inline)) inline void add_weighted_rows(const float* p, const float* v, int64_t lo,
                                                             int64_t hi, int64_t D, float* o) {
  constexpr int64_t kCols = 64;
  int64_t d0 = 0;
  for (; d0 + kCols <= D; d0 += kCols) {
    float a0[kCols] = {}, a1[kCols] = {};
    int64_t j = lo;
    for (; j + 1 < hi; j += 2) {
      const float p0 = p[j], p1 = p[j + 1];
      const float* v0 = v + j * D + d0;
      const float* v1 = v0 + D;
      for (int64_t c = 0; c < kCols; ++c) {
        a0[c] += p0 * v0[c];
        a1[c] += p1 * v1[c];
      }
    }
    if (j < hi) {
      const float pj = p[j];
      const float* vj = v + j * D + d0;
      for (int64_t c = 0; c < kCols; ++c) a0[c] += pj * vj[c];
    }
    for (int64_t c = 0; c < kCols; ++c) o[d0 + c] += a0[c] + a1[c];
  }
  if (d0 < D)  // head sizes that are not a multiple of 64
    for (int64_t j = lo; j < hi; ++j)
      for (int64_t d = d0; d < D; ++d) o[d] += p[j] * v[j * D + d];
}

// o[i][0, D) += sum over j in [j0, j1) of p[i][j] * v[j * D, ...) for rows i < rows (p of the
// missing rows point at zeros). 4 rows x 64 columns of accumulators stay in registers per V load.
__attribute__((always_inline)) inline void add_weighted_block4(const float* const p[4], const float* v,
                                                               int64_t j0, int64_t j1, int64_t D, float* o,
                                                               int64_t rows) {
  constexpr int64_t kCols = 64;
  int64_t d0 = 0;
  for (; d0 + kCols <= D; d0 += kCols) {
    float a0[kCols] = {}, a1[kCols] = {}, a2[kCols] = {}, a3[kCols] = {};
    for (int64_t j = j0; j < j1; ++j) {
      const float p0 = p[0][j], p1 = p[1][j], p2 = p[2][j], p3 = p[3][j];
      const float* vj = v + j * D + d0;
      for (int64_t c = 0; c < kCols; ++c) {
        a0[c] += p0 * vj[c];
        a1[c] += p1 * vj[c];
        a2[c] += p2 * vj[c];
        a3[c] += p3 * vj[c];
      }
    }
    float* acc[4] = {a0, a1, a2, a3};
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < kCols; ++c) o[i * D + d0 + c] += acc[i][c];
  }
  for (int64_t i = 0; i < rows; ++i)  // head sizes that are not a multiple of 64
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t d = d0; d < D; ++d) o[i * D + d] += p[i][j] * v[j * D + d];
}

// Reductions with 16 independent lanes, so they vectorise without -ffast-math.
__attribute__((always_inline)) inline float range_max(const float* x, int64_t lo, int64_t hi) {
  float lane[16];
  for (int i = 0; i < 16; ++i) lane[i] = -INFINITY;
  int64_t j = lo;
  for (; j + 16 <= hi; j += 16)
    for (int i = 0; i < 16; ++i) lane[i] = lane[i] > x[j + i] ? lane[i] : x[j + i];
  float m = -INFINITY;
  for (; j < hi; ++j) m = m > x[j] ? m : x[j];
  for (int i = 0; i < 16; ++i) m = m > lane[i] ? m : lane[i];
  return m;
}

// x[j] = exp(x[j] - m) in place over [lo, hi); returns their sum.
__attribute__((always_inline)) inline float exp_sum(float* x, int64_t lo, int64_t hi, float m) {
  float lane[16] = {};
  int64_t j = lo;
  for (; j + 16 <= hi; j += 16)
    for (int i = 0; i < 16; ++i) {
      x[j + i] = exp_nonpositive(x[j + i] - m);
      lane[i] += x[j + i];
    }
  float sum = 0.0f;
  for (; j < hi; ++j) sum += x[j] = exp_nonpositive(x[j] - m);
  for (int i = 0; i < 16; ++i) sum += lane[i];
  return sum;
}

struct Unit {
  int64_t prompt, kv_head;  // its rows: sample * G + group, for every sample of the prompt
};

struct Scratch {
  std::vector<float> q, kt, scores, acc, zeros, inv_sum;
  std::vector<int64_t> seq, srow, p_lo, s_lo, s_hi;
};

FASTPASS_CLONES void run_unit(const DecodeAttentionArgs& a, const Unit& u, Scratch& w) {
  const int64_t D = a.head_dim, G = a.num_q_heads / a.num_kv_heads, h = u.kv_head;
  const int64_t seq0 = a.seq_offsets[u.prompt];
  const int64_t R = (a.seq_offsets[u.prompt + 1] - seq0) * G;
  const int64_t plen = a.prefix_lens[u.prompt], S = a.suffix_capacity;
  const int64_t width = plen + S;  // score row: prefix keys, then suffix keys
  // all rows of the unit share each pass over a prefix block (K^T built once per block)
  for (auto* v : {&w.q, &w.acc}) if ((int64_t)v->size() < R * D) v->resize(R * D);
  if ((int64_t)w.scores.size() < R * width) w.scores.resize(R * width);
  if ((int64_t)w.inv_sum.size() < R) w.inv_sum.resize(R);
  for (auto* v : {&w.seq, &w.srow, &w.p_lo, &w.s_lo, &w.s_hi}) if ((int64_t)v->size() < R) v->resize(R);
  int64_t *seq = w.seq.data(), *srow = w.srow.data(), *p_lo = w.p_lo.data(), *s_lo = w.s_lo.data(),
          *s_hi = w.s_hi.data();
  float* inv_sum = w.inv_sum.data();
  float* q = w.q.data();
  float* kt = w.kt.data();
  float* sc = w.scores.data();
  float* acc = w.acc.data();
  int64_t key_lo = plen;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t row = r;
    seq[r] = seq0 + row / G;
    srow[r] = a.suffix_rows ? a.suffix_rows[seq[r]] : seq[r];
    const float* src = a.q + (seq[r] * a.num_q_heads + h * G + row % G) * D;
    for (int64_t d = 0; d < D; ++d) q[r * D + d] = src[d] * a.scale;
    s_hi[r] = a.suffix_lens[seq[r]];
    p_lo[r] = 0;
    s_lo[r] = 0;
    if (a.window > 0) {  // the query sits at plen + slen - 1 and sees keys after it - window
      p_lo[r] = std::min<int64_t>(plen, std::max<int64_t>(0, plen + s_hi[r] - a.window));
      s_lo[r] = std::max<int64_t>(0, s_hi[r] - a.window);
    }
    key_lo = std::min(key_lo, p_lo[r]);
  }
  const float* pk = a.prefix_k + (u.prompt * a.num_kv_heads + h) * a.prefix_capacity * D;
  const float* pv = a.prefix_v + (u.prompt * a.num_kv_heads + h) * a.prefix_capacity * D;
  // prefix scores, key block by key block: K^T block [D, kKeyBlock] then one FMA row per d
  for (int64_t j0 = key_lo; j0 < plen; j0 += kKeyBlock) {
    const int64_t jn = std::min(kKeyBlock, plen - j0);
    for (int64_t j = 0; j < jn; ++j)
      for (int64_t d = 0; d < D; ++d) kt[d * kKeyBlock + j] = pk[(j0 + j) * D + d];
    for (int64_t r = 0; r < R; ++r) {
      float s0[kKeyBlock] = {};
      const float* q0 = q + r * D;
      for (int64_t d = 0; d < D; ++d) {
        const float a0 = q0[d];
        const float* k = kt + d * kKeyBlock;
        for (int64_t j = 0; j < kKeyBlock; ++j) s0[j] += a0 * k[j];
      }
      std::memcpy(sc + r * width + j0, s0, jn * sizeof(float));
    }
  }
  // suffix scores: each row against its own sequence's keys
  for (int64_t r = 0; r < R; ++r) {
    const float* sk = a.suffix_k + (srow[r] * a.num_kv_heads + h) * S * D;
    const float* qr = q + r * D;
    for (int64_t t = s_lo[r]; t < s_hi[r]; ++t) {
      float part[16] = {};
      const float* k = sk + t * D;
      int64_t d = 0;
      for (; d + 16 <= D; d += 16)
        for (int64_t i = 0; i < 16; ++i) part[i] += qr[d + i] * k[d + i];
      float dot = 0.0f;
      for (; d < D; ++d) dot += qr[d] * k[d];
      for (int64_t i = 0; i < 16; ++i) dot += part[i];
      sc[r * width + plen + t] = dot;
    }
  }
  // softmax over the visible keys of both parts
  for (int64_t r = 0; r < R; ++r) {
    float* row = sc + r * width;
    float* suf = row + plen;
    if (a.softcap > 0.0f) {
      for (int64_t j = p_lo[r]; j < plen; ++j) row[j] = a.softcap * std::tanh(row[j] / a.softcap);
      for (int64_t t = s_lo[r]; t < s_hi[r]; ++t) suf[t] = a.softcap * std::tanh(suf[t] / a.softcap);
    }
    const float m = std::max(range_max(row, p_lo[r], plen), range_max(suf, s_lo[r], s_hi[r]));
    float sum = 0.0f;  // stays 0 for a row that sees no key: its output is 0, as in the reference
    if (m != m) sum = NAN;  // a NaN score (a broken model) must show in the output, not vanish
    else if (m > -INFINITY) sum = exp_sum(row, p_lo[r], plen, m) + exp_sum(suf, s_lo[r], s_hi[r], m);
    inv_sum[r] = sum > 0.0f ? 1.0f / sum : (sum == 0.0f ? 0.0f : NAN);
  }
  // P V over the prefix: a V block (L1) is shared by all rows, four rows at a time with their
  // 4 x 64 accumulators in registers; weights outside a row's window are zero.
  std::fill(acc, acc + R * D, 0.0f);
  for (int64_t r = 0; r < R; ++r) std::fill(sc + r * width + key_lo, sc + r * width + p_lo[r], 0.0f);
  const float* zeros = w.zeros.data();
  for (int64_t j0 = key_lo; j0 < plen; j0 += kKeyBlock) {
    const int64_t j1 = std::min(plen, j0 + kKeyBlock);
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const float* pr[4];
      for (int64_t i = 0; i < 4; ++i) pr[i] = r0 + i < R ? sc + (r0 + i) * width : zeros;
      add_weighted_block4(pr, pv, j0, j1, D, acc + r0 * D, std::min<int64_t>(4, R - r0));
    }
  }
  // each row's own suffix, then normalise
  for (int64_t r = 0; r < R; ++r) {
    float* o = acc + r * D;
    const float* sv = a.suffix_v + (srow[r] * a.num_kv_heads + h) * S * D;
    add_weighted_rows(sc + r * width + plen, sv, s_lo[r], s_hi[r], D, o);
    const int64_t row = r;
    float* dst = a.out + (seq[r] * a.num_q_heads + h * G + row % G) * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = o[d] * inv_sum[r];
  }
}

void run_units(const DecodeAttentionArgs& a, const std::vector<Unit>& units, std::atomic<size_t>& next) {
  Scratch w;
  const int64_t D = a.head_dim;
  w.kt.resize(D * kKeyBlock);
  w.zeros.assign(a.prefix_capacity + a.suffix_capacity, 0.0f);
  for (size_t i; (i = next.fetch_add(1)) < units.size();) run_unit(a, units[i], w);
}

}  // namespace

void decode_attention_cpu(const DecodeAttentionArgs& a, int num_threads) {
  const int64_t G = a.num_q_heads / a.num_kv_heads;
  std::vector<Unit> units;
  int64_t flops = 0;
  for (int64_t p = 0; p < a.num_prompts; ++p) {
    const int64_t rows = (int64_t)(a.seq_offsets[p + 1] - a.seq_offsets[p]) * G;
    flops += rows * a.num_kv_heads * (a.prefix_lens[p] + a.suffix_capacity) * a.head_dim * 4;
    for (int64_t h = 0; h < a.num_kv_heads; ++h)
      if (rows) units.push_back({p, h});
  }
  std::atomic<size_t> next{0};
  // Extra threads pay only for large calls: right after a torch op its OpenMP workers keep
  // spinning on the other cores for a while, and a thread started here competes with them (on
  // the 2-core build machine 2 threads made the engine's decode step slower at 10 MFLOP a call).
  int threads = (int)std::min<int64_t>(std::max(1, num_threads), (int64_t)units.size());
  threads = (int)std::min<int64_t>(threads, std::max<int64_t>(1, flops / (64 << 20)));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run_units, std::cref(a), std::cref(units), std::ref(next));
  run_units(a, units, next);
  for (auto& th : pool) th.join();
}

}  // namespace fastpass
