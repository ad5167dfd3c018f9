// GPU tier of the regex engine: one CUDA thread per item (batch) or per sequence (streaming),
// the program staged in shared memory, per-item VM state in global scratch. The VM itself is
// the same header the CPU tier runs (fastpass/regex_vm.h).
#include <cuda_runtime.h>

#include "fastpass/regex_api.h"
#include "fastpass/regex_grade.h"

namespace fastpass {
namespace {

constexpr int kThreads = 128;
constexpr int32_t kSharedCodeWords = 8192;  // 32 KB; larger programs are read from global memory

__device__ const int32_t* stage_code(const int32_t* code, int32_t words, int32_t* smem) {
  if (words > kSharedCodeWords) return code;
  for (int32_t i = threadIdx.x; i < words; i += blockDim.x) smem[i] = code[i];
  __syncthreads();
  return smem;
}

__global__ void batch_kernel(RegexBatchArgs a, int32_t code_words, int64_t state_words) {
  extern __shared__ int32_t smem[];
  const int32_t* code = stage_code(a.code, code_words, smem);
  const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= a.batch) return;
  const rx::Prog P = rx::prog_view(code);
  int32_t* st = a.scratch + b * a.scratch_words;
  int32_t* numeric = st + state_words;
  const rx::BatchOut o{a.found, a.cp_slots, a.byte_slots, a.grade};
  const rx::FlatSrc gold{a.gold ? a.gold + a.gold_offs[b] : nullptr,
                         a.gold ? (int32_t)(a.gold_offs[b + 1] - a.gold_offs[b]) : 0, 0};
  if (a.text) {
    rx::FlatSrc src{a.text + a.text_offs[b], (int32_t)(a.text_offs[b + 1] - a.text_offs[b]), 0};
    rx::run_item(P, st, src, b, a.occurrence_last, o, a.grade_group, a.grade_norm, &gold, numeric);
  } else {
    rx::TokenSrc src{a.ids + b * a.ids_stride, (int32_t)a.ids_lens[b], a.tok_data, a.tok_offs,
                     a.vocab, 0, 0, 0};
    rx::run_item(P, st, src, b, a.occurrence_last, o, a.grade_group, a.grade_norm, &gold, numeric);
  }
}

__global__ void reset_kernel(const int32_t* code, int32_t* state, int64_t words,
                             const uint8_t* rows, int64_t n) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n || (rows && !rows[r])) return;
  rx::vm_init(rx::prog_view(code), state + r * words);
}

__global__ void step_kernel(const int32_t* code_g, int32_t code_words, int32_t* state,
                            int64_t words, int64_t n, const int64_t* ids, const uint8_t* data,
                            const int64_t* offs, int64_t vocab, uint8_t* final_out) {
  extern __shared__ int32_t smem[];
  const int32_t* code = stage_code(code_g, code_words, smem);
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const rx::Prog P = rx::prog_view(code);
  int32_t* st = state + r * words;
  const int64_t id = ids[r];
  if (id >= 0 && id < vocab) rx::vm_feed_bytes_stream(P, st, data + offs[id], offs[id + 1] - offs[id]);
  final_out[r] = rx::vm_final(st);
}

__global__ void finish_kernel(const int32_t* code_g, int32_t code_words, int32_t* state,
                              int64_t words, int64_t n, uint8_t* found, int64_t* slots) {
  extern __shared__ int32_t smem[];
  const int32_t* code = stage_code(code_g, code_words, smem);
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const rx::Prog P = rx::prog_view(code);
  const rx::Layout L{P.n_instr, P.n_slots};
  int32_t* st = state + r * words;
  rx::vm_finish_stream(P, st);
  found[r] = rx::vm_matched(st);
  for (int32_t k = 0; k < P.n_slots; ++k) slots[r * P.n_slots + k] = st[L.match() + k];
}

size_t smem_bytes(int32_t code_words) {
  return code_words > kSharedCodeWords ? 0 : (size_t)code_words * sizeof(int32_t);
}

unsigned blocks(int64_t n) { return (unsigned)((n + kThreads - 1) / kThreads); }

}  // namespace

int regex_batch_cuda(const RegexBatchArgs& a, int32_t code_words, void* stream) {
  if (a.batch == 0) return 0;
  // State words are derived on the host from the header copy kept in scratch_words layout:
  // scratch = state + numeric buffer.
  const int64_t state_words = a.scratch_words - rx::kNumericCap - 2;
  batch_kernel<<<blocks(a.batch), kThreads, smem_bytes(code_words), (cudaStream_t)stream>>>(
      a, code_words, state_words);
  return (int)cudaGetLastError();
}

int regex_stream_reset_cuda(const int32_t* code, int32_t* state, int64_t words,
                            const uint8_t* rows, int64_t n, void* stream) {
  if (n == 0) return 0;
  reset_kernel<<<blocks(n), kThreads, 0, (cudaStream_t)stream>>>(code, state, words, rows, n);
  return (int)cudaGetLastError();
}

int regex_stream_step_cuda(const int32_t* code, int32_t code_words, int32_t* state,
                           int64_t words, int64_t n, const int64_t* ids, const uint8_t* data,
                           const int64_t* offs, int64_t vocab, uint8_t* final_out, void* stream) {
  if (n == 0) return 0;
  step_kernel<<<blocks(n), kThreads, smem_bytes(code_words), (cudaStream_t)stream>>>(
      code, code_words, state, words, n, ids, data, offs, vocab, final_out);
  return (int)cudaGetLastError();
}

int regex_stream_finish_cuda(const int32_t* code, int32_t code_words, int32_t* state,
                             int64_t words, int64_t n, uint8_t* found, int64_t* slots,
                             void* stream) {
  if (n == 0) return 0;
  finish_kernel<<<blocks(n), kThreads, smem_bytes(code_words), (cudaStream_t)stream>>>(
      code, code_words, state, words, n, found, slots);
  return (int)cudaGetLastError();
}

}  // namespace fastpass
