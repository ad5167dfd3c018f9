// CPU tier of the regex engine: the shared Pike VM core over items, chunks of items per thread.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
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

// One batch call's work queue: chunks of items handed out by an atomic counter. Helper threads
// hold it through a shared_ptr, so the caller returns as soon as every item is done, without
// waiting for a helper the (shared, loaded) machine has not scheduled yet: a helper that
// starts late finds no chunk left and exits without touching the batch.
struct Queue {
  RegexBatchArgs a;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex m;
  std::condition_variable cv;
};

constexpr int64_t kChunk = 64;

void run_chunks(Queue& q) {
  const RegexBatchArgs& a = q.a;
  std::vector<int32_t> st;  // allocated once this thread gets a chunk
  for (;;) {
    const int64_t begin = q.next.fetch_add(kChunk);
    if (begin >= a.batch) return;
    const int64_t end = std::min(a.batch, begin + kChunk);
    if (st.empty()) st.resize(regex_scratch_words(a.code));
    const rx::Prog P = rx::prog_view(a.code);
    int32_t* numeric = st.data() + regex_state_words(a.code);
    const rx::BatchOut o{a.found, a.cp_slots, a.byte_slots, a.grade};
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
    if (q.done.fetch_add(end - begin) + (end - begin) == a.batch) {
      std::lock_guard<std::mutex> lock(q.m);
      q.cv.notify_all();
    }
  }
}

}  // namespace

void regex_batch_cpu(const RegexBatchArgs& a, int num_threads) {
  if (a.batch <= 0) return;
  const int threads = (int)std::max<int64_t>(1, std::min<int64_t>(num_threads, (a.batch + kChunk - 1) / kChunk));
  auto q = std::make_shared<Queue>();
  q->a = a;
  for (int t = 1; t < threads; ++t) {
    try {
      std::thread([q] { run_chunks(*q); }).detach();
    } catch (const std::system_error&) {  // no thread to be had: the caller does the rest
      break;
    }
  }
  run_chunks(*q);  // the caller works too
  std::unique_lock<std::mutex> lock(q->m);
  q->cv.wait(lock, [&] { return q->done.load() == a.batch; });
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
