// Answer grading on the device: strip / exact / numeric / boxed comparison of an extracted
// group with a gold key, and one batch item (search, offsets, grade). Shared by g++ and nvcc.
#pragma once
#include <cstdint>

#include "fastpass/regex_search.h"

namespace fastpass {
namespace rx {

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

// Whether the code points of src[b, e) equal the gold key's; with strip_gold, the gold's leading
// and trailing str.strip() whitespace is ignored (the host passes golds unstripped: no Python pass).
template <class Src, class Gold>
FASTPASS_HD bool equal_range(Src& src, int32_t b, int32_t e, const Gold& gold, bool strip_gold = false) {
  GoldReader<Gold> g(gold);
  int32_t want = g.next();
  if (strip_gold) while (want != kEnd && is_py_space(want)) want = g.next();
  bool same = true;
  decode_range(src, b, e, [&](int32_t cp, int32_t, int32_t) {
    if (!same) return;
    if (want != cp) { same = false; return; }
    want = g.next();
  });
  if (!same) return false;
  // src[b, e) was stripped too, so gold = space* src space* exactly when the rest is all space
  if (strip_gold) while (want != kEnd && is_py_space(want)) want = g.next();
  return want == kEnd;
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
  if (norm == N_EXACT || norm == N_STRIP) return equal_range(src, b, e, gold, norm == N_STRIP) ? 1 : 0;
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
