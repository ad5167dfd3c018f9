"""Intra-op thread count for CPU decoding, chosen by timing the real work.

On a loaded machine small GEMMs can run far slower with every core than with one (threads wait at
OpenMP barriers for a descheduled sibling: 15 ms vs 0.6 ms was measured for one [16, 576] x
[576, 1536] matmul on the 2-core build machine); on an idle machine more threads win. So the
engine times a probe matmul of the model's own layer shape (decode rows, or prompt tokens for
prefill) under each candidate count, keeps the fastest, and re-probes periodically. Probing with
the real steps was tried first: one step at the bad setting cost seconds under load."""
from __future__ import annotations

import contextlib
import time

import torch

REPROBE_EVERY = 32


def candidates() -> list[int]:
    n = torch.get_num_threads()
    return sorted({1, n}, reverse=True)


@contextlib.contextmanager
def restored_threads():
    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _timed(fn, threads: int) -> float:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _probe_layer(model):
    return next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)


def pick(model, rows: int, options: list[int]) -> int:
    """Fastest of ``options`` for a matmul shaped like the model's first linear layer on ``rows`` rows
    (a few ms; the pathology it detects is per-op, so the proxy tracks the real forward)."""
    layer = _probe_layer(model)
    if len(options) < 2 or layer is None:
        return options[0]
    x = torch.randn(max(1, min(rows, 512)), layer.in_features, dtype=layer.weight.dtype)
    probe = lambda: layer(x)  # the layer's own forward: packed weights when the engine installed them
    with restored_threads():
        best = {th: min(_timed(probe, th) for _ in range(3)) for th in options}
    return min(best, key=best.get)


class StepThreads:
    """Runs decode steps with the thread count a probe matmul of the step's shape finds fastest,
    re-probed every ``REPROBE_EVERY`` steps (machine load drifts)."""

    def __init__(self, model, rows: int, options: list[int]):
        self.model, self.rows, self.options = model, rows, options
        self.best = None
        self._since = 0

    def run(self, step) -> None:
        if self.best is None or self._since >= REPROBE_EVERY:
            self.best = pick(self.model, self.rows, self.options)
            self._since = 0
        torch.set_num_threads(self.best)
        step()
        self._since += 1
