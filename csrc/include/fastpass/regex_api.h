// Host entry points of the regex kernels (CPU tier: csrc/cpu/regex.cpp; GPU tier:
// csrc/cuda/regex.cu). Pointers are host pointers for *_cpu and device pointers for *_cuda.
#pragma once
#include <cstdint>

namespace fastpass {

struct RegexBatchArgs {
  const int32_t* code;          // compiled program (fastpass/regex/_compile.py)
  int64_t batch;
  // Text items: UTF-8 bytes of item b at text[text_offs[b] : text_offs[b + 1]].
  const uint8_t* text;
  const int64_t* text_offs;
  // Token items (when text is null): row b = ids[b * ids_stride : + ids_lens[b]] (negative or
  // out-of-vocabulary ids carry no bytes); token t's bytes = tok_data[tok_offs[t] : tok_offs[t+1]].
  const int64_t* ids;
  int64_t ids_stride;
  const int64_t* ids_lens;
  const uint8_t* tok_data;
  const int64_t* tok_offs;
  int64_t vocab;
  // Python str items read in place (CPU only, when text and ids are null): code point width
  // (1, 2 or 4 bytes), data pointer and length of each item.
  const void* const* str_data;
  const int32_t* str_kind;
  const int64_t* str_len;
  int32_t occurrence_last;      // 1: last non-overlapping match (finditer), 0: first
  uint8_t* found;               // [B]
  int64_t* cp_slots;            // [B, n_slots] code point offsets (nullable)
  int64_t* byte_slots;          // [B, n_slots] UTF-8 byte offsets (nullable)
  int8_t* grade;                // [B] (nullable): 1 correct, 0 wrong, -1 decide on the host
  int32_t grade_group, grade_norm;
  const uint8_t* gold;          // normalised gold keys, UTF-8, gold[gold_offs[b] : gold_offs[b+1]]
  const int64_t* gold_offs;
  const void* const* gold_str_data;  // CPU: gold keys as Python str (when gold is null)
  const int32_t* gold_str_kind;
  const int64_t* gold_str_len;
  int32_t* scratch;             // cuda: [B, scratch_words] device scratch (cpu: unused)
  int64_t scratch_words;
};

// Words of per-item scratch the batch kernels need (VM state + numeric buffer).
int64_t regex_scratch_words(const int32_t* host_code);
int64_t regex_state_words(const int32_t* host_code);

void regex_batch_cpu(const RegexBatchArgs& a, int num_threads);
int regex_batch_cuda(const RegexBatchArgs& a, int32_t code_words, void* stream);

// Streaming: state [N, state_words] on the device/host.
void regex_stream_reset_cpu(const int32_t* code, int32_t* state, int64_t words,
                            const uint8_t* rows, int64_t n);
void regex_stream_step_cpu(const int32_t* code, int32_t* state, int64_t words, int64_t n,
                           const int64_t* token_ids, const uint8_t* tok_data,
                           const int64_t* tok_offs, int64_t vocab, uint8_t* final_out);
// Finishes (end of input) a copy of the state and writes found + code point slots.
void regex_stream_finish_cpu(const int32_t* code, int32_t* state, int64_t words, int64_t n,
                             uint8_t* found, int64_t* cp_slots);

int regex_stream_reset_cuda(const int32_t* code, int32_t* state, int64_t words,
                            const uint8_t* rows, int64_t n, void* stream);
int regex_stream_step_cuda(const int32_t* code, int32_t code_words, int32_t* state,
                           int64_t words, int64_t n, const int64_t* token_ids,
                           const uint8_t* tok_data, const int64_t* tok_offs, int64_t vocab,
                           uint8_t* final_out, void* stream);
int regex_stream_finish_cuda(const int32_t* code, int32_t code_words, int32_t* state,
                             int64_t words, int64_t n, uint8_t* found, int64_t* cp_slots,
                             void* stream);

}  // namespace fastpass
