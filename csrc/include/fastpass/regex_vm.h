// Pike VM core shared by the CPU tier (g++) and the GPU tier (nvcc): the same code decodes
// UTF-8 (Python's errors="replace": one U+FFFD per maximal ill-formed subpart) and runs the
// program compiled by fastpass/regex/_compile.py, one code point per step (batch search:
// regex_search.h; grading: regex_grade.h).
//
// All per-item state lives in one int32 buffer ("row state", vm_state_words() words), so a
// batch search keeps it in scratch memory and a streamer keeps it on the device across steps.
#pragma once
#include <cstdint>

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
constexpr int32_t kFlagLazySpan = 16;   // prefix, lazy DOTALL dot, suffix: two literal searches

struct Prog {
  const int32_t* instr;
  const int32_t* pool;
  const int32_t* prefix;    // every match starts with these code points
  const int32_t* required;  // every match contains these code points
  const int32_t* suffix;    // kFlagLazySpan: the literal after the lazy dot (ASCII)
  const int32_t* span_saves;  // kFlagLazySpan: (slot, anchor 0 prefix / 1 suffix, offset)
  int32_t n_prefix, n_required, n_suffix, n_span_saves;
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
  const int32_t* more = p.required + lits[1];
  p.n_suffix = more[0];
  p.suffix = more + 1;
  p.n_span_saves = more[1 + more[0]];
  p.span_saves = more + 2 + more[0];
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
// surrogates: decode ED A0..BF xx as the lone surrogates U+D800..U+DFFF (Python's
// "surrogatepass", how a str holding them is packed to bytes) instead of ill-formed bytes.
FASTPASS_HD FASTPASS_INLINE int utf8_feed(Utf8& d, uint32_t b, int32_t off, int32_t* out,
                                          bool surrogates = false) {
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
    d.lo = b == 0xE0 ? 0xA0 : 0x80; d.hi = (b == 0xED && !surrogates) ? 0x9F : 0xBF;
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

}  // namespace rx
}  // namespace fastpass
