"""Past runs for gamma calibration: reading PAIRS.jsonl, each run's pass@1 and gap, and the Beta
prior used for the gap where K_train exceeds n.

One JSON object per line of PAIRS.jsonl:

    {"name": "v3-aime",                                  optional label
     "report": "runs/v3/report.json",                    the base screen (path relative to this file), or
     "counts": {"n": [...], "c": [...], "ids": [...]},   its per-problem counts (ids optional), or
     "pass@1": 0.155, "pass@K": 0.700,                   only its means (pass@K at K = K_train)
     "K_train": 64,                                      the RL run's samples per prompt (default: the
                                                         report's K_train, else 64)
     "post_rl_pass1": 0.71,                              measured pass@1 after RL on the same eval, and/or
     "post_rl": {"n": [...], "c": [...], "ids": [...]}   per problem: counts, or {"p1": [...]} rates
    }                                                    (matched by id when both sides have ids)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from fastpass.fate import pass_at_k_train

# The seed chapter's reference table: base model + eval, pass@1, pass@64, measured post-RL pass@1.
EXAMPLE_ROWS = (
    ("DeepSeek-V3-Base + AIME-2024", 0.155, 0.700, 0.71),
    ("DeepSeek-V3-Base + MATH-500", 0.620, 0.910, 0.86),
    ("Qwen-7B + AIME-2024", 0.022, 0.241, 0.19),
    ("Llama-3-70B + GSM8k", 0.870, 0.972, 0.94),
)


@dataclass
class Run:
    name: str
    kind: str  # "per_problem" (post-RL per problem), "counts" (base counts, post-RL mean), "aggregate"
    K_train: int
    n: np.ndarray | None = None
    c: np.ndarray | None = None
    y: np.ndarray | None = None  # measured post-RL rate per problem
    pass1: float | None = None
    pass_k: float | None = None
    measured: float | None = None
    p1: np.ndarray | None = None
    g: np.ndarray | None = None
    gap: float | None = None
    gap_method: str = "given"
    prior: tuple[float, float] | None = None

    @property
    def problems(self) -> int | None:
        return None if self.n is None else int(self.n.size)

    def prepare(self) -> None:
        """Fills p1, the per-problem gaps g and the run's means."""
        if self.kind == "aggregate":
            self.gap = float(self.pass_k - self.pass1)
            return
        self.p1 = self.c / self.n
        pk, extra = pass_at_k_train(self.n, self.c, self.K_train)
        g = pk - self.p1
        if extra.any():
            self.prior = fit_beta_prior(self.n, self.c)
            g[extra] = expected_gap(self.n[extra], self.c[extra], self.K_train, self.prior)
            self.gap_method = "beta-prior"
        else:
            self.gap_method = "unbiased"
        self.g = g
        self.pass1, self.gap = float(self.p1.mean()), float(g.mean())
        if self.y is not None:
            mean_y = float(self.y.mean())
            if self.measured is not None and abs(mean_y - self.measured) > 5e-4:
                raise ValueError(f"run {self.name!r}: post_rl_pass1 = {self.measured} but its per-problem results "
                                 f"average {mean_y:.4f}: give one or make them agree")
            self.measured = mean_y

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "K_train": self.K_train, "problems": self.problems,
                "pass@1": self.pass1, "gap": self.gap, "gap_method": self.gap_method, "measured": self.measured,
                "prior": None if self.prior is None else list(self.prior)}


# ---- gap where K_train > n: its expectation under a Beta prior fitted to the run's counts ---------
def _loglik(n: np.ndarray, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta-binomial log likelihood (without the binomial coefficients) for each (a[g], b[g])."""
    j = np.arange(int(n.max()))[None, :]
    la = np.concatenate([np.zeros((a.size, 1)), np.cumsum(np.log(a[:, None] + j), axis=1)], axis=1)
    lb = np.concatenate([np.zeros((b.size, 1)), np.cumsum(np.log(b[:, None] + j), axis=1)], axis=1)
    lab = np.concatenate([np.zeros((a.size, 1)), np.cumsum(np.log((a + b)[:, None] + j), axis=1)], axis=1)
    return la[:, c].sum(1) + lb[:, n - c].sum(1) - lab[:, n].sum(1)


def fit_beta_prior(n, c) -> tuple[float, float]:
    """Maximum-likelihood Beta(alpha, beta) for the problems' rates from their counts (beta-binomial),
    by a grid over mean and log concentration refined three times around the best point."""
    n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
    mu_lo, mu_hi, s_lo, s_hi = -9.0, 9.0, np.log(0.05), np.log(1e4)  # logit(mean), log(alpha + beta)
    best = None
    for _ in range(4):
        mu, ls = np.meshgrid(np.linspace(mu_lo, mu_hi, 25), np.linspace(s_lo, s_hi, 25))
        m, s = 1 / (1 + np.exp(-mu.ravel())), np.exp(ls.ravel())
        ll = _loglik(n, c, m * s, (1 - m) * s)
        i = int(np.argmax(ll))
        best = (mu.ravel()[i], ls.ravel()[i])
        dm, ds = (mu_hi - mu_lo) / 8, (s_hi - s_lo) / 8
        mu_lo, mu_hi, s_lo, s_hi = best[0] - dm, best[0] + dm, best[1] - ds, best[1] + ds
    m, s = 1 / (1 + np.exp(-best[0])), np.exp(best[1])
    return float(m * s), float((1 - m) * s)


def expected_gap(n, c, K: int, prior: tuple[float, float]) -> np.ndarray:
    """E[1 - (1 - p)^K - p | c of n] with p ~ Beta(alpha + c, beta + n - c)."""
    a, b = prior[0] + np.asarray(c, float), prior[1] + np.asarray(n, float) - np.asarray(c, float)
    j = np.arange(int(K))[None, :]
    miss = np.exp(np.sum(np.log((b[:, None] + j) / (a[:, None] + b[:, None] + j)), axis=1))
    return 1.0 - miss - a / (a + b)


# ---- reading PAIRS.jsonl -------------------------------------------------------------------------
def _counts(obj, where: str):
    """(ids or None, n, c) from {"n": [...], "c": [...], "ids": [...]} or [{"id", "n", "c"}, ...]."""
    if isinstance(obj, dict) and "n" in obj and "c" in obj:
        n, c, ids = obj["n"], obj["c"], obj.get("ids")
    elif isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        try:
            n, c = [r["n"] for r in obj], [r["c"] for r in obj]
        except KeyError:
            raise ValueError(f"{where}: each per-problem row needs n and c") from None
        ids = [r["id"] for r in obj] if all("id" in r for r in obj) else None
    else:
        raise ValueError(f"{where}: expected {{\"n\": [...], \"c\": [...]}} or a list of {{\"n\", \"c\"}} rows")
    try:
        n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: n and c must be integer counts") from None
    if n.ndim != 1 or n.shape != c.shape or n.size == 0:
        raise ValueError(f"{where}: n and c must be non-empty lists of the same length")
    bad = np.flatnonzero((n < 1) | (c < 0) | (c > n))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: problem {i} has c = {c[i]}, n = {n[i]} (need 0 <= c <= n, n >= 1)")
    if ids is not None and len(ids) != n.size:
        raise ValueError(f"{where}: {len(ids)} ids for {n.size} problems")
    return (None if ids is None else [str(i) for i in ids]), n, c


def _post(obj, where: str):
    """(ids or None, per-problem post-RL rates)."""
    if isinstance(obj, dict) and "p1" in obj:
        y, ids = np.asarray(obj["p1"], dtype=np.float64), obj.get("ids")
        if y.ndim != 1 or y.size == 0 or ((y < 0) | (y > 1) | ~np.isfinite(y)).any():
            raise ValueError(f"{where}: p1 must be a non-empty list of rates in [0, 1]")
        return (None if ids is None else [str(i) for i in ids]), y
    if isinstance(obj, list) and obj and all(isinstance(v, (int, float)) for v in obj):
        return _post({"p1": obj}, where)
    ids, n, c = _counts(obj, where)
    return ids, c / n


def _number(d: dict, key: str, where: str, lo: float = 0.0, hi: float = 1.0) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ValueError(f"{where}: {key} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def parse_run(d: dict, where: str, base_dir: str = ".") -> Run:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object")
    K = d.get("K_train")
    ids = n = c = None
    name = d.get("name")
    if "report" in d:
        rep = d["report"]
        if isinstance(rep, str):
            path = rep if os.path.isabs(rep) else os.path.join(base_dir, rep)
            try:
                with open(path, encoding="utf-8") as fh:
                    rep = json.load(fh)
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{where}: cannot read the report {path}: {exc}") from None
        if not isinstance(rep, dict) or "per_problem" not in rep:
            raise ValueError(f"{where}: the report has no per_problem counts (pass a fastpass report.json)")
        ids, n, c = _counts(rep["per_problem"], where + " report")
        K = K if K is not None else (rep.get("post_rl") or {}).get("K_train")
        name = name or (rep.get("config") or {}).get("model")
    elif "counts" in d:
        ids, n, c = _counts(d["counts"], where + " counts")
    elif "pass@1" in d and "pass@K" in d:
        pass
    else:
        raise ValueError(f"{where}: give the base screen as \"report\", \"counts\" or \"pass@1\" + \"pass@K\"")
    K = 64 if K is None else K
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"{where}: K_train must be a positive integer, got {K!r}")
    name = str(name or where)
    measured = _number(d, "post_rl_pass1", where) if "post_rl_pass1" in d else None
    if n is None:
        if measured is None:
            raise ValueError(f"{where}: give the measured post-RL pass@1 as post_rl_pass1")
        p1, pk = _number(d, "pass@1", where), _number(d, "pass@K", where)
        if pk < p1:
            raise ValueError(f"{where}: pass@K = {pk} is below pass@1 = {p1}")
        return Run(name, "aggregate", K, pass1=p1, pass_k=pk, measured=measured)
    if "post_rl" not in d:
        if measured is None:
            raise ValueError(f"{where}: give the measured post-RL pass@1 (post_rl_pass1) or per-problem post_rl")
        return Run(name, "counts", K, n=n, c=c, measured=measured)
    post_ids, y = _post(d["post_rl"], where + " post_rl")
    if ids is not None and post_ids is not None:
        pos = {pid: i for i, pid in enumerate(post_ids)}
        missing = [pid for pid in ids if pid not in pos]
        if missing:
            raise ValueError(f"{where}: post_rl has no result for problem {missing[0]!r}")
        y = y[[pos[pid] for pid in ids]]
    elif y.size != n.size:
        raise ValueError(f"{where}: post_rl has {y.size} problems, the base screen {n.size}")
    return Run(name, "per_problem", K, n=n, c=c, y=y, measured=measured)


def load_pairs(path) -> list[Run]:
    """Runs from a PAIRS.jsonl file (format in this module's docstring)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"no pairs file at {path}: one JSON object per line, see fastpass calibrate "
                                "--help") from None
    runs, base = [], os.path.dirname(os.path.abspath(path))
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg}): one object per line") from None
        runs.append(parse_run(d, f"{path}:{i}", base))
    if not runs:
        raise ValueError(f"{path} has no runs: one JSON object per line, see fastpass calibrate --help")
    return runs
