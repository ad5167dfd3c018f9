"""TEMPORARY stand-in for interface A (fastpass.sampling.sample), used only while that module
has not landed. Deleted once it does."""
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
