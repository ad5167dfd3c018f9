"""The CPU engine's malloc thresholds: blocks of a decode step's size come from the heap and are
reused, not mapped and faulted in anew."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (Linux)")

# A decode step's pair of 25 MiB blocks (logits and the sampler's working copy), both live, then
# freed. The probe prints: thresholds applied, bytes glibc served by mmap for the first block
# (mallinfo2's hblkhd), and the page faults of three steps after three warm-up steps. Without the
# thresholds the first block is always mapped; what later steps fault varies with where the heap
# lies (0, 6,400 or 38,304 pages were seen for the same probe), so only the tuned count is bounded.
# (Warm-up matters: posix_memalign's padding means one freed block need not fit the next request
# of its size, so a single alloc/free pair can fault anew even when tuned.)
_PROBE = """
import ctypes, resource, sys, torch
from fastpass.engine import cpu_memory
tuned = cpu_memory.keep_freed_blocks() if sys.argv[1] == "1" else False
class Info(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def step():
    logits = torch.empty(25 << 18, dtype=torch.float32); logits.fill_(1.0)
    work = torch.empty(25 << 18, dtype=torch.float32); work.fill_(2.0)
    del logits, work
mapped = libc.mallinfo2().hblkhd
first = torch.empty(25 << 18, dtype=torch.float32)
mapped = libc.mallinfo2().hblkhd - mapped
del first
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(int(tuned), mapped, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_BLOCK = 25 << 20


def _probe(tuned: bool, env=None) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return int(out[0]), int(out[1]), int(out[2])


def test_decode_step_blocks_come_from_the_heap_and_are_reused_with_the_thresholds():
    for _ in range(2):
        applied, mapped, faults = _probe(True)
        assert applied == 1 and mapped == 0
        assert faults < 500  # three steps would fault up to 38,400 pages if mapped anew


def test_without_the_thresholds_glibc_maps_the_block():
    applied, mapped, _ = _probe(False)
    assert applied == 0 and mapped >= _BLOCK


def test_opt_out_leaves_malloc_alone():
    applied, mapped, _ = _probe(True, env={**os.environ, "FASTPASS_MALLOC_TUNING": "0"})
    assert applied == 0 and mapped >= _BLOCK
