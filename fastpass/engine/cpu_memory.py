"""glibc malloc thresholds for CPU decoding.

A decode step allocates and frees blocks of tens of MB (the LM head's logits [rows, vocab] and the
sampler's working copy: 25 MB each at 128 rows x 49152 tokens). glibc serves a block above its mmap
threshold (adaptive, at most 32 MiB) with a fresh mapping, and gives back free heap top above twice
that threshold, so such a block often returns as new pages: ~6,000 page faults, up to tens of ms for
one multiply (profiled: 55 ms instead of 1.3 ms), and a few % of a whole P7 job. Fixed thresholds
(mmap from 32 MiB, trim above 256 MiB) keep freed blocks in the process for the next step. The
settings are process-wide, made once, the first time a model samples on CPU; the memory kept is
at most the trim threshold above what the process uses. ``FASTPASS_MALLOC_TUNING=0`` leaves
malloc alone."""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_FROM = 32 << 20   # glibc's ceiling for this threshold on 64-bit
TRIM_ABOVE = 256 << 20

_done: bool | None = None


def keep_freed_blocks() -> bool:
    """Set the thresholds (glibc only, once per process); True when they are in effect."""
    global _done
    if _done is None:
        _done = False
        if os.environ.get("FASTPASS_MALLOC_TUNING", "1") != "0":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_FROM)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE))
    return _done
