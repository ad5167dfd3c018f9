#include <string>
#include <vector>

#include "bind_util.h"
#include "fastpass/regex_api.h"

namespace py = pybind11;

namespace fastpass {

namespace {

// Arguments arrive as integers (tensor.data_ptr()) in one dict, so the Python side stays the
// single place that knows the tensor layout.
RegexBatchArgs batch_args(const py::dict& d) {
  auto p = [&](const char* k) -> std::uintptr_t { return d[k].cast<std::uintptr_t>(); };
  auto i = [&](const char* k) -> int64_t { return d[k].cast<int64_t>(); };
  RegexBatchArgs a{};
  a.code = ptr<const int32_t>(p("code"));
  a.batch = i("batch");
  a.text = ptr<const uint8_t>(p("text"));
  a.text_offs = ptr<const int64_t>(p("text_offs"));
  a.ids = ptr<const int64_t>(p("ids"));
  a.ids_stride = i("ids_stride");
  a.ids_lens = ptr<const int64_t>(p("ids_lens"));
  a.tok_data = ptr<const uint8_t>(p("tok_data"));
  a.tok_offs = ptr<const int64_t>(p("tok_offs"));
  a.vocab = i("vocab");
  a.occurrence_last = (int32_t)i("occurrence_last");
  a.found = ptr<uint8_t>(p("found"));
  a.cp_slots = ptr<int64_t>(p("cp_slots"));
  a.byte_slots = ptr<int64_t>(p("byte_slots"));
  a.grade = ptr<int8_t>(p("grade"));
  a.grade_group = (int32_t)i("grade_group");
  a.grade_norm = (int32_t)i("grade_norm");
  a.gold = ptr<const uint8_t>(p("gold"));
  a.gold_offs = ptr<const int64_t>(p("gold_offs"));
  a.scratch = ptr<int32_t>(p("scratch"));
  a.scratch_words = i("scratch_words");
  return a;
}

// Python str objects read in place: no UTF-8 encoding, code points at their stored width.
struct StrView {
  py::list keep;
  std::vector<const void*> data;
  std::vector<int32_t> kind;
  std::vector<int64_t> len;
};

// Returns false (nothing filled) when an item is not a str and `strict` is off.
bool str_view(const py::object& seq, StrView& v, bool strict) {
  v.keep = py::list(seq);
  const py::list& items = v.keep;
  const size_t n = items.size();
  v.data.resize(n); v.kind.resize(n); v.len.resize(n);
  for (size_t i = 0; i < n; ++i) {
    PyObject* s = items[i].ptr();
    if (!PyUnicode_Check(s)) {
      if (!strict) return false;
      throw py::type_error(std::string("items must be str or a token-id tensor, got ") + Py_TYPE(s)->tp_name);
    }
    v.data[i] = PyUnicode_DATA(s);
    v.kind[i] = (int32_t)PyUnicode_KIND(s);
    v.len[i] = (int64_t)PyUnicode_GET_LENGTH(s);
  }
  return true;
}

}  // namespace

void bind_regex(py::module_& m) {
  m.def("regex_state_words", [](std::uintptr_t code) { return regex_state_words(ptr<const int32_t>(code)); },
        "int32 words of one streaming row state for a program (host pointer)");
  m.def("regex_scratch_words", [](std::uintptr_t code) { return regex_scratch_words(ptr<const int32_t>(code)); },
        "int32 words of per-item batch scratch for a program (host pointer)");
  m.def("regex_batch_cpu", [](const py::dict& d, const py::object& texts, const py::object& golds,
                              int threads) {
        RegexBatchArgs a = batch_args(d);
        StrView items, keys;
        if (!texts.is_none()) {
          str_view(texts, items, true);
          a.str_data = items.data.data(); a.str_kind = items.kind.data(); a.str_len = items.len.data();
        }
        if (!golds.is_none()) {
          if (!str_view(golds, keys, false)) return false;  // the caller converts the golds
          a.gold_str_data = keys.data.data(); a.gold_str_kind = keys.kind.data();
          a.gold_str_len = keys.len.data();
        }
        py::gil_scoped_release release;  // the lists keep the str objects alive
        regex_batch_cpu(a, threads);
        return true;
      }, "batch search (+ optional grading) over str items read in place, UTF-8 bytes or token "
         "ids (host pointers); returns False, having done nothing, when a gold key is not a str");
  m.def("regex_batch_cuda", [](const py::dict& d, int32_t code_words, std::uintptr_t stream) {
        require_cuda();
        const RegexBatchArgs a = batch_args(d);
#ifdef FASTPASS_WITH_CUDA
        check_cuda(regex_batch_cuda(a, code_words, ptr<void>(stream)), "regex_batch_cuda");
#else
        (void)a; (void)code_words; (void)stream;
#endif
      }, "batch search on the GPU (device pointers, stream handle)");
  m.def("regex_stream_reset_cpu", [](std::uintptr_t code, std::uintptr_t state, int64_t words,
                                     std::uintptr_t rows, int64_t n) {
        regex_stream_reset_cpu(ptr<const int32_t>(code), ptr<int32_t>(state), words,
                               ptr<const uint8_t>(rows), n);
      });
  m.def("regex_stream_step_cpu", [](std::uintptr_t code, std::uintptr_t state, int64_t words, int64_t n,
                                    std::uintptr_t ids, std::uintptr_t data, std::uintptr_t offs,
                                    int64_t vocab, std::uintptr_t final_out) {
        py::gil_scoped_release release;
        regex_stream_step_cpu(ptr<const int32_t>(code), ptr<int32_t>(state), words, n,
                              ptr<const int64_t>(ids), ptr<const uint8_t>(data),
                              ptr<const int64_t>(offs), vocab, ptr<uint8_t>(final_out));
      });
  m.def("regex_stream_finish_cpu", [](std::uintptr_t code, std::uintptr_t state, int64_t words, int64_t n,
                                      std::uintptr_t found, std::uintptr_t slots) {
        regex_stream_finish_cpu(ptr<const int32_t>(code), ptr<int32_t>(state), words, n,
                                ptr<uint8_t>(found), ptr<int64_t>(slots));
      });
  m.def("regex_stream_reset_cuda", [](std::uintptr_t code, std::uintptr_t state, int64_t words,
                                      std::uintptr_t rows, int64_t n, std::uintptr_t stream) {
        require_cuda();
#ifdef FASTPASS_WITH_CUDA
        check_cuda(regex_stream_reset_cuda(ptr<const int32_t>(code), ptr<int32_t>(state), words,
                                           ptr<const uint8_t>(rows), n, ptr<void>(stream)),
                   "regex_stream_reset_cuda");
#else
        (void)code; (void)state; (void)words; (void)rows; (void)n; (void)stream;
#endif
      });
  m.def("regex_stream_step_cuda", [](std::uintptr_t code, int32_t code_words, std::uintptr_t state,
                                     int64_t words, int64_t n, std::uintptr_t ids, std::uintptr_t data,
                                     std::uintptr_t offs, int64_t vocab, std::uintptr_t final_out,
                                     std::uintptr_t stream) {
        require_cuda();
#ifdef FASTPASS_WITH_CUDA
        check_cuda(regex_stream_step_cuda(ptr<const int32_t>(code), code_words, ptr<int32_t>(state),
                                          words, n, ptr<const int64_t>(ids), ptr<const uint8_t>(data),
                                          ptr<const int64_t>(offs), vocab, ptr<uint8_t>(final_out),
                                          ptr<void>(stream)),
                   "regex_stream_step_cuda");
#else
        (void)code; (void)code_words; (void)state; (void)words; (void)n; (void)ids; (void)data;
        (void)offs; (void)vocab; (void)final_out; (void)stream;
#endif
      });
  m.def("regex_stream_finish_cuda", [](std::uintptr_t code, int32_t code_words, std::uintptr_t state,
                                       int64_t words, int64_t n, std::uintptr_t found,
                                       std::uintptr_t slots, std::uintptr_t stream) {
        require_cuda();
#ifdef FASTPASS_WITH_CUDA
        check_cuda(regex_stream_finish_cuda(ptr<const int32_t>(code), code_words, ptr<int32_t>(state),
                                            words, n, ptr<uint8_t>(found), ptr<int64_t>(slots),
                                            ptr<void>(stream)),
                   "regex_stream_finish_cuda");
#else
        (void)code; (void)code_words; (void)state; (void)words; (void)n; (void)found; (void)slots;
        (void)stream;
#endif
      });
}

}  // namespace fastpass
