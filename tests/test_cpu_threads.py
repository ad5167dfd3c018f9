"""CPU decode threads on a shared machine: the cores other processes use are measured, and decode
steps use only the ones left free."""
import subprocess
import sys
import time

import pytest
import torch

from fastpass.engine import cpu_threads
from fastpass.engine.tiny_models import tiny_model

LINUX_PROC = cpu_threads.CoreBudget().usable
needs_proc = pytest.mark.skipif(not LINUX_PROC, reason="needs Linux /proc/stat describing this process's cores")


def _fake_budget(monkeypatch, others_cores: float, cores: int = 2):
    """CoreBudget readings where other processes keep ``others_cores`` cores busy."""
    clock = {"t": 0.0, "busy": 0, "own": 0}

    def read():
        clock["t"] += 1.0
        clock["busy"] += int(100 * (others_cores + 1.0))  # neighbours + this process at one core
        clock["own"] += 100
        return clock["t"], clock["busy"], cores, clock["own"]

    monkeypatch.setattr(cpu_threads.CoreBudget, "_read", staticmethod(read))
    monkeypatch.setattr(cpu_threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(cpu_threads.os, "sysconf", lambda name: 100 if name == "SC_CLK_TCK" else 4096,
                        raising=False)


@pytest.mark.parametrize("others,want", [(0.0, 2), (0.1, 2), (1.0, 1), (1.9, 1), (3.0, 1)])
def test_threads_follow_the_cores_others_leave_free(monkeypatch, others, want):
    _fake_budget(monkeypatch, others)
    probes = []
    monkeypatch.setattr(cpu_threads, "pick", lambda *a: probes.append(a) or 2)
    steps = cpu_threads.StepThreads(tiny_model("llama"), 8, [2, 1])
    seen = []
    with cpu_threads.restored_threads():
        for _ in range(3):
            steps.run(lambda: seen.append(torch.get_num_threads()))
    assert seen == [want] * 3 and not probes and steps.choices["budget"] == 3


def test_unclear_load_falls_back_to_the_probe(monkeypatch):
    _fake_budget(monkeypatch, 0.5)
    monkeypatch.setattr(cpu_threads, "pick", lambda *a: 1)
    steps = cpu_threads.StepThreads(tiny_model("llama"), 8, [2, 1])
    with cpu_threads.restored_threads():
        steps.run(lambda: None)
    assert steps.best == 1 and steps.choices == {"budget": 0, "probe": 1}


@needs_proc
def test_a_busy_neighbour_is_measured():
    budget = cpu_threads.CoreBudget()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        budget.others(min_window=0.0)  # start the window with the neighbour running
        time.sleep(1.0)
        busy = budget.others()
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy > 0.6  # one core (less what the scheduler gave others)
