"""Shared-prefix attention: the split (prefix once + suffix, merged by LSE) against plain attention
over each sequence's duplicated prompt + suffix, and every tier against the reference."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from fastpass import attention as A
from fastpass._backend import native, usable

TRITON_OK = usable("triton", "cpu") or torch.cuda.is_available()
needs_triton = pytest.mark.skipif(not TRITON_OK, reason="triton not installed")


# ----------------------------------------------------------------------------- cases
def decode_case(ks, prefix_lens, suffix_lens, hq=6, hkv=2, d=16, lp_max=None, s_max=None,
                dtype=torch.float32, device="cpu", seed=0):
    """Random decode inputs: prompt p has ks[p] sequences; lens are python lists."""
    g = torch.Generator().manual_seed(seed)
    n, p = sum(ks), len(ks)
    lp_max = lp_max or max(max(prefix_lens), 1)
    s_max = s_max or max(suffix_lens)
    r = lambda *shape: torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32, device=device)
    offsets = [0]
    for k in ks:
        offsets.append(offsets[-1] + k)
    return dict(q=r(n, hq, d), prefix_k=r(p, hkv, lp_max, d), prefix_v=r(p, hkv, lp_max, d),
                prefix_lens=i32(prefix_lens), suffix_k=r(n, hkv, s_max, d),
                suffix_v=r(n, hkv, s_max, d), suffix_lens=i32(suffix_lens),
                seq_offsets=i32(offsets))


def prefill_case(lens, hq=6, hkv=2, d=16, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    t = sum(lens)
    r = lambda *shape: torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32,
                      device=device)
    return dict(q=r(t, hq, d), k=r(t, hkv, d), v=r(t, hkv, d), cu_seqlens=cu)


def attend_plain(q, k, v, qpos, scale, softcap, window):
    """float64 attention of one query row [D] at position qpos over keys [L, D] at 0..L-1."""
    s = (k.double() @ q.double()) * scale
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    j = torch.arange(k.shape[0])
    visible = j <= qpos
    if window:
        visible &= j > qpos - window
    s = s.masked_fill(~visible, -math.inf)
    return torch.softmax(s, 0) @ v.double()


def decode_plain(c, scale, softcap=0.0, window=0):
    """Each sequence attends to its prompt's prefix COPIED in front of its suffix (what HF does)."""
    q = c["q"].cpu()
    n, hq, d = q.shape
    g = hq // c["prefix_k"].shape[1]
    out = torch.zeros(n, hq, d, dtype=torch.float64)
    offs = c["seq_offsets"].tolist()
    for p in range(len(offs) - 1):
        plen = int(c["prefix_lens"][p])
        for s in range(offs[p], offs[p + 1]):
            slen = int(c["suffix_lens"][s])
            k = torch.cat([c["prefix_k"][p, :, :plen], c["suffix_k"][s, :, :slen]], 1).cpu()
            v = torch.cat([c["prefix_v"][p, :, :plen], c["suffix_v"][s, :, :slen]], 1).cpu()
            for h in range(hq):
                out[s, h] = attend_plain(q[s, h], k[h // g], v[h // g], plen + slen - 1, scale,
                                         softcap, window)
    return out


def prefill_plain(c, scale, softcap=0.0, window=0):
    q, k, v = (c[x].cpu() for x in ("q", "k", "v"))
    t, hq, d = q.shape
    g = hq // k.shape[1]
    out = torch.zeros(t, hq, d, dtype=torch.float64)
    cu = c["cu_seqlens"].tolist()
    for b in range(len(cu) - 1):
        for i in range(cu[b], cu[b + 1]):
            for h in range(hq):
                out[i, h] = attend_plain(q[i, h], k[cu[b]:cu[b + 1], h // g],
                                         v[cu[b]:cu[b + 1], h // g], i - cu[b], scale, softcap, window)
    return out


# (ks, prefix_lens, suffix_lens, hq, hkv, d): GQA, MHA, MQA, odd head dims, ragged K per prompt,
# empty prefix, full-length suffixes.
DECODE_SHAPES = [
    ([3, 2], [37, 20], [1, 5, 9, 3, 2], 6, 2, 16),
    ([4], [64], [7, 7, 7, 7], 4, 4, 32),
    ([1, 5, 2], [11, 1, 30], [2, 1, 4, 6, 3, 9, 5, 1], 8, 1, 24),
    ([2, 3], [0, 13], [3, 1, 2, 4, 5], 9, 3, 20),
]
OPTIONS = [(0.0, 0), (0.0, 6), (5.0, 0), (3.0, 24), (0.0, 1)]  # (softcap, sliding_window)


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("shape", DECODE_SHAPES)
@pytest.mark.parametrize("softcap,window", OPTIONS)
def test_decode_split_equals_plain_attention_over_duplicated_prompt(shape, softcap, window):
    ks, plens, slens, hq, hkv, d = shape
    c = decode_case(ks, plens, slens, hq, hkv, d, seed=len(ks) + window)
    scale = d ** -0.5
    got = A.decode_attention(**c, scale=scale, softcap=softcap, sliding_window=window,
                             backend="reference")
    assert got.dtype == torch.float32 and got.shape == c["q"].shape
    torch.testing.assert_close(got.double(), decode_plain(c, scale, softcap, window),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lens,hq,hkv,d", [([5, 12, 1, 30], 6, 2, 16), ([33], 4, 4, 24),
                                           ([2, 7], 8, 1, 32)])
@pytest.mark.parametrize("softcap,window", OPTIONS)
def test_prefill_reference_equals_plain_causal_attention(lens, hq, hkv, d, softcap, window):
    c = prefill_case(lens, hq, hkv, d, seed=sum(lens))
    got = A.prefill_attention(**c, scale=0.3, softcap=softcap, sliding_window=window,
                              backend="reference")
    torch.testing.assert_close(got.double(), prefill_plain(c, 0.3, softcap, window),
                               atol=1e-5, rtol=1e-5)


def test_prefill_reference_query_chunking_changes_nothing(monkeypatch):
    # the explicit-softmax path (taken with softcap) chunks queries to bound memory
    c = prefill_case([40, 9], seed=3)
    kw = dict(scale=0.25, softcap=20.0, sliding_window=10, backend="reference")
    whole = A.prefill_attention(**c, **kw)
    monkeypatch.setattr(A, "_PREFILL_SCORE_BUDGET", 6 * 2 * 40 * 7)  # 7-query chunks
    chunked = A.prefill_attention(**c, **kw)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)


def test_merge_of_partial_states_equals_attention_over_union():
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(5, 8, generator=g), torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
    full = torch.softmax(q @ k.T, -1) @ v
    parts = [(torch.softmax(q @ k[a:b].T, -1) @ v[a:b], torch.logsumexp(q @ k[a:b].T, -1))
             for a, b in ((0, 11), (11, 30))]
    out, lse = A.merge_attention_states(*parts[0], *parts[1])
    torch.testing.assert_close(out, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lse, torch.logsumexp(q @ k.T, -1), atol=1e-6, rtol=1e-6)
    # an empty part (lse -inf) is ignored; two empty parts give zeros, never NaN
    empty = (torch.zeros_like(out), torch.full_like(lse, -math.inf))
    torch.testing.assert_close(A.merge_attention_states(*empty, out, lse)[0], out)
    both = A.merge_attention_states(*empty, *empty)
    assert torch.equal(both[0], torch.zeros_like(out)) and torch.isneginf(both[1]).all()


def test_decode_row_independent_of_batch_composition():
    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2], seed=7)
    full = A.decode_attention(**c, scale=0.25, backend="reference")
    # prompt 1 alone, with its two sequences
    alone = dict(q=c["q"][3:], prefix_k=c["prefix_k"][1:], prefix_v=c["prefix_v"][1:],
                 prefix_lens=c["prefix_lens"][1:], suffix_k=c["suffix_k"][3:],
                 suffix_v=c["suffix_v"][3:], suffix_lens=c["suffix_lens"][3:],
                 seq_offsets=torch.tensor([0, 2], dtype=torch.int32))
    torch.testing.assert_close(A.decode_attention(**alone, scale=0.25, backend="reference"),
                               full[3:], atol=1e-6, rtol=1e-6)


def test_decode_reference_bf16_close_to_fp32():
    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2], seed=2)
    ref = A.decode_attention(**c, scale=0.25, backend="reference")
    c16 = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in c.items()}
    got = A.decode_attention(**c16, scale=0.25, backend="reference")
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, atol=3e-2, rtol=3e-2)


# ----------------------------------------------------------------------------- triton tier
TRITON_DECODE = [DECODE_SHAPES[0], DECODE_SHAPES[2], DECODE_SHAPES[3]]


@needs_triton
@pytest.mark.parametrize("shape", TRITON_DECODE)
@pytest.mark.parametrize("softcap,window", [(0.0, 0), (3.0, 24), (0.0, 6)])
def test_decode_triton_matches_reference(shape, softcap, window):
    ks, plens, slens, hq, hkv, d = shape
    c = decode_case(ks, plens, slens, hq, hkv, d, seed=11)
    ref = A.decode_attention(**c, scale=d ** -0.5, softcap=softcap, sliding_window=window,
                             backend="reference")
    got = A.decode_attention(**c, scale=d ** -0.5, softcap=softcap, sliding_window=window,
                             backend="triton")
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


@needs_triton
def test_decode_triton_parts_match_reference_parts():
    from fastpass.triton_kernels import attention as tk

    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2], seed=5)
    args = (c["q"], c["prefix_k"], c["prefix_v"], c["prefix_lens"], c["suffix_lens"],
            c["seq_offsets"], 0.25, 0.0, 30)
    ref_o, ref_l = A.decode_prefix_reference(*args)
    opart, lpart = tk.decode_prefix_partials(*args)
    assert opart.dtype == torch.float32 and lpart.dtype == torch.float32
    zero = (torch.zeros_like(ref_o), torch.full_like(ref_l, -math.inf))
    o, lse = zero
    for s in range(opart.shape[0]):
        o, lse = A.merge_attention_states(o, lse, opart[s], lpart[s])
    torch.testing.assert_close(o, ref_o, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(lse, ref_l, atol=2e-6, rtol=1e-5)
    so, sl = tk.decode_suffix(c["q"], c["suffix_k"], c["suffix_v"], c["suffix_lens"], 0.25, 0.0, 30)
    ref_so, ref_sl = A.decode_suffix_reference(c["q"], c["suffix_k"], c["suffix_v"],
                                               c["suffix_lens"], 0.25, 0.0, 30)
    torch.testing.assert_close(so, ref_so, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(sl, ref_sl, atol=2e-6, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("window", [0, 20])
def test_decode_triton_prefix_split_over_key_ranges(monkeypatch, window):
    """The GPU splits long prefixes over key ranges; force 3 splits (one of them empty for the
    shorter prompt) and check the LSE merge of the partials."""
    from fastpass.triton_kernels import attention as tk

    monkeypatch.setattr(tk, "_num_splits", lambda *a: 3)
    c = decode_case([3, 2], [150, 20], [1, 5, 9, 3, 2], seed=6)
    assert tk._prefix_plan(c["q"], c["prefix_k"], c["seq_offsets"], None, 1.0)[1:] == (3, 64)
    ref = A.decode_attention(**c, scale=0.25, sliding_window=window, backend="reference")
    got = A.decode_attention(**c, scale=0.25, sliding_window=window, backend="triton")
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


@needs_triton
def test_decode_triton_99_sequences_ragged():
    ks = [40, 1, 58]
    g = torch.Generator().manual_seed(12)
    slens = torch.randint(1, 17, (99,), generator=g).tolist()
    c = decode_case(ks, [70, 5, 33], slens, hq=2, hkv=1, d=16, seed=12)
    ref = A.decode_attention(**c, scale=0.25, softcap=10.0, backend="reference")
    got = A.decode_attention(**c, scale=0.25, softcap=10.0, backend="triton")
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(ref.double(), decode_plain(c, 0.25, 10.0), atol=1e-5, rtol=1e-5)


@needs_triton
def test_decode_triton_without_prefix_storage():
    c = decode_case([3, 2], [0, 0], [1, 5, 9, 3, 2], lp_max=1, seed=8)
    c["prefix_k"], c["prefix_v"] = c["prefix_k"][:, :, :0], c["prefix_v"][:, :, :0]
    ref = A.decode_attention(**c, scale=0.25, backend="reference")
    got = A.decode_attention(**c, scale=0.25, backend="triton")
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


@needs_triton
def test_decode_triton_odd_head_dim_and_strided_query():
    # q is a strided view (as sliced from a fused qkv projection); head dim 20 is not a power of 2
    c = decode_case([2, 1], [9, 40], [3, 1, 2], hq=4, hkv=2, d=20, seed=9)
    c["q"] = torch.randn(3, 4, 60)[:, :, 20:40]
    ref = A.decode_attention(**c, scale=0.2, backend="reference")
    got = A.decode_attention(**c, scale=0.2, backend="triton", max_seqs_per_prompt=2)
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("lens,hq,hkv,d", [([5, 40, 1, 20], 6, 2, 16), ([3, 18], 4, 1, 20)])
@pytest.mark.parametrize("softcap,window", [(0.0, 0), (4.0, 9)])
def test_prefill_triton_matches_reference(lens, hq, hkv, d, softcap, window):
    c = prefill_case(lens, hq, hkv, d, seed=4)
    ref = A.prefill_attention(**c, scale=0.3, softcap=softcap, sliding_window=window,
                              backend="reference")
    got = A.prefill_attention(**c, scale=0.3, softcap=softcap, sliding_window=window,
                              backend="triton")
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


def test_cpu_default_tiers(monkeypatch):
    """On CPU: decode runs the C++ tier (reference without the build), prefill the reference, even
    under TRITON_INTERPRET=1."""
    calls = []
    monkeypatch.setattr(A, "decode_attention_cpu", lambda *a: calls.append("decode cpu") or a[0])
    monkeypatch.setattr(A, "decode_attention_reference", lambda *a: calls.append("decode") or a[0])
    monkeypatch.setattr(A, "prefill_attention_reference", lambda *a: calls.append("prefill") or a[0])
    A.decode_attention(**decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2]), scale=0.25)
    A.prefill_attention(**prefill_case([4, 3]), scale=0.25)
    assert calls == ["decode cpu" if CPU_TIER else "decode", "prefill"]


# ----------------------------------------------------------------------------- C++ tier
CPU_TIER = usable("cpu", "cpu")
needs_cpu_tier = pytest.mark.skipif(not CPU_TIER, reason="fastpass._C with decode_attention_cpu is not built")
# the engine's shapes (SmolLM2: 9 q / 3 kv heads, d 64; Qwen2.5: 12/2, d 128), head sizes that are
# not a multiple of 64, a prompt with no sequences, more rows than one 16-row block
CPU_SHAPES = DECODE_SHAPES + [
    ([16], [256], [17] * 16, 9, 3, 64),
    ([5, 0, 6], [70, 3, 129], [4, 1, 8, 2, 2, 3, 7, 5, 1, 6, 2], 12, 2, 128),
    ([7, 2], [33, 65], [1, 2, 3, 4, 5, 6, 7, 8, 9], 10, 5, 80),
]


CPU_KERNELS = A.cpu_kernels() if CPU_TIER else []


@needs_cpu_tier
@pytest.mark.parametrize("shape", CPU_SHAPES)
@pytest.mark.parametrize("softcap,window", OPTIONS)
def test_decode_cpu_tier_matches_reference(shape, softcap, window):
    ks, plens, slens, hq, hkv, d = shape
    c = decode_case(ks, plens, slens, hq, hkv, d, seed=7 + d)
    kw = dict(scale=d ** -0.5, softcap=softcap, sliding_window=window)
    ref = A.decode_attention(**c, **kw, backend="reference")
    got = A.decode_attention(**c, **kw, backend="cpu")
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)
    for kernel in CPU_KERNELS:  # every vector width this CPU runs, not only the one the tier picks
        got = A.decode_attention_cpu(**c, **kw, kernel=kernel)
        torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5, msg=lambda m: f"kernel {kernel}: {m}")


@needs_cpu_tier
def test_cpu_kernels_include_the_baseline_and_refuse_what_the_cpu_lacks():
    assert CPU_KERNELS[0] == "sse"
    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2], seed=2)
    for kernel in set(A.CPU_KERNELS) - set(CPU_KERNELS):
        with pytest.raises(ValueError, match="lacks the requested kernel"):
            A.decode_attention_cpu(**c, scale=0.25, kernel=kernel)


@needs_cpu_tier
@pytest.mark.parametrize("dtype,atol,rtol", [(torch.bfloat16, 1e-2, 1e-2), (torch.float16, 2e-3, 2e-3)])
def test_decode_cpu_tier_half_inputs(dtype, atol, rtol):
    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2], dtype=dtype, seed=3)
    ref = A.decode_attention(**c, scale=0.25, backend="reference")
    got = A.decode_attention(**c, scale=0.25, backend="cpu")
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), ref.float(), atol=atol, rtol=rtol)


@needs_cpu_tier
def test_decode_cpu_tier_equals_plain_attention_over_duplicated_prompt():
    c = decode_case([16], [256], [17] * 16, 9, 3, 64, seed=1)
    got = A.decode_attention(**c, scale=0.125, backend="cpu")
    torch.testing.assert_close(got.double(), decode_plain(c, 0.125), atol=1e-5, rtol=1e-5)


@needs_cpu_tier
def test_decode_cpu_tier_threads_give_the_same_bits():
    # large enough for the tier to split its (prompt, kv head) units over 2 threads (>= 16 MFLOP)
    c = decode_case([16, 16, 16], [300, 200, 250], [40 + i for i in range(48)], 9, 3, 64, seed=4)
    ref = A.decode_attention(**c, scale=0.125, backend="reference")
    n = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(A.decode_attention(**c, scale=0.125, backend="cpu"))
    finally:
        torch.set_num_threads(n)
    torch.testing.assert_close(outs[1], ref, atol=2e-6, rtol=1e-5)
    assert torch.equal(outs[0], outs[1])  # each unit runs whole on one thread


@needs_cpu_tier
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)")
@pytest.mark.parametrize("first", ["torch", "fastpass._C"])
def test_cpu_tier_shares_torchs_openmp_runtime(first):
    # the tier's threads are torch's OpenMP pool only while one libgomp is loaded, whichever
    # module is imported first
    if not native().decode_attention_cpu_openmp:
        pytest.skip("built without OpenMP (not GCC): the tier uses plain threads")
    second = "fastpass._C" if first == "torch" else "torch"
    code = (f"import {first}, {second}\n"
            "print(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert len(eval(out)) == 1, out


def test_cpu_tier_refuses_cuda_tensors_by_name():
    from fastpass._backend import BackendUnavailable

    c = decode_case([1], [3], [1])
    if torch.cuda.is_available():
        c = {k: v.cuda() for k, v in c.items()}
        with pytest.raises(BackendUnavailable, match="CPU tensors"):
            A.decode_attention(**c, scale=0.25, backend="cpu")
    with pytest.raises(BackendUnavailable, match="prefill_attention has no 'cpu' tier"):
        A.prefill_attention(**prefill_case([2]), scale=0.25, backend="cpu")


# ----------------------------------------------------------------------------- bad input
def _bad(**change):
    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2])
    c.update(change)
    return c


@pytest.mark.parametrize("change,exc,match", [
    (dict(q=torch.randn(5, 5, 16)), ValueError, "multiple of kv heads"),
    (dict(q=torch.randn(5, 6, 16).double()), TypeError, "float32, bfloat16 or float16"),
    (dict(suffix_k=torch.randn(5, 2, 9, 16).bfloat16()), ValueError, "convert it"),
    (dict(suffix_v=torch.randn(4, 2, 9, 16)), ValueError, "suffix_k/v"),
    (dict(prefix_lens=torch.tensor([37, 20.0])), TypeError, "int32"),
    (dict(seq_offsets=torch.tensor([0, 3], dtype=torch.int32)), ValueError, "3 entries"),
    (dict(seq_offsets=torch.tensor([0, 4, 3], dtype=torch.int32)), ValueError, "rise from 0"),
    (dict(prefix_lens=torch.tensor([38, 20], dtype=torch.int32)), ValueError, "prefix_lens"),
    (dict(suffix_lens=torch.tensor([1, 5, 10, 3, 2], dtype=torch.int32)), ValueError, "suffix_lens"),
])
def test_decode_bad_input_gives_one_line_error(change, exc, match):
    with pytest.raises(exc, match=match):
        A.decode_attention(**_bad(**change), scale=0.25)


@pytest.mark.parametrize("kw,match", [(dict(scale=0.0), "scale"), (dict(scale=0.2, softcap=-1.0), "softcap"),
                                      (dict(scale=0.2, sliding_window=2.5), "sliding_window")])
def test_bad_options_give_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        A.decode_attention(**_bad(), **kw)
    with pytest.raises(ValueError, match=match):
        A.prefill_attention(**prefill_case([4, 3]), **kw)


def test_prefill_bad_cu_seqlens():
    c = prefill_case([4, 3])
    with pytest.raises(ValueError, match="rise from 0 to T=7"):
        A.prefill_attention(c["q"], c["k"], c["v"], torch.tensor([0, 4, 6], dtype=torch.int32), 0.2)
    with pytest.raises(TypeError, match="int32"):
        A.prefill_attention(c["q"], c["k"], c["v"], torch.tensor([0.0, 4, 7]), 0.2)
    with pytest.raises(ValueError, match="k and v"):
        A.prefill_attention(c["q"], c["k"][:5], c["v"][:5], c["cu_seqlens"], 0.2)


@needs_cpu_tier
def test_decode_cpu_tier_propagates_nan_like_the_reference():
    c = decode_case([3, 2], [37, 20], [1, 5, 9, 3, 2], seed=4)
    c["q"][1, 2, 0] = float("nan")  # one query head of one sequence
    c["suffix_k"][4, 1, 0, 3] = float("nan")  # a key seen by sequence 4's heads of kv head 1
    ref = A.decode_attention(**c, scale=0.25, backend="reference")
    got = A.decode_attention(**c, scale=0.25, backend="cpu")
    assert torch.equal(torch.isnan(got).any(-1), torch.isnan(ref).any(-1))
    assert torch.isnan(got[1, 2]).all() and torch.isnan(got[4, 3:]).all() and not torch.isnan(got[0]).any()
    ok = ~torch.isnan(ref).any(-1)
    torch.testing.assert_close(got[ok], ref[ok], atol=2e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- suffix_rows
def _scattered_suffixes(c, storage_rows, seed):
    """The case's suffixes moved to random rows of a larger storage (continuous batching keeps
    every sample's suffix where it was written while the batch order changes)."""
    n = c["q"].shape[0]
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(storage_rows, generator=g)[:n]
    out = dict(c)
    for name in ("suffix_k", "suffix_v"):
        big = torch.randn(storage_rows, *c[name].shape[1:], generator=g).to(c[name])
        big[rows] = c[name]
        out[name] = big
    out["suffix_rows"] = rows.to(torch.int32)
    return out


SUFFIX_ROW_TIERS = ["reference", pytest.param("cpu", marks=needs_cpu_tier),
                    pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("tier", SUFFIX_ROW_TIERS)
@pytest.mark.parametrize("shape", DECODE_SHAPES)
@pytest.mark.parametrize("softcap,window", [(0.0, 0), (3.0, 24), (0.0, 6)])
def test_decode_suffix_rows_equal_contiguous_suffixes(tier, shape, softcap, window):
    ks, plens, slens, hq, hkv, d = shape
    c = decode_case(ks, plens, slens, hq, hkv, d, seed=7 + len(ks))
    scattered = _scattered_suffixes(c, sum(ks) + 5, seed=len(ks))
    scale = d ** -0.5
    want = A.decode_attention(**c, scale=scale, softcap=softcap, sliding_window=window, backend="reference")
    got = A.decode_attention(**scattered, scale=scale, softcap=softcap, sliding_window=window, backend=tier)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_decode_suffix_rows_out_of_range_is_one_line_error():
    c = _scattered_suffixes(decode_case([2, 1], [5, 3], [1, 2, 3]), 4, seed=0)
    c["suffix_rows"] = torch.tensor([0, 1, 4], dtype=torch.int32)
    with pytest.raises(ValueError, match="suffix_rows must index suffix_k's 4 rows"):
        A.decode_attention(**c, scale=0.25)


@needs_cpu_tier
def test_decode_cpu_tier_large_call_split_across_threads_matches_reference():
    # the P7 shape (4 prompts x 16 samples, SmolLM2 heads): enough work per call for the tier to
    # spread its (prompt, kv head) units over every torch thread
    slens = [1 + (37 * i) % 200 for i in range(64)]
    c = decode_case([16] * 4, [130, 90, 150, 111], slens, 9, 3, 64, seed=11)
    ref = A.decode_attention(**c, scale=0.125, backend="reference")
    for kernel in CPU_KERNELS:
        got = A.decode_attention_cpu(**c, scale=0.125, kernel=kernel)
        torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5, msg=lambda m: f"kernel {kernel}: {m}")
