import os

import pytest

# Triton kernels run under the interpreter on CPU machines; it must be set before any
# @triton.jit decorates, so before the tests import fastpass.triton_kernels.
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a dependency
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if _HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ---- the summary names what was skipped and why -------------------------------------------------
DATA_HINT = ("the real eval sets (GSM8K, MATH-500, AIME JSONL) live in ../shared/data beside the checkout, "
             "which a fresh clone and CI do not have; put the files there to run these tests")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One section listing the skipped tests by reason, naming each data-dependent one: the final
    'N passed, M skipped' line alone does not say that real-data checks did not run."""
    groups: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        groups.setdefault(_skip_reason(report), []).append(report.nodeid)
    if not groups:
        return
    terminalreporter.section("skipped tests, by reason")
    for reason, ids in sorted(groups.items(), key=lambda kv: (-("shared/data" in kv[0]), -len(kv[1]))):
        data = "shared/data" in reason
        terminalreporter.write_line(f"{len(ids)} skipped: {reason}" + (f" ({DATA_HINT})" if data else ""))
        if data or len(ids) <= 6:
            for nodeid in ids:
                terminalreporter.write_line(f"    {nodeid}")
