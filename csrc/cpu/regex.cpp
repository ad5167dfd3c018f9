// CPU tier of the regex engine: the shared Pike VM core over items, chunks of items per thread.
#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "fastpass/regex_api.h"
#include "fastpass/regex_grade.h"

namespace fastpass {

int64_t regex_state_words(const int32_t* code) {
  return rx::vm_state_words(rx::prog_view(code));
}

int64_t regex_scratch_words(const int32_t* code) {
  return regex_state_words(code) + rx::kNumericCap + 2;
}

namespace {

template <class Src>
void grade_with_gold(const RegexBatchArgs& a, const rx::Prog& P, int32_t* st, Src& src, int64_t b,
                     const rx::BatchOut& o, int32_t* numeric) {
  if (a.gold_str_data) {
    const rx::CpSrc gold{a.gold_str_data[b], a.gold_str_kind[b], (int32_t)a.gold_str_len[b], 0};
    rx::run_item(P, st, src, b, a.occurrence_last, o, a.grade_group, a.grade_norm, &gold, numeric);
  } else {
    const rx::FlatSrc gold{a.gold ? a.gold + (a.gold_offs ? a.gold_offs[b] : 0) : nullptr,
                           a.gold ? (int32_t)(a.gold_offs[b + 1] - a.gold_offs[b]) : 0, 0};
    rx::run_item(P, st, src, b, a.occurrence_last, o, a.grade_group, a.grade_norm, &gold, numeric);
  }
}

void run_range(const RegexBatchArgs& a, std::atomic<int64_t>& next) {
  const rx::Prog P = rx::prog_view(a.code);
  std::vector<int32_t> st(regex_scratch_words(a.code));
  int32_t* numeric = st.data() + regex_state_words(a.code);
  const rx::BatchOut o{a.found, a.cp_slots, a.byte_slots, a.grade};
  constexpr int64_t kChunk = 64;
  for (;;) {
    const int64_t begin = next.fetch_add(kChunk);
    if (begin >= a.batch) return;
    const int64_t end = std::min(a.batch, begin + kChunk);
    for (int64_t b = begin; b < end; ++b) {
      if (a.str_data) {
        rx::CpSrc src{a.str_data[b], a.str_kind[b], (int32_t)a.str_len[b], 0};
        grade_with_gold(a, P, st.data(), src, b, o, numeric);
      } else if (a.text) {
        rx::FlatSrc src{a.text + a.text_offs[b], (int32_t)(a.text_offs[b + 1] - a.text_offs[b]), 0};
        grade_with_gold(a, P, st.data(), src, b, o, numeric);
      } else {
        rx::TokenSrc src{a.ids + b * a.ids_stride, (int32_t)a.ids_lens[b], a.tok_data, a.tok_offs,
                         a.vocab, 0, 0, 0};
        grade_with_gold(a, P, st.data(), src, b, o, numeric);
      }
    }
  }
}

}  // namespace

void regex_batch_cpu(const RegexBatchArgs& a, int num_threads) {
  std::atomic<int64_t> next{0};
  const int threads = (int)std::max<int64_t>(1, std::min<int64_t>(num_threads, (a.batch + 63) / 64));
  if (threads == 1) { run_range(a, next); return; }
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(run_range, std::cref(a), std::ref(next));
  for (auto& th : pool) th.join();
}

void regex_stream_reset_cpu(const int32_t* code, int32_t* state, int64_t words,
                            const uint8_t* rows, int64_t n) {
  const rx::Prog P = rx::prog_view(code);
  for (int64_t r = 0; r < n; ++r)
    if (!rows || rows[r]) rx::vm_init(P, state + r * words);
}

void regex_stream_step_cpu(const int32_t* code, int32_t* state, int64_t words, int64_t n,
                           const int64_t* token_ids, const uint8_t* tok_data,
                           const int64_t* tok_offs, int64_t vocab, uint8_t* final_out) {
  const rx::Prog P = rx::prog_view(code);
  for (int64_t r = 0; r < n; ++r) {
    int32_t* st = state + r * words;
    const int64_t id = token_ids[r];
    if (id >= 0 && id < vocab)
      rx::vm_feed_bytes_stream(P, st, tok_data + tok_offs[id], tok_offs[id + 1] - tok_offs[id]);
    final_out[r] = rx::vm_final(st);
  }
}

void regex_stream_finish_cpu(const int32_t* code, int32_t* state, int64_t words, int64_t n,
                             uint8_t* found, int64_t* cp_slots) {
  const rx::Prog P = rx::prog_view(code);
  const rx::Layout L{P.n_instr, P.n_slots};
  for (int64_t r = 0; r < n; ++r) {
    int32_t* st = state + r * words;
    rx::vm_finish_stream(P, st);
    found[r] = rx::vm_matched(st);
    for (int32_t k = 0; k < P.n_slots; ++k) cp_slots[r * P.n_slots + k] = st[L.match() + k];
  }
}

}  // namespace fastpass
