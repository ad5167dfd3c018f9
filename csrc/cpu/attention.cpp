// CPU tier of split decode attention: each prompt's prefix K/V is read once per block of query
// rows (samples x the query heads of one kv head), each sample then reads its own suffix for its
// G query heads together; one softmax spans both parts, which is the log-sum-exp merge of the
// two partial attentions done in place.
//
// The hot loops are register-blocked on GCC vector types of W floats, so the same source builds
// an AVX-512 (W 16), an AVX2 (W 8) and a baseline SSE (W 4) kernel; the CPU picks one at run
// time (the wheel itself targets plain x86-64). Blocks are sized to fit the 16 vector registers
// of AVX2: with 4 rows x 64 columns of accumulators the old kernel spilled on every key.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fastpass/attention_api.h"

#define FP_INLINE __attribute__((always_inline)) inline
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)  // target attributes and CPU checks
#define FP_X86_KERNELS 1
#endif
#if defined(__clang__)  // GCC's one-vector permute, spelled the clang way
#define FP_PERMUTE(v, I, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define FP_PERMUTE(v, I, ...) __builtin_shuffle(v, I{__VA_ARGS__})
#endif

namespace fastpass {
namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // vector arguments never cross a non-inlined call

typedef float F4 __attribute__((vector_size(16)));
typedef float F8 __attribute__((vector_size(32)));
typedef float F16 __attribute__((vector_size(64)));
typedef int32_t I4 __attribute__((vector_size(16)));
typedef int32_t I8 __attribute__((vector_size(32)));
typedef int32_t I16 __attribute__((vector_size(64)));
template <int W> struct Lanes;  // vector_size cannot depend on a template parameter
template <> struct Lanes<4> { typedef F4 V; typedef I4 I; };
template <> struct Lanes<8> { typedef F8 V; typedef I8 I; };
template <> struct Lanes<16> { typedef F16 V; typedef I16 I; };

template <int W>
struct Simd {
  typedef typename Lanes<W>::V V;
  typedef typename Lanes<W>::I I;
  static_assert(sizeof(V) == W * sizeof(float), "vector width");
  static FP_INLINE V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static FP_INLINE void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static FP_INLINE V splat(float x) {  // a shuffle of lane 0: a lane-by-lane build became 8 inserts
    if constexpr (W == 16)
      return FP_PERMUTE(V{x}, I16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    else if constexpr (W == 8)
      return FP_PERMUTE(V{x}, I8, 0, 0, 0, 0, 0, 0, 0, 0);
    else
      return FP_PERMUTE(V{x}, I4, 0, 0, 0, 0);
  }
  static FP_INLINE float sum(V v) {  // a shuffle tree, not a lane-by-lane chain
    F4 q;
    if constexpr (W == 16) {
      v += FP_PERMUTE(v, I16, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
      F8 h;
      std::memcpy(&h, &v, sizeof h);
      h += FP_PERMUTE(h, I8, 4, 5, 6, 7, 0, 1, 2, 3);
      std::memcpy(&q, &h, sizeof q);
    } else if constexpr (W == 8) {
      v += FP_PERMUTE(v, I8, 4, 5, 6, 7, 0, 1, 2, 3);
      std::memcpy(&q, &v, sizeof q);
    } else {
      q = v;
    }
    q += FP_PERMUTE(q, I4, 2, 3, 0, 1);
    q += FP_PERMUTE(q, I4, 1, 0, 3, 2);
    return q[0];
  }
};

// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp): rounding by the 1.5 * 2^23 trick, 2^n
// assembled from its bits. One body for a lane vector and for the scalar tail.
template <class T, class I>
FP_INLINE T exp_nonpositive(T x) {
  x = x < -87.0f ? T{} - 87.0f : x;
  const T n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const T r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  T p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  I bits;
  if constexpr (sizeof(T) == sizeof(float))
    bits = ((I)n + 127) << 23;
  else
    bits = (__builtin_convertvector(n, I) + 127) << 23;
  T scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

template <int W>
FP_INLINE float range_max(const float* x, int64_t lo, int64_t hi) {
  using S = Simd<W>;
  auto lane = S::splat(-INFINITY);
  int64_t j = lo;
  for (; j + W <= hi; j += W) {
    const auto v = S::load(x + j);
    lane = lane > v ? lane : v;
  }
  float m = -INFINITY;
  for (; j < hi; ++j) m = m > x[j] ? m : x[j];
  for (int i = 0; i < W; ++i) m = m > lane[i] ? m : lane[i];
  return m;
}

// x[j] = exp(x[j] - m) in place over [lo, hi); returns their sum.
template <int W>
FP_INLINE float exp_sum(float* x, int64_t lo, int64_t hi, float m) {
  using S = Simd<W>;
  typename S::V lane = {};
  int64_t j = lo;
  for (; j + W <= hi; j += W) {
    const auto e = exp_nonpositive<typename S::V, typename S::I>(S::load(x + j) - m);
    S::store(x + j, e);
    lane += e;
  }
  float sum = S::sum(lane);
  for (; j < hi; ++j) sum += x[j] = exp_nonpositive<float, int32_t>(x[j] - m);
  return sum;
}

// s[i][j0 + j] = q[i] . k[j] for 4 query rows and the KB = 2W keys of a block transposed into
// kt [D][KB]: 8 accumulators, one broadcast per row and d.
template <int W>
FP_INLINE void qk_block4(const float* const q[4], const float* kt, int64_t D, float* const s[4], int64_t jn,
                         int64_t rows) {
  using S = Simd<W>;
  typename S::V a[4][2] = {};
  for (int64_t d = 0; d < D; ++d) {
    const auto k0 = S::load(kt + d * 2 * W), k1 = S::load(kt + d * 2 * W + W);
    for (int i = 0; i < 4; ++i) {
      const auto qi = S::splat(q[i][d]);
      a[i][0] += qi * k0;
      a[i][1] += qi * k1;
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    float tmp[2 * W];
    S::store(tmp, a[i][0]);
    S::store(tmp + W, a[i][1]);
    std::memcpy(s[i], tmp, jn * sizeof(float));
  }
}

// q . k over D with W-wide partial sums.
template <int W>
FP_INLINE float dot(const float* q, const float* k, int64_t D) {
  using S = Simd<W>;
  typename S::V a0 = {}, a1 = {};
  int64_t d = 0;
  for (; d + 2 * W <= D; d += 2 * W) {
    a0 += S::load(q + d) * S::load(k + d);
    a1 += S::load(q + d + W) * S::load(k + d + W);
  }
  for (; d + W <= D; d += W) a0 += S::load(q + d) * S::load(k + d);
  float tail = 0.0f;
  for (; d < D; ++d) tail += q[d] * k[d];
  return S::sum(a0 + a1) + tail;
}

constexpr int64_t kAhead = 8;  // keys

FP_INLINE void prefetch_row(const float* p, int64_t D) {
  for (int64_t d = 0; d < D; d += 16) __builtin_prefetch(p + d);
}

// o[i][c, c + CB W) += sum over j in [j0, j1) of p[i][j] * v[j][c, c + CB W) for i < RB: RB x CB
// accumulators stay in registers while V streams by.
template <int W, int RB, int CB>
FP_INLINE void pv_tile(const float* const* p, const float* v, int64_t j0, int64_t j1, int64_t D, int64_t c,
                       float* o, int64_t rows) {
  using S = Simd<W>;
  typename S::V a[RB][CB] = {};
  for (int64_t j = j0; j < j1; ++j) {
    if (c == 0) prefetch_row(v + (j + kAhead) * D, D);  // the first pass over the rows streams them in
    typename S::V vj[CB];
    for (int k = 0; k < CB; ++k) vj[k] = S::load(v + j * D + c + k * W);
    for (int i = 0; i < RB; ++i) {
      const auto pi = S::splat(p[i][j]);
      for (int k = 0; k < CB; ++k) a[i][k] += pi * vj[k];
    }
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int k = 0; k < CB; ++k) S::store(o + i * D + c + k * W, S::load(o + i * D + c + k * W) + a[i][k]);
}

// o[i][0, D) += sum over j in [j0, j1) of p[i][j] * v[j][0, D) for rows i < rows <= RB (the missing
// rows' p point at zeros); columns in tiles of CB vectors, then single vectors, then scalars.
template <int W, int RB, int CB>
FP_INLINE void pv_rows(const float* const* p, const float* v, int64_t j0, int64_t j1, int64_t D, float* o,
                       int64_t rows) {
  int64_t c = 0;
  for (; c + CB * W <= D; c += CB * W) pv_tile<W, RB, CB>(p, v, j0, j1, D, c, o, rows);
  for (; c + W <= D; c += W) pv_tile<W, RB, 1>(p, v, j0, j1, D, c, o, rows);
  for (int64_t i = 0; i < rows; ++i)  // head sizes that are not a multiple of W
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t d = c; d < D; ++d) o[i * D + d] += p[i][j] * v[j * D + d];
}

// a second thread pays from about this much work per call (measured on the 2-core AVX2 host)
constexpr int64_t kFlopsPerThread = 8 << 20;

struct Unit {
  int64_t prompt, kv_head;  // its rows: sample * G + group, for every sample of the prompt
};

struct Scratch {
  std::vector<float> q, kt, scores, acc, zeros, inv_sum;
  std::vector<int64_t> srow, p_lo, s_lo, s_hi;
};

template <class T>
void grow(std::vector<T>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize(n);
}

template <int W>
FP_INLINE void run_unit_impl(const DecodeAttentionArgs& a, const Unit& u, Scratch& w) {
  constexpr int64_t KB = 2 * W;  // keys per prefix block
  const int64_t D = a.head_dim, G = a.num_q_heads / a.num_kv_heads, h = u.kv_head;
  const int64_t seq0 = a.seq_offsets[u.prompt], nseq = a.seq_offsets[u.prompt + 1] - seq0, R = nseq * G;
  const int64_t plen = a.prefix_lens[u.prompt], S = a.suffix_capacity;
  for (auto* v : {&w.srow, &w.p_lo, &w.s_lo, &w.s_hi}) grow(*v, nseq);
  int64_t *srow = w.srow.data(), *p_lo = w.p_lo.data(), *s_lo = w.s_lo.data(), *s_hi = w.s_hi.data();
  int64_t key_lo = plen, smax = 0;
  for (int64_t s = 0; s < nseq; ++s) {
    srow[s] = a.suffix_rows ? a.suffix_rows[seq0 + s] : seq0 + s;
    s_hi[s] = a.suffix_lens[seq0 + s];
    p_lo[s] = 0;
    s_lo[s] = 0;
    if (a.window > 0) {  // the query sits at plen + slen - 1 and sees keys after it - window
      p_lo[s] = std::min<int64_t>(plen, std::max<int64_t>(0, plen + s_hi[s] - a.window));
      s_lo[s] = std::max<int64_t>(0, s_hi[s] - a.window);
    }
    key_lo = std::min(key_lo, p_lo[s]);
    smax = std::max(smax, s_hi[s]);
  }
  const int64_t width = plen + smax;  // score row: prefix keys, then suffix keys
  grow(w.q, R * D);
  grow(w.acc, R * D);
  grow(w.scores, R * width);
  grow(w.inv_sum, R);
  grow(w.zeros, std::max(width, D));
  grow(w.kt, D * KB);
  float *q = w.q.data(), *sc = w.scores.data(), *acc = w.acc.data(), *kt = w.kt.data();
  float* inv_sum = w.inv_sum.data();
  const float* zeros = w.zeros.data();
  for (int64_t r = 0; r < R; ++r) {
    const float* src = a.q + ((seq0 + r / G) * a.num_q_heads + h * G + r % G) * D;
    for (int64_t d = 0; d < D; ++d) q[r * D + d] = src[d] * a.scale;
  }
  const int64_t kv_off = (u.prompt * a.num_kv_heads + h) * a.prefix_capacity * D;
  const float *pk = a.prefix_k + kv_off, *pv = a.prefix_v + kv_off;
  // prefix scores, a block of KB keys at a time (K^T block in L1, shared by every row)
  for (int64_t j0 = key_lo; j0 < plen; j0 += KB) {
    const int64_t jn = std::min(KB, plen - j0);
    for (int64_t j = 0; j < KB; ++j)
      for (int64_t d = 0; d < D; ++d) kt[d * KB + j] = j < jn ? pk[(j0 + j) * D + d] : 0.0f;
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const float* qs[4];
      float* ss[4];
      for (int64_t i = 0; i < 4; ++i) {
        qs[i] = r0 + i < R ? q + (r0 + i) * D : zeros;
        ss[i] = sc + std::min(r0 + i, R - 1) * width + j0;
      }
      qk_block4<W>(qs, kt, D, ss, jn, std::min<int64_t>(4, R - r0));
    }
  }
  // suffix scores: the G rows of a sample against that sample's keys
  for (int64_t s = 0; s < nseq; ++s) {
    const float* sk = a.suffix_k + (srow[s] * a.num_kv_heads + h) * S * D;
    for (int64_t t = s_lo[s]; t < s_hi[s]; ++t) {
      prefetch_row(sk + (t + kAhead) * D, D);  // each suffix is read once: hide the memory latency
      for (int64_t g = 0; g < G; ++g) sc[(s * G + g) * width + plen + t] = dot<W>(q + (s * G + g) * D, sk + t * D, D);
    }
  }
  // softmax over the visible keys of both parts; weights outside a row's window become zero
  for (int64_t r = 0; r < R; ++r) {
    const int64_t s = r / G;
    float* row = sc + r * width;
    float* suf = row + plen;
    if (a.softcap > 0.0f) {
      for (int64_t j = p_lo[s]; j < plen; ++j) row[j] = a.softcap * std::tanh(row[j] / a.softcap);
      for (int64_t t = s_lo[s]; t < s_hi[s]; ++t) suf[t] = a.softcap * std::tanh(suf[t] / a.softcap);
    }
    const float m = std::max(range_max<W>(row, p_lo[s], plen), range_max<W>(suf, s_lo[s], s_hi[s]));
    float sum = 0.0f;  // stays 0 for a row that sees no key: its output is 0, as in the reference
    if (m != m) {
      sum = NAN;  // a NaN score (a broken model) must show in the output, not vanish
    } else if (m > -INFINITY) {
      sum = exp_sum<W>(row, p_lo[s], plen, m) + exp_sum<W>(suf, s_lo[s], s_hi[s], m);
    } else {
      std::fill(row + p_lo[s], row + plen, 0.0f);
      std::fill(suf + s_lo[s], suf + s_hi[s], 0.0f);
    }
    inv_sum[r] = sum > 0.0f ? 1.0f / sum : (sum == 0.0f ? 0.0f : NAN);
    std::fill(row + key_lo, row + p_lo[s], 0.0f);
  }
  // P V: the prefix V block is shared by every row, a sample's suffix V by its G rows
  std::fill(acc, acc + R * D, 0.0f);
  for (int64_t r0 = 0; r0 < R; r0 += 4) {
    const float* ps[4];
    for (int64_t i = 0; i < 4; ++i) ps[i] = r0 + i < R ? sc + (r0 + i) * width : zeros;
    pv_rows<W, 4, 2>(ps, pv, key_lo, plen, D, acc + r0 * D, std::min<int64_t>(4, R - r0));
  }
  for (int64_t s = 0; s < nseq; ++s) {
    const float* sv = a.suffix_v + (srow[s] * a.num_kv_heads + h) * S * D;
    for (int64_t g0 = 0; g0 < G; g0 += 2) {  // 2 rows x 4 vectors: a row's V read in whole lines
      const float* ps[2];
      for (int64_t i = 0; i < 2; ++i) ps[i] = g0 + i < G ? sc + (s * G + g0 + i) * width + plen : zeros;
      pv_rows<W, 2, 4>(ps, sv, s_lo[s], s_hi[s], D, acc + (s * G + g0) * D, std::min<int64_t>(2, G - g0));
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    float* dst = a.out + ((seq0 + r / G) * a.num_q_heads + h * G + r % G) * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = acc[r * D + d] * inv_sum[r];
  }
}
#pragma GCC diagnostic pop

using RunUnit = void (*)(const DecodeAttentionArgs&, const Unit&, Scratch&);

#ifdef FP_X86_KERNELS
__attribute__((target("avx512f"))) void run_unit_avx512(const DecodeAttentionArgs& a, const Unit& u, Scratch& w) {
  run_unit_impl<16>(a, u, w);
}
__attribute__((target("avx2,fma"))) void run_unit_avx2(const DecodeAttentionArgs& a, const Unit& u, Scratch& w) {
  run_unit_impl<8>(a, u, w);
}
#endif
void run_unit_base(const DecodeAttentionArgs& a, const Unit& u, Scratch& w) { run_unit_impl<4>(a, u, w); }

#ifdef FP_X86_KERNELS
const RunUnit kKernels[] = {run_unit_base, run_unit_avx2, run_unit_avx512};
#else
const RunUnit kKernels[] = {run_unit_base};
#endif

void run_units(const DecodeAttentionArgs& a, const std::vector<Unit>& units, std::atomic<size_t>& next,
               RunUnit run_unit) {
  Scratch w;
  for (size_t i; (i = next.fetch_add(1)) < units.size();) run_unit(a, units[i], w);
}

}  // namespace

int cpu_isas() {
  int isas = 1;
#ifdef FP_X86_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isas |= 2;
  if (__builtin_cpu_supports("avx512f")) isas |= 4;
#endif
  return isas;
}

void decode_attention_cpu(const DecodeAttentionArgs& a, int num_threads, int isa) {
  static const int isas = cpu_isas();
  if (isa < 0) isa = isas & 4 ? 2 : isas & 2 ? 1 : 0;  // the widest this CPU runs
  if (isa > 2 || !(isas >> isa & 1)) throw std::invalid_argument("this CPU lacks the requested kernel");
  const RunUnit run_unit = kKernels[isa];
  const int64_t G = a.num_q_heads / a.num_kv_heads;
  std::vector<Unit> units;
  int64_t flops = 0;
  for (int64_t p = 0; p < a.num_prompts; ++p) {
    const int64_t seqs = a.seq_offsets[p + 1] - a.seq_offsets[p];
    for (int64_t s = a.seq_offsets[p]; s < a.seq_offsets[p + 1]; ++s) flops += G * a.suffix_lens[s];
    flops += seqs * G * a.prefix_lens[p];
    for (int64_t h = 0; h < a.num_kv_heads; ++h)
      if (seqs) units.push_back({p, h});
  }
  flops *= a.num_kv_heads * a.head_dim * 4;
  std::atomic<size_t> next{0};
  int threads = (int)std::min<int64_t>(std::max(1, num_threads), (int64_t)units.size());
  threads = (int)std::min<int64_t>(threads, std::max<int64_t>(1, flops / kFlopsPerThread));
#ifdef FASTPASS_OPENMP
  // torch's own OpenMP pool (one libgomp per process: the module links the libgomp.so.1 torch has
  // already loaded). Right after a torch op its workers still spin on the other cores: a thread
  // started here would compete with them for ~1/3 of the call (measured), while they take this
  // region at once.
#pragma omp parallel num_threads(threads) if (threads > 1)
  run_units(a, units, next, run_unit);
#else
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run_units, std::cref(a), std::cref(units), std::ref(next), run_unit);
  run_units(a, units, next, run_unit);
  for (auto& th : pool) th.join();
#endif
}

}  // namespace fastpass
