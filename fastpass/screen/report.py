"""``ScreenReport``: per-problem counts -> pass@k curve with intervals, gaps, predicted post-RL
curve with its gamma band, verdict, per-problem fate; written as report.json, report.md, passk.png,
fate.png and the what-if page whatif.html.

One flow, so the report cannot drift from the library: fp.pass_at_k_curve computes the curve once
(every k up to the largest reported; the reported ks are its columns), fp.verdict consumes it, and
the per-problem after-RL rates are the verdict's own model (fastpass.verdict.post_rl_rates, whose
mean is the verdict's expected pass@1); render.py only formats what these hold."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from fastpass.fate import DEFAULT_REACH, check_reach, fate_table
from fastpass.screen.errors import atomic_write
from fastpass.screen.render import POST_RL_MODEL, SIMULATE_DIFFERENCE  # its wording lives there: no import cycle
from fastpass.stats import PassKCurve, default_ks, pass_at_k_curve
from fastpass.verdict import GAMMA_BAND, Prediction, Verdict, post_rl_rates, verdict
from fastpass.whatif import write_whatif


def post_rl_curve(p1_after: np.ndarray, ks) -> np.ndarray:
    """pass@k of the RL'd model when problem i is solved with rate p1_after[i] per sample (the seed
    chapter's model): mean_i 1 - (1 - p_i)^k. Flatter than the base curve: RL trades diversity
    (pass@large-k) for pass@1."""
    p = np.asarray(p1_after, dtype=np.float64)[:, None]
    k = np.asarray(ks, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore"):
        return (-np.expm1(k * np.log1p(-p))).mean(axis=0)



def curve_at(full: PassKCurve, ks=None) -> PassKCurve:
    """The curve at ``ks`` (default: powers of two up to min n, plus min n) read off ``full``, which
    holds every k from 1: the numbers fp.pass_at_k_curve(n, c, ks) gives, intervals included (the
    interval draws resample problems, not ks, so they do not depend on the ks asked for)."""
    want = default_ks(int(full.n.min())) if ks is None else sorted({int(k) for k in np.atleast_1d(ks)})
    if want[0] < 1:
        raise ValueError(f"k must be >= 1, got {want}")
    idx = np.asarray(want, dtype=np.int64) - 1
    pick = lambda a: None if a is None else a[idx]
    return PassKCurve(ks=full.ks[idx], values=full.values[idx], estimator=full.estimator, lo=pick(full.lo),
                      hi=pick(full.hi), ci=full.ci, n=full.n, c=full.c)


@dataclass
class ScreenReport:
    ids: list[str]
    n: np.ndarray
    c: np.ndarray
    curve: PassKCurve
    full_curve: PassKCurve
    gaps: dict[int, float]
    prediction: Prediction
    after_rl: dict[str, np.ndarray]
    verdict: Verdict
    config: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)
    out_dir: str | None = None
    reach: tuple = DEFAULT_REACH  # p1 band called "within reach" in the fate table

    @classmethod
    def from_counts(cls, ids, n, c, ks=None, gamma: float = 0.7, K_train: int = 64, min_lift: float = 0.05,
                    cost_per_pp_usd: float = 250_000, ci: str | None = "bootstrap", config=None,
                    throughput=None, reach=DEFAULT_REACH) -> "ScreenReport":
        n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
        largest = (int(n.min()) if n.size else 1) if ks is None else max(int(k) for k in np.atleast_1d(ks))
        full = pass_at_k_curve(n, c, ks=range(1, max(largest, 1) + 1), ci=ci)
        curve = curve_at(full, ks)
        # the gap at K_train, extrapolated per problem where K_train > n (said in report.md)
        v = verdict(curve, gamma=gamma, min_lift=min_lift, cost_per_pp_usd=cost_per_pp_usd, K_train=K_train)
        gaps = {int(k): float(val - v.pass1) for k, val in zip(curve.ks, curve.values)}
        pred = post_rl_rates(curve, K_train, v.gamma)
        after = {"gamma": post_rl_curve(pred.value, full.ks), "low": post_rl_curve(pred.low, full.ks),
                 "high": post_rl_curve(pred.high, full.ks)}
        return cls(list(ids), n, c, curve, full, gaps, pred, after, v, dict(config or {}), dict(throughput or {}),
                   reach=check_reach(reach))

    # ---- views ----------------------------------------------------------------------------
    @property
    def fate(self):
        """Per-problem fate after RL (fastpass.fate.FateTable) at this report's gamma and K_train."""
        return fate_table(self.ids, self.n, self.c, K_train=self.prediction.K_train, gamma=self.prediction.gamma,
                          reach=self.reach)

    @property
    def pass_at(self) -> dict[int, float]:
        return self.curve.to_dict()

    def post_rl_pass1(self) -> dict[str, float]:
        return {"value": float(np.mean(self.prediction.value)), "low": float(np.mean(self.prediction.low)),
                "high": float(np.mean(self.prediction.high))}

    def to_dict(self) -> dict:
        iv = self.curve.intervals() or {}
        curve = [{"k": int(k), "pass@k": float(v), "lo": iv.get(int(k), (None, None))[0],
                  "hi": iv.get(int(k), (None, None))[1], "gap": self.gaps[int(k)],
                  "after_rl": float(self.after_rl["gamma"][int(k) - 1]),
                  "after_rl_low": float(self.after_rl["low"][int(k) - 1]),
                  "after_rl_high": float(self.after_rl["high"][int(k) - 1])} for k, v in zip(self.curve.ks, self.curve.values)]
        return {
            "config": self.config,
            "problems": len(self.ids),
            "estimator": self.curve.estimator,
            "ci": {"method": self.curve.ci, "level": 0.95},
            "curve": curve,
            "gaps": {str(k): g for k, g in self.gaps.items()},
            "post_rl": {"model": POST_RL_MODEL, "differs_from_simulate": SIMULATE_DIFFERENCE,
                        "gamma": self.prediction.gamma, "gamma_band": list(GAMMA_BAND),
                        "K_train": self.prediction.K_train, "pass@1": self.post_rl_pass1()},
            "verdict": self.verdict.to_dict(),
            "throughput": self.throughput,
            "fate": self.fate.to_dict(),
            "per_problem": [{"id": i, "n": int(a), "c": int(b)} for i, a, b in zip(self.ids, self.n, self.c)],
        }

    def to_markdown(self) -> str:
        from fastpass.screen.render import markdown

        return markdown(self)

    def plot(self, path: str) -> None:
        from fastpass.screen.render import plot

        plot(self, path)

    def save(self, out_dir: str) -> dict[str, str]:
        """Writes report.json, report.md, passk.png, fate.png and whatif.html into ``out_dir``; returns
        their paths."""
        os.makedirs(out_dir, exist_ok=True)
        paths = {name: os.path.join(out_dir, name) for name in ("report.json", "report.md", "passk.png")}
        _atomic_write(paths["report.json"], json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
        _atomic_write(paths["report.md"], self.to_markdown())
        atomic_write(paths["passk.png"], self.plot, _KEPT)  # never a half-written (0-byte) plot
        paths["fate.png"] = os.path.join(out_dir, "fate.png")
        atomic_write(paths["fate.png"], self.fate.plot, _KEPT)
        paths["whatif.html"] = write_whatif(os.path.join(out_dir, "whatif.html"), self)
        self.out_dir = out_dir
        return paths

    def __repr__(self) -> str:
        return (f"ScreenReport(problems={len(self.ids)}, pass@1={self.curve.values[0]:.3f}, "
                f"pass@{int(self.curve.ks[-1])}={self.curve.values[-1]:.3f}, decision={self.verdict.decision})")


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


_KEPT = "samples.jsonl is complete; the report is written again from it"


def _atomic_write(path: str, text: str) -> None:
    """Temporary file in the same folder, fsync, rename: the old file or the new one, never a part."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), _KEPT)
