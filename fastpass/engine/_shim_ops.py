"""TEMPORARY stand-ins for interfaces A (fastpass.sampling.sample) and B (fastpass.attention),
used only while those modules have not landed. Deleted once they do."""
from __future__ import annotations

import torch


def _keyed_uniform(seed, stream_ids, sample_ids, step, vocab, device):
    # splitmix-style hash in int64 arithmetic; only a stand-in for the real counter-based noise.
    tok = torch.arange(vocab, device=device, dtype=torch.int64)
    x = (torch.as_tensor(seed, device=device).to(torch.int64) * 1000003
         + stream_ids[:, None] * 7919 + sample_ids[:, None] * 104729
         + torch.as_tensor(step, device=device).to(torch.int64) * 15485863) * 2654435761 + tok
    x = (x ^ (x >> 17)) * 0x2545F491
    x = (x ^ (x >> 13)) * 0x5851F42D
    x = x ^ (x >> 16)
    return ((x & 0xFFFFFF).to(torch.float32) + 0.5) / float(1 << 24)


def sample(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=0, stream_ids=None, step=0,
           sample_ids=None, backend=None):
    B, V = logits.shape
    dev = logits.device
    stream_ids = torch.arange(B, device=dev) if stream_ids is None else stream_ids
    sample_ids = torch.zeros(B, dtype=torch.int64, device=dev) if sample_ids is None else sample_ids
    x = logits.float()
    greedy = x.argmax(-1)
    t = torch.as_tensor(temperature, device=dev, dtype=torch.float32).expand(B)
    x = x / t.clamp_min(1e-6)[:, None]
    if top_k > 0:
        kth = x.topk(min(top_k, V), -1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0 or min_p > 0.0:
        p = x.softmax(-1)
        if min_p > 0.0:
            x = x.masked_fill(p < min_p * p.max(-1, keepdim=True).values, float("-inf"))
        if top_p < 1.0:
            ps, idx = p.sort(-1, descending=True)
            drop = (ps.cumsum(-1) - ps) > top_p
            x = x.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    u = _keyed_uniform(seed, stream_ids, sample_ids, step, V, dev)
    drawn = (x - torch.log(-torch.log(u))).argmax(-1)
    return torch.where(t > 0, drawn, greedy)


def _merge(o1, l1, o2, l2):
    m = torch.maximum(l1, l2)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
    return (o1 * w1[..., None] + o2 * w2[..., None]) / (w1 + w2)[..., None]


def _scores(q, k, scale, softcap):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    return s


def prefill_attention(q, k, v, cu_seqlens, scale, softcap=0.0, sliding_window=0, backend=None):
    out = torch.empty_like(q)
    g = q.shape[1] // k.shape[1]
    bounds = cu_seqlens.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        qq = q[a:b].transpose(0, 1).float()
        kk = k[a:b].transpose(0, 1).float().repeat_interleave(g, 0)
        vv = v[a:b].transpose(0, 1).float().repeat_interleave(g, 0)
        s = _scores(qq, kk, scale, softcap)
        i = torch.arange(b - a, device=q.device)
        mask = i[None, :] > i[:, None]
        if sliding_window > 0:
            mask |= i[None, :] <= i[:, None] - sliding_window
        s = s.masked_fill(mask, float("-inf"))
        out[a:b] = torch.matmul(s.softmax(-1), vv).transpose(0, 1).to(q.dtype)
    return out


def decode_attention(q, prefix_k, prefix_v, prefix_lens, suffix_k, suffix_v, suffix_lens, seq_offsets,
                     scale, softcap=0.0, sliding_window=0, backend=None):
    N, Hq, D = q.shape
    P, Hkv, Lp, _ = prefix_k.shape
    g = Hq // Hkv
    counts = (seq_offsets[1:] - seq_offsets[:-1]).long()
    prompt_of = torch.repeat_interleave(torch.arange(P, device=q.device), counts, output_size=N)
    qpos = prefix_lens.long()[prompt_of] + suffix_lens.long() - 1
    # suffix: per sequence
    qs = q.float().view(N, Hkv, g, D)
    s = _scores(qs, suffix_k.float(), scale, softcap)  # [N, Hkv, g, S]
    j = torch.arange(suffix_k.shape[2], device=q.device)
    smask = j[None, :] >= suffix_lens.long()[:, None]
    if sliding_window > 0:
        smask |= (prefix_lens.long()[prompt_of][:, None] + j[None, :]) <= qpos[:, None] - sliding_window
    s = s.masked_fill(smask[:, None, None, :], float("-inf"))
    l_s = torch.logsumexp(s, -1)
    o_s = torch.matmul(torch.softmax(s, -1).nan_to_num(0.0), suffix_v.float())
    # prefix: per prompt, sequences x grouped heads folded into rows
    o_p = torch.empty_like(o_s)
    l_p = torch.empty_like(l_s)
    offs = seq_offsets.tolist()
    jp = torch.arange(Lp, device=q.device)
    for p in range(P):
        a, b = offs[p], offs[p + 1]
        if a == b:
            continue
        qp = qs[a:b].permute(1, 0, 2, 3).reshape(Hkv, (b - a) * g, D)
        sp = _scores(qp, prefix_k[p].float(), scale, softcap)  # [Hkv, n*g, Lp]
        pm = (jp[None, :] >= prefix_lens[p].long())
        if sliding_window > 0:
            pm = pm | (jp[None, :] <= qpos[a:b, None] - sliding_window)
            pm = pm.repeat_interleave(g, 0)
        sp = sp.masked_fill(pm[None], float("-inf"))
        l_p[a:b] = torch.logsumexp(sp, -1).view(Hkv, b - a, g).permute(1, 0, 2)
        o_p[a:b] = torch.matmul(torch.softmax(sp, -1).nan_to_num(0.0), prefix_v[p].float()).view(
            Hkv, b - a, g, D).permute(1, 0, 2, 3)
    return _merge(o_p, l_p, o_s, l_s).view(N, Hq, D).to(q.dtype)
