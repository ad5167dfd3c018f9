"""A fixed background load for the e2e benches: measure fastpass and its baselines on a busy machine.

``background_load("matmul")`` starts one process running a torch fp32 matmul loop with one thread,
pinned to one core (the first one this process may use: the core vLLM-CPU's automatic binding
computes on, reserving the last for its front end, so the load lands on a core every side uses),
and stops it on exit. It stands for the
neighbour a shared machine has (another job, a second screen): each side is timed idle and under
the same load in one run, and the bench reports both and the slowdown. The process is ended by its
own pid (SIGTERM, then SIGKILL), never by name."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

_LOOP = r"""
import os, signal, sys, time
import torch
core = int(sys.argv[1])
if core >= 0 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {core})
torch.set_num_threads(1)
a = torch.randn(384, 384)
b = torch.randn(384, 384)
done = [0]
def stop(*_):
    print(f"load: {done[0]} matmuls", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("load: running", flush=True)
while True:
    a @ b
    done[0] += 1
"""

LOADS = {"matmul": "1-core torch matmul loop (1 thread, pinned)"}


def describe(kind: str | None) -> str:
    return "idle" if kind in (None, "idle") else f"busy: {LOADS[kind]}"


def _core() -> int:
    try:
        return min(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return -1


@contextlib.contextmanager
def background_load(kind: str | None = "matmul", settle_s: float = 1.0):
    """Yields a dict filled on exit with ``matmuls`` (work the load did) and ``seconds``;
    ``kind`` None or "idle": no load (the same dict, so callers stay uniform)."""
    info: dict = {"kind": kind or "idle"}
    if kind in (None, "idle"):
        yield info
        return
    if kind not in LOADS:
        raise ValueError(f"unknown background load {kind!r}: choose one of idle, {', '.join(LOADS)}")
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(_core())], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    t0 = time.perf_counter()
    try:
        line = proc.stdout.readline()  # torch imported, loop started
        if "running" not in line:
            raise RuntimeError(f"background load did not start (exit code {proc.poll()})")
        time.sleep(settle_s)
        yield info
    finally:
        info["seconds"] = time.perf_counter() - t0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            for word in (out or "").split():
                if word.isdigit():
                    info["matmuls"] = int(word)
