"""Triton kernels of the fused sampler (``fastpass.sampling``).

Exact two-level inverse-CDF sampling, one read of each logits row:

* ``_tile_stats_kernel`` (grid B x n_tiles): per tile of x = logits * inv_t, the max m, the sum
  s = sum exp(x - m) over tokens at or above the row's cutoff, and the first arg-max (greedy);
* ``_select_kernel`` (grid B): tile masses w = s * exp(m - M) pick a tile with one keyed uniform,
  a second keyed uniform picks the token inside that one tile (re-read once).

One exp per element and two random numbers per row, versus a Gumbel-max sampler's per-element
random number and two logarithms. The keyed hash below is implemented bit-identically by
``fastpass.sampling.keyed_uniforms`` in torch, so the tiers can be compared draw for draw.
NaN logits are treated as -inf and +inf as the largest finite float (no host check on GPU).
"""
import triton
import triton.language as tl

_FLT_MAX = tl.constexpr(3.4028234663852886e38)


@triton.jit
def _fmix32(h):
    # murmur3's 32-bit finaliser; h is uint32 so products wrap modulo 2^32.
    h = h ^ (h >> 16)
    h = h * 0x85EBCA6B
    h = h ^ (h >> 13)
    h = h * 0xC2B2AE35
    h = h ^ (h >> 16)
    return h


@triton.jit
def _absorb(h, word, salt):
    return _fmix32(h ^ word ^ salt)


@triton.jit
def _split64(v):
    v = v.to(tl.int64)
    return (v & 0xFFFFFFFF).to(tl.uint32), ((v >> 32) & 0xFFFFFFFF).to(tl.uint32)


@triton.jit
def _keyed_uniform(seed, stream, sample, step, counter):
    """Uniform in [0, 1) (24 bits) keyed by int64 (seed, stream, sample, step) and a counter:
    h = 0; h = fmix32(h ^ word_i ^ salt_i) over the 32-bit words (seed lo, hi, stream lo, hi,
    sample lo, hi, step lo, hi, counter), salt_i = 0x9E3779B9 * (i + 1) mod 2^32; u = (h >> 8) / 2^24.
    Keep in sync with fastpass.sampling.keyed_uniforms."""
    s_lo, s_hi = _split64(seed)
    r_lo, r_hi = _split64(stream)
    k_lo, k_hi = _split64(sample)
    t_lo, t_hi = _split64(step)
    h = _fmix32(s_lo ^ 0x9E3779B9)
    h = _absorb(h, s_hi, 0x3C6EF372)
    h = _absorb(h, r_lo, 0xDAA66D2B)
    h = _absorb(h, r_hi, 0x78DDE6E4)
    h = _absorb(h, k_lo, 0x1715609D)
    h = _absorb(h, k_hi, 0xB54CDA56)
    h = _absorb(h, t_lo, 0x5384540F)
    h = _absorb(h, t_hi, 0xF1BBCDC8)
    h = _absorb(h, s_lo * 0 + counter, 0x8FF34781)
    return (h >> 8).to(tl.float32) * (1.0 / 16777216.0)


@triton.jit
def _row_key(row, seed_ptr, seed_val, step_ptr, step_val, stream_ptr, sample_ptr,
             SEED_PTR: tl.constexpr, STEP_PTR: tl.constexpr,
             HAS_STREAM: tl.constexpr, HAS_SAMPLE: tl.constexpr, STEP_PER_ROW: tl.constexpr):
    if SEED_PTR:
        seed = tl.load(seed_ptr).to(tl.int64)
    else:
        seed = seed_val.to(tl.int64)
    if STEP_PER_ROW:  # continuous batching: each row is at its own step of its own sample
        step = tl.load(step_ptr + row).to(tl.int64)
    elif STEP_PTR:
        step = tl.load(step_ptr).to(tl.int64)
    else:
        step = step_val.to(tl.int64)
    if HAS_STREAM:
        stream = tl.load(stream_ptr + row).to(tl.int64)
    else:
        stream = row.to(tl.int64)
    if HAS_SAMPLE:
        sample = tl.load(sample_ptr + row).to(tl.int64)
    else:
        sample = row.to(tl.int64) * 0
    return seed, stream, sample, step


@triton.jit
def _scaled_tile(logits_ptr, row, stride_row, tile_idx, V, inv_t,
                 TILE: tl.constexpr):
    offs = tile_idx * TILE + tl.arange(0, TILE)
    in_row = offs < V
    x = tl.load(logits_ptr + row.to(tl.int64) * stride_row + offs, mask=in_row,
                other=float("-inf")).to(tl.float32)
    x = tl.where(x == x, x, float("-inf"))            # NaN -> -inf
    x = tl.minimum(x, _FLT_MAX)                       # +inf -> largest finite
    x = x * inv_t
    x = tl.where(in_row, x, float("-inf"))
    return offs, in_row, x


@triton.jit
def _row_inv_t(row, inv_t_ptr, inv_t_val, INV_T_PTR: tl.constexpr):
    if INV_T_PTR:
        inv_t = tl.load(inv_t_ptr + row)
    else:
        inv_t = inv_t_val
    greedy = inv_t == 0.0
    inv_t = tl.where(greedy, 1.0, inv_t)
    return inv_t, greedy


@triton.jit
def _tile_stats_kernel(logits_ptr, stride_row, V, n_tiles,
                       inv_t_ptr, inv_t_val, cutoff_ptr,
                       max_ptr, sum_ptr, arg_ptr,
                       TILE: tl.constexpr, INV_T_PTR: tl.constexpr, HAS_CUTOFF: tl.constexpr,
                       HAS_GREEDY: tl.constexpr):
    row = tl.program_id(0)
    tile_idx = tl.program_id(1)
    inv_t, greedy = _row_inv_t(row, inv_t_ptr, inv_t_val, INV_T_PTR)
    offs, in_row, x = _scaled_tile(logits_ptr, row, stride_row, tile_idx, V, inv_t, TILE)
    out = row.to(tl.int64) * n_tiles + tile_idx
    if HAS_GREEDY:   # the arg-max costs a second reduction: skip it when no row is greedy
        tl.store(arg_ptr + out, tl.argmax(x, axis=0).to(tl.int32))   # first index on ties
    if HAS_CUTOFF:
        cut = tl.load(cutoff_ptr + row)
        x = tl.where(x >= cut, x, float("-inf"))
    m = tl.max(x, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    s = tl.sum(tl.exp(x - m_safe), axis=0)
    tl.store(max_ptr + out, m)
    tl.store(sum_ptr + out, s)


@triton.jit(do_not_specialize=["seed_val", "step_val"])
def _select_kernel(logits_ptr, stride_row, V, n_tiles,
                   inv_t_ptr, inv_t_val, cutoff_ptr,
                   max_ptr, sum_ptr, arg_ptr, out_ptr,
                   seed_ptr, seed_val, step_ptr, step_val, stream_ptr, sample_ptr,
                   TILE: tl.constexpr, NT: tl.constexpr,
                   INV_T_PTR: tl.constexpr, HAS_CUTOFF: tl.constexpr, HAS_GREEDY: tl.constexpr,
                   SEED_PTR: tl.constexpr, STEP_PTR: tl.constexpr,
                   HAS_STREAM: tl.constexpr, HAS_SAMPLE: tl.constexpr, STEP_PER_ROW: tl.constexpr):
    row = tl.program_id(0)
    inv_t, greedy = _row_inv_t(row, inv_t_ptr, inv_t_val, INV_T_PTR)

    t = tl.arange(0, NT)
    t_ok = t < n_tiles
    base = row.to(tl.int64) * n_tiles
    m = tl.load(max_ptr + base + t, mask=t_ok, other=float("-inf"))
    s = tl.load(sum_ptr + base + t, mask=t_ok, other=0.0)
    M = tl.max(m, axis=0)

    # greedy (and rows without mass): first tile holding the row max, then its first arg-max.
    # Without HAS_GREEDY no arg-max was stored: a massless row (all -inf) then returns the first
    # index of its first tile, which is the first index of the row.
    g_tile = tl.min(tl.where(m == M, t, NT), axis=0)
    g_tile = tl.minimum(g_tile, n_tiles - 1)
    if HAS_GREEDY:
        g_tok = g_tile * TILE + tl.load(arg_ptr + base + g_tile)
    else:
        g_tok = g_tile * TILE

    seed, stream, sample, step = _row_key(row, seed_ptr, seed_val, step_ptr, step_val,
                                          stream_ptr, sample_ptr,
                                          SEED_PTR, STEP_PTR, HAS_STREAM, HAS_SAMPLE, STEP_PER_ROW)
    u1 = _keyed_uniform(seed, stream, sample, step, 0)
    u2 = _keyed_uniform(seed, stream, sample, step, 1)

    # level 1: a tile by its mass
    M_safe = tl.where(M == float("-inf"), 0.0, M)
    w = tl.where(s > 0.0, s * tl.exp(m - M_safe), 0.0)
    cw = tl.cumsum(w, axis=0)
    W = tl.max(cw, axis=0)
    n_below = tl.sum((cw <= u1 * W).to(tl.int32), axis=0)
    last_tile = tl.max(tl.where(w > 0.0, t, 0), axis=0)
    tile_idx = tl.minimum(n_below, last_tile)

    # level 2: a token inside that tile, by exp(x - m_tile) recomputed exactly as in pass 1
    offs, in_row, x = _scaled_tile(logits_ptr, row, stride_row, tile_idx, V, inv_t, TILE)
    if HAS_CUTOFF:
        cut = tl.load(cutoff_ptr + row)
        x = tl.where(x >= cut, x, float("-inf"))
    m_tile = tl.load(max_ptr + base + tile_idx)
    m_tile = tl.where(m_tile == float("-inf"), 0.0, m_tile)
    e = tl.exp(x - m_tile)
    ce = tl.cumsum(e, axis=0)
    S = tl.max(ce, axis=0)
    j = tl.arange(0, TILE)
    n_below_j = tl.sum((ce <= u2 * S).to(tl.int32), axis=0)
    last_j = tl.max(tl.where(e > 0.0, j, 0), axis=0)
    tok = tile_idx * TILE + tl.minimum(n_below_j, last_j)

    # a row with no mass at all (every logit -inf) falls back to its arg-max
    use_greedy = greedy | (W == 0.0)
    tl.store(out_ptr + row, tl.where(use_greedy, g_tok, tok).to(tl.int64))


@triton.jit
def _uniforms_kernel(out_ptr, seed_ptr, stream_ptr, sample_ptr, step_ptr, n, counter,
                     BLOCK: tl.constexpr):
    """Test hook: the keyed uniforms for n keys, to compare with the torch hash bit for bit."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < n
    seed = tl.load(seed_ptr + i, mask=ok, other=0)
    stream = tl.load(stream_ptr + i, mask=ok, other=0)
    sample = tl.load(sample_ptr + i, mask=ok, other=0)
    step = tl.load(step_ptr + i, mask=ok, other=0)
    u = _keyed_uniform(seed, stream, sample, step, counter)
    tl.store(out_ptr + i, u, mask=ok)


@triton.jit
def _order_key(x):
    """float32 -> int32 with the same order (for non-NaN x)."""
    b = x.to(tl.int32, bitcast=True)
    return tl.where(b < 0, b ^ 0x7FFFFFFF, b)


@triton.jit
def _key_value(k):
    """Inverse of _order_key: the float32 whose key is k."""
    k = k.to(tl.int32)
    return tl.where(k < 0, k ^ 0x7FFFFFFF, k).to(tl.float32, bitcast=True)


@triton.jit
def _threshold_search_kernel(logits_ptr, stride_row, V, inv_t_ptr, lo_cut_ptr, limit, out_ptr,
                             HAS_LO: tl.constexpr, COUNT: tl.constexpr, TILE: tl.constexpr,
                             SPLITS: tl.constexpr):
    """Exact top-p (or, with COUNT, top-k) cutoff of one row, without sorting. HF keeps a token
    iff the mass of the tokens above it is < top_p of the total (after top-k, given as a lower
    cutoff), or iff fewer than k tokens are above it. On the order-preserving integer keys of x
    the kept set is {key >= s*}, s* the smallest s whose mass (count) strictly above is below
    limit * Z (limit = k); a SPLITS-ary search finds s* in ceil(32 / log2(SPLITS + 1)) passes
    over the row, each evaluating the mass (count) above SPLITS thresholds."""
    row = tl.program_id(0)
    inv_t = tl.load(inv_t_ptr + row)
    if HAS_LO:
        lo_cut = tl.load(lo_cut_ptr + row)
    else:
        lo_cut = float("-inf")
    # pass 0: row max M and mass Z = sum exp(x - M) over x >= lo_cut, online
    m = float("-inf")
    z = 0.0
    for start in range(0, V, TILE):
        offs, in_row, x = _scaled_tile(logits_ptr, row, stride_row, start // TILE, V, inv_t, TILE)
        x = tl.where(x >= lo_cut, x, float("-inf"))
        m_new = tl.maximum(m, tl.max(x, axis=0))
        z = z * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    if COUNT:
        target = limit
    else:
        target = limit * z
    # invariant: mass above lo >= target > mass above hi; the answer is in (lo, hi]
    lo = _order_key(lo_cut).to(tl.int64) - 1
    hi = _order_key(m).to(tl.int64)
    j = tl.arange(0, SPLITS).to(tl.int64) + 1
    while hi - lo > 1:
        s = lo + ((hi - lo) * j) // (SPLITS + 1)
        above = tl.zeros([SPLITS], dtype=tl.float32)
        for start in range(0, V, TILE):
            offs, in_row, x = _scaled_tile(logits_ptr, row, stride_row, start // TILE, V, inv_t, TILE)
            if COUNT:
                e = tl.where((x >= lo_cut) & in_row, 1.0, 0.0)
            else:
                e = tl.where(x >= lo_cut, tl.exp(x - m), 0.0)
            key = _order_key(x).to(tl.int64)
            above += tl.sum(tl.where(key[:, None] > s[None, :], e[:, None], 0.0), axis=0)
        ok = above < target                       # non-increasing in j
        hi = tl.minimum(hi, tl.min(tl.where(ok, s, hi), axis=0))
        lo = tl.maximum(lo, tl.max(tl.where(ok, lo, s), axis=0))
    tl.store(out_ptr + row, _key_value(hi))
