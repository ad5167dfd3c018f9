"""Triton kernels for shared-prefix attention (see fastpass/attention.py for the contract).

Scores run in base 2 (exp2/log2, the scale folded with log2(e)); every log-sum-exp stored in
memory is natural-log, like the torch reference. Only core tl ops, so the kernels run on triton
3.6 (GPU) and under the 3.9 interpreter (CPU).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _scores2(q, kt, qk_scale2, scale, softcap, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr):
    """Scaled (and soft-capped) scores, in log2 units."""
    s = tl.dot(q, kt, input_precision=DOT_PREC)
    if HAS_SOFTCAP:
        # tanh through exp: libdevice tanh does not run in the interpreter.
        x = s * (scale / softcap)
        t = 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)
        s = t * (softcap * 1.4426950408889634)
    else:
        s = s * qk_scale2
    return s


@triton.jit
def _online_update(s, m_i, l_i, acc, v, DOT_PREC: tl.constexpr):
    """One tile of online softmax in log2 units; rows that have seen only -inf stay at zero."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - m_use[:, None])
    alpha = tl.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
    return m_new, l_i, acc


@triton.jit
def _finish(m_i, l_i, acc):
    """Normalised output and natural-log LSE (-inf where nothing was visible)."""
    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    m_use = tl.where(m_i == float("-inf"), 0.0, m_i)
    lse = tl.where(empty, float("-inf"), (m_use + tl.log2(tl.where(empty, 1.0, l_i))) * 0.6931471805599453)
    return out, lse


@triton.jit
def _prefill_kernel(Q, K, V, OUT, CU, qk_scale2, scale, softcap, window,
                    s_qt, s_qh, s_qd, s_kt, s_kh, s_kd, s_vt, s_vh, s_vd, s_ot, s_oh, s_od,
                    G: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_WINDOW: tl.constexpr,
                    DOT_PREC: tl.constexpr):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    start = tl.load(CU + b).to(tl.int64)
    seqlen = (tl.load(CU + b + 1) - start).to(tl.int32)
    m0 = pid_m * BLOCK_M
    if m0 >= seqlen:
        return
    kvh = h // G
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    m_ok = offs_m < seqlen
    q = tl.load(Q + (start + offs_m)[:, None] * s_qt + h * s_qh + offs_d[None, :] * s_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = tl.minimum(seqlen, m0 + BLOCK_M)
    lo = 0
    if HAS_WINDOW:
        lo = (tl.maximum(m0 - window + 1, 0) // BLOCK_N) * BLOCK_N
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        kt = tl.load(K + (start + offs_n)[None, :] * s_kt + kvh * s_kh + offs_d[:, None] * s_kd,
                     mask=n_ok[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(V + (start + offs_n)[:, None] * s_vt + kvh * s_vh + offs_d[None, :] * s_vd,
                    mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        s = _scores2(q, kt, qk_scale2, scale, softcap, HAS_SOFTCAP, DOT_PREC)
        visible = n_ok[None, :] & (offs_n[None, :] <= offs_m[:, None])
        if HAS_WINDOW:
            visible = visible & (offs_n[None, :] > offs_m[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
        m_i, l_i, acc = _online_update(s, m_i, l_i, acc, v, DOT_PREC)
    out, _ = _finish(m_i, l_i, acc)
    tl.store(OUT + (start + offs_m)[:, None] * s_ot + h * s_oh + offs_d[None, :] * s_od,
             out.to(OUT.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


@triton.jit
def _decode_prefix_kernel(Q, PK, PV, PLEN, SLEN, OFFS, OPART, LPART, num_kv_heads, split_len,
                          qk_scale2, scale, softcap, window,
                          s_qn, s_qh, s_qd, s_kp, s_kh, s_kl, s_kd, s_vp, s_vh, s_vl, s_vd,
                          s_os, s_on, s_oh, s_od, s_ls, s_ln, s_lh,
                          G: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                          HAS_WINDOW: tl.constexpr, DOT_PREC: tl.constexpr):
    """Grid (prompt x kv head, row block, prefix split). Rows = (sequence of the prompt, query
    head of the kv group): the prompt's prefix tile is read once for all of them."""
    pid_ph = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_s = tl.program_id(2)
    p = pid_ph // num_kv_heads
    kvh = pid_ph % num_kv_heads
    row0 = tl.load(OFFS + p)
    n_rows = (tl.load(OFFS + p + 1) - row0) * G
    if pid_m * BLOCK_M >= n_rows:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    m_ok = offs_m < n_rows
    seq = (row0 + offs_m // G).to(tl.int64)
    head = kvh * G + offs_m % G
    q = tl.load(Q + seq[:, None] * s_qn + head[:, None] * s_qh + offs_d[None, :] * s_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    plen = tl.load(PLEN + p).to(tl.int32)
    lo = pid_s * split_len
    hi = tl.minimum(lo + split_len, plen)
    if HAS_WINDOW:
        qpos = plen + tl.load(SLEN + seq, mask=m_ok, other=0).to(tl.int32) - 1
        first = tl.min(tl.where(m_ok, qpos, 2147483647), 0) - window + 1
        lo = tl.maximum(lo, (tl.maximum(first, 0) // BLOCK_N) * BLOCK_N)
    k_base = PK + p.to(tl.int64) * s_kp + kvh * s_kh
    v_base = PV + p.to(tl.int64) * s_vp + kvh * s_vh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        kt = tl.load(k_base + offs_n[None, :] * s_kl + offs_d[:, None] * s_kd,
                     mask=n_ok[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(v_base + offs_n[:, None] * s_vl + offs_d[None, :] * s_vd,
                    mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        s = _scores2(q, kt, qk_scale2, scale, softcap, HAS_SOFTCAP, DOT_PREC)
        visible = n_ok[None, :] & m_ok[:, None]
        if HAS_WINDOW:
            visible = visible & (offs_n[None, :] > qpos[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
        m_i, l_i, acc = _online_update(s, m_i, l_i, acc, v, DOT_PREC)
    out, lse = _finish(m_i, l_i, acc)
    tl.store(OPART + pid_s * s_os + seq[:, None] * s_on + head[:, None] * s_oh + offs_d[None, :] * s_od,
             out, mask=m_ok[:, None] & d_ok[None, :])
    tl.store(LPART + pid_s * s_ls + seq * s_ln + head * s_lh, lse, mask=m_ok)


@triton.jit
def _decode_suffix_kernel(Q, SK, SV, SLEN, SROWS, OPART, LPART, OUT, LSE_OUT, qk_scale2, scale, softcap, window,
                          s_qn, s_qh, s_qd, s_kn, s_kh, s_kl, s_kd, s_vn, s_vh, s_vl, s_vd,
                          s_ps, s_pn, s_ph, s_pd, s_ls, s_ln, s_lh, s_on, s_oh, s_od, s_en, s_eh,
                          G: tl.constexpr, D: tl.constexpr, BLOCK_G: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, NUM_SPLITS: tl.constexpr,
                          BLOCK_S: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_WINDOW: tl.constexpr,
                          HAS_SUFFIX: tl.constexpr, WRITE_LSE: tl.constexpr, DOT_PREC: tl.constexpr,
                          HAS_SROWS: tl.constexpr):
    """Grid (sequence, kv head): the G query heads against the sequence's own suffix. The
    online-softmax state starts from the NUM_SPLITS fp32 partials (out, lse) of the prefix,
    merged by LSE, so merging costs no extra pass. HAS_SUFFIX=False: merge only. HAS_SROWS: the
    sequence's suffix is stored at row SROWS[n] of SK/SV (continuous batching)."""
    n = tl.program_id(0).to(tl.int64)
    kvh = tl.program_id(1)
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    g_ok = offs_g < G
    d_ok = offs_d < D
    head = kvh * G + offs_g
    gd_ok = g_ok[:, None] & d_ok[None, :]
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    if NUM_SPLITS > 0:
        # all LSEs in one load, then independent (unrolled) loads of the partial outputs
        offs_s = tl.arange(0, BLOCK_S)
        lse2 = tl.load(LPART + offs_s[:, None] * s_ls + n * s_ln + head[None, :] * s_lh,
                       mask=(offs_s < NUM_SPLITS)[:, None] & g_ok[None, :],
                       other=float("-inf")) * 1.4426950408889634
        m_i = tl.max(lse2, 0)
        w = tl.exp2(lse2 - tl.where(m_i == float("-inf"), 0.0, m_i)[None, :])
        l_i = tl.sum(w, 0)
        for sp in tl.static_range(NUM_SPLITS):
            o = tl.load(OPART + sp * s_ps + n * s_pn + head[:, None] * s_ph + offs_d[None, :] * s_pd,
                        mask=gd_ok, other=0.0)
            acc += o * tl.sum(tl.where(offs_s[:, None] == sp, w, 0.0), 0)[:, None]
    if HAS_SUFFIX:
        q = tl.load(Q + n * s_qn + head[:, None] * s_qh + offs_d[None, :] * s_qd, mask=gd_ok, other=0.0)
        slen = tl.load(SLEN + n).to(tl.int32)
        lo = 0
        if HAS_WINDOW:
            lo = (tl.maximum(slen - window, 0) // BLOCK_N) * BLOCK_N
        srow = n
        if HAS_SROWS:
            srow = tl.load(SROWS + n).to(tl.int64)
        k_base = SK + srow * s_kn + kvh * s_kh
        v_base = SV + srow * s_vn + kvh * s_vh
        for n0 in range(lo, slen, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_ok = offs_n < slen
            kt = tl.load(k_base + offs_n[None, :] * s_kl + offs_d[:, None] * s_kd,
                         mask=n_ok[None, :] & d_ok[:, None], other=0.0)
            v = tl.load(v_base + offs_n[:, None] * s_vl + offs_d[None, :] * s_vd,
                        mask=n_ok[:, None] & d_ok[None, :], other=0.0)
            s = _scores2(q, kt, qk_scale2, scale, softcap, HAS_SOFTCAP, DOT_PREC)
            visible = n_ok[None, :] & g_ok[:, None]
            if HAS_WINDOW:
                visible = visible & (offs_n[None, :] > slen - 1 - window)
            s = tl.where(visible, s, float("-inf"))
            m_i, l_i, acc = _online_update(s, m_i, l_i, acc, v, DOT_PREC)
    out, lse = _finish(m_i, l_i, acc)
    tl.store(OUT + n * s_on + head[:, None] * s_oh + offs_d[None, :] * s_od,
             out.to(OUT.dtype.element_ty), mask=gd_ok)
    if WRITE_LSE:
        tl.store(LSE_OUT + n * s_en + head * s_eh, lse, mask=g_ok)


# ----------------------------------------------------------------------------- launchers
@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _dot_precision(dtype) -> str:
    # fp32 inputs: exact fp32 products (tf32 would cost ~3e-4 relative error); 16-bit: unused.
    return "ieee" if dtype == torch.float32 else "tf32"


# GPU launch configurations: (BLOCK_M, BLOCK_N, num_warps, num_stages) for prefill and the
# decode prefix part, (BLOCK_N, num_warps, num_stages) for the suffix part; split_waves scales
# how many prefix splits are launched (in units of the SM count) in sequential mode. With
# "concurrent", the prefix and suffix parts run on two streams and a third launch merges them.
# Chosen by `python -m bench.bench_attention --device cuda --sweep` on an H100 (2026-11-26,
# triton 3.6, P3 shape): whole decode 30.0 us concurrent vs 34.1 us sequential; suffix
# (128, 4, 2) timed 19.2 us against the sweep's best 19.1 us (noise) and is the one the GPU
# tests ran with. Head dims above 128 halve the tiles to stay in registers.
TUNING = {"prefill": (64, 64, 4, 3), "prefix": (64, 64, 4, 3), "suffix": (128, 4, 2),
          "split_waves": 2.0, "concurrent": True, "concurrent_waves": 1.0}
# The interpreter pays per program x tile: few, large tiles.
_INTERPRETER = {"prefill": (32, 64, 4, 1), "prefix": (32, 64, 4, 1), "suffix": (64, 4, 1)}


def _config(part, device, d):
    if device.type != "cuda":
        return _INTERPRETER[part]
    cfg = TUNING[part]
    if d > 128:
        cfg = tuple(max(16, x // 2) for x in cfg[:-2]) + cfg[-2:]
    return cfg


def _common(q, scale, softcap, window):
    d = q.shape[-1]
    return dict(qk_scale2=scale * LOG2E, scale=scale, softcap=softcap if softcap > 0 else 1.0,
                window=window), dict(D=d, BLOCK_D=max(16, triton.next_power_of_2(d)),
                                     HAS_SOFTCAP=softcap > 0, HAS_WINDOW=window > 0,
                                     DOT_PREC=_dot_precision(q.dtype))


def prefill(q, k, v, cu_seqlens, scale, softcap=0.0, window=0, max_seqlen=None):
    t, hq, d = q.shape
    out = torch.empty_like(q)
    b = cu_seqlens.numel() - 1
    if t == 0 or b <= 0:
        return out
    if max_seqlen is None:
        max_seqlen = int(cu_seqlens.diff().max())
    block_m, block_n, warps, stages = _config("prefill", q.device, d)
    args, meta = _common(q, scale, softcap, window)
    grid = (triton.cdiv(max_seqlen, block_m), b, hq)
    _prefill_kernel[grid](q, k, v, out, cu_seqlens, *args.values(), *q.stride(), *k.stride(),
                          *v.stride(), *out.stride(), G=hq // k.shape[1], BLOCK_M=block_m,
                          BLOCK_N=block_n, num_warps=warps, num_stages=stages, **meta)
    return out


def _num_splits(device, programs, prefix_len, block_n, waves):
    if device.type != "cuda":
        return 1
    want = triton.cdiv(int(waves * _sm_count(device.index or 0)), max(1, programs))
    return max(1, min(want, triton.cdiv(prefix_len, block_n)))


def _prefix_plan(q, prefix_k, seq_offsets, max_seqs_per_prompt, waves):
    """(row_blocks, splits, split_len): the prefix grid, split over key ranges so that the few
    (prompt, kv head, row block) programs still fill the GPU."""
    n, hq, d = q.shape
    num_prompts, hkv, lp, _ = prefix_k.shape
    if max_seqs_per_prompt is None:
        capturing = q.is_cuda and torch.cuda.is_current_stream_capturing()
        max_seqs_per_prompt = n if capturing else int(seq_offsets.diff().max()) if num_prompts else 0
    block_m, block_n = _config("prefix", q.device, d)[:2]
    row_blocks = triton.cdiv(max_seqs_per_prompt * (hq // hkv), block_m)
    splits = _num_splits(q.device, num_prompts * hkv * max(1, row_blocks), lp, block_n, waves)
    split_len = triton.cdiv(triton.cdiv(max(lp, 1), splits), block_n) * block_n
    return row_blocks, max(1, triton.cdiv(lp, split_len)), split_len


def _launch_prefix(q, prefix_k, prefix_v, prefix_lens, suffix_lens, seq_offsets, opart, lpart, plan,
                   args, meta):
    row_blocks, splits, split_len = plan
    num_prompts, hkv = prefix_k.shape[:2]
    block_m, block_n, warps, stages = _config("prefix", q.device, q.shape[2])
    grid = (num_prompts * hkv, row_blocks, splits)
    _decode_prefix_kernel[grid](q, prefix_k, prefix_v, prefix_lens, suffix_lens, seq_offsets, opart,
                                lpart, hkv, split_len, *args.values(), *q.stride(),
                                *prefix_k.stride(), *prefix_v.stride(), *opart.stride(),
                                *lpart.stride(), G=q.shape[1] // hkv, BLOCK_M=block_m,
                                BLOCK_N=block_n, num_warps=warps, num_stages=stages, **meta)


def _launch_suffix(q, suffix_k, suffix_v, suffix_lens, opart, lpart, num_splits, out, lse_out,
                   has_suffix, args, meta, suffix_rows=None):
    """Suffix kernel: merges the first ``num_splits`` partials, then (has_suffix) attends the
    suffix; writes ``out`` (any dtype) and, when given, ``lse_out``."""
    n, hq, d = q.shape
    hkv = suffix_k.shape[1]
    block_n, warps, stages = _config("suffix", q.device, d)
    if opart is None:  # nothing to merge: fp32 placeholders of the right rank, never read
        opart = torch.empty(1, 1, 1, 1, dtype=torch.float32, device=q.device)
        lpart = opart[:, :, :, 0]
    lse_arg = lse_out if lse_out is not None else lpart[0]
    srows = suffix_rows if suffix_rows is not None else suffix_lens
    _decode_suffix_kernel[(n, hkv)](q, suffix_k, suffix_v, suffix_lens, srows, opart, lpart, out, lse_arg,
                                    *args.values(), *q.stride(), *suffix_k.stride(),
                                    *suffix_v.stride(), *opart.stride(), *lpart.stride(),
                                    *out.stride(), *lse_arg.stride(), G=hq // hkv,
                                    BLOCK_G=max(16, triton.next_power_of_2(hq // hkv)),
                                    BLOCK_N=block_n, NUM_SPLITS=num_splits,
                                    BLOCK_S=max(2, triton.next_power_of_2(num_splits)),
                                    HAS_SUFFIX=has_suffix, WRITE_LSE=lse_out is not None,
                                    HAS_SROWS=suffix_rows is not None,
                                    num_warps=warps, num_stages=stages, **meta)


def _empty_state(splits, n, hq, d, device):
    return (torch.empty(splits, n, hq, d, dtype=torch.float32, device=device),
            torch.empty(splits, n, hq, dtype=torch.float32, device=device))


def decode_prefix_partials(q, prefix_k, prefix_v, prefix_lens, suffix_lens, seq_offsets, scale,
                           softcap=0.0, window=0, max_seqs_per_prompt=None):
    """Prefix part, split over key ranges: fp32 out [S, N, Hq, D] and lse [S, N, Hq]."""
    n, hq, d = q.shape
    plan = _prefix_plan(q, prefix_k, seq_offsets, max_seqs_per_prompt, TUNING["split_waves"])
    if n == 0 or plan[0] == 0:
        return (torch.zeros(plan[1], n, hq, d, dtype=torch.float32, device=q.device),
                torch.full((plan[1], n, hq), float("-inf"), dtype=torch.float32, device=q.device))
    # every (split, sequence, head) is written by the program that owns its row block
    opart, lpart = _empty_state(plan[1], n, hq, d, q.device)
    args, meta = _common(q, scale, softcap, window)
    _launch_prefix(q, prefix_k, prefix_v, prefix_lens, suffix_lens, seq_offsets, opart, lpart, plan,
                   args, meta)
    return opart, lpart


def decode_suffix(q, suffix_k, suffix_v, suffix_lens, scale, softcap=0.0, window=0, opart=None,
                  lpart=None, suffix_rows=None):
    """Suffix part. With prefix partials: merged output in q's dtype. Without: fp32 (out, lse)."""
    n, hq, d = q.shape
    has_prefix = opart is not None
    out = torch.empty(n, hq, d, dtype=q.dtype if has_prefix else torch.float32, device=q.device)
    lse = None if has_prefix else torch.empty(n, hq, dtype=torch.float32, device=q.device)
    if n:
        _launch_suffix(q, suffix_k, suffix_v, suffix_lens, opart, lpart,
                       opart.shape[0] if has_prefix else 0, out, lse, True,
                       *_common(q, scale, softcap, window), suffix_rows=suffix_rows)
    return out if has_prefix else (out, lse)


_SIDE_STREAMS: dict = {}


def _decode_concurrent(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens,
                       seq_offsets, args, meta, max_seqs_per_prompt, suffix_rows=None):
    """Prefix part (latency-bound, few programs) and suffix part (bandwidth-bound) run side by
    side on two streams (a fork/join that CUDA graphs capture), each writing fp32 partials;
    a third small launch merges them."""
    n, hq, d = q.shape
    plan = _prefix_plan(q, prefix_k, seq_offsets, max_seqs_per_prompt, TUNING["concurrent_waves"])
    splits = plan[1]
    opart, lpart = _empty_state(splits + 1, n, hq, d, q.device)
    main = torch.cuda.current_stream(q.device)
    side = _SIDE_STREAMS.get(q.device.index)
    if side is None:
        side = _SIDE_STREAMS[q.device.index] = torch.cuda.Stream(q.device)
    side.wait_stream(main)
    if plan[0]:
        _launch_prefix(q, prefix_k, prefix_v, prefix_lens, suffix_lens, seq_offsets, opart[:splits],
                       lpart[:splits], plan, args, meta)
    else:
        lpart[:splits].fill_(float("-inf"))
        opart[:splits].zero_()
    with torch.cuda.stream(side):
        _launch_suffix(q, suffix_k, suffix_v, suffix_lens, None, None, 0, opart[splits],
                       lpart[splits], True, args, meta, suffix_rows)
    main.wait_stream(side)
    out = torch.empty_like(q)
    _launch_suffix(q, suffix_k, suffix_v, suffix_lens, opart, lpart, splits + 1, out, None, False,
                   args, meta, suffix_rows)
    return out


def decode(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens, seq_offsets, scale,
           softcap=0.0, window=0, max_seqs_per_prompt=None, suffix_rows=None):
    n, hq, d = q.shape
    out = torch.empty_like(q)
    if n == 0:
        return out
    args, meta = _common(q, scale, softcap, window)
    if prefix_k.shape[2] == 0:  # no prefix storage: one pass over the suffixes
        _launch_suffix(q, suffix_k, suffix_v, suffix_lens, None, None, 0, out, None, True, args, meta,
                       suffix_rows)
        return out
    if q.is_cuda and TUNING["concurrent"]:
        return _decode_concurrent(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens,
                                  seq_offsets, args, meta, max_seqs_per_prompt, suffix_rows)
    opart, lpart = decode_prefix_partials(q, prefix_k, prefix_v, prefix_lens, suffix_lens,
                                          seq_offsets, scale, softcap, window, max_seqs_per_prompt)
    _launch_suffix(q, suffix_k, suffix_v, suffix_lens, opart, lpart, opart.shape[0], out, None, True,
                   args, meta, suffix_rows)
    return out
