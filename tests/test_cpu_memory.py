"""The CPU engine's malloc thresholds: a freed block of a decode step's size is reused, not faulted in anew."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (Linux)")

# 30 MB: under the fixed 32 MiB mmap threshold; glibc's adaptive threshold, raised to the size of the
# first freed block, still maps a block of that same size afresh
_PROBE = """
import resource, sys, torch
from fastpass.engine import cpu_memory
tuned = cpu_memory.keep_freed_blocks() if sys.argv[1] == "1" else False
def touch():
    t = torch.empty(30 << 18, dtype=torch.float32)  # 30 MiB
    t.fill_(1.0)
    del t
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool, env=None) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return int(out[0]), int(out[1])


def test_freed_block_is_reused_only_with_the_thresholds():
    applied, faults = _faults(True)
    assert applied == 1
    assert faults < 500  # 30 MiB is ~7,700 pages: reused, not mapped again
    _, untuned = _faults(False)
    assert untuned > 5000  # glibc's own policy maps it afresh: what the thresholds fix


def test_opt_out_leaves_malloc_alone():
    import os

    applied, faults = _faults(True, env={**os.environ, "FASTPASS_MALLOC_TUNING": "0"})
    assert applied == 0 and faults > 5000
