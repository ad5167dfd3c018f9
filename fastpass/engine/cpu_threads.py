"""Intra-op thread count for CPU decoding, chosen by timing the real work.

On a loaded machine small GEMMs can run far slower with every core than with one (threads wait at
OpenMP barriers for a descheduled sibling: 15 ms vs 0.6 ms was measured for one [16, 576] x
[576, 1536] matmul on the 2-core build machine); on an idle machine more threads win. So the
engine times a few real decode steps under each candidate count, keeps the fastest and re-probes
periodically, and picks the prefill count with a small probe matmul of the model's own shape."""
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


def pick_for_prefill(model, tokens: int, options: list[int]) -> int:
    """Fastest of ``options`` for a matmul like the model's first linear layer on ``tokens`` rows."""
    if len(options) < 2:
        return options[0]
    layer = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    if layer is None:
        return options[0]
    x = torch.randn(min(tokens, 512), layer.in_features, dtype=layer.weight.dtype)
    probe = lambda: torch.nn.functional.linear(x, layer.weight)
    best = {th: min(_timed(probe, th) for _ in range(3)) for th in options}
    return min(best, key=best.get)


class StepThreads:
    """Runs decode steps, alternating thread counts while probing, then the fastest one."""

    def __init__(self, options: list[int]):
        self.options = options
        self.best = options[0]
        self._probe = [th for th in options for _ in range(2)] if len(options) > 1 else []
        self._times: dict[int, float] = {}
        self._since = 0

    def run(self, step) -> None:
        if self._probe:
            th = self._probe.pop(0)
            self._times[th] = min(self._times.get(th, float("inf")), _timed(step, th))
            if not self._probe:
                self.best = min(self._times, key=self._times.get)
                torch.set_num_threads(self.best)
                self._times.clear()
            return
        step()
        self._since += 1
        if self._since >= REPROBE_EVERY and len(self.options) > 1:
            self._since = 0
            self._probe = list(self.options)
