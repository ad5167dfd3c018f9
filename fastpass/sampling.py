"""Fused temperature / top-k / top-p / min-p sampler: ``sample(logits, ...) -> int64[B]``.

Exact two-level inverse-CDF sampling over tiles of each row (SPEC §6, P2): one pass computes per
tile the max m and s = sum exp(x - m) of x = logits / T; a keyed uniform picks a tile by its mass
s * exp(m - M); a second keyed uniform picks the token inside that tile. The softmax is never
materialised; there is one exp per element and two random numbers per row.

Randomness is a pure function of (seed, stream_id, sample_id, step, counter) through a 32-bit
counter-based hash (``keyed_uniforms``) that the Triton kernel computes bit-identically, so a
row's draw never depends on the batch it sits in, and the tiers agree draw for draw (up to float
summation order at a bin edge). ``seed`` and ``step`` may be 0-d device tensors, so a captured CUDA
graph stays random when the caller bumps ``step`` in place; the GPU path never syncs with the host.

Filters follow Hugging Face ``generate`` (order temperature -> top_k -> top_p -> min_p) and are
exact: each becomes a per-row cutoff on x (keep x >= cutoff). On GPU with B >= 128 rows, top-k
and top-p are found by a search over thresholds in Triton, else by torch.topk / a full sort (no
host sync either way). On CPU top-k uses torch.topk, and top-p the row's top 256 (then 4096)
values when they hold mass >= top_p, with float64 masses, else the sort. min-p is
x >= max(x) + log(min_p). Ties at a cutoff are all kept (HF drops part of a tie at the top-p
edge by sort position). x is logits * float32(1/T), where HF divides by T (1 ulp apart).
Each uniform carries 24 random bits: a tile or token is drawn with its exact probability
rounded to 2^-24 of its tile's (or row's) mass, the resolution of float32 sampling.

Non-finite logits: the reference tier raises on NaN or +inf (it checks on the host); the Triton
tier does not check (no host sync) and treats NaN as -inf and +inf as the largest float. A row
whose logits are all -inf returns its first index.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from fastpass._backend import choose

MAX_TILE = 4096
# GPU top-k / top-p: the threshold search runs one program per row (latency ~ fixed up to a wave
# of rows); torch.sort / topk scale with B*V (5.2 / 0.85 ms at [512, 151936] bf16 on H100).
# The crossover is estimated, not measured.
_SEARCH_MIN_ROWS = 128
_LOG2E = 1.4426950408889634
_MASK32 = 0xFFFFFFFF
_SALTS = tuple((0x9E3779B9 * (i + 1)) & _MASK32 for i in range(9))


# --------------------------------------------------------------------------- keyed randomness
def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    # (h * c) mod 2^32 in int64 without overflow: split h into 16-bit halves.
    lo, hi = h & 0xFFFF, h >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _MASK32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _words64(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = v.to(torch.int64)
    return v & _MASK32, (v >> 32) & _MASK32


def keyed_uniforms(seed, stream_ids, sample_ids, step, counter, device=None) -> torch.Tensor:
    """Uniforms in [0, 1) (24-bit, float32), keyed by int64 values or tensors broadcast together
    (``counter`` too, e.g. [[0], [1]] for a row's two draws at once).

    Same hash as ``fastpass.triton_kernels.sampling._keyed_uniform``."""
    keys = [torch.as_tensor(v, dtype=torch.int64, device=device)
            for v in (seed, stream_ids, sample_ids, step, counter)]
    seed, stream_ids, sample_ids, step, counter = torch.broadcast_tensors(*keys)
    words = [*_words64(seed), *_words64(stream_ids), *_words64(sample_ids), *_words64(step),
             counter]
    h = torch.zeros_like(words[0])
    for word, salt in zip(words, _SALTS):
        h = _fmix32(h ^ word ^ salt)
    return (h >> 8).to(torch.float32) * (1.0 / 16777216.0)


# --------------------------------------------------------------------------- arguments
def tile_size(vocab: int) -> int:
    """Tile width of the two-level sampler: the next power of two of V, capped at MAX_TILE."""
    return min(MAX_TILE, 1 << max(0, (vocab - 1).bit_length()))


def _as_key_scalar(value, name: str, device) -> torch.Tensor | int:
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype != torch.int64:
            raise TypeError(f"{name} must be a python int or a 0-d int64 tensor; got {value.dtype} "
                            f"of shape {tuple(value.shape)}")
        if value.device != device:
            raise ValueError(f"{name} is on {value.device} but logits are on {device}: move it with "
                             f".to(logits.device)")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a python int or a 0-d int64 tensor, got {type(value).__name__}")
    return key64(value, name)


def key64(value: int, name: str = "seed") -> int:
    """A key in [-2^63, 2^64) as the int64 holding the same 64 bits (seed 2^63 and seed 0 differ);
    anything wider would wrap onto another key, so it is refused."""
    if not -(1 << 63) <= value < 1 << 64:
        raise ValueError(f"{name} = {value} does not fit in 64 bits: use a {name} in [0, 2**64)")
    return value - (1 << 64) if value >= 1 << 63 else value


def _check_scalar(name, value, kind, lo, hi, lo_open=False, hint=""):
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an int" if kind is numbers.Integral else "a number"
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if not (value > lo if lo_open else value >= lo) or not value <= hi:  # NaN fails both
        span = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi == math.inf else ']'}"
        raise ValueError(f"{name} must lie in {span}{hint}, got {value!r}")


def check_sampling_args(temperature=1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
                        repetition_penalty: float = 1.0) -> None:
    """The one check of the scalar sampling settings (the op, the Sampler and fp.screen use it)."""
    _check_scalar("temperature", temperature, numbers.Real, 0, math.inf, hint=" (0 = greedy)")
    if math.isinf(temperature):
        raise ValueError("temperature must be finite (0 = greedy, 1 = the model's distribution), got inf")
    _check_scalar("top_k", top_k, numbers.Integral, 0, math.inf, hint=" (0 = off)")
    _check_scalar("top_p", top_p, numbers.Real, 0, 1, lo_open=True, hint=" (1.0 = off)")
    _check_scalar("min_p", min_p, numbers.Real, 0, 1, hint=" (0.0 = off)")
    _check_scalar("repetition_penalty", repetition_penalty, numbers.Real, 0, math.inf, lo_open=True,
                  hint=" (1.0 = off)")
    if math.isinf(repetition_penalty):
        raise ValueError("repetition_penalty must be finite (1.0 = off), got inf")


def _as_row_ids(ids, name: str, batch: int, device) -> torch.Tensor | None:
    if ids is None:
        return None
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be an int64 tensor of shape [{batch}]")
    if ids.shape != (batch,) or ids.dtype != torch.int64:
        raise ValueError(f"{name} must be int64 of shape [{batch}], got {ids.dtype} {tuple(ids.shape)}")
    if ids.device != device:
        raise ValueError(f"{name} is on {ids.device} but logits are on {device}: move it with "
                         f".to(logits.device)")
    return ids.contiguous()


def _check_args(logits, temperature, top_k, top_p, min_p):
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("logits must be a 2-D tensor [batch, vocab]")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"logits must be float32, bfloat16 or float16, got {logits.dtype}")
    if logits.shape[1] == 0:
        raise ValueError("logits has an empty vocabulary dimension")
    check_sampling_args(1.0 if isinstance(temperature, torch.Tensor) else temperature, top_k, top_p, min_p)
    B = logits.shape[0]
    if isinstance(temperature, torch.Tensor):
        if temperature.shape != (B,) or not temperature.is_floating_point():
            raise ValueError(f"temperature tensor must be floating point of shape [{B}], got "
                             f"{temperature.dtype} {tuple(temperature.shape)}")
        if temperature.device != logits.device:
            raise ValueError(f"temperature is on {temperature.device} but logits are on "
                             f"{logits.device}: move it with .to(logits.device)")
        # a value check needs the host; only where that costs no device sync
        if temperature.device.type == "cpu" and bool((~(temperature >= 0)).any()):
            raise ValueError("temperature must be >= 0 (0 = greedy) and not NaN")


def _inv_temperature(temperature, batch: int, device) -> torch.Tensor | float:
    """1/T in float32 (0 marks a greedy row); a python float stays a scalar."""
    # a temperature so small that 1/T overflows float32 is greedy, as its limit is
    if isinstance(temperature, torch.Tensor):
        t = temperature.to(torch.float32)
        inv = 1.0 / t
        return torch.where((t > 0) & torch.isfinite(inv), inv, torch.zeros_like(t))
    with np.errstate(over="ignore"):
        inv = np.float32(1.0 / temperature) if temperature > 0 else np.float32(0.0)
    return float(inv) if np.isfinite(inv) else 0.0


# --------------------------------------------------------------------------- exact filters
def filter_cutoffs(logits, inv_t, top_k: int = 0, top_p: float = 1.0,
                   min_p: float = 0.0) -> torch.Tensor | None:
    """Per-row cutoff c on x = logits * inv_t (float32): the HF filters keep exactly x >= c.

    ``inv_t`` (float or float32[B]) with 0 for greedy rows is treated as 1. None when no filter
    is on. Vectorised torch, no host sync; NaN logits count as -inf here."""
    B, V = logits.shape
    k_on = 0 < top_k < V
    p_on = top_p < 1.0
    m_on = min_p > 0.0
    if not (k_on or p_on or m_on):
        return None
    if isinstance(inv_t, torch.Tensor):
        inv = torch.where(inv_t == 0, torch.ones_like(inv_t), inv_t)[:, None]
    else:
        inv = torch.full((B, 1), inv_t if inv_t != 0 else 1.0, dtype=torch.float32,
                         device=logits.device)
    clean = logits.nan_to_num(nan=float("-inf"), posinf=torch.finfo(logits.dtype).max)
    cut = torch.full((B,), float("-inf"), dtype=torch.float32, device=logits.device)
    if p_on:
        if logits.device.type == "cpu":
            top_p_cut = _top_p_cutoff_candidates
        elif logits.device.type == "cuda" and B >= _SEARCH_MIN_ROWS:
            top_p_cut = _top_p_cutoff_triton
        else:
            top_p_cut = _top_p_cutoff_sorted
        cut = torch.maximum(cut, top_p_cut(clean, inv, top_k if k_on else 0, top_p))
    elif k_on and logits.device.type == "cuda" and B >= _SEARCH_MIN_ROWS:
        cut = torch.maximum(cut, _top_k_cutoff_triton(clean, inv, top_k))
    elif k_on:
        kth = clean.topk(top_k, dim=-1, sorted=False).values.amin(dim=-1)
        cut = torch.maximum(cut, kth.float() * inv[:, 0])
    if m_on:
        x_max = clean.amax(dim=-1).float() * inv[:, 0]
        cut = torch.maximum(cut, x_max + math.log(min_p))
    return cut


def _top_p_cutoff_sorted(clean, inv, top_k: int, top_p: float) -> torch.Tensor:
    """HF's top-p (after top-k) over the fully sorted row: exact, no host sync, slow."""
    V = clean.shape[1]
    # scaling by inv > 0 is monotone, so sorting raw logits sorts x (ascending, as HF does)
    xs = clean.sort(dim=-1).values.float() * inv
    if top_k:
        xs = xs.masked_fill(xs < xs[:, V - top_k, None], float("-inf"))
    cum = xs.softmax(dim=-1).cumsum(dim=-1)
    n_removed = (cum <= 1.0 - top_p).sum(dim=-1).clamp_(max=V - 1)
    return xs.gather(1, n_removed[:, None])[:, 0]


def _threshold_search(clean, inv, limit: float, count: bool, lo=None) -> torch.Tensor:
    from fastpass.triton_kernels import sampling as k

    B, V = clean.shape
    if clean.stride(1) != 1:
        clean = clean.contiguous()
    out = torch.empty(B, dtype=torch.float32, device=clean.device)
    k._threshold_search_kernel[(B,)](clean, clean.stride(0), V, inv[:, 0].contiguous(),
                                     out if lo is None else lo, float(limit), out,
                                     HAS_LO=lo is not None, COUNT=count, TILE=1024, SPLITS=16,
                                     num_warps=8)
    return out


def _top_k_cutoff_triton(clean, inv, top_k: int) -> torch.Tensor:
    """HF's top-k cutoff (the k-th largest x) by a search over thresholds in Triton."""
    return _threshold_search(clean, inv, top_k, count=True)


def _top_p_cutoff_triton(clean, inv, top_k: int, top_p: float) -> torch.Tensor:
    """The same cutoff as _top_p_cutoff_sorted by a search over thresholds in Triton."""
    lo = _top_k_cutoff_triton(clean, inv, top_k) if top_k else None
    return _threshold_search(clean, inv, top_p, count=False, lo=lo)


def _top_p_cutoff_candidates(clean, inv, top_k: int, top_p: float, n_cand: int = 256) -> torch.Tensor:
    """The same cutoff from the row's n_cand largest values when they hold mass >= top_p; rows
    where they do not retry with 16x more candidates, then the full sort. A token is kept iff
    the mass strictly above it in descending order is < top_p (HF: ascending cumulative mass
    > 1 - top_p). Syncs with the host to pick the fallback rows, so it is for CPU tensors."""
    B, V = clean.shape
    n_cand = min(V, max(n_cand, top_k))
    x = clean.float() * inv
    x_max = x.amax(dim=-1, keepdim=True)
    cand = x.topk(n_cand, dim=-1).values                    # descending
    e = x.sub_(x_max).exp_()
    if top_k:
        kth = cand[:, top_k - 1:top_k]
        e.masked_fill_(clean.float() * inv < kth, 0.0)
        cand = cand.masked_fill(cand < kth, float("-inf"))
    # float64 sums: no accumulated cumsum rounding at the edge (each term ~1e-7 relative)
    p = torch.exp((cand - x_max).double()) / e.sum(dim=-1, keepdim=True, dtype=torch.float64)
    inclusive = p.cumsum(dim=-1)
    n_keep = ((inclusive - p) < top_p).sum(dim=-1)
    cut = cand.gather(1, (n_keep - 1)[:, None])[:, 0]
    short = inclusive[:, -1] < top_p
    if n_cand < V and bool(short.any()):
        rows = short.nonzero()[:, 0]
        if 16 * n_cand < V:
            cut[rows] = _top_p_cutoff_candidates(clean[rows], inv[rows], top_k, top_p, 16 * n_cand)
        else:
            cut[rows] = _top_p_cutoff_sorted(clean[rows], inv[rows], top_k, top_p)
    return cut


# --------------------------------------------------------------------------- reference tier
def sample_reference(logits, inv_t, cutoff, seed, step, stream_ids, sample_ids,
                     tile: int | None = None) -> torch.Tensor:
    """Plain-torch two-level sampler, the same tiling and keyed uniforms as the Triton tier."""
    B, V = logits.shape
    dev = logits.device
    tile = tile or tile_size(V)
    n_tiles = -(-V // tile)
    if not isinstance(inv_t, torch.Tensor):
        inv_t = torch.full((B,), inv_t, dtype=torch.float32, device=dev)
    greedy = inv_t == 0
    x = torch.empty((B, n_tiles * tile), dtype=torch.float32, device=dev)
    x[:, V:] = float("-inf")
    torch.mul(logits, torch.where(greedy, torch.ones_like(inv_t), inv_t)[:, None], out=x[:, :V])
    x = x.view(B, n_tiles, tile)
    raw_max = x.amax(dim=-1)
    if bool(torch.isnan(raw_max).any()) or bool(torch.isposinf(raw_max).any()):
        raise ValueError("logits contain NaN or +inf: fix the model output (mask with -inf, never NaN)")
    # greedy rows see the raw logits (inv 1); a row of all -inf falls back to index 0 either way
    greedy_tok = (x.view(B, -1).argmax(dim=-1) if bool(greedy.any())
                  else torch.zeros(B, dtype=torch.int64, device=dev))
    if cutoff is not None:
        x.masked_fill_(x < cutoff[:, None, None], float("-inf"))
        m = x.amax(dim=-1)
    else:
        m = raw_max
    # exp(d) as exp2(d * log2 e): 2-3x faster on CPU, and what tl.exp lowers to on GPU
    e = x.sub_(torch.where(m == float("-inf"), 0.0, m)[..., None]).mul_(_LOG2E).exp2_()
    s = e.sum(dim=-1)
    M = m.amax(dim=-1, keepdim=True)
    w = torch.where(s > 0, s * torch.exp(m - torch.where(M == float("-inf"), 0.0, M)), 0.0)

    stream = torch.arange(B, device=dev) if stream_ids is None else stream_ids
    sample = 0 if sample_ids is None else sample_ids
    u1, u2 = keyed_uniforms(seed, stream, sample, step, torch.tensor([[0], [1]], device=dev),
                            device=dev)
    tile_idx = _inverse_cdf(w, u1)
    e_tile = e.gather(1, tile_idx[:, None, None].expand(B, 1, tile))[:, 0]
    tok = tile_idx * tile + _inverse_cdf(e_tile, u2)
    return torch.where(greedy | (w.sum(dim=-1) == 0), greedy_tok, tok)


def _inverse_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the first cumulative weight above u * total, never a zero-weight entry."""
    cw = weights.cumsum(dim=-1)
    n_below = (cw <= (u * cw[:, -1])[:, None]).sum(dim=-1)
    pos = torch.arange(weights.shape[1], device=weights.device)
    last = torch.where(weights > 0, pos, 0).amax(dim=-1)
    return torch.minimum(n_below, last)


# --------------------------------------------------------------------------- triton tier
def sample_triton(logits, inv_t, cutoff, seed, step, stream_ids, sample_ids,
                  tile: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    from fastpass.triton_kernels import sampling as k

    B, V = logits.shape
    dev = logits.device
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    tile = tile or tile_size(V)
    n_tiles = -(-V // tile)
    out = torch.empty(B, dtype=torch.int64, device=dev)
    if B == 0:
        return out
    m = torch.empty((B, n_tiles), dtype=torch.float32, device=dev)
    s = torch.empty_like(m)
    arg = torch.empty((B, n_tiles), dtype=torch.int32, device=dev)
    inv_is_ptr = isinstance(inv_t, torch.Tensor)
    inv_ptr, inv_val = (inv_t.contiguous(), 0.0) if inv_is_ptr else (logits, inv_t)
    cut = cutoff if cutoff is not None else logits
    # measured on H100, [512, 151936]: bf16 best at 4 warps per 4096-tile (71 us vs 75 us at 8);
    # fp32 measured at 8 warps only (116 us, 80% of HBM bandwidth)
    warps = num_warps or (8 if tile >= 2048 and logits.element_size() == 4 else 4)
    has_greedy = inv_is_ptr or inv_val == 0.0
    k._tile_stats_kernel[(B, n_tiles)](
        logits, logits.stride(0), V, n_tiles, inv_ptr, inv_val, cut, m, s, arg,
        TILE=tile, INV_T_PTR=inv_is_ptr, HAS_CUTOFF=cutoff is not None, HAS_GREEDY=has_greedy,
        num_warps=warps)
    seed_is_ptr, step_is_ptr = isinstance(seed, torch.Tensor), isinstance(step, torch.Tensor)
    k._select_kernel[(B,)](
        logits, logits.stride(0), V, n_tiles, inv_ptr, inv_val, cut, m, s, arg, out,
        seed if seed_is_ptr else out, 0 if seed_is_ptr else seed,
        step if step_is_ptr else out, 0 if step_is_ptr else step,
        stream_ids if stream_ids is not None else out,
        sample_ids if sample_ids is not None else out,
        TILE=tile, NT=max(2, 1 << (n_tiles - 1).bit_length()),
        INV_T_PTR=inv_is_ptr, HAS_CUTOFF=cutoff is not None, HAS_GREEDY=has_greedy,
        SEED_PTR=seed_is_ptr, STEP_PTR=step_is_ptr, STEP_PER_ROW=step_is_ptr and step.dim() == 1,
        HAS_STREAM=stream_ids is not None, HAS_SAMPLE=sample_ids is not None, num_warps=warps)
    return out


_TIERS = {"triton": sample_triton, "reference": sample_reference}


# --------------------------------------------------------------------------- public op
def sample(logits: torch.Tensor, temperature=1.0, top_k: int = 0, top_p: float = 1.0,
           min_p: float = 0.0, seed=0, stream_ids=None, step=0, sample_ids=None,
           backend: str | None = None) -> torch.Tensor:
    """Draw one token per row of ``logits`` [B, V] -> int64[B] on the logits' device.

    temperature: float or float tensor [B] (0 = greedy: first arg-max). top_k (0 = off),
    top_p (1.0 = off), min_p (0.0 = off, relative to the max probability after temperature).
    seed: python int or 0-d int64 tensor on the logits' device; step: the same, or int64 [B]
    (each row at its own step). stream_ids, sample_ids: int64 [B] (defaults arange(B) and zeros). The draw of a row is a pure function of
    (seed, stream_id, sample_id, step) and its logits. backend: "triton" or "reference"
    (default: triton on CUDA, reference on CPU)."""
    _check_args(logits, temperature, top_k, top_p, min_p)
    B, V = logits.shape
    dev = logits.device
    seed = _as_key_scalar(seed, "seed", dev)
    if isinstance(step, torch.Tensor) and step.dim() == 1:  # one step per row (continuous batching)
        step = _as_row_ids(step, "step", B, dev)
    else:
        step = _as_key_scalar(step, "step", dev)
    stream_ids = _as_row_ids(stream_ids, "stream_ids", B, dev)
    sample_ids = _as_row_ids(sample_ids, "sample_ids", B, dev)
    # on CPU the reference (vectorised torch) beats the Triton interpreter by orders of magnitude
    order = ("triton", "reference") if dev.type == "cuda" else ("reference", "triton")
    tier = choose("sampling.sample", order, dev, backend)
    inv_t = _inv_temperature(temperature, B, dev)
    all_greedy = not isinstance(inv_t, torch.Tensor) and inv_t == 0.0
    cutoff = None if all_greedy else filter_cutoffs(logits, inv_t, top_k, top_p, min_p)
    return _TIERS[tier](logits, inv_t, cutoff, seed, step, stream_ids, sample_ids)
