"""Shared-prefix attention: causal varlen prefill and split (prefix + suffix) decode.

Decode stores each prompt's KV once. All sequences of a prompt, and the query heads that share a
kv head, are folded into one block of query rows that reads the prefix once (one matrix-matrix
pass); each sequence then attends to its own suffix; the two partial results (fp32 output +
log-sum-exp) are merged in fp32. Tiers: ``triton`` (GPU, or CPU under TRITON_INTERPRET=1) and
``cpu`` (C++, csrc/cpu/attention.cpp: decode only, the engine's CPU tier) and ``reference`` (torch,
the same split, vectorised).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastpass._backend import choose, native

_PREFILL_TIERS = {"cuda": ("triton", "reference"), "cpu": ("reference", "triton")}
_DECODE_TIERS = {"cuda": ("triton", "reference", "cpu"), "cpu": ("cpu", "reference", "triton")}


def _tier(op, device, backend, tiers):
    # On CPU the Triton interpreter (even when TRITON_INTERPRET=1 is set, as in the test suite)
    # runs only when asked for by name.
    return choose(op, tiers["cuda" if device.type == "cuda" else "cpu"], device, backend)
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_INT_DTYPES = (torch.int32, torch.int64)
# Scores materialised at once by the prefill reference (elements); bounds its memory.
_PREFILL_SCORE_BUDGET = 1 << 25


# ----------------------------------------------------------------------------- validation
def _check_float(name, t, ndim):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(t.shape)}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")


def _check_int(name, t, length, device):
    if not isinstance(t, torch.Tensor) or t.dtype not in _INT_DTYPES or t.dim() != 1:
        raise TypeError(f"{name} must be a 1-D int32 tensor (torch.int32), got "
                        f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
    if t.numel() != length:
        raise ValueError(f"{name} must have {length} entries, got {t.numel()}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but q is on {device}: move it with .to(q.device)")


def _check_options(scale, softcap, sliding_window):
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive float (usually head_dim ** -0.5), got {scale!r}")
    if not isinstance(softcap, (int, float)) or softcap < 0:
        raise ValueError(f"softcap must be a float >= 0 (0 = off), got {softcap!r}")
    if not isinstance(sliding_window, int) or sliding_window < 0:
        raise ValueError(f"sliding_window must be an int >= 0 (0 = off), got {sliding_window!r}")


def _check_same(name, t, like, what="dtype"):
    if getattr(t, what) != getattr(like, what):
        raise ValueError(f"{name} has {what} {getattr(t, what)} but q has {getattr(like, what)}: "
                         f"convert it with .to(q.{what})")


def _check_prefill(q, k, v, cu_seqlens, scale, softcap, sliding_window):
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_float(name, t, 3)
    for name, t in (("k", k), ("v", v)):
        _check_same(name, t, q, "dtype")
        _check_same(name, t, q, "device")
    if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(f"k and v must be [T, Hkv, D] with q's T and D: q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of kv heads ({k.shape[1]})")
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise TypeError("cu_seqlens must be a 1-D int32 tensor [B+1] of cumulative sequence lengths")
    _check_int("cu_seqlens", cu_seqlens, cu_seqlens.numel(), q.device)
    _check_options(scale, softcap, sliding_window)
    if cu_seqlens.device.type == "cpu":  # value checks cost a sync on GPU: CPU only
        if int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != q.shape[0] or bool(
                (cu_seqlens[1:] < cu_seqlens[:-1]).any()):
            raise ValueError(f"cu_seqlens must rise from 0 to T={q.shape[0]}, got {cu_seqlens.tolist()}")


def _check_decode(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens, seq_offsets,
                  scale, softcap, sliding_window, suffix_rows=None):
    _check_float("q", q, 3)
    for name, t in (("prefix_k", prefix_k), ("prefix_v", prefix_v), ("suffix_k", suffix_k),
                    ("suffix_v", suffix_v)):
        _check_float(name, t, 4)
        _check_same(name, t, q, "dtype")
        _check_same(name, t, q, "device")
    n, hq, d = q.shape
    p, hkv, _, _ = prefix_k.shape
    if prefix_v.shape != prefix_k.shape or prefix_k.shape[3] != d:
        raise ValueError(f"prefix_k/v must both be [P, Hkv, Lp, D={d}], got {tuple(prefix_k.shape)} "
                         f"and {tuple(prefix_v.shape)}")
    rows_ok = suffix_k.shape[0] == n if suffix_rows is None else suffix_k.shape[0] >= 1 or n == 0
    if suffix_v.shape != suffix_k.shape or not rows_ok or suffix_k.shape[1] != hkv or suffix_k.shape[3] != d:
        what = f"N={n}" if suffix_rows is None else "R (>= 1 storage rows)"
        raise ValueError(f"suffix_k/v must both be [{what}, Hkv={hkv}, S, D={d}], got "
                         f"{tuple(suffix_k.shape)} and {tuple(suffix_v.shape)}")
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hkv})")
    _check_int("prefix_lens", prefix_lens, p, q.device)
    _check_int("suffix_lens", suffix_lens, n, q.device)
    _check_int("seq_offsets", seq_offsets, p + 1, q.device)
    if suffix_rows is not None:
        _check_int("suffix_rows", suffix_rows, n, q.device)
    _check_options(scale, softcap, sliding_window)
    if q.device.type == "cpu":  # value checks cost a sync on GPU: CPU only (numpy views: per layer, cheap)
        offs, plens, slens = (t.detach().numpy() for t in (seq_offsets, prefix_lens, suffix_lens))
        if offs[0] != 0 or offs[-1] != n or (offs[1:] < offs[:-1]).any():
            raise ValueError(f"seq_offsets must rise from 0 to N={n}, got {seq_offsets.tolist()}")
        if p and (plens.min() < 0 or plens.max() > prefix_k.shape[2]):
            raise ValueError(f"prefix_lens must lie in [0, {prefix_k.shape[2]}] (prefix_k's length)")
        if n and (slens.min() < 0 or slens.max() > suffix_k.shape[2]):
            raise ValueError(f"suffix_lens must lie in [0, {suffix_k.shape[2]}] (suffix_k's length); "
                             "they count the current token")
        if suffix_rows is not None and n:
            srows = suffix_rows.detach().numpy()
            if srows.min() < 0 or srows.max() >= suffix_k.shape[0]:
                raise ValueError(f"suffix_rows must index suffix_k's {suffix_k.shape[0]} rows, got values in "
                                 f"[{srows.min()}, {srows.max()}]")


# ----------------------------------------------------------------------------- reference
def _scores(q, k, scale, softcap):
    s = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)
    if softcap > 0:
        s = torch.tanh_(s.div_(softcap)).mul_(softcap)
    return s


def _masked_softmax_state(s, visible, v):
    """(out, lse) of attention with scores ``s`` [..., M, N] restricted to ``visible`` (None:
    already masked with -inf); rows that see nothing get out 0 and lse -inf (merging ignores
    them). ``s`` is scratch: it is overwritten."""
    if visible is not None:
        s = s.masked_fill_(visible.logical_not(), float("-inf"))
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp_(s.sub_(m))
    denom = p.sum(-1, keepdim=True)
    out = torch.matmul(p, v).div_(denom.clamp_min(torch.finfo(torch.float32).tiny))
    lse = (m + torch.log(denom)).squeeze(-1)
    return out, lse


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    """Merge two partial attentions over disjoint key sets: fp32 out [..., D] and lse [...]."""
    lse = torch.logaddexp(lse_a, lse_b)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    w_a = torch.exp(lse_a - safe).unsqueeze(-1)
    w_b = torch.exp(lse_b - safe).unsqueeze(-1)
    return out_a * w_a + out_b * w_b, lse


def _rows_per_prompt(seq_offsets):
    offsets = seq_offsets.to("cpu", torch.int64)
    return offsets, int(offsets.diff().max()) if offsets.numel() > 1 else 0


def decode_prefix_reference(q, prefix_k, prefix_v, prefix_lens, suffix_lens, seq_offsets, scale,
                            softcap=0.0, sliding_window=0):
    """Prefix part of split decode: fp32 (out [N, Hq, D], lse [N, Hq]).

    Each prompt's sequences x query heads of a kv group form one block of rows multiplied with
    the prompt's prefix once: [P, Hkv, Kmax*G, D] @ [P, Hkv, D, Lp]."""
    n, hq, d = q.shape
    num_prompts, hkv, _, _ = prefix_k.shape
    g = hq // hkv
    offsets, kmax = _rows_per_prompt(seq_offsets)
    lp = int(prefix_lens.max()) if num_prompts else 0  # skip the storage's unused tail
    if n == 0 or kmax == 0 or lp == 0:
        return (torch.zeros(n, hq, d, dtype=torch.float32, device=q.device),
                torch.full((n, hq), float("-inf"), dtype=torch.float32, device=q.device))
    uniform = n == num_prompts * kmax  # every prompt has kmax sequences: plain views, no gather
    if uniform:
        qf = q.float().reshape(num_prompts, kmax, hkv, g, d)
    else:
        slot = torch.arange(kmax)
        rows = offsets[:-1, None] + slot  # [P, Kmax]: sequence of each (prompt, slot)
        valid = slot < offsets.diff()[:, None]
        rows = torch.where(valid, rows, torch.zeros_like(rows)).to(q.device)
        valid = valid.to(q.device)
        qf = q.float()[rows].view(num_prompts, kmax, hkv, g, d)
    qf = qf.permute(0, 2, 1, 3, 4).reshape(num_prompts, hkv, kmax * g, d)
    s = _scores(qf, prefix_k[:, :, :lp].float(), scale, softcap)  # [P, Hkv, Kmax*G, Lp]
    key = torch.arange(lp, device=q.device)
    plen = prefix_lens.long()
    s.masked_fill_((key >= plen.view(-1, 1, 1, 1)), float("-inf"))
    if sliding_window > 0:  # per sequence: its query sits at plen + slen - 1
        slen = suffix_lens.long().view(num_prompts, kmax) if uniform else suffix_lens.long()[rows]
        qpos = plen[:, None] + slen - 1  # [P, Kmax]
        hidden = key <= (qpos - sliding_window)[:, :, None]  # [P, Kmax, Lp]
        s.view(num_prompts, hkv, kmax, g, lp).masked_fill_(hidden[:, None, :, None], float("-inf"))
    o, l = _masked_softmax_state(s, None, prefix_v[:, :, :lp].float())
    o = o.view(num_prompts, hkv, kmax, g, d).permute(0, 2, 1, 3, 4).reshape(num_prompts, kmax, hq, d)
    l = l.view(num_prompts, hkv, kmax, g).permute(0, 2, 1, 3).reshape(num_prompts, kmax, hq)
    if uniform:
        return o.reshape(n, hq, d), l.reshape(n, hq)
    out = torch.zeros(n, hq, d, dtype=torch.float32, device=q.device)
    lse = torch.full((n, hq), float("-inf"), dtype=torch.float32, device=q.device)
    out[rows[valid]] = o[valid]
    lse[rows[valid]] = l[valid]
    return out, lse


def decode_suffix_reference(q, suffix_k, suffix_v, suffix_lens, scale, softcap=0.0, sliding_window=0,
                            suffix_rows=None):
    """Suffix part of split decode: each sequence's G query heads per kv head against its own
    suffix, [N, Hkv, G, D] @ [N, Hkv, D, S]. Returns fp32 (out [N, Hq, D], lse [N, Hq])."""
    n, hq, d = q.shape
    hkv = suffix_k.shape[1]
    g = hq // hkv
    smax = int(suffix_lens.max()) if n else 0  # skip the storage's unused tail
    if n == 0 or smax == 0:
        return (torch.zeros(n, hq, d, dtype=torch.float32, device=q.device),
                torch.full((n, hq), float("-inf"), dtype=torch.float32, device=q.device))
    suffix_k, suffix_v = suffix_k[:, :, :smax], suffix_v[:, :, :smax]
    if suffix_rows is not None:
        rows = suffix_rows.long()
        suffix_k, suffix_v = suffix_k.index_select(0, rows), suffix_v.index_select(0, rows)
    qf = q.float().reshape(n, hkv, g, d)
    s = _scores(qf, suffix_k.float(), scale, softcap)  # [N, Hkv, G, S]
    key = torch.arange(smax, device=q.device)
    slen = suffix_lens.long().view(n, 1, 1, 1)
    visible = key < slen
    if sliding_window > 0:  # query at suffix index slen-1 sees suffix keys j > slen-1-W
        visible = visible & (key > slen - 1 - sliding_window)
    o, l = _masked_softmax_state(s, visible, suffix_v.float())
    return o.reshape(n, hq, d), l.reshape(n, hq)


def decode_attention_reference(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens,
                               seq_offsets, scale, softcap=0.0, sliding_window=0, suffix_rows=None):
    out_p, lse_p = decode_prefix_reference(q, prefix_k, prefix_v, prefix_lens, suffix_lens,
                                           seq_offsets, scale, softcap, sliding_window)
    out_s, lse_s = decode_suffix_reference(q, suffix_k, suffix_v, suffix_lens, scale, softcap,
                                           sliding_window, suffix_rows)
    out, _ = merge_attention_states(out_p, lse_p, out_s, lse_s)
    return out.to(q.dtype)


CPU_KERNELS = ("sse", "avx2", "avx512")  # the C++ tier's builds of one source, by vector width


def cpu_kernels() -> list[str]:
    """The C++ tier's kernels this CPU runs, best last (the tier picks the best)."""
    isas = native().decode_attention_cpu_isas()
    return [name for i, name in enumerate(CPU_KERNELS) if isas >> i & 1]


def decode_attention_cpu(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens, seq_offsets,
                         scale, softcap=0.0, sliding_window=0, suffix_rows=None, kernel=None):
    """The C++ tier: fp32 (other dtypes are converted, as the reference does), one call per layer.
    ``kernel``: one of :func:`cpu_kernels` (tests run each), default the best."""
    n, hq, d = q.shape
    num_prompts, hkv, lp, _ = prefix_k.shape
    f32 = lambda t: t.to(torch.float32).contiguous()
    i32 = lambda t: t.to(torch.int32).contiguous()
    tensors = [f32(q), f32(prefix_k), f32(prefix_v), i32(prefix_lens), f32(suffix_k), f32(suffix_v),
               i32(suffix_lens), i32(seq_offsets)]
    rows = i32(suffix_rows) if suffix_rows is not None else None
    out = torch.empty(n, hq, d, dtype=torch.float32)
    if n:
        native().decode_attention_cpu(*(t.data_ptr() for t in tensors), rows.data_ptr() if rows is not None else 0,
                                      out.data_ptr(), n, hq, hkv, d,
                                      num_prompts, lp, suffix_k.shape[2], scale, softcap, sliding_window,
                                      torch.get_num_threads(), -1 if kernel is None else CPU_KERNELS.index(kernel))
    return out.to(q.dtype)


def _prefill_sdpa(q, k, v, scale, sliding_window):
    """Padded batch [B, L, H, D] -> [B, L, Hq, D], causal (and windowed), GQA by head groups."""
    mask = None
    if sliding_window > 0:
        i = torch.arange(q.shape[1], device=q.device)
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - sliding_window)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=mask, is_causal=mask is None, scale=scale,
                                       enable_gqa=True)
    return o.transpose(1, 2)


def prefill_attention_reference(q, k, v, cu_seqlens, scale, softcap=0.0, sliding_window=0):
    """Causal varlen attention: sequences padded to one batch, queries chunked to bound memory.
    On CPU (the engine's tier there) each sequence is computed alone, so its output is a function
    of that sequence only and never of the prompts prefilled beside it: padding lengths and batch
    shapes change the kernels' summation order."""
    if q.device.type == "cpu" and cu_seqlens.numel() > 2:
        cu = cu_seqlens.to(torch.int64).tolist()
        out = torch.zeros(q.shape, dtype=q.dtype)
        one = torch.tensor([0, 0], dtype=torch.int32)
        for a, b in zip(cu[:-1], cu[1:]):
            one[1] = b - a
            out[a:b] = _prefill_batch(q[a:b], k[a:b], v[a:b], one, scale, softcap, sliding_window)
        return out
    return _prefill_batch(q, k, v, cu_seqlens, scale, softcap, sliding_window)


def _prefill_batch(q, k, v, cu_seqlens, scale, softcap, sliding_window):
    t, hq, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    cu = cu_seqlens.to("cpu", torch.int64)
    lens = cu.diff()
    out = torch.zeros(t, hq, d, dtype=torch.float32, device=q.device)
    if t == 0 or lens.numel() == 0:
        return out.to(q.dtype)
    b, lmax = lens.numel(), int(lens.max())
    pos = torch.arange(lmax)
    valid = pos < lens[:, None]  # [B, Lmax]
    tok = torch.where(valid, cu[:-1, None] + pos, torch.zeros_like(pos)).to(q.device)
    valid = valid.to(q.device)
    # CPU (the engine's tier) without softcap: torch's fused SDPA. Padded keys are seen only by
    # padded queries, which are dropped. On GPU the reference stays the explicit softmax that the
    # GPU tests compare the Triton kernel with.
    if softcap == 0 and q.device.type == "cpu":
        outp = _prefill_sdpa(q.float()[tok], k.float()[tok], v.float()[tok], scale, sliding_window)
        out[tok[valid]] = outp[valid]
        return out.to(q.dtype)
    qp = q.float()[tok].view(b, lmax, hkv, g, d).permute(0, 2, 3, 1, 4)  # [B, Hkv, G, L, D]
    kp = k.float()[tok].permute(0, 2, 1, 3).unsqueeze(2)  # [B, Hkv, 1, L, D]
    vp = v.float()[tok].permute(0, 2, 1, 3).unsqueeze(2)
    chunk = max(1, _PREFILL_SCORE_BUDGET // max(1, b * hq * lmax))
    key = torch.arange(lmax, device=q.device)
    outp = torch.empty(b, hkv, g, lmax, d, dtype=torch.float32, device=q.device)
    for c0 in range(0, lmax, chunk):
        c1 = min(lmax, c0 + chunk)  # causal: this chunk sees keys [0, c1) only
        qi = torch.arange(c0, c1, device=q.device)
        visible = (key[None, :c1] <= qi[:, None])[None] & valid[:, None, :c1]  # [B, c, c1]
        if sliding_window > 0:
            visible = visible & (key[None, :c1] > qi[:, None] - sliding_window)[None]
        s = _scores(qp[:, :, :, c0:c1], kp[:, :, :, :c1], scale, softcap)
        outp[:, :, :, c0:c1], _ = _masked_softmax_state(s, visible[:, None, None], vp[:, :, :, :c1])
    outp = outp.permute(0, 3, 1, 2, 4).reshape(b, lmax, hq, d)
    out[tok[valid]] = outp[valid]
    return out.to(q.dtype)


# ----------------------------------------------------------------------------- public ops
def prefill_attention(q, k, v, cu_seqlens, scale, softcap=0.0, sliding_window=0, backend=None,
                      max_seqlen=None):
    """Causal varlen self-attention over packed tokens.

    q [T, Hq, D], k/v [T, Hkv, D] (Hq % Hkv == 0; query head h uses kv head h // (Hq // Hkv)),
    cu_seqlens int32[B+1]. Returns [T, Hq, D] in q's dtype. ``max_seqlen`` (longest sequence)
    spares the triton tier one host sync when the caller knows it."""
    _check_prefill(q, k, v, cu_seqlens, scale, softcap, sliding_window)
    tier = _tier("prefill_attention", q.device, backend, _PREFILL_TIERS)
    if tier == "triton":
        from fastpass.triton_kernels import attention as tk

        return tk.prefill(q, k, v, cu_seqlens, float(scale), float(softcap), sliding_window,
                          max_seqlen=max_seqlen)
    return prefill_attention_reference(q, k, v, cu_seqlens, float(scale), float(softcap),
                                       sliding_window)


def decode_attention(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens,
                     seq_offsets, scale, softcap=0.0, sliding_window=0, backend=None,
                     max_seqs_per_prompt=None, suffix_rows=None):
    """One new query per sequence against its prompt's shared prefix plus its own suffix.

    q [N, Hq, D]; prefix_k/v [P, Hkv, Lp_max, D] with prefix_lens int32[P] (left-aligned);
    suffix_k/v [N, Hkv, S_max, D] with suffix_lens int32[N] counting the current token; rows
    seq_offsets[p]:seq_offsets[p+1] belong to prompt p. Returns [N, Hq, D] in q's dtype.
    ``suffix_rows`` (int32 [N], optional): row i's suffix lives at suffix_k/v[suffix_rows[i]] (the
    storage then has any number of rows), so a scheduler can reorder and refill the batch while
    every sample's suffix stays where it was written.
    ``max_seqs_per_prompt`` (an upper bound on seq_offsets' steps) keeps the triton tier free of
    host syncs, so it can run inside a captured CUDA graph."""
    _check_decode(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens, seq_offsets,
                  scale, softcap, sliding_window, suffix_rows)
    tier = _tier("decode_attention", q.device, backend, _DECODE_TIERS)
    if tier == "cpu":
        return decode_attention_cpu(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens,
                                    seq_offsets, float(scale), float(softcap), sliding_window, suffix_rows)
    if tier == "triton":
        from fastpass.triton_kernels import attention as tk

        return tk.decode(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens,
                         seq_offsets, float(scale), float(softcap), sliding_window,
                         max_seqs_per_prompt=max_seqs_per_prompt, suffix_rows=suffix_rows)
    return decode_attention_reference(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v,
                                      suffix_lens, seq_offsets, float(scale), float(softcap),
                                      sliding_window, suffix_rows)
