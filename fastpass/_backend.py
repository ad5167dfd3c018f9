"""Tier selection: which implementation of an op runs for a given device.

Tiers, fastest first: ``cuda`` (csrc kernels) and ``triton`` on GPU; ``cpu`` (C++) and the
Triton interpreter on CPU; ``reference`` (plain torch / numpy) everywhere.
``FASTPASS_BACKEND=reference|cpu|triton|cuda`` forces one tier for every op (tests, debugging).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os

TIERS = ("cuda", "triton", "cpu", "reference")


class BackendUnavailable(RuntimeError):
    """A tier was requested that cannot run here; the message names the fix."""


@functools.lru_cache(maxsize=None)
def _load_native():
    try:
        return importlib.import_module("fastpass._C"), None
    except ImportError as exc:  # not built, or built for another Python
        return None, str(exc)


def native():
    """The compiled module ``fastpass._C``; raises one clear error when it is missing."""
    mod, err = _load_native()
    if mod is None:
        raise BackendUnavailable(
            f"fastpass._C is not built ({err}): run `pip install -e .` in the fastpass checkout "
            "(needs cmake, ninja and a C++17 compiler)")
    return mod


def has_native() -> bool:
    return _load_native()[0] is not None


@functools.lru_cache(maxsize=None)
def has_cuda_kernels() -> bool:
    """True when fastpass._C holds CUDA kernels and a GPU is visible."""
    mod = _load_native()[0]
    return bool(mod is not None and mod.built_with_cuda and mod.cuda_device_count() > 0)


@functools.lru_cache(maxsize=None)
def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device_type(device) -> str:
    if device is None:
        return "cpu"
    return getattr(device, "type", None) or str(device).split(":")[0]


def usable(tier: str, device) -> bool:
    """Whether ``tier`` can run on ``device`` on this machine."""
    dev = _device_type(device)
    if tier == "reference":
        return True
    if tier == "cpu":
        return dev == "cpu" and has_native()
    if tier == "cuda":
        return dev == "cuda" and has_cuda_kernels()
    if tier == "triton":
        if not has_triton():
            return False
        return dev == "cuda" or (dev == "cpu" and triton_interpreted())
    raise ValueError(f"unknown tier {tier!r}; choose from {', '.join(TIERS)}")


def _why_not(tier: str, device) -> str:
    dev = _device_type(device)
    if tier == "cpu":
        return ("the C++ tier runs on CPU tensors only" if dev != "cpu"
                else "fastpass._C is not built: run `pip install -e .`")
    if tier == "cuda":
        if dev != "cuda":
            return "the cuda tier needs CUDA tensors: move the input with .cuda()"
        if not has_native():
            return "fastpass._C is not built: run `pip install -e .`"
        if not native().built_with_cuda:
            return "fastpass._C was built without nvcc: reinstall with nvcc on PATH"
        return "no CUDA device is visible"
    if tier == "triton":
        if not has_triton():
            return "triton is not installed: `pip install triton`"
        return "Triton runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1 set before import"
    return "unknown reason"


def choose(op: str, implemented: tuple[str, ...], device, backend: str | None = None) -> str:
    """Pick the tier for ``op``: ``backend`` argument, else $FASTPASS_BACKEND, else the first
    tier of ``implemented`` (fastest first) that can run on ``device``."""
    wanted = backend or os.environ.get("FASTPASS_BACKEND") or None
    if wanted:
        if wanted not in TIERS:
            raise ValueError(f"unknown backend {wanted!r}: choose from {', '.join(TIERS)}")
        if wanted not in implemented:
            raise BackendUnavailable(
                f"{op} has no {wanted!r} tier (it has {', '.join(implemented)}): "
                "unset FASTPASS_BACKEND or pick one of those")
        if not usable(wanted, device):
            raise BackendUnavailable(f"{op}: tier {wanted!r} cannot run here: {_why_not(wanted, device)}")
        return wanted
    for tier in implemented:
        if usable(tier, device):
            return tier
    raise BackendUnavailable(f"{op}: no tier can run on device {device!s}")
