"""GPU checks of the Triton attention kernels against the torch reference (fp32 math on the
same inputs). Tolerances: fp32 inputs use exact fp32 products ("ieee" dots), so 1e-5 elementwise
and in relative Frobenius norm (seen: 2e-6 with softcap); bf16/fp16 inputs round the
probabilities to 16 bits before the P@V product and the output to 16 bits, so elementwise 2e-2
(abs and rel) and a relative Frobenius error below 1e-2. Decode runs in both GPU modes:
sequential (prefix partials, then suffix + merge) and concurrent (two streams, then merge)."""
from __future__ import annotations

import pytest
import torch

from fastpass import attention as A
from test_attention import decode_case, prefill_case

pytestmark = pytest.mark.gpu


@pytest.fixture(params=[False, True], ids=["sequential", "concurrent"])
def mode(request, monkeypatch):
    from fastpass.triton_kernels import attention as tk

    monkeypatch.setitem(tk.TUNING, "concurrent", request.param)
    return request.param

TOL = {torch.float32: (1e-5, 1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2, 1e-2),
       torch.float16: (1e-2, 1e-2, 5e-3)}


def assert_close_tol(got, ref, dtype):
    atol, rtol, rel_fro = TOL[dtype]
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref.float(), atol=atol, rtol=rtol)
    err = (got.float() - ref.float()).norm() / ref.float().norm()
    assert err < rel_fro, f"relative error {err:.2e} >= {rel_fro:.0e}"


def _ragged(num_prompts, k, lp, s, seed):
    g = torch.Generator().manual_seed(seed)
    ks = [int(x) for x in torch.randint(1, k + 1, (num_prompts,), generator=g)]
    plens = [int(x) for x in torch.randint(0, lp + 1, (num_prompts,), generator=g)]
    slens = [int(x) for x in torch.randint(1, s + 1, (sum(ks),), generator=g)]
    return ks, plens, slens


@pytest.mark.parametrize("dtype,hq,hkv,d", [
    (dt, *shape) for dt in (torch.bfloat16, torch.float32)
    for shape in ((12, 2, 128), (9, 3, 64), (8, 4, 256), (4, 1, 96))] + [(torch.float16, 12, 2, 128)])
@pytest.mark.parametrize("softcap,window", [(0.0, 0), (30.0, 0), (0.0, 200)])
def test_decode_gpu_matches_reference(dtype, hq, hkv, d, softcap, window):
    ks, plens, slens = _ragged(5, 40, 700, 90, seed=hq * d + window)
    c = decode_case(ks, plens, slens, hq, hkv, d, lp_max=700, s_max=96, dtype=dtype,
                    device="cuda", seed=1)
    kw = dict(scale=d ** -0.5, softcap=softcap, sliding_window=window)
    ref = A.decode_attention(**c, **kw, backend="reference")
    got = A.decode_attention(**c, **kw, backend="triton")
    assert_close_tol(got, ref, dtype)


def test_decode_gpu_spec_p3_shape_bf16(mode):
    # SPEC P3: K=128 sequences, prefix 4096, suffix 256, 12 q / 2 kv heads, d=128 (split over
    # the prefix so the 24 prompt x kv-head blocks fill the GPU)
    c = decode_case([128], [4096], [256] * 128, 12, 2, 128, dtype=torch.bfloat16, device="cuda")
    ref = A.decode_attention(**c, scale=128 ** -0.5, backend="reference")
    got = A.decode_attention(**c, scale=128 ** -0.5, backend="triton")
    assert_close_tol(got, ref, torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("hq,hkv,d", [(12, 2, 128), (8, 8, 64), (8, 4, 256)])
@pytest.mark.parametrize("softcap,window", [(0.0, 0), (50.0, 100)])
def test_prefill_gpu_matches_reference(dtype, hq, hkv, d, softcap, window):
    c = prefill_case([1, 517, 64, 300, 33], hq, hkv, d, dtype=dtype, device="cuda", seed=2)
    kw = dict(scale=d ** -0.5, softcap=softcap, sliding_window=window)
    ref = A.prefill_attention(**c, **kw, backend="reference")
    got = A.prefill_attention(**c, **kw, backend="triton")
    assert_close_tol(got, ref, dtype)


@pytest.mark.parametrize("bound", [8, None])
def test_decode_gpu_graph_replay_follows_inputs(bound, mode):
    """Captured once, replayed after the engine rewrites q, the suffix KV and suffix_lens in
    place: each replay equals an eager reference on the new values (no host sync inside)."""
    ks, plens, slens = [8, 3], [300, 129], [5] * 11
    c = decode_case(ks, plens, slens, 12, 2, 128, lp_max=320, s_max=64, dtype=torch.bfloat16,
                    device="cuda", seed=3)
    kw = dict(scale=128 ** -0.5, backend="triton", max_seqs_per_prompt=bound)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        A.decode_attention(**c, **kw)  # compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = A.decode_attention(**c, **kw)
    g = torch.Generator(device="cuda").manual_seed(0)
    for step in range(3):
        c["q"].copy_(torch.randn(c["q"].shape, generator=g, device="cuda"))
        c["suffix_k"].copy_(torch.randn(c["suffix_k"].shape, generator=g, device="cuda"))
        c["suffix_lens"].add_(7)
        graph.replay()
        ref = A.decode_attention(**c, scale=128 ** -0.5, backend="reference")
        assert_close_tol(out, ref, torch.bfloat16)


@pytest.mark.parametrize("softcap,window", [(0.0, 0), (30.0, 200)])
def test_decode_gpu_ragged_prompts_both_modes(mode, softcap, window):
    ks, plens, slens = _ragged(7, 70, 1500, 200, seed=window)
    c = decode_case(ks, plens, slens, 12, 2, 128, lp_max=1500, s_max=200, dtype=torch.bfloat16,
                    device="cuda", seed=4)
    kw = dict(scale=128 ** -0.5, softcap=softcap, sliding_window=window)
    ref = A.decode_attention(**c, **kw, backend="reference")
    assert_close_tol(A.decode_attention(**c, **kw, backend="triton"), ref, torch.bfloat16)
