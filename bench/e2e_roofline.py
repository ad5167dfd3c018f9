"""The e2e roofline: the device's ceilings measured in the same run, and the decode-step bound.

Never datasheet constants: an H200 has 1.4x an H100's bandwidth, and a shared CPU has what it has
right now. GPU: a device-to-device copy of 1 GiB (bytes read + written) and a bf16 8192^3 matmul on
random data (zeros run faster). CPU: a sum over 512 MB and a 2048^3 fp32 matmul at the current
thread count."""
from __future__ import annotations

import time

import numpy as np
import torch

from bench._common import sync


def _best(fn, device, reps, warmup=2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(reps):
        if str(device).startswith("cuda"):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            best = min(best, a.elapsed_time(b) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return best


def measure_ceilings(device) -> tuple[float, float, str]:
    """(bytes/s, FLOP/s, note) of this device now."""
    if str(device).startswith("cuda"):
        x = torch.empty(1 << 30, dtype=torch.uint8, device=device).random_(0, 255)
        y = torch.empty_like(x)
        bw = 2 * x.numel() / _best(lambda: y.copy_(x), device, reps=10)
        del x, y
        n = 8192
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=g, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, generator=g, dtype=torch.bfloat16)
        peak = 2 * n ** 3 / _best(lambda: a @ b, device, reps=10, warmup=3)
        del a, b
        torch.cuda.empty_cache()
        return bw, peak, f"measured now: copy {bw / 1e12:.2f} TB/s, bf16 matmul {peak / 1e12:.0f} TFLOP/s"
    big = torch.ones(128 << 20)
    a = torch.randn(2048, 2048)
    bw = big.numel() * 4 / _best(big.sum, "cpu", reps=3, warmup=1)
    peak = 2 * 2048 ** 3 / _best(lambda: a @ a, "cpu", reps=3, warmup=1)
    return bw, peak, f"measured now: {bw / 1e9:.0f} GB/s, {peak / 1e9:.0f} GFLOP/s fp32"


def roofline_tokens_per_s(model, prompt_lens, lengths, bw: float, peak: float) -> float:
    """Upper bound on generated tokens/s for prompts of ``prompt_lens`` whose samples generate
    ``lengths`` [P, n] tokens: each prompt prefilled once (compute), then at decode step s, over the
    B_s samples still running, max(bytes/BW, 2*params*B_s/peak) with bytes = weights + the KV of each
    prompt that still has a running sample, once + each running sample's s suffix tokens."""
    cfg = model.config
    elem = next(model.parameters()).element_size()
    params = sum(p.numel() for p in model.parameters())
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_tok = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * elem
    lengths = np.asarray(lengths, dtype=np.int64)
    prompt_lens = np.asarray(prompt_lens, dtype=np.int64)
    total = 2 * params * prompt_lens.sum() / peak
    steps = np.arange(int(lengths.max()))
    alive = lengths[None, :, :] > steps[:, None, None]          # [S, P, n]
    live_rows = alive.sum((1, 2))
    live_prompts = alive.any(2)                                  # [S, P]
    bytes_step = (params * elem + (live_prompts * prompt_lens[None, :]).sum(1) * kv_tok
                  + live_rows * steps * kv_tok)
    total += np.maximum(bytes_step / bw, 2 * params * live_rows / peak).sum()
    return float(lengths.sum() / total)
