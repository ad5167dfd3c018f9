// Batch search over one item with the Pike VM of regex_vm.h: byte/code point sources,
// literal prefilters and the fast paths (prefix jump, fast-forward of stable dot loops, literal
// run to the match). Shared by the CPU tier (g++) and the GPU tier (nvcc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

#include "fastpass/regex_vm.h"

namespace fastpass {
namespace rx {

constexpr int32_t kMaxConvertSlots = 64;  // = kMaxSlots of regex_grade.h

// First unit equal to x in hay[from, n), or n (memchr for bytes on the host; defined below).
template <class T>
FASTPASS_HD int32_t find_unit(const T* hay, int32_t n, int32_t from, T x);

// ---- sources for batch search ------------------------------------------------------------------
// A source yields units: UTF-8 bytes (kCodepoints = false: decoded here with Python's
// errors="replace", or "surrogatepass" for kSurrogates: the bytes of a str packed by the host,
// lone surrogates included) or code points (kCodepoints = true: a Python str read in place).
// Offsets are in units; seek() may go backwards.
struct FlatSrc {  // one item's UTF-8 bytes (a str encoded with "surrogatepass")
  static constexpr bool kCodepoints = false;
  static constexpr bool kSurrogates = true;
  const uint8_t* p;
  int32_t n, i;
  FASTPASS_HD void seek(int32_t off) { i = off; }
  FASTPASS_HD bool has() const { return i < n; }
  FASTPASS_HD uint32_t get() const { return p[i]; }
  FASTPASS_HD void advance() { ++i; }
  FASTPASS_HD int32_t offset() const { return i; }
  FASTPASS_HD int32_t size() const { return n; }
  FASTPASS_HD int32_t find(const int32_t* lit, int32_t m, int32_t from) const;
  FASTPASS_HD void skip(const uint32_t* first, bool ascii_only, int single) {
#if !defined(__CUDA_ARCH__)
    if (single >= 0 && ascii_only) {  // one possible first byte: memchr
      i = find_unit<uint8_t>(p, n, i, (uint8_t)single);
      return;
    }
#endif
    (void)single;
    while (i < n) {
      const uint32_t b = p[i];
      if (b < 0x80 ? ((first[b >> 5] >> (b & 31)) & 1u) : !ascii_only) break;
      ++i;
    }
  }
};

FASTPASS_HD FASTPASS_INLINE int utf8_encode(int32_t cp, uint8_t* out) {
  if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
  if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | (cp >> 6)); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12)); out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | (cp >> 18)); out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define FASTPASS_AVX2_SCAN 1
// 32 bytes per compare for 2- and 4-byte code points (Python str kinds 2 and 4); chosen at run
// time, the build itself targets plain x86-64.
template <class T>
__attribute__((target("avx2"))) inline unsigned eq_mask_avx2(const T* at, __m256i want) {
  const __m256i v = _mm256_loadu_si256((const __m256i*)at);
  return (unsigned)_mm256_movemask_epi8(sizeof(T) == 2 ? _mm256_cmpeq_epi16(v, want)
                                                       : _mm256_cmpeq_epi32(v, want));
}

template <class T>
__attribute__((target("avx2"))) inline int32_t find_unit_avx2(const T* hay, int32_t n, int32_t i, T x) {
  const __m256i want = sizeof(T) == 2 ? _mm256_set1_epi16((short)x) : _mm256_set1_epi32((int)x);
  constexpr int32_t lanes = 32 / (int32_t)sizeof(T);
  // 128 bytes per test: four independent loads in flight keep a single core near its streaming
  // bandwidth (one 32-byte compare per iteration ran at ~11 GB/s on 4-byte strings).
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    const unsigned m0 = eq_mask_avx2(hay + i, want), m1 = eq_mask_avx2(hay + i + lanes, want);
    const unsigned m2 = eq_mask_avx2(hay + i + 2 * lanes, want);
    const unsigned m3 = eq_mask_avx2(hay + i + 3 * lanes, want);
    if (m0 | m1 | m2 | m3) {
      const unsigned m[4] = {m0, m1, m2, m3};
      for (int32_t q = 0;; ++q)
        if (m[q]) return i + q * lanes + __builtin_ctz(m[q]) / (int32_t)sizeof(T);
    }
  }
  for (; i + lanes <= n; i += lanes) {
    const unsigned mask = eq_mask_avx2(hay + i, want);
    if (mask) return i + __builtin_ctz(mask) / (int32_t)sizeof(T);
  }
  for (; i < n; ++i)
    if (hay[i] == x) return i;
  return n;
}

inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

template <class T>
FASTPASS_HD FASTPASS_INLINE int32_t find_unit(const T* hay, int32_t n, int32_t from, T x) {
  int32_t i = from;
#if !defined(__CUDA_ARCH__)
  if (sizeof(T) == 1) {
    const void* hit = std::memchr(hay + i, (int)x, (size_t)(n - i));
    return hit ? (int32_t)((const T*)hit - hay) : n;
  }
#if defined(FASTPASS_AVX2_SCAN)
  if (has_avx2()) return find_unit_avx2<T>(hay, n, i, x);
#endif
#if defined(__SSE2__) && !defined(__CUDACC__)
  const __m128i want = sizeof(T) == 2 ? _mm_set1_epi16((short)x) : _mm_set1_epi32((int)x);
  constexpr int32_t lanes = 16 / (int32_t)sizeof(T);
  for (; i + lanes <= n; i += lanes) {
    const __m128i v = _mm_loadu_si128((const __m128i*)(hay + i));
    const int mask = _mm_movemask_epi8(sizeof(T) == 2 ? _mm_cmpeq_epi16(v, want) : _mm_cmpeq_epi32(v, want));
    if (mask) return i + __builtin_ctz((unsigned)mask) / (int32_t)sizeof(T);
  }
#endif
#endif
  for (; i < n; ++i)
    if (hay[i] == x) return i;
  return n;
}

// First occurrence of needle[0, m) in hay[from, n), or -1.
template <class T>
FASTPASS_HD int32_t find_units(const T* hay, int32_t n, int32_t from, const T* needle, int32_t m) {
  for (int32_t i = from; i + m <= n; ++i) {
    i = find_unit<T>(hay, n - m + 1, i, needle[0]);
    if (i + m > n) return -1;
    int32_t k = 1;
    while (k < m && hay[i + k] == needle[k]) ++k;
    if (k == m) return i;
  }
  return -1;
}

// A literal (valid code points) found in UTF-8 bytes is also a decoded occurrence: its first
// byte is ASCII or a lead byte, both of which always start a new code point.
FASTPASS_HD FASTPASS_INLINE int32_t FlatSrc_find(const FlatSrc& s, const int32_t* lit, int32_t m,
                                                 int32_t from) {
  uint8_t buf[4 * 32];
  int32_t nb = 0;
  for (int32_t k = 0; k < m; ++k) nb += utf8_encode(lit[k], buf + nb);
  return find_units<uint8_t>(s.p, s.n, from, buf, nb);
}

FASTPASS_HD FASTPASS_INLINE int32_t FlatSrc::find(const int32_t* lit, int32_t m, int32_t from) const {
  return FlatSrc_find(*this, lit, m, from);
}

struct TokenSrc {  // one row of token ids, bytes from a token -> bytes table
  static constexpr bool kCodepoints = false;
  static constexpr bool kSurrogates = false;  // a tokenizer's bytes decode like bytes.decode("utf-8", "replace")
  const int64_t* ids;
  int32_t n_ids;
  const uint8_t* data;
  const int64_t* offs;
  int64_t vocab;
  int32_t t, j, off;  // current token, byte inside it, absolute byte offset
  FASTPASS_HD int64_t tok_len(int32_t k) const {
    const int64_t id = ids[k];
    return (id < 0 || id >= vocab) ? 0 : offs[id + 1] - offs[id];
  }
  FASTPASS_HD void settle() {  // move past exhausted or empty tokens
    while (t < n_ids && j >= tok_len(t)) { ++t; j = 0; }
  }
  FASTPASS_HD void seek(int32_t target) {
    t = 0; j = 0; off = 0;
    while (t < n_ids) {
      const int64_t len = tok_len(t);
      if (off + len > target) { j = target - off; off = target; break; }
      off += (int32_t)len; ++t;
    }
    settle();
  }
  FASTPASS_HD bool has() const { return t < n_ids; }
  FASTPASS_HD uint32_t get() const { return data[offs[ids[t]] + j]; }
  FASTPASS_HD void advance() { ++j; ++off; settle(); }
  FASTPASS_HD int32_t offset() const { return off; }
  FASTPASS_HD int32_t find(const int32_t*, int32_t, int32_t) const { return -2; }  // no prefilter
  FASTPASS_HD int32_t size() const { return 0; }
  FASTPASS_HD void skip(const uint32_t* first, bool ascii_only, int) {
    while (t < n_ids) {
      const uint32_t b = get();
      if (b < 0x80 ? ((first[b >> 5] >> (b & 31)) & 1u) : !ascii_only) break;
      advance();
    }
  }
};

struct CpSrc {  // a Python str in place: 1, 2 or 4 bytes per code point (host only)
  static constexpr bool kCodepoints = true;
  static constexpr bool kSurrogates = true;
  const void* p;
  int32_t kind, n, i;
  FASTPASS_HD uint32_t at(int32_t k) const {
    return kind == 1 ? ((const uint8_t*)p)[k]
                     : kind == 2 ? ((const uint16_t*)p)[k] : ((const uint32_t*)p)[k];
  }
  FASTPASS_HD void seek(int32_t off) { i = off; }
  FASTPASS_HD bool has() const { return i < n; }
  FASTPASS_HD uint32_t get() const { return at(i); }
  FASTPASS_HD void advance() { ++i; }
  FASTPASS_HD int32_t offset() const { return i; }
  FASTPASS_HD int32_t size() const { return n; }
  FASTPASS_HD int32_t find(const int32_t* lit, int32_t m, int32_t from) const {
    const uint32_t limit = kind == 1 ? 0xFFu : kind == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    uint32_t buf[32];
    for (int32_t k = 0; k < m; ++k) {
      if ((uint32_t)lit[k] > limit) return -1;  // cannot occur in a str of this width
      buf[k] = (uint32_t)lit[k];
    }
    if (kind == 1) {
      uint8_t b8[32];
      for (int32_t k = 0; k < m; ++k) b8[k] = (uint8_t)buf[k];
      return find_units<uint8_t>((const uint8_t*)p, n, from, b8, m);
    }
    if (kind == 2) {
      uint16_t b16[32];
      for (int32_t k = 0; k < m; ++k) b16[k] = (uint16_t)buf[k];
      return find_units<uint16_t>((const uint16_t*)p, n, from, b16, m);
    }
    return find_units<uint32_t>((const uint32_t*)p, n, from, buf, m);
  }
  FASTPASS_HD void skip(const uint32_t* first, bool ascii_only, int single) {
#if !defined(__CUDA_ARCH__)
    if (kind == 1 && single >= 0 && ascii_only) {
      i = find_unit<uint8_t>((const uint8_t*)p, n, i, (uint8_t)single);
      return;
    }
#endif
    (void)single;
    while (i < n) {
      const uint32_t c = at(i);
      if (c < 0x80 ? ((first[c >> 5] >> (c & 31)) & 1u) : !ascii_only) break;
      ++i;
    }
  }
};

// Next code point(s) from the unit under the cursor: (cp, start, end) triples.
template <class Src>
FASTPASS_HD FASTPASS_INLINE int feed(const Src& src, Utf8& d, int32_t* out) {
  if constexpr (Src::kCodepoints) {
    out[0] = (int32_t)src.get(); out[1] = src.offset(); out[2] = src.offset() + 1;
    return 1;
  } else {
    return utf8_feed(d, src.get(), src.offset(), out, Src::kSurrogates);
  }
}

template <class Src>
FASTPASS_HD FASTPASS_INLINE int flush(Utf8& d, int32_t end, int32_t* out) {
  if constexpr (Src::kCodepoints) return 0;
  else return utf8_flush(d, end, out);
}

// The code point that ends at offset e (UTF-8 resynchronises within 4 bytes).
template <class Src>
FASTPASS_HD int32_t cp_before(Src& src, int32_t e) {
  if (e <= 0) return kEnd;
  const int32_t b = Src::kCodepoints ? e - 1 : (e > 4 ? e - 4 : 0);
  src.seek(b);
  Utf8 d;
  int32_t out[6], last = kEnd;
  while (src.has() && src.offset() < e) {
    const int k = feed(src, d, out);
    for (int i = 0; i < k; ++i) if (out[3 * i + 2] == e) last = out[3 * i];
    src.advance();
  }
  if (flush<Src>(d, e, out) && out[2] == e) last = out[0];
  return last;
}

FASTPASS_HD FASTPASS_INLINE int popcount32(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __popc(x);
#else
  return __builtin_popcount(x);
#endif
}

FASTPASS_HD FASTPASS_INLINE int ctz32(uint32_t x);

// First set with a single byte: the skip can use memchr (per item: bit counts, not a bit loop).
FASTPASS_HD FASTPASS_INLINE int single_first(const Prog& P) {
  int total = 0, found = -1;
  for (int w = 0; w < 4; ++w) {
    const int c = popcount32(P.first_ascii[w]);
    if (c) found = w * 32 + ctz32(P.first_ascii[w]);
    total += c;
  }
  return total == 1 ? found : -1;
}

FASTPASS_HD FASTPASS_INLINE int ctz32(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __ffs((int)x) - 1;
#else
  return __builtin_ctz(x);
#endif
}

// The idle VM found the literal prefix at the cursor: consume it in one move. The program
// starts with a straight line of SAVE and CHAR instructions spelling the prefix, and no thread
// can start inside it (kFlagPrefixJump), so the state equals stepping through it.
template <class Src>
FASTPASS_HD void prefix_jump(const Prog& P, int32_t* st, Src& src) {
  const Layout L{P.n_instr, P.n_slots};
  int32_t* work = st + L.work() + P.n_slots;  // scratch slots (the stack area is free now)
  for (int32_t k = 0; k < P.n_slots; ++k) work[k] = -1;
  int32_t pos = src.offset(), pc = 0, last = kEnd;
  for (int32_t seen = 0; seen < P.n_prefix; ++pc) {
    const int32_t* ins = P.instr + 4 * pc;
    if (ins[0] == SAVE) { work[ins[1]] = pos; continue; }
    last = ins[1];  // CHAR
    if constexpr (Src::kCodepoints) pos += 1;
    else pos += last < 0x80 ? 1 : last < 0x800 ? 2 : last < 0x10000 ? 3 : 4;
    ++seen;
  }
  const int cur = st[H_CUR];
  st[H_GEN] += 1;
  st[H_N0 + cur] = 0;
  const Ctx x{pos, last, kEnd, kEnd};  // no assertions: next/after are never read
  vm_add(P, st, cur, pc, work, x);
  settle_match(P, st, cur);
  st[H_PREV] = last;
  if ((st[H_STATUS] & 1) && st[H_N0 + cur] == 0) st[H_STATUS] |= 2;
  src.seek(pos);
}

// After an uneventful step over c ([cs, ce)): when the thread list has the same program
// counters as before the step and every capture slot is either unchanged or tracks the
// position, and its consumers are ANY/ANYNL loops plus ASCII CHARs, then every code point that
// is not one of those CHARs (nor '\n' for ANYNL, nor a possible first character of a match)
// would step it the same way. Skip straight to the next such trigger and move the tracking
// slots there. Only for programs whose matches start with ASCII and without assertions.
template <class Src>
FASTPASS_HD bool fast_forward(const Prog& P, int32_t* st, Src& src, int32_t c, int32_t cs,
                              int32_t ce) {
  const Layout L{P.n_instr, P.n_slots};
  const int32_t s = P.n_slots;
  const int now = st[H_CUR], before = 1 - now;
  {  // cheap pre-check: only lists with a dot loop can be stable
    const int32_t* pa = st + L.pcs(before);
    bool loop = false;
    for (int32_t i = 0; i < st[H_N0 + before] && !loop; ++i) {
      const int32_t op = P.instr[4 * pa[i]];
      loop = op == ANY || op == ANYNL;
    }
    if (!loop) return false;
  }
  const int32_t n = st[H_N0 + now];
  if (n == 0 || n != st[H_N0 + before]) return false;
  const int32_t* pa = st + L.pcs(before);
  const int32_t* pb = st + L.pcs(now);
  const int32_t* sa = st + L.slots(before);
  int32_t* sb = st + L.slots(now);
  // A code point that can start a match adds a thread: it is a trigger too (may_start).
  uint32_t trig[4] = {P.first_ascii[0], P.first_ascii[1], P.first_ascii[2], P.first_ascii[3]};
  for (int32_t i = 0; i < n; ++i) {
    if (pa[i] != pb[i]) return false;
    const int32_t* ins = P.instr + 4 * pb[i];
    if (ins[0] == CHAR) {
      if (ins[1] >= 0x80) return false;
      trig[ins[1] >> 5] |= 1u << (ins[1] & 31);
    } else if (ins[0] == ANYNL) {
      trig['\n' >> 5] |= 1u << ('\n' & 31);
    } else if (ins[0] != ANY) {
      return false;
    }
    for (int32_t k = 0; k < s; ++k) {
      const int32_t va = sa[i * s + k], vb = sb[i * s + k];
      if (va != vb && !(va == cs && vb == ce)) return false;
    }
  }
  if (c < 0x80 && ((trig[c >> 5] >> (c & 31)) & 1u)) return false;
  int single = -1, count = 0;
  for (int w = 0; w < 4; ++w) {
    if (!trig[w]) continue;
    count += (trig[w] & (trig[w] - 1)) ? 2 : 1;
    single = w * 32 + ctz32(trig[w]);
  }
  src.skip(trig, true, count == 1 ? single : -1);
  const int32_t j = src.offset();
  if (j == ce) return false;
  for (int32_t i = 0; i < n; ++i)
    for (int32_t k = 0; k < s; ++k)
      if (sb[i * s + k] == ce && sa[i * s + k] == cs) sb[i * s + k] = j;
  return true;
}

// When the highest-priority thread is a CHAR starting a straight line of CHAR/SAVE up to MATCH
// (like "</answer>" at the end of the R1 pattern) and the text ahead spells it, that thread
// matches and cuts every other: record the match without stepping. The cursor is at the next
// unit to consume, with no partial UTF-8 sequence pending.
template <class Src>
FASTPASS_HD bool run_to_match(const Prog& P, int32_t* st, Src& src) {
  const Layout L{P.n_instr, P.n_slots};
  const int32_t s = P.n_slots;
  const int cur = st[H_CUR];
  if (st[H_N0 + cur] == 0) return false;
  int32_t pc = st[L.pcs(cur)];
  if (P.instr[4 * pc] != CHAR) return false;
  const int32_t start = src.offset();
  int32_t* slots = st + L.match();
  const int32_t* head = st + L.slots(cur);
  int32_t saves[2 * 8], n_saves = 0;
  int32_t pos = start, chars = 0;
  for (;; ++pc) {
    const int32_t* ins = P.instr + 4 * pc;
    if (ins[0] == MATCH) break;
    if (ins[0] == SAVE) {
      if (n_saves == 8) { src.seek(start); return false; }
      saves[2 * n_saves] = ins[1]; saves[2 * n_saves + 1] = pos; ++n_saves;
      continue;
    }
    if (ins[0] != CHAR || ++chars > 64) { src.seek(start); return false; }
    uint8_t enc[4];
    const int w = Src::kCodepoints ? 1 : utf8_encode(ins[1], enc);
    for (int k = 0; k < w; ++k) {
      const uint32_t want = Src::kCodepoints ? (uint32_t)ins[1] : enc[k];
      if (!src.has() || src.get() != want) { src.seek(start); return false; }
      src.advance();
    }
    pos += w;
  }
  for (int32_t k = 0; k < s; ++k) slots[k] = head[k];
  for (int32_t k = 0; k < n_saves; ++k) slots[saves[2 * k]] = saves[2 * k + 1];
  st[H_STATUS] |= 1 | 2;
  return true;
}

// Leftmost-first search from offset `from` (prev: the code point before it); the match
// (source offsets) is left in the state's match slots.
template <class Src>
FASTPASS_HD bool vm_search(const Prog& P, int32_t* st, Src& src, int32_t from, int32_t prev,
                           int single) {
  vm_init(P, st, prev);
  if (P.flags & kFlagLazySpan) {  // like <answer>(.*?)</answer> under DOTALL (_analysis.lazy_span)
    const int32_t i = src.find(P.prefix, P.n_prefix, from);
    if (i != -2) {  // the source can search literals (token rows cannot)
      const int32_t j = i < 0 ? -1 : src.find(P.suffix, P.n_suffix, i + P.n_prefix);
      if (j < 0) return false;  // no suffix after the first prefix: none after any later one
      const Layout L{P.n_instr, P.n_slots};
      for (int32_t k = 0; k < P.n_span_saves; ++k) {
        const int32_t* sv = P.span_saves + 3 * k;  // ASCII literals: offsets in any unit
        st[L.match() + sv[0]] = (sv[1] ? j : i) + sv[2];
      }
      st[H_STATUS] |= 3;
      return true;
    }
  }
  // Prefilter: a text without the required literal has no match. With a literal prefix it is
  // checked from the first prefix found (a match contains it after its start), one scan in all.
  const bool can_skip0 = P.flags & kFlagSkipAscii;
  bool required_ok = P.n_required == 0;
  if (!required_ok && !(can_skip0 && P.n_prefix > 0)) {
    if (src.find(P.required, P.n_required, from) == -1) return false;
    required_ok = true;
  }
  src.seek(from);
  Utf8 d;
  int32_t out[6];
  const bool can_skip = P.flags & kFlagSkipAscii;
  const bool ascii_only = P.flags & kFlagFirstAscii;
  const bool fast = (P.flags & kFlagNoAssert) && (P.flags & kFlagSkipAscii) &&
                    (P.flags & kFlagFirstAscii);
  while (src.has()) {
    // Idle (no thread alive, nothing pending): jump to the next place a match can start.
    // No assertion precedes the first consuming instruction, so the skipped text is not needed.
    if (can_skip && d.need == 0 && st[H_QLEN] == 0 && st[H_N0 + st[H_CUR]] == 0 &&
        !(st[H_STATUS] & 1)) {
      const int32_t at = P.n_prefix > 0 ? src.find(P.prefix, P.n_prefix, src.offset()) : -2;
      if (at == -1) return false;  // no later match can start
      if (at >= 0) {
        if (!required_ok) {
          const int32_t r = src.find(P.required, P.n_required, at);
          if (r == -1) return false;
          required_ok = true;
        }
        src.seek(at);
        if (P.flags & kFlagPrefixJump) {
          prefix_jump(P, st, src);
          if (st[H_STATUS] & 2) return true;
          continue;
        }
      } else {
        src.skip(P.first_ascii, ascii_only, single);
      }
      if (!src.has()) break;
    }
    const int k = feed(src, d, out);
    if (P.lookahead == 0) {  // no queue needed: step at once
      for (int i = 0; i < k && !(st[H_STATUS] & 2); ++i)
        vm_step(P, st, out[3 * i], out[3 * i + 1], out[3 * i + 2], kEnd, kEnd);
    } else {
      for (int i = 0; i < k; ++i) vm_push(P, st, out[3 * i], out[3 * i + 1], out[3 * i + 2]);
    }
    if (st[H_STATUS] & 2) return true;
    src.advance();
    if (fast && k == 1 && d.need == 0 && !(st[H_STATUS] & 1) && src.has())
      if (fast_forward(P, st, src, out[0], out[1], out[2]) && run_to_match(P, st, src))
        return true;
  }
  const int32_t end = src.offset();
  if (flush<Src>(d, end, out)) vm_push(P, st, out[0], out[1], out[2]);
  vm_finish(P, st, end);
  return vm_matched(st);
}

// Source offsets -> code point offsets (bytes) or UTF-8 byte offsets (code points): one walk
// up to the largest slot, each slot resolved when the walk reaches it (slots sorted first).
template <class Src>
FASTPASS_HD void convert_offsets(Src& src, const int32_t* slots, int32_t n, int64_t* out,
                                 bool to_bytes) {
  (void)to_bytes;  // implied by the source: code points convert to bytes, bytes to code points
  int32_t order[kMaxConvertSlots];
  int32_t m = 0;
  for (int32_t k = 0; k < n; ++k) {
    out[k] = slots[k] < 0 ? -1 : 0;
    if (slots[k] <= 0) continue;
    int32_t j = m++;  // insertion sort: few slots
    while (j > 0 && slots[order[j - 1]] > slots[k]) { order[j] = order[j - 1]; --j; }
    order[j] = k;
  }
  if (m == 0) return;
  int32_t next = 0;
  int64_t acc = 0;
  // Every slot at or before `start` counts the code points before it: resolve those.
  auto reach = [&](int32_t start) {
    while (next < m && slots[order[next]] <= start) out[order[next++]] = acc;
  };
  const int32_t hi = slots[order[m - 1]];
  if constexpr (Src::kCodepoints) {
    for (int32_t i = 0; i < hi && next < m; ++i) {  // code points -> bytes
      reach(i);
      const uint32_t cp = src.at(i);
      acc += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    }
  } else {
    src.seek(0);
    Utf8 d;
    int32_t buf[6];
    while (src.has() && src.offset() < hi && next < m) {
      const int c = feed(src, d, buf);
      for (int i = 0; i < c; ++i) { reach(buf[3 * i + 1]); acc += 1; }
      src.advance();
    }
    if (next < m && flush<Src>(d, src.offset(), buf)) { reach(buf[1]); acc += 1; }
  }
  while (next < m) out[order[next++]] = acc;
}

}  // namespace rx
}  // namespace fastpass
