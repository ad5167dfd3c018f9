#include "bind_util.h"
#include "fastpass/attention_api.h"

namespace py = pybind11;

namespace fastpass {

void bind_attention(py::module_& m) {
  m.def(
      "decode_attention_cpu",
      [](std::uintptr_t q, std::uintptr_t prefix_k, std::uintptr_t prefix_v, std::uintptr_t prefix_lens,
         std::uintptr_t suffix_k, std::uintptr_t suffix_v, std::uintptr_t suffix_lens,
         std::uintptr_t seq_offsets, std::uintptr_t suffix_rows, std::uintptr_t out, int64_t num_seqs, int64_t num_q_heads,
         int64_t num_kv_heads, int64_t head_dim, int64_t num_prompts, int64_t prefix_capacity,
         int64_t suffix_capacity, float scale, float softcap, int32_t window, int threads, int isa) {
        const DecodeAttentionArgs a{ptr<const float>(q), ptr<const float>(prefix_k), ptr<const float>(prefix_v),
                                    ptr<const int32_t>(prefix_lens), ptr<const float>(suffix_k),
                                    ptr<const float>(suffix_v), ptr<const int32_t>(suffix_lens),
                                    ptr<const int32_t>(seq_offsets), ptr<const int32_t>(suffix_rows),
                                    ptr<float>(out), num_seqs, num_q_heads,
                                    num_kv_heads, head_dim, num_prompts, prefix_capacity, suffix_capacity,
                                    scale, softcap, window};
        py::gil_scoped_release release;
        decode_attention_cpu(a, threads, isa);
      },
      "split decode attention on CPU (host pointers, fp32, contiguous; suffix_rows may be 0 = none; isa -1 = "
      "best; see attention_api.h)");
  m.def("decode_attention_cpu_isas", &cpu_isas, "bit i set: the CPU decode attention kernel i (0 SSE, 1 AVX2, "
        "2 AVX-512) runs on this CPU");
#ifdef FASTPASS_OPENMP
  m.attr("decode_attention_cpu_openmp") = true;
#else
  m.attr("decode_attention_cpu_openmp") = false;
#endif
}

}  // namespace fastpass
