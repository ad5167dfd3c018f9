"""Intra-op thread count for CPU decoding, chosen by timing the real work.

On a loaded machine small GEMMs can run far slower with every core than with one (threads wait at
OpenMP barriers for a descheduled sibling: 15 ms vs 0.6 ms was measured for one [16, 576] x
[576, 1536] matmul on the 2-core build machine); on an idle machine more threads win. So the
engine times a probe matmul of the model's own layer shape (decode rows, or prompt tokens for
prefill) under each candidate count, keeps the fastest, and re-probes periodically. Probing with
the real steps was tried first: one step at the bad setting cost seconds under load.

Where Linux tells how busy the machine is (/proc/stat and this process's own CPU time), the count
follows the cores that other processes leave free, measured over the last half second: a
neighbour that keeps a core busy takes that core out of the count at once, with no probe (a probe
under contention is noisy, and a wrong 2-thread step costs a barrier stall per op). Probes decide
only when the machine is neither clearly idle nor clearly busy."""
from __future__ import annotations

import contextlib
import os
import time

import torch

REPROBE_EVERY = 32
BUDGET_WINDOW_S = 0.5
IDLE_BELOW, BUSY_ABOVE = 0.2, 0.8  # a neighbour's share of one core: clearly idle / clearly busy


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


class CoreBudget:
    """Cores used by other processes over the last window: machine-wide busy time (/proc/stat)
    minus this process's own (/proc/self/stat). None where that cannot be read or does not describe
    the cores this process may use (e.g. a container that sees the host's CPUs)."""

    def __init__(self):
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()
        self.usable = self._last is not None and self._last[2] == self.cores

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as fh:
                lines = fh.read().splitlines()
            with open("/proc/self/stat") as fh:
                own = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = [int(x) for x in lines[0].split()[1:]]
        busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle and iowait
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        return time.monotonic(), busy, cpus, int(own[11]) + int(own[12])  # utime + stime

    def others(self, min_window: float = BUDGET_WINDOW_S):
        """Cores other processes kept busy since the last call at least ``min_window`` s ago (else None)."""
        if not self.usable:
            return None
        now = self._read()
        if now is None or now[0] - self._last[0] < min_window:
            return None
        (t0, busy0, _, own0), (t1, busy1, _, own1) = self._last, now
        self._last = now
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (self.hz * (t1 - t0))


class StepThreads:
    """Runs decode steps with as many threads as other processes leave cores free (CoreBudget),
    re-read every half second; where that is unclear or unknown, with the count a probe matmul of
    the step's shape finds fastest, re-probed every ``REPROBE_EVERY`` steps (machine load drifts)."""

    def __init__(self, model, rows: int, options: list[int]):
        self.model, self.rows, self.options = model, rows, options
        self.best = None
        self._since = 0
        self.budget = CoreBudget()
        self.choices = {"budget": 0, "probe": 0}

    def _choose(self):
        others = self.budget.others()
        if others is None:
            if self.best is not None and self._since < REPROBE_EVERY:
                return self.best
        elif others < IDLE_BELOW or others > BUSY_ABOVE:
            free = max(1, round(self.budget.cores - others))
            self.choices["budget"] += 1
            return max([o for o in self.options if o <= free] or [min(self.options)])
        self._since = 0
        self.choices["probe"] += 1
        return pick(self.model, self.rows, self.options)

    def run(self, step) -> None:
        self.best = self._choose()
        torch.set_num_threads(self.best)
        step()
        self._since += 1
