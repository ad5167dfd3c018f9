"""pass@k estimators and curves.

Unbiased pass@k (Chen et al. 2021) = 1 - C(n-c, k)/C(n, k), computed in log space as
1 - exp(sum_{j<k} log1p(-c/(n-j))): every k <= n in O(n) per problem, finite at n = 1e5.
The plug-in 1 - (1 - c/n)^k treats c/n as the true rate; by Jensen it is biased low for k > 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from fastpass import _backend

ESTIMATORS = {"unbiased": 0, "plugin": 1}
_TIERS = ("cuda", "cpu", "reference")


# Counts and k are int64 in every tier; 2**62 leaves headroom for n - j and n + 1 inside the kernels.
# Larger values (1e19 as a float, uint64 2**64 - 1, Python ints beyond int64) would wrap silently.
MAX_COUNT = 2**62


def _too_large(name: str, value) -> ValueError:
    return ValueError(f"{name} = {value} is too large: counts and k must be below 2**62")


def _as_counts(name: str, x) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of per-problem counts, got shape {arr.shape}")
    if arr.dtype.kind == "O" and all(isinstance(v, int) and not isinstance(v, bool) for v in arr):
        big = [i for i, v in enumerate(arr) if v >= MAX_COUNT]  # Python ints beyond int64
        if big:
            raise _too_large(f"{name}[{big[0]}]", arr[big[0]])
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not an integer count")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer counts, got dtype {arr.dtype}")
    if arr.dtype.kind in "fu":  # values an int64 cannot hold would wrap in astype
        big = np.flatnonzero(arr >= MAX_COUNT)
        if big.size:
            raise _too_large(f"{name}[{big[0]}]", arr[big[0]])
    return arr.astype(np.int64)


def _as_k(k) -> int:
    """One k as an int: integers (Python or numpy) or integral finite floats; one line otherwise."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise TypeError(f"k must be an integer, got {k!r}")
    if isinstance(k, (float, np.floating)) and (not np.isfinite(k) or k != round(k)):
        raise ValueError(f"k must be an integer, got {k}")
    if abs(k) >= MAX_COUNT:
        raise _too_large("k", k)
    return int(k)


def _as_ks(ks) -> np.ndarray:
    return np.asarray([_as_k(k) for k in np.atleast_1d(np.asarray(ks, dtype=object))], dtype=np.int64)


def _validate(n, c, ks: np.ndarray, estimator: str):
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    n, c = _as_counts("n", n), _as_counts("c", c)
    if n.size == 1 and c.size > 1:
        n = np.full_like(c, n[0])
    if n.shape != c.shape:
        raise ValueError(f"n and c must have one entry per problem: got {n.size} and {c.size}")
    checks = [(n <= 0, "n[{i}] = {v} must be a positive sample count", n),
              (c < 0, "c[{i}] = {v} is negative", c),
              (c > n, "c[{i}] = {v} exceeds n[{i}] = {n}", c)]
    for mask, msg, vals in checks:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            raise ValueError("problem " + str(i) + ": " + msg.format(i=i, v=int(vals[i]), n=int(n[i])))
    if ks.size == 0 or (ks < 1).any():
        raise ValueError(f"k must be >= 1, got {ks.tolist()}")
    if estimator == "unbiased" and n.size:
        bad = np.flatnonzero(n < ks.max())
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"problem {i}: k = {int(ks.max())} exceeds n[{i}] = {int(n[i])} "
                             "(the unbiased estimator needs k <= n; sample more or lower k)")
    return n, c


def _reference(n: np.ndarray, c: np.ndarray, ks: np.ndarray, estimator: str) -> np.ndarray:
    """Plain numpy: [P, len(ks)]."""
    if estimator == "plugin":
        rate = c[:, None] / n[:, None]
        with np.errstate(divide="ignore"):
            out = 0.0 - np.expm1(ks[None, :] * np.log1p(-rate))
        return np.where(rate >= 1.0, 1.0, out)
    j = np.arange(ks.max())[None, :]
    remaining = n[:, None] - c[:, None] - j
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(remaining > 0, np.log1p(-c[:, None] / (n[:, None] - j)), -np.inf)
    log_miss = np.cumsum(terms, axis=1)[:, ks - 1]
    return 0.0 - np.expm1(log_miss)


def _native_cpu(n, c, ks, estimator, want_matrix=True):
    mod = _backend.native()
    n, c, ks = (np.ascontiguousarray(a, dtype=np.int64) for a in (n, c, ks))
    out = np.empty((n.size, ks.size), dtype=np.float64) if want_matrix else None
    mean = np.empty(ks.size, dtype=np.float64)
    threads = int(os.environ.get("FASTPASS_NUM_THREADS", os.cpu_count() or 1))
    mod.passk_cpu(n.ctypes.data, c.ctypes.data, n.size, ks.ctypes.data, ks.size,
                  ESTIMATORS[estimator], 0 if out is None else out.ctypes.data, mean.ctypes.data,
                  threads)
    return out, mean


def _native_cuda(n, c, ks, estimator, want_matrix=True):
    """Device tensors in, device tensors out (float64)."""
    import torch

    mod = _backend.native()
    dev = n.device
    n, c = n.to(torch.int64).contiguous(), c.to(dev, torch.int64).contiguous()
    ks = np.asarray(ks, dtype=np.int64)
    col_of_k = np.full(int(ks.max()), -1, dtype=np.int32)
    col_of_k[ks - 1] = np.arange(ks.size, dtype=np.int32)
    col_of_k = torch.from_numpy(col_of_k).to(dev, non_blocking=True)
    out = torch.empty((n.numel(), ks.size), dtype=torch.float64, device=dev) if want_matrix else None
    mean = torch.empty(ks.size, dtype=torch.float64, device=dev)
    mod.passk_cuda(n.data_ptr(), c.data_ptr(), n.numel(), col_of_k.data_ptr(), col_of_k.numel(),
                   ks.size, ESTIMATORS[estimator], 0 if out is None else out.data_ptr(),
                   mean.data_ptr(), torch.cuda.current_stream(dev).cuda_stream)
    return out, mean


def _validate_device(n, c, ks: np.ndarray, estimator: str) -> None:
    """Checks counts where they live; only a failure copies them to the host to name the problem."""
    import torch

    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    if n.dtype.is_floating_point or c.dtype.is_floating_point or n.shape != c.shape or n.ndim != 1:
        _validate(n, c, ks, estimator)
        return
    if ks.size == 0 or (ks < 1).any():
        raise ValueError(f"k must be >= 1, got {ks.tolist()}")
    c = c.to(n.device)
    bad = (n <= 0) | (c < 0) | (c > n)
    if estimator == "unbiased":
        bad |= n < int(ks.max())
    if bool(torch.any(bad)):  # one host sync per call, not per problem
        _validate(n, c, ks, estimator)


def _is_cuda_tensor(x) -> bool:
    return getattr(getattr(x, "device", None), "type", None) == "cuda"


def pass_at_k_matrix(n, c, ks, estimator: str = "unbiased", backend: str | None = None):
    """Per-problem pass@k for each k in ``ks``: array [P, len(ks)] (float64).

    CUDA tensors in -> CUDA tensor out (the batched kernel); anything else -> numpy."""
    ks_arr = _as_ks(ks)
    sorted_ks, inverse = np.unique(ks_arr, return_inverse=True)
    in_order = sorted_ks.size == ks_arr.size and bool((inverse == np.arange(inverse.size)).all())
    on_gpu = _is_cuda_tensor(n)
    tier = _backend.choose("pass_at_k", _TIERS, "cuda" if on_gpu else "cpu", backend)
    if tier == "cuda":
        import torch

        _validate_device(n, c, ks_arr, estimator)
        out, _ = _native_cuda(n, c, sorted_ks, estimator)
        if in_order:
            return out
        return out[:, torch.as_tensor(inverse, device=out.device)]
    n_np, c_np = _validate(n, c, ks_arr, estimator)
    if tier == "cpu":
        out, _ = _native_cpu(n_np, c_np, sorted_ks, estimator)
    else:
        out = _reference(n_np, c_np, sorted_ks, estimator)
    return out if in_order else out[:, inverse]


def pass_at_k(n, c, k, estimator: str = "unbiased", backend: str | None = None):
    """pass@k per problem (float64). Scalars in -> float out; sequences -> array [P]."""
    scalar = np.ndim(n) == 0 and np.ndim(c) == 0
    if np.ndim(k) != 0:
        raise ValueError("k must be a single integer here; use pass_at_k_curve for several k")
    k = _as_k(k.item() if isinstance(k, np.ndarray) else k)
    out = pass_at_k_matrix(n, c, [k], estimator, backend)[:, 0]
    return float(out[0]) if scalar else out


def default_ks(n_min: int) -> list[int]:
    """Powers of two up to min n, plus min n itself."""
    ks = [1 << i for i in range(int(n_min).bit_length()) if (1 << i) <= n_min]
    if not ks or ks[-1] != n_min:
        ks.append(int(n_min))
    return ks


@dataclass
class PassKCurve:
    """Mean pass@k over problems, optionally with 95% intervals ``lo``/``hi``."""

    ks: np.ndarray
    values: np.ndarray
    estimator: str = "unbiased"
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    ci: str | None = None
    n: np.ndarray | None = field(default=None, repr=False)
    c: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in zip(self.ks, self.values)}

    def intervals(self) -> dict[int, tuple[float, float]] | None:
        if self.lo is None:
            return None
        return {int(k): (float(a), float(b)) for k, a, b in zip(self.ks, self.lo, self.hi)}

    def __getitem__(self, k: int) -> float:
        hits = np.flatnonzero(self.ks == k)
        if not hits.size:
            raise KeyError(f"pass@{k} is not on this curve (ks = {self.ks.tolist()})")
        return float(self.values[hits[0]])

    def __contains__(self, k) -> bool:
        return bool((self.ks == k).any())

    @property
    def per_problem(self) -> np.ndarray:
        return pass_at_k_matrix(self.n, self.c, self.ks, self.estimator)


def pass_at_k_curve(n, c, ks=None, estimator: str = "unbiased", ci: str | None = None,
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                    backend: str | None = None) -> PassKCurve:
    """Mean pass@k over problems for each k (default: powers of two up to min n, plus min n).

    ci="bootstrap" resamples problems; ci="beta" draws each problem's rate from its
    Beta(c+1, n-c+1) posterior. Both are seeded and give a ``level`` interval per k."""
    if ci not in (None, "bootstrap", "beta"):
        raise ValueError(f"ci must be None, 'bootstrap' or 'beta', got {ci!r}")
    n_np, c_np = _validate(n, c, np.array([1]), estimator)
    if n_np.size == 0:
        raise ValueError("no problems: pass at least one (n, c) pair")
    ks_arr = np.asarray(default_ks(int(n_np.min())) if ks is None else sorted(set(_as_ks(ks).tolist())),
                        dtype=np.int64)
    matrix = pass_at_k_matrix(n_np, c_np, ks_arr, estimator, backend)
    curve = PassKCurve(ks=ks_arr, values=matrix.mean(axis=0), estimator=estimator, ci=ci,
                       n=n_np, c=c_np)
    if ci is not None:
        from fastpass._intervals import beta_interval, bootstrap_interval

        if ci == "bootstrap":
            curve.lo, curve.hi = bootstrap_interval(matrix, n_boot, seed, level)
        else:
            curve.lo, curve.hi = beta_interval(n_np, c_np, ks_arr, n_boot, seed, level)
    return curve
