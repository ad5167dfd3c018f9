"""The CPU engine's malloc thresholds: blocks of a decode step's size are reused, not faulted in anew."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (Linux)")

# A decode step's pair of 25 MiB blocks (logits and the sampler's working copy), both live, then
# freed. Three warm-up steps settle the heap (posix_memalign's padding means one freed block need
# not fit the next request of its size: a single alloc/free pair can fault anew even when tuned);
# the three steps after them are counted.
_PROBE = """
import resource, sys, torch
from fastpass.engine import cpu_memory
tuned = cpu_memory.keep_freed_blocks() if sys.argv[1] == "1" else False
def step():
    logits = torch.empty(25 << 18, dtype=torch.float32); logits.fill_(1.0)
    work = torch.empty(25 << 18, dtype=torch.float32); work.fill_(2.0)
    del logits, work
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PAGES_PER_STEP = 2 * (25 << 20) // 4096  # 12,800


def _faults(tuned: bool, env=None) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return int(out[0]), int(out[1])


def _untuned_faults_over(processes: int) -> int:
    # glibc's own policy depends on where the heap happens to lie (seen: 0, 6,400 or 38,304 faults
    # for the same probe), so the contrast pools a few processes
    return sum(_faults(False)[1] for _ in range(processes))


def test_decode_step_blocks_are_reused_only_with_the_thresholds():
    for _ in range(2):
        applied, faults = _faults(True)
        assert applied == 1
        assert faults < 500  # three steps would fault up to 38,400 pages if mapped anew
    assert _untuned_faults_over(4) > _PAGES_PER_STEP // 2  # what the thresholds fix


def test_opt_out_leaves_malloc_alone():
    applied, _ = _faults(True, env={**os.environ, "FASTPASS_MALLOC_TUNING": "0"})
    assert applied == 0
    opted_out = sum(_faults(True, env={**os.environ, "FASTPASS_MALLOC_TUNING": "0"})[1] for _ in range(4))
    assert opted_out > _PAGES_PER_STEP // 2
