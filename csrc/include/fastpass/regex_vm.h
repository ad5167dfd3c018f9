// Pike VM core shared by the CPU tier (g++) and the GPU tier (nvcc): the same code decodes
// UTF-8 (Python's errors="replace": one U+FFFD per maximal ill-formed subpart), runs the
// program compiled by fastpass/regex/_compile.py and grades extracted groups.
//
// All per-item state lives in one int32 buffer ("row state", vm_state_words() words), so a
// batch search keeps it in scratch memory and a streamer keeps it on the device across steps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

#include "fastpass/common.h"

namespace fastpass {
namespace rx {

enum Op : int32_t { CHAR = 0, SET, ANY, ANYNL, SPLIT, JMP, SAVE, ASSERT, MATCH };
enum Assert : int32_t { BEGIN_STRING = 0, BEGIN_LINE, END_STRING, END_LINE, END_DOLLAR, BOUNDARY,
                        NOT_BOUNDARY };
constexpr int32_t kEnd = -1;        // "no code point": before the start or after the end
constexpr int32_t kReplacement = 0xFFFD;
constexpr int32_t kFlagSkipAscii = 1;   // idle scans may skip bytes that cannot start a match
constexpr int32_t kFlagFirstAscii = 2;  // ... including every non-ASCII code point
constexpr int32_t kFlagNoAssert = 4;    // no assertion anywhere in the program
constexpr int32_t kFlagPrefixJump = 8;  // a found literal prefix may be consumed in one move

struct Prog {
  const int32_t* instr;
  const int32_t* pool;
  const int32_t* prefix;    // every match starts with these code points
  const int32_t* required;  // every match contains these code points
  int32_t n_prefix, n_required;
  int32_t n_instr, n_slots, lookahead, flags;
  uint32_t first_ascii[4];
};

FASTPASS_HD FASTPASS_INLINE Prog prog_view(const int32_t* code) {
  Prog p;
  p.n_instr = code[1];
  p.n_slots = code[2];
  p.lookahead = code[3];
  p.flags = code[5];
  p.instr = code + code[6];
  p.pool = code + code[7];
  for (int i = 0; i < 4; ++i) p.first_ascii[i] = (uint32_t)code[8 + i];
  const int32_t* lits = code + code[12];
  p.n_prefix = lits[0];
  p.n_required = lits[1];
  p.prefix = lits + 2;
  p.required = lits + 2 + lits[0];
  return p;
}

FASTPASS_HD FASTPASS_INLINE bool in_ranges(const int32_t* pool, int32_t off, int32_t n, int32_t cp) {
  const int32_t* r = pool + 2 * off;
  int32_t lo = 0, hi = n - 1;
  while (lo <= hi) {  // last range whose start <= cp
    const int32_t mid = (lo + hi) >> 1;
    if (r[2 * mid] <= cp) lo = mid + 1; else hi = mid - 1;
  }
  return hi >= 0 && cp <= r[2 * hi + 1];
}

FASTPASS_HD FASTPASS_INLINE bool is_py_space(int32_t c) {  // str.isspace() == sre's \s
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// ---- UTF-8 decoding with Python's errors="replace" ---------------------------------------
struct Utf8 {
  int32_t cp = 0, need = 0, lo = 0x80, hi = 0xBF, start = 0;
};

// Feeds byte b at offset off; writes up to two decoded (cp, start, end) triples; returns count.
FASTPASS_HD FASTPASS_INLINE int utf8_feed(Utf8& d, uint32_t b, int32_t off, int32_t* out) {
  int n = 0;
  if (d.need) {
    if (b >= (uint32_t)d.lo && b <= (uint32_t)d.hi) {
      d.cp = (d.cp << 6) | (int32_t)(b & 0x3F);
      d.lo = 0x80; d.hi = 0xBF;
      if (--d.need == 0) { out[0] = d.cp; out[1] = d.start; out[2] = off + 1; return 1; }
      return 0;
    }
    // The maximal subpart so far becomes one U+FFFD; b starts afresh.
    out[0] = kReplacement; out[1] = d.start; out[2] = off;
    n = 1;
    d.need = 0;
  }
  int32_t* o = out + 3 * n;
  d.start = off;
  if (b < 0x80) { o[0] = (int32_t)b; o[1] = off; o[2] = off + 1; return n + 1; }
  if (b >= 0xC2 && b <= 0xDF) { d.need = 1; d.cp = b & 0x1F; d.lo = 0x80; d.hi = 0xBF; return n; }
  if (b >= 0xE0 && b <= 0xEF) {
    d.need = 2; d.cp = b & 0x0F;
    d.lo = b == 0xE0 ? 0xA0 : 0x80; d.hi = b == 0xED ? 0x9F : 0xBF;
    return n;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    d.need = 3; d.cp = b & 0x07;
    d.lo = b == 0xF0 ? 0x90 : 0x80; d.hi = b == 0xF4 ? 0x8F : 0xBF;
    return n;
  }
  o[0] = kReplacement; o[1] = off; o[2] = off + 1;  // 80..BF alone, C0, C1, F5..FF
  return n + 1;
}

// End of input: an incomplete sequence becomes one U+FFFD.
FASTPASS_HD FASTPASS_INLINE int utf8_flush(Utf8& d, int32_t end_off, int32_t* out) {
  if (!d.need) return 0;
  d.need = 0;
  out[0] = kReplacement; out[1] = d.start; out[2] = end_off;
  return 1;
}

// ---- row state layout ------------------------------------------------------------------------
enum Hdr : int32_t {
  H_STATUS = 0,       // bit0 matched, bit1 final (matched and no higher-priority thread
                      // alive), bit2 a MATCH thread was added since the last settle_match
  H_CUR,              // which thread list is current (0/1)
  H_N0, H_N1,         // threads in list 0 / list 1
  H_GEN,              // generation stamp of the marks of the list being built
  H_PREV,             // last consumed code point (kEnd at the start)
  H_POS,              // streaming: code points seen so far
  H_QLEN,             // queued code points waiting for lookahead
  H_Q,                // queue: 3 x (cp, start, end)
  H_DEC = H_Q + 9,    // Utf8 decoder: cp, need, lo, hi, start
  H_WORDS = H_DEC + 5
};

struct Layout {
  int32_t n, s;
  FASTPASS_HD int32_t match() const { return H_WORDS; }
  FASTPASS_HD int32_t pcs(int which) const { return H_WORDS + s + which * n * (1 + s); }
  FASTPASS_HD int32_t slots(int which) const { return pcs(which) + n; }
  FASTPASS_HD int32_t marks() const { return H_WORDS + s + 2 * n * (1 + s); }
  FASTPASS_HD int32_t work() const { return marks() + n; }
  FASTPASS_HD int32_t stack() const { return work() + s; }
  FASTPASS_HD int32_t words() const { return stack() + 2 * (2 * n + 2); }
};

FASTPASS_HD FASTPASS_INLINE int32_t vm_state_words(const Prog& P) {
  return Layout{P.n_instr, P.n_slots}.words();
}

FASTPASS_HD FASTPASS_INLINE void vm_init(const Prog& P, int32_t* st, int32_t prev = kEnd) {
  const Layout L{P.n_instr, P.n_slots};
  st[H_STATUS] = 0; st[H_CUR] = 0; st[H_N0] = 0; st[H_N1] = 0; st[H_GEN] = 1;
  st[H_PREV] = prev; st[H_POS] = 0; st[H_QLEN] = 0;
  st[H_DEC] = 0; st[H_DEC + 1] = 0; st[H_DEC + 2] = 0x80; st[H_DEC + 3] = 0xBF; st[H_DEC + 4] = 0;
  for (int32_t i = 0; i < P.n_slots; ++i) st[L.match() + i] = -1;
  for (int32_t i = 0; i < P.n_instr; ++i) st[L.marks() + i] = 0;
}

FASTPASS_HD FASTPASS_INLINE bool vm_matched(const int32_t* st) { return st[H_STATUS] & 1; }
FASTPASS_HD FASTPASS_INLINE bool vm_final(const int32_t* st) { return st[H_STATUS] & 2; }

// Context of the position where a closure is computed.
struct Ctx {
  int32_t pos, prev, next, after_next;  // after_next: the code point after `next` (for `$`)
};

FASTPASS_HD FASTPASS_INLINE bool is_word(const Prog& P, int32_t off, int32_t n, int32_t c) {
  return c != kEnd && in_ranges(P.pool, off, n, c);
}

FASTPASS_HD FASTPASS_INLINE bool assert_ok(const Prog& P, const int32_t* ins, const Ctx& x) {
  switch (ins[1]) {
    case BEGIN_STRING: return x.pos == 0 && x.prev == kEnd;
    case BEGIN_LINE: return x.prev == kEnd || x.prev == '\n';
    case END_STRING: return x.next == kEnd;
    case END_LINE: return x.next == kEnd || x.next == '\n';
    case END_DOLLAR: return x.next == kEnd || (x.next == '\n' && x.after_next == kEnd);
    default: {
      if (x.prev == kEnd && x.next == kEnd) return false;  // sre: no \b or \B in ""
      const bool b = is_word(P, ins[2], ins[3], x.prev) != is_word(P, ins[2], ins[3], x.next);
      return ins[1] == BOUNDARY ? b : !b;
    }
  }
}

// Capture slots come in pairs and are few: straight-line copies beat a generic loop.
FASTPASS_HD FASTPASS_INLINE void copy_slots(int32_t* __restrict__ d, const int32_t* __restrict__ a,
                                             int32_t n) {
  switch (n) {
    case 2: d[0] = a[0]; d[1] = a[1]; return;
    case 4: d[0] = a[0]; d[1] = a[1]; d[2] = a[2]; d[3] = a[3]; return;
    case 6: d[0] = a[0]; d[1] = a[1]; d[2] = a[2]; d[3] = a[3]; d[4] = a[4]; d[5] = a[5]; return;
    default:
      for (int32_t i = 0; i < n; i += 2) { d[i] = a[i]; d[i + 1] = a[i + 1]; }
  }
}

// Follows epsilon edges from pc0 (capture slots copied from `base`, or all unset) and appends
// the consuming threads it reaches, in priority order, to list `which`. Marks of generation
// st[H_GEN] dedupe program counters within one list.
FASTPASS_HD FASTPASS_INLINE void vm_add(const Prog& P, int32_t* st, int which, int32_t pc0,
                                         const int32_t* base, const Ctx& x) {
  const Layout L{P.n_instr, P.n_slots};
  const int32_t s = P.n_slots;
  // The areas of the state buffer never overlap; locals keep counters out of memory.
  int32_t* __restrict__ work = st + L.work();
  int32_t* __restrict__ stack = st + L.stack();
  int32_t* __restrict__ marks = st + L.marks();
  int32_t* __restrict__ pcs = st + L.pcs(which);
  int32_t* __restrict__ slots = st + L.slots(which);
  const int32_t* __restrict__ instr = P.instr;
  int32_t size = st[H_N0 + which];
  const int32_t gen = st[H_GEN];
  if (base) copy_slots(work, base, s);
  else for (int32_t i = 0; i < s; i += 2) { work[i] = -1; work[i + 1] = -1; }
  // Stack entries are pairs: (pc >= 0, _) explores pc; (-slot-1, value) restores a slot.
  int32_t sp = 0;
  stack[sp++] = pc0; stack[sp++] = 0;
  while (sp > 0) {
    const int32_t v = stack[--sp];
    const int32_t tag = stack[--sp];
    if (tag < 0) { work[-tag - 1] = v; continue; }
    int32_t pc = tag;
    for (;;) {
      if (marks[pc] == gen) break;
      marks[pc] = gen;
      const int32_t* ins = instr + 4 * pc;
      const int32_t op = ins[0];
      if (op == JMP) { pc = ins[1]; continue; }
      if (op == SPLIT) { stack[sp++] = ins[2]; stack[sp++] = 0; pc = ins[1]; continue; }
      if (op == SAVE) {
        stack[sp++] = -ins[1] - 1; stack[sp++] = work[ins[1]];
        work[ins[1]] = x.pos; ++pc; continue;
      }
      if (op == ASSERT) {
        if (!assert_ok(P, ins, x)) break;
        ++pc; continue;
      }
      if (op == MATCH) st[H_STATUS] |= 4;  // tells settle_match there is one to look for
      pcs[size] = pc;
      copy_slots(slots + size * s, work, s);
      ++size;
      break;
    }
  }
  st[H_N0 + which] = size;
}

FASTPASS_HD FASTPASS_INLINE bool accepts(const Prog& P, const int32_t* ins, int32_t c) {
  switch (ins[0]) {
    case CHAR: return c == ins[1];
    case SET: return in_ranges(P.pool, ins[1], ins[2], c);
    case ANY: return true;
    case ANYNL: return c != '\n';
    default: return false;
  }
}

// A match reached by a step is recorded at once rather than at the next step (same result: it
// would cut the same lower-priority threads), so a stream is final right after it.
FASTPASS_HD FASTPASS_INLINE void settle_match(const Prog& P, int32_t* st, int which) {
  if (!(st[H_STATUS] & 4)) return;  // no MATCH thread was added since the last settle
  st[H_STATUS] &= ~4;
  const Layout L{P.n_instr, P.n_slots};
  const int32_t s = P.n_slots;
  const int32_t* pcs = st + L.pcs(which);
  const int32_t* slots = st + L.slots(which);
  for (int32_t i = 0; i < st[H_N0 + which]; ++i) {
    if (P.instr[4 * pcs[i]] == MATCH) {
      for (int32_t k = 0; k < s; ++k) st[L.match() + k] = slots[i * s + k];
      st[H_STATUS] |= 1;
      st[H_N0 + which] = i;
      return;
    }
  }
}

// Whether a thread started before c0 could survive it: without assertions or an empty match
// before the first consuming instruction, one that cannot consume c0 dies at once.
FASTPASS_HD FASTPASS_INLINE bool may_start(const Prog& P, int32_t c0) {
  if (!(P.flags & kFlagSkipAscii)) return true;
  if (c0 == kEnd) return false;
  if (c0 >= 0x80) return !(P.flags & kFlagFirstAscii);
  return (P.first_ascii[c0 >> 5] >> (c0 & 31)) & 1u;
}

// One step at the position of code point c0 (kEnd: the end of the input), spanning
// [c0s, c0e); c1, c2: the next code points when the program's lookahead needs them.
FASTPASS_HD FASTPASS_INLINE void vm_step(const Prog& P, int32_t* st, int32_t c0, int32_t c0s,
                                          int32_t c0e, int32_t c1, int32_t c2) {
  const Layout L{P.n_instr, P.n_slots};
  const int32_t s = P.n_slots;
  const int cur = st[H_CUR], nxt = 1 - cur;
  if (!(st[H_STATUS] & 1) && may_start(P, c0)) {  // a new thread starts here, lowest priority
    const Ctx x0{c0s, st[H_PREV], c0, c1};
    vm_add(P, st, cur, 0, nullptr, x0);
  }
  st[H_GEN] += 1;
  st[H_N0 + nxt] = 0;
  const Ctx x1{c0e, c0, c1, c2};
  const int32_t* pcs = st + L.pcs(cur);
  const int32_t* slots = st + L.slots(cur);
  const int32_t n = st[H_N0 + cur];
  for (int32_t i = 0; i < n; ++i) {
    const int32_t* ins = P.instr + 4 * pcs[i];
    if (ins[0] == MATCH) {  // lower-priority threads lose to this match
      for (int32_t k = 0; k < s; ++k) st[L.match() + k] = slots[i * s + k];
      st[H_STATUS] |= 1;
      break;
    }
    if (c0 == kEnd || !accepts(P, ins, c0)) continue;
    const int32_t next_pc = pcs[i] + 1;
    const int32_t next_op = P.instr[4 * next_pc];
    if (next_op <= ANYNL) {  // a consumer right after: the closure is the thread itself
      int32_t* marks = st + L.marks();
      if (marks[next_pc] == st[H_GEN]) continue;
      marks[next_pc] = st[H_GEN];
      int32_t& size = st[H_N0 + nxt];
      st[L.pcs(nxt) + size] = next_pc;
      copy_slots(st + L.slots(nxt) + size * s, slots + i * s, s);
      ++size;
    } else {
      vm_add(P, st, nxt, next_pc, slots + i * s, x1);
    }
  }
  settle_match(P, st, nxt);
  st[H_CUR] = nxt;
  st[H_PREV] = c0;
  if ((st[H_STATUS] & 1) && st[H_N0 + nxt] == 0) st[H_STATUS] |= 2;
}

// Queues code point cp (spanning [cs, ce)) and steps once enough lookahead is known.
FASTPASS_HD FASTPASS_INLINE void vm_push(const Prog& P, int32_t* st, int32_t cp, int32_t cs,
                                          int32_t ce) {
  if (st[H_STATUS] & 2) return;
  int32_t* q = st + H_Q;
  int32_t& qlen = st[H_QLEN];
  q[3 * qlen] = cp; q[3 * qlen + 1] = cs; q[3 * qlen + 2] = ce;
  ++qlen;
  if (qlen > P.lookahead) {
    const int32_t c1 = qlen > 1 ? q[3] : kEnd, c2 = qlen > 2 ? q[6] : kEnd;
    vm_step(P, st, q[0], q[1], q[2], c1, c2);
    for (int32_t i = 0; i < 3 * (qlen - 1); ++i) q[i] = q[i + 3];
    --qlen;
  }
}

FASTPASS_HD FASTPASS_INLINE Utf8 load_dec(const int32_t* st) {
  Utf8 d;
  d.cp = st[H_DEC]; d.need = st[H_DEC + 1]; d.lo = st[H_DEC + 2]; d.hi = st[H_DEC + 3];
  d.start = st[H_DEC + 4];
  return d;
}

FASTPASS_HD FASTPASS_INLINE void store_dec(int32_t* st, const Utf8& d) {
  st[H_DEC] = d.cp; st[H_DEC + 1] = d.need; st[H_DEC + 2] = d.lo; st[H_DEC + 3] = d.hi;
  st[H_DEC + 4] = d.start;
}

// End of input at position end_pos: drain the queue with kEnd lookahead, then the last step.
FASTPASS_HD FASTPASS_INLINE void vm_finish(const Prog& P, int32_t* st, int32_t end_pos) {
  int32_t* q = st + H_Q;
  int32_t& qlen = st[H_QLEN];
  while (qlen > 0 && !(st[H_STATUS] & 2)) {
    const int32_t c1 = qlen > 1 ? q[3] : kEnd, c2 = qlen > 2 ? q[6] : kEnd;
    vm_step(P, st, q[0], q[1], q[2], c1, c2);
    for (int32_t i = 0; i < 3 * (qlen - 1); ++i) q[i] = q[i + 3];
    --qlen;
  }
  qlen = 0;
  if (!(st[H_STATUS] & 2)) vm_step(P, st, kEnd, end_pos, end_pos, kEnd, kEnd);
  st[H_STATUS] |= 2;
}

// Streaming: feed one token's bytes; positions count code points.
FASTPASS_HD FASTPASS_INLINE void vm_feed_bytes_stream(const Prog& P, int32_t* st,
                                                      const uint8_t* bytes, int64_t n) {
  if (st[H_STATUS] & 2) return;
  Utf8 d = load_dec(st);
  int32_t out[6];
  for (int64_t i = 0; i < n && !(st[H_STATUS] & 2); ++i) {
    const int k = utf8_feed(d, bytes[i], 0, out);
    for (int j = 0; j < k; ++j) {
      const int32_t pos = st[H_POS]++;
      vm_push(P, st, out[3 * j], pos, pos + 1);
    }
  }
  store_dec(st, d);
}

FASTPASS_HD FASTPASS_INLINE void vm_finish_stream(const Prog& P, int32_t* st) {
  if (!(st[H_STATUS] & 2)) {
    Utf8 d = load_dec(st);
    int32_t out[3];
    if (utf8_flush(d, 0, out)) {
      const int32_t pos = st[H_POS]++;
      vm_push(P, st, out[0], pos, pos + 1);
    }
    store_dec(st, d);
  }
  vm_finish(P, st, st[H_POS]);
}

// ---- sources for batch search ------------------------------------------------------------------
// A source yields units: UTF-8 bytes (kCodepoints = false: decoded here with Python's
// errors="replace") or code points (kCodepoints = true: a Python str read in place).
// Offsets are in units; seek() may go backwards.
struct FlatSrc {  // one item's UTF-8 bytes
  static constexpr bool kCodepoints = false;
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
      const void* hit = std::memchr(p + i, single, (size_t)(n - i));
      i = hit ? (int32_t)((const uint8_t*)hit - p) : n;
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
__attribute__((target("avx2"))) inline int32_t find_unit_avx2(const T* hay, int32_t n, int32_t i, T x) {
  const __m256i want = sizeof(T) == 2 ? _mm256_set1_epi16((short)x) : _mm256_set1_epi32((int)x);
  constexpr int32_t lanes = 32 / (int32_t)sizeof(T);
  for (; i + lanes <= n; i += lanes) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(hay + i));
    const unsigned mask = (unsigned)_mm256_movemask_epi8(
        sizeof(T) == 2 ? _mm256_cmpeq_epi16(v, want) : _mm256_cmpeq_epi32(v, want));
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

// First unit equal to x in hay[from, n), or n.
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
      const uint8_t* b = (const uint8_t*)p;
      const void* hit = std::memchr(b + i, single, (size_t)(n - i));
      i = hit ? (int32_t)((const uint8_t*)hit - b) : n;
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
    return utf8_feed(d, src.get(), src.offset(), out);
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

// First set with a single byte: the skip can use memchr.
FASTPASS_HD FASTPASS_INLINE int single_first(const Prog& P) {
  int found = -1;
  for (int w = 0; w < 4; ++w)
    for (int b = 0; b < 32; ++b)
      if ((P.first_ascii[w] >> b) & 1u) {
        if (found >= 0) return -1;
        found = w * 32 + b;
      }
  return found;
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

// Source offsets -> code point offsets (bytes) or UTF-8 byte offsets (code points).
template <class Src>
FASTPASS_HD void convert_offsets(Src& src, const int32_t* slots, int32_t n, int64_t* out,
                                 bool to_bytes) {
  int32_t hi = -1;
  for (int32_t k = 0; k < n; ++k) {
    out[k] = slots[k] < 0 ? -1 : 0;
    if (slots[k] > hi) hi = slots[k];
  }
  if (hi <= 0) return;
  src.seek(0);
  Utf8 d;
  int32_t buf[6];
  while (src.has() && src.offset() < hi) {
    const int c = feed(src, d, buf);
    for (int i = 0; i < c; ++i) {
      const int32_t cp = buf[3 * i];
      const int32_t w = to_bytes ? (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4) : 1;
      for (int32_t k = 0; k < n; ++k)
        if (slots[k] > buf[3 * i + 1]) out[k] += w;
    }
    src.advance();
  }
  if (flush<Src>(d, src.offset(), buf))
    for (int32_t k = 0; k < n; ++k)
      if (slots[k] > buf[1]) out[k] += 1;
}

// ---- grading ------------------------------------------------------------------------------------
enum Normalize : int32_t { N_NONE = -1, N_EXACT = 0, N_STRIP = 1, N_NUMERIC = 2, N_BOXED = 3 };
constexpr int32_t kNumericCap = 256;  // longer numeric candidates are decided on the host

// Decodes [b, e) of src into code points, calling f(cp, start, end).
template <class Src, class F>
FASTPASS_HD void decode_range(Src& src, int32_t b, int32_t e, F&& f) {
  src.seek(b);
  Utf8 d;
  int32_t out[6];
  while (src.has() && src.offset() < e) {
    const int k = feed(src, d, out);
    for (int i = 0; i < k; ++i) f(out[3 * i], out[3 * i + 1], out[3 * i + 2]);
    src.advance();
  }
  if (flush<Src>(d, e, out)) f(out[0], out[1], out[2]);
}

// Reads the gold key one code point at a time.
template <class Gold>
struct GoldReader {
  Gold g;
  Utf8 d;
  int32_t buf[6];
  int32_t pending = 0, next_i = 0;
  FASTPASS_HD explicit GoldReader(const Gold& gold) : g(gold) {}
  FASTPASS_HD int32_t next() {
    while (next_i >= pending) {
      if (!g.has()) {
        pending = flush<Gold>(d, g.offset(), buf); next_i = 0;
        if (!pending) return kEnd;
        break;
      }
      pending = feed(g, d, buf); next_i = 0;
      g.advance();
    }
    return buf[3 * next_i++];
  }
};

// Whether the code points of src[b, e) equal the gold key's.
template <class Src, class Gold>
FASTPASS_HD bool equal_range(Src& src, int32_t b, int32_t e, const Gold& gold) {
  GoldReader<Gold> g(gold);
  bool same = true;
  decode_range(src, b, e, [&](int32_t cp, int32_t, int32_t) {
    if (same && g.next() != cp) same = false;
  });
  return same && g.next() == kEnd;
}

// [b, e) with Python str.strip() whitespace removed.
template <class Src>
FASTPASS_HD void strip_range(Src& src, int32_t& b, int32_t& e) {
  int32_t first = -1, last = -1;
  decode_range(src, b, e, [&](int32_t cp, int32_t cs, int32_t ce) {
    if (!is_py_space(cp)) { if (first < 0) first = cs; last = ce; }
  });
  if (first < 0) { b = e; return; }
  b = first; e = last;
}

// Content of the last balanced \boxed{...} inside [b, e); false when there is none. The key
// and braces are ASCII, which never occurs inside a multi-byte UTF-8 sequence.
template <class Src>
FASTPASS_HD bool last_boxed(Src& src, int32_t b, int32_t e, int32_t& cb, int32_t& ce) {
  const char* key = "\\boxed{";
  bool found = false;
  for (int32_t i = b; i + 7 <= e; ++i) {
    src.seek(i);
    int k = 0;
    while (k < 7 && src.has() && src.get() == (uint32_t)key[k]) { src.advance(); ++k; }
    if (k < 7) continue;
    int32_t depth = 1;
    while (src.has() && src.offset() < e) {
      const uint32_t c = src.get();
      if (c == '{') ++depth;
      else if (c == '}' && --depth == 0) break;
      src.advance();
    }
    if (depth == 0) { found = true; cb = i + 7; ce = src.offset(); }
  }
  return found;
}

FASTPASS_HD FASTPASS_INLINE bool is_digit(int32_t c) { return c >= '0' && c <= '9'; }

// Numeric key of buf[0, n) in place (fastpass/grading.py: numeric_key); returns the new length.
FASTPASS_HD FASTPASS_INLINE int32_t numeric_key(int32_t* buf, int32_t n) {
  int32_t i = 0, sign = 0;
  if (n > 0 && (buf[0] == '+' || buf[0] == '-')) { sign = buf[0]; i = 1; }
  int32_t int_b = i;
  while (i < n && is_digit(buf[i])) ++i;
  int32_t int_e = i, frac_b = i, frac_e = i;
  bool dot = false;
  if (i < n && buf[i] == '.') {
    dot = true; frac_b = ++i;
    while (i < n && is_digit(buf[i])) ++i;
    frac_e = i;
  }
  const bool numeric = i == n && (int_e > int_b || (dot && frac_e > frac_b));
  if (!numeric) return n;  // not a number: the cleaned text is the key
  while (int_b < int_e && buf[int_b] == '0') ++int_b;
  while (frac_e > frac_b && buf[frac_e - 1] == '0') --frac_e;
  if (int_b == int_e && frac_b == frac_e) { buf[0] = '0'; return 1; }
  // Rebuild left to right; every write index stays <= its read index, so in place is safe
  // except for the inserted "0" of ".5": shift first in that case.
  int32_t m = 0;
  if (sign == '-') buf[m++] = '-';
  if (int_b == int_e) {
    for (int32_t k = frac_e - 1; k >= frac_b; --k) buf[k + 1] = buf[k];
    ++frac_b; ++frac_e;
    buf[m++] = '0';
  } else {
    for (int32_t k = int_b; k < int_e; ++k) buf[m++] = buf[k];
  }
  if (frac_e > frac_b) {
    buf[m++] = '.';
    for (int32_t k = frac_b; k < frac_e; ++k) buf[m++] = buf[k];
  }
  return m;
}

// 1 correct, 0 wrong, -1 undecided here (the host decides).
template <class Src, class Gold>
FASTPASS_HD int8_t grade_range(Src& src, int32_t b, int32_t e, int32_t norm, const Gold& gold,
                               int32_t* scratch) {
  if (norm == N_BOXED) {
    int32_t cb, ce;
    if (!last_boxed(src, b, e, cb, ce)) return 0;
    b = cb; e = ce;
    norm = N_STRIP;
  }
  if (norm == N_STRIP) strip_range(src, b, e);
  if (norm == N_EXACT || norm == N_STRIP) return equal_range(src, b, e, gold) ? 1 : 0;
  // numeric: drop '$' and ',', strip, drop trailing '.', then the canonical decimal.
  int32_t n = 0;
  bool overflow = false;
  decode_range(src, b, e, [&](int32_t cp, int32_t, int32_t) {
    if (cp == '$' || cp == ',') return;
    if (n == 0 && is_py_space(cp)) return;
    if (n < kNumericCap) scratch[n++] = cp; else overflow = true;
  });
  if (overflow) return -1;
  while (n > 0 && is_py_space(scratch[n - 1])) --n;
  while (n > 0 && scratch[n - 1] == '.') --n;
  n = numeric_key(scratch, n);
  GoldReader<Gold> g(gold);
  for (int32_t k = 0; k < n; ++k)
    if (g.next() != scratch[k]) return 0;
  return g.next() == kEnd ? 1 : 0;
}

// ---- one batch item -----------------------------------------------------------------------------
struct BatchOut {
  uint8_t* found;        // [B]
  int64_t* cp_slots;     // [B, S] code point offsets (start, end interleaved), -1 unset; nullable
  int64_t* byte_slots;   // [B, S] UTF-8 byte offsets, nullable
  int8_t* grade;         // [B] nullable
};

constexpr int32_t kMaxSlots = 64;  // the host falls back to the reference VM above this

template <class Src, class Gold>
FASTPASS_HD void run_item(const Prog& P, int32_t* st, Src& src, int64_t item, bool last,
                          const BatchOut& o, int32_t group, int32_t norm, const Gold* gold,
                          int32_t* scratch) {
  const int32_t s = P.n_slots;
  const Layout L{P.n_instr, s};
  const int single = single_first(P);
  int32_t best[kMaxSlots];
  bool found = vm_search(P, st, src, 0, kEnd, single);
  if (found) for (int32_t k = 0; k < s; ++k) best[k] = st[L.match() + k];
  while (last && found) {  // finditer: the next search starts at the previous match's end
    const int32_t e = best[1];
    const int32_t prev = cp_before(src, e);
    if (!vm_search(P, st, src, e, prev, single)) break;
    for (int32_t k = 0; k < s; ++k) best[k] = st[L.match() + k];
  }
  o.found[item] = found;
  if (!found) for (int32_t k = 0; k < s; ++k) best[k] = -1;
  int64_t* own = Src::kCodepoints ? o.cp_slots : o.byte_slots;     // offsets in source units
  int64_t* other = Src::kCodepoints ? o.byte_slots : o.cp_slots;   // converted
  if (own) for (int32_t k = 0; k < s; ++k) own[item * s + k] = best[k];
  if (other) convert_offsets(src, best, s, other + item * s, Src::kCodepoints);
  if (o.grade) {
    const int32_t gb = best[2 * group], ge = best[2 * group + 1];
    o.grade[item] = (!found || gb < 0) ? 0 : grade_range(src, gb, ge, norm, *gold, scratch);
  }
}

}  // namespace rx
}  // namespace fastpass
