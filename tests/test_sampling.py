"""fastpass.sampling on CPU: keyed randomness, exact filters, chi-square fit, batch independence,
greedy, the Triton kernels under TRITON_INTERPRET=1 against the reference, bad arguments.

Statistical thresholds: chi-square goodness of fit fails below p = 1e-4 (fixed seeds, so each
test is deterministic; a correct sampler fails one config with probability 1e-4)."""
import importlib.util
import math

import numpy as np
import pytest
import torch
from scipy import stats
from transformers.generation.logits_process import (MinPLogitsWarper, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from fastpass import sampling as S
from fastpass._backend import usable

P_MIN = 1e-4
needs_triton = pytest.mark.skipif(not usable("triton", "cpu"),
                                  reason="Triton interpreter unavailable (needs triton + TRITON_INTERPRET=1)")


def hf_filtered(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0):
    """Hugging Face generate's warpers, in its order: the independent oracle for the filters."""
    x = logits.float()
    if temperature != 1.0:
        x = TemperatureLogitsWarper(temperature)(None, x)
    if top_k:
        x = TopKLogitsWarper(top_k)(None, x)
    if top_p < 1.0:
        x = TopPLogitsWarper(top_p)(None, x)
    if min_p > 0.0:
        x = MinPLogitsWarper(min_p)(None, x)
    return x


def expected_probs(logits_row, **kw):
    x = hf_filtered(logits_row[None], **kw)[0].double()
    return torch.softmax(x, dim=-1).numpy()


def chi_square_p(counts, probs, min_expected=5.0):
    """p-value of counts against probs over the tokens with nonzero probability; bins with a
    small expectation are merged into one."""
    keep = probs > 0
    counts, probs = counts[keep], probs[keep]
    n = counts.sum()
    exp = probs * n
    big = exp >= min_expected
    obs_b, exp_b = list(counts[big]), list(exp[big])
    if (~big).any():
        obs_b.append(counts[~big].sum())
        exp_b.append(exp[~big].sum())
    obs_b, exp_b = np.array(obs_b, dtype=float), np.array(exp_b)
    exp_b *= obs_b.sum() / exp_b.sum()
    return stats.chisquare(obs_b, exp_b).pvalue


# ----------------------------------------------------------------------------- keyed randomness
def test_keyed_uniforms_are_uniform_and_independent():
    n = 100_000
    stream = torch.arange(n)
    u1, u2 = S.keyed_uniforms(1234, stream, 0, 7, torch.tensor([[0], [1]]))
    for u in (u1, u2):
        assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
        counts = np.bincount((u.numpy() * 100).astype(int), minlength=100)
        assert stats.chisquare(counts).pvalue > P_MIN
        assert stats.kstest(u.numpy(), "uniform").pvalue > P_MIN
    # the two draws of a row, and consecutive steps / sample ids, are uncorrelated
    u_next_step = S.keyed_uniforms(1234, stream, 0, 8, 0)
    u_next_sample = S.keyed_uniforms(1234, stream, 1, 7, 0)
    for other in (u2, u_next_step, u_next_sample):
        r = np.corrcoef(u1.numpy(), other.numpy())[0, 1]
        assert abs(r) < 5 / math.sqrt(n)          # 5 sigma under independence


def test_keyed_uniforms_pure_function_of_key():
    a = S.keyed_uniforms(5, torch.tensor([3, 9, 2**40]), torch.tensor([0, 4, 1]), 11, 0)
    b = S.keyed_uniforms(5, torch.tensor([2**40, 3]), torch.tensor([1, 0]), 11, 0)
    assert a[2] == b[0] and a[0] == b[1]
    assert not torch.equal(S.keyed_uniforms(-1, 0, 0, 0, 0), S.keyed_uniforms(2**63 - 1, 0, 0, 0, 0))


@needs_triton
def test_triton_hash_bit_identical_to_torch():
    from fastpass.triton_kernels import sampling as K

    g = torch.Generator().manual_seed(0)
    n = 1000
    keys = [torch.randint(-2**62, 2**62, (n,), generator=g), torch.randint(0, 2**40, (n,), generator=g),
            torch.randint(0, 300, (n,), generator=g), torch.randint(0, 5000, (n,), generator=g)]
    for counter in (0, 1):
        out = torch.empty(n)
        K._uniforms_kernel[(1,)](out, *keys, n, counter, BLOCK=1024)
        assert torch.equal(out, S.keyed_uniforms(*keys, counter))


# ----------------------------------------------------------------------------- exact filters
FILTERS = [
    dict(temperature=0.7, top_k=10),
    dict(top_p=0.9),
    dict(temperature=1.3, top_p=0.5),
    dict(min_p=0.05),
    dict(temperature=0.5, min_p=0.2),
    dict(top_k=40, top_p=0.8, min_p=0.02),
    dict(temperature=2.0, top_k=3, top_p=0.95),
]


@pytest.mark.parametrize("kw", FILTERS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_filter_cutoffs_keep_exactly_hf_set(kw, dtype):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(64, 1000, generator=g) * 3).to(dtype)
    inv_t = S._inv_temperature(kw.get("temperature", 1.0), 64, logits.device)
    cut = S.filter_cutoffs(logits, inv_t, kw.get("top_k", 0), kw.get("top_p", 1.0), kw.get("min_p", 0.0))
    ours = logits.float() * inv_t >= cut[:, None]
    hf = torch.isfinite(hf_filtered(logits, **kw))
    if dtype == torch.bfloat16:   # bf16 logits have ties; HF drops part of a tie at the top-p edge
        assert (ours | ~hf).all() and (ours != hf).float().mean() < 0.01
    else:
        assert torch.equal(ours, hf)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top_p_candidate_path_equals_full_sort(dtype):
    """CPU top-p takes the top 256 values (then 4096, then a full sort, per row, when those hold
    less than top_p): the cutoff must equal the full-sort path's, flat and peaked rows mixed."""
    g = torch.Generator().manual_seed(8)
    scale = torch.tensor([0.2, 1.0, 3.0, 8.0]).repeat_interleave(8)[:, None]
    logits = (torch.randn(32, 5000, generator=g) * scale).to(dtype)
    inv = torch.full((32, 1), 1 / 0.8)
    for top_k in (0, 20, 600):
        for top_p in (0.3, 0.9, 0.99):
            want = S._top_p_cutoff_sorted(logits, inv, top_k, top_p)
            got = S._top_p_cutoff_candidates(logits, inv, top_k, top_p, n_cand=16)
            assert torch.equal(got, want), (top_k, top_p)


@needs_triton
def test_top_p_threshold_search_kernel_equals_full_sort():
    """The GPU top-k / top-p path (a 16-ary search over order keys, Triton) under the interpreter."""
    g = torch.Generator().manual_seed(9)
    scale = torch.tensor([0.2, 3.0, 8.0])[:, None]
    for dtype in (torch.float32, torch.bfloat16):
        logits = (torch.randn(3, 2500, generator=g) * scale).to(dtype)
        logits[0, 7] = float("nan")                         # NaN counts as -inf
        clean = logits.nan_to_num(nan=float("-inf"))
        inv = torch.full((3, 1), 1 / 0.7)
        for top_k in (1, 40, 2499):
            want = clean.topk(top_k, dim=-1).values[:, -1].float() * inv[:, 0]
            assert torch.equal(S._top_k_cutoff_triton(clean, inv, top_k), want), (dtype, top_k)
        for top_k, top_p in ((0, 0.9), (40, 0.5), (0, 0.999)):
            want = S._top_p_cutoff_sorted(clean, inv, top_k, top_p)
            given = clean if top_k else logits              # filter_cutoffs gives it `clean`
            assert torch.equal(S._top_p_cutoff_triton(given, inv, top_k, top_p), want), (dtype, top_k, top_p)


# ----------------------------------------------------------------------------- distribution
CHI_CASES = [dict(), dict(temperature=0.6), dict(temperature=1.7)] + FILTERS


@pytest.mark.parametrize("kw", CHI_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_chi_square_reference_multi_tile(kw):
    """60k draws of one V=111 row split into 7 tiles of 16 (the last partial) vs HF's softmax."""
    g = torch.Generator().manual_seed(11)
    row = torch.randn(111, generator=g) * 2
    n = 60_000
    logits = row.expand(n, -1)
    inv_t = S._inv_temperature(kw.get("temperature", 1.0), n, logits.device)
    cut = S.filter_cutoffs(logits, inv_t, kw.get("top_k", 0), kw.get("top_p", 1.0), kw.get("min_p", 0.0))
    tok = S.sample_reference(logits, inv_t, cut, 42, 0, torch.arange(n), None, tile=16)
    counts = np.bincount(tok.numpy(), minlength=111)
    probs = expected_probs(row, **kw)
    assert counts[probs == 0].sum() == 0, "a filtered-out token was drawn"
    assert chi_square_p(counts, probs) > P_MIN


def test_chi_square_public_op_default_tile():
    """V=5000 (tiles of 4096 and a partial one), through sample(); also sample_ids vary."""
    g = torch.Generator().manual_seed(5)
    row = torch.randn(5000, generator=g) * 4
    n = 12_000
    logits = row.expand(n, -1).contiguous()
    ids = torch.arange(n)
    tok = S.sample(logits, temperature=0.9, min_p=0.01, seed=9, stream_ids=ids % 7, sample_ids=ids // 7)
    counts = np.bincount(tok.numpy(), minlength=5000)
    probs = expected_probs(row, temperature=0.9, min_p=0.01)
    assert counts[probs == 0].sum() == 0
    assert chi_square_p(counts, probs) > P_MIN


def test_single_finite_logit_always_wins():
    logits = torch.full((50, 300), float("-inf"))
    logits[torch.arange(50), torch.arange(50) * 5] = -3.0
    tok = S.sample(logits, temperature=5.0, seed=1)
    assert torch.equal(tok, torch.arange(50) * 5)


def test_all_minus_inf_row_returns_first_index():
    logits = torch.full((3, 20), float("-inf"))
    logits[1, 7] = 0.0
    assert S.sample(logits).tolist() == [0, 7, 0]


# ----------------------------------------------------------------------------- greedy
def test_greedy_first_index_on_ties_and_per_row_temperature():
    logits = torch.randn(6, 111)
    logits[0, [3, 50]] = 10.0
    logits[2, [90, 7]] = 10.0
    temp = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.5])
    tok = S.sample(logits, temperature=temp, seed=3)
    assert tok[0] == 3 and tok[2] == 7 and tok[4] == logits[4].argmax()
    assert torch.equal(S.sample(logits, temperature=0.0), logits.argmax(dim=-1))
    assert torch.equal(S.sample(logits, top_k=1, seed=8), logits.argmax(dim=-1))
    # a temperature whose inverse overflows float32 is the greedy limit, not inf * logits
    assert torch.equal(S.sample(logits, temperature=1e-300), logits.argmax(dim=-1))
    assert torch.equal(S.sample(logits, temperature=torch.full((6,), 1e-45)), logits.argmax(dim=-1))


# ----------------------------------------------------------------------------- keys
def test_batch_independence_reference():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 700, generator=g)
    stream = torch.randint(0, 10**6, (50,), generator=g)
    sample_ids = torch.randint(0, 64, (50,), generator=g)
    full = S.sample(logits, top_p=0.9, seed=4, step=17, stream_ids=stream, sample_ids=sample_ids)
    perm = torch.randperm(50, generator=g)[:20]
    part = S.sample(logits[perm], top_p=0.9, seed=4, step=17, stream_ids=stream[perm],
                    sample_ids=sample_ids[perm])
    assert torch.equal(full[perm], part)
    # padding the batch with junk rows changes nothing
    padded = torch.cat([logits[perm], torch.randn(9, 700, generator=g)])
    pad_ids = torch.cat([stream[perm], torch.arange(9)])
    pad_sid = torch.cat([sample_ids[perm], torch.zeros(9, dtype=torch.int64)])
    assert torch.equal(S.sample(padded, top_p=0.9, seed=4, step=17, stream_ids=pad_ids,
                                sample_ids=pad_sid)[:20], part)


@pytest.mark.parametrize("tier", ["reference", pytest.param("triton", marks=pytest.mark.skipif(
    not usable("triton", "cpu"), reason="triton interpreter not available"))])
def test_per_row_steps_equal_one_call_per_step(tier):
    """Continuous batching draws each row at its own step: a step tensor [B] gives row i the
    token a call with the scalar step[i] gives it."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 300, generator=g)
    streams, samples = torch.arange(10, 15), torch.tensor([0, 3, 1, 7, 2])
    steps = torch.tensor([0, 4, 4, 9, 2**40])
    got = S.sample(logits, seed=7, stream_ids=streams, sample_ids=samples, step=steps, top_k=50, backend=tier)
    for i in range(5):
        one = S.sample(logits, seed=7, stream_ids=streams, sample_ids=samples, step=int(steps[i]), top_k=50,
                       backend=tier)
        assert got[i] == one[i]


def test_key_changes_change_samples():
    logits = torch.zeros(500, 1000)
    base = S.sample(logits, seed=1, step=3)
    for other in (S.sample(logits, seed=2, step=3), S.sample(logits, seed=1, step=4),
                  S.sample(logits, seed=1, step=3, sample_ids=torch.ones(500, dtype=torch.int64)),
                  S.sample(logits, seed=1, step=3, stream_ids=torch.arange(500) + 1)):
        assert (other == base).float().mean() < 0.05      # 1/1000 expected by chance
    assert torch.equal(base, S.sample(logits, seed=1, step=3))
    assert torch.equal(base, S.sample(logits, seed=torch.tensor(1), step=torch.tensor(3)))
    assert len(set(base.tolist())) > 300                  # not one token for all rows


# ----------------------------------------------------------------------------- triton tier
TRITON_CASES = [
    (torch.float32, 111, 16, dict()),
    (torch.bfloat16, 111, 16, dict(temperature=0.7, top_k=20, top_p=0.9)),
    (torch.float16, 300, None, dict(min_p=0.1, temperature=1.5)),
    (torch.float32, 300, 128, "per-row"),
]


@needs_triton
@pytest.mark.parametrize("dtype,V,tile,kw", TRITON_CASES)
def test_triton_interpreter_matches_reference_draw_for_draw(dtype, V, tile, kw):
    g = torch.Generator().manual_seed(V)
    B = 8
    logits = (torch.randn(B, V, generator=g) * 3).to(dtype)
    stream = torch.randint(0, 2**40, (B,), generator=g)
    sample_ids = torch.arange(B) * 3
    if kw == "per-row":
        kw = dict(temperature=torch.tensor([0.0, 1.0, 0.3, 2.0, 0.0, 1.0, 0.9, 1.1]))
        logits[0, [5, 9]] = 50.0                          # tie: greedy takes the first
    inv_t = S._inv_temperature(kw.get("temperature", 1.0), B, logits.device)
    cut = S.filter_cutoffs(logits, inv_t, kw.get("top_k", 0), kw.get("top_p", 1.0), kw.get("min_p", 0.0))
    args = (logits, inv_t, cut, torch.tensor(77), torch.tensor(5), stream, sample_ids)
    tri = S.sample_triton(*args, tile=tile)
    ref = S.sample_reference(*args, tile=tile)
    assert tri.dtype == torch.int64 and tri.shape == (B,)
    assert (tri != ref).sum() <= 1     # a float-summation-order difference may move one bin edge
    if "temperature" in kw and isinstance(kw["temperature"], torch.Tensor):
        assert tri[0] == 5


@needs_triton
def test_triton_public_op_batch_independence_and_nan_as_minus_inf():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 200, generator=g)
    stream = torch.tensor([9, 3, 4, 100, 2, 8])
    full = S.sample(logits, seed=3, step=2, stream_ids=stream, backend="triton")
    part = S.sample(logits[[4, 1]], seed=3, step=2, stream_ids=stream[[4, 1]], backend="triton")
    assert torch.equal(full[[4, 1]], part)
    bad = logits.clone()
    bad[:, :199] = float("nan")
    assert S.sample(bad, backend="triton").tolist() == [199] * 6


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(temperature=torch.tensor([1.0, -0.5])), ValueError, "temperature"),
    (dict(temperature=torch.ones(3)), ValueError, "shape"),
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(top_k=-2), ValueError, "top_k"),
    (dict(top_k=2.5), TypeError, "top_k"),
    (dict(min_p=1.5), ValueError, "min_p"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(step=torch.tensor([1, 2, 3])), ValueError, "step"),  # per-row steps need one per row
    (dict(step=torch.tensor([[1]])), TypeError, "step"),
    (dict(seed=torch.tensor(1.0)), TypeError, "seed"),
    (dict(stream_ids=torch.arange(3)), ValueError, "stream_ids"),
    (dict(sample_ids=torch.zeros(2, dtype=torch.int32)), ValueError, "sample_ids"),
    (dict(backend="cuda"), Exception, "no 'cuda' tier"),
    (dict(backend="nope"), ValueError, "unknown backend"),
])
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        S.sample(torch.randn(2, 10), **kwargs)


def test_bad_logits():
    with pytest.raises(ValueError, match="2-D"):
        S.sample(torch.randn(10))
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        S.sample(torch.ones(2, 10, dtype=torch.int64))
    nan = torch.randn(2, 10)
    nan[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        S.sample(nan, backend="reference")
    inf = torch.randn(2, 10)
    inf[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"\+inf"):
        S.sample(inf, backend="reference")


_COMPILE_FOR_H100 = r'''
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastpass.triton_kernels import sampling as K

def build(fn, sig, cst):
    names = fn.arg_names
    src = ASTSource(fn=fn, signature={n: sig.get(n, "constexpr") for n in names},
                    constexprs={(names.index(k),): v for k, v in cst.items()})
    assert "cubin" in triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm

common = dict(logits_ptr="*bf16", stride_row="i32", V="i32", n_tiles="i32", inv_t_ptr="*fp32",
              inv_t_val="fp32", cutoff_ptr="*fp32", max_ptr="*fp32", sum_ptr="*fp32", arg_ptr="*i32")
build(K._tile_stats_kernel, common, dict(TILE=4096, INV_T_PTR=True, HAS_CUTOFF=True, HAS_GREEDY=True))
build(K._tile_stats_kernel, common, dict(TILE=4096, INV_T_PTR=False, HAS_CUTOFF=False, HAS_GREEDY=False))
for count in (False, True):
    build(K._threshold_search_kernel, dict(logits_ptr="*bf16", stride_row="i32", V="i32",
                                           inv_t_ptr="*fp32", lo_cut_ptr="*fp32", limit="fp32",
                                           out_ptr="*fp32"),
          dict(HAS_LO=not count, COUNT=count, TILE=1024, SPLITS=16))
build(K._select_kernel, dict(common, out_ptr="*i64", seed_ptr="*i64", seed_val="i64", step_ptr="*i64",
                             step_val="i64", stream_ptr="*i64", sample_ptr="*i64"),
      dict(TILE=4096, NT=64, INV_T_PTR=True, HAS_CUTOFF=True, HAS_GREEDY=True, SEED_PTR=True, STEP_PTR=False,
           HAS_STREAM=True, HAS_SAMPLE=False))
print("compiled")
'''


@pytest.mark.slow
def test_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter accepts code the compiler rejects (e.g. non-constexpr globals): compile
    the kernels to an sm_90 cubin (ptxas ships with triton; no GPU needed)."""
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    res = subprocess.run([sys.executable, "-c", _COMPILE_FOR_H100], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0 and "compiled" in res.stdout, res.stderr[-3000:]
