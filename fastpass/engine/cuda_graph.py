"""Capture of the whole decode step (model, attention, sampler, stop check) in one CUDA graph."""
from __future__ import annotations

import warnings

import torch

WARMUP_STEPS = 2


def capture(step_fn, steps_left: int, pool=None):
    """Run ``WARMUP_STEPS`` real steps eagerly on a side stream (compiles kernels, settles the
    allocator), then capture one step without executing it. Returns (graph or None, steps run).
    Graphs that only read and write persistent buffers may share one memory ``pool``.
    Any failure returns None: the caller continues eagerly from the state the warm-up left."""
    warm = min(WARMUP_STEPS, steps_left)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warm):
            step_fn()
    torch.cuda.current_stream().wait_stream(side)
    if steps_left - warm <= 0:
        return None, warm
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, pool=pool):
            step_fn()
    except Exception as exc:  # fall back to eager: a kernel or model op that is not capturable
        warnings.warn(f"fastpass: CUDA graph capture failed, decoding eagerly ({type(exc).__name__}: {exc})",
                      RuntimeWarning, stacklevel=3)
        torch.cuda.synchronize()
        return None, warm
    return graph, warm
