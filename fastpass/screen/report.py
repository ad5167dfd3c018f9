"""``ScreenReport``: per-problem counts -> pass@k curve with intervals, gaps, predicted post-RL
curve with its gamma band, verdict; written as report.json, report.md and passk.png.

Every number comes from fp.pass_at_k_curve / fp.elicitation_gap / fp.predict_post_rl /
fp.verdict on the counts, so the report cannot drift from the library."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from fastpass.stats import PassKCurve, pass_at_k_curve
from fastpass.verdict import GAMMA_BAND, Prediction, Verdict, elicitation_gap, predict_post_rl, verdict


def post_rl_curve(p1_after: np.ndarray, ks) -> np.ndarray:
    """pass@k of the RL'd model when problem i is solved with rate p1_after[i] per sample (the seed
    chapter's model): mean_i 1 - (1 - p_i)^k. Flatter than the base curve: RL trades diversity
    (pass@large-k) for pass@1."""
    p = np.asarray(p1_after, dtype=np.float64)[:, None]
    k = np.asarray(ks, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore"):
        return (-np.expm1(k * np.log1p(-p))).mean(axis=0)


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

    @classmethod
    def from_counts(cls, ids, n, c, ks=None, gamma: float = 0.7, K_train: int = 64, min_lift: float = 0.05,
                    cost_per_pp_usd: float = 250_000, ci: str | None = "bootstrap", config=None,
                    throughput=None) -> "ScreenReport":
        n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
        curve = pass_at_k_curve(n, c, ks=ks, ci=ci)
        full = pass_at_k_curve(n, c, ks=range(1, int(curve.ks.max()) + 1), ci=ci)
        gaps = {int(k): float(elicitation_gap(curve, int(k))) for k in curve.ks}
        pred = predict_post_rl(c / n, K_train=K_train, gamma=gamma)
        after = {"gamma": post_rl_curve(pred.value, full.ks), "low": post_rl_curve(pred.low, full.ks),
                 "high": post_rl_curve(pred.high, full.ks)}
        v = verdict(curve, gamma=gamma, min_lift=min_lift, cost_per_pp_usd=cost_per_pp_usd)
        return cls(list(ids), n, c, curve, full, gaps, pred, after, v, dict(config or {}), dict(throughput or {}))

    # ---- views ----------------------------------------------------------------------------
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
            "post_rl": {"model": "per problem p1 -> p1 + gamma * (1 - (1 - p1)^K_train - p1); "
                                 "after-RL pass@k = mean 1 - (1 - p1_after)^k",
                        "gamma": self.prediction.gamma, "gamma_band": list(GAMMA_BAND),
                        "K_train": self.prediction.K_train, "pass@1": self.post_rl_pass1()},
            "verdict": self.verdict.to_dict(),
            "throughput": self.throughput,
            "per_problem": [{"id": i, "n": int(a), "c": int(b)} for i, a, b in zip(self.ids, self.n, self.c)],
        }

    def to_markdown(self) -> str:
        from fastpass.screen.render import markdown

        return markdown(self)

    def plot(self, path: str) -> None:
        from fastpass.screen.render import plot

        plot(self, path)

    def save(self, out_dir: str) -> dict[str, str]:
        """Writes report.json, report.md and passk.png into ``out_dir``; returns their paths."""
        os.makedirs(out_dir, exist_ok=True)
        paths = {name: os.path.join(out_dir, name) for name in ("report.json", "report.md", "passk.png")}
        _atomic_write(paths["report.json"], json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
        _atomic_write(paths["report.md"], self.to_markdown())
        self.plot(paths["passk.png"])
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


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
