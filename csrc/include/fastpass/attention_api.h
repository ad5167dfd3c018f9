// Host entry point of the CPU split decode attention (fastpass/attention.py: decode_attention).
// fp32, contiguous: q [N, Hq, D]; prefix_k/v [P, Hkv, Lp, D] with prefix_lens [P];
// suffix_k/v [N, Hkv, S, D] with suffix_lens [N] (counting the current token); rows
// seq_offsets[p]..seq_offsets[p+1] belong to prompt p; out [N, Hq, D]. suffix_rows (nullable,
// [N]): row i keeps its suffix at suffix_k/v[suffix_rows[i]] (continuous batching keeps every
// sample's suffix in place while the batch order changes); null means row i at index i.
#pragma once
#include <cstdint>

namespace fastpass {

struct DecodeAttentionArgs {
  const float* q;
  const float* prefix_k;
  const float* prefix_v;
  const int32_t* prefix_lens;
  const float* suffix_k;
  const float* suffix_v;
  const int32_t* suffix_lens;
  const int32_t* seq_offsets;
  const int32_t* suffix_rows;  // nullable
  float* out;
  int64_t num_seqs, num_q_heads, num_kv_heads, head_dim;
  int64_t num_prompts, prefix_capacity, suffix_capacity;
  float scale, softcap;  // softcap 0 = off
  int32_t window;        // sliding window, 0 = off
};

// isa: -1 the best this CPU runs, else 0 baseline x86-64 (SSE), 1 AVX2+FMA, 2 AVX-512 (tests run each).
void decode_attention_cpu(const DecodeAttentionArgs& a, int num_threads, int isa = -1);
// bit i set: kernel isa i runs on this CPU
int cpu_isas();

}  // namespace fastpass
