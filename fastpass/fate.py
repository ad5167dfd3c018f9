"""Per-problem fate after RL (the seed chapter's walkthrough, step 6).

Each problem's p1 = c/n moves to p1 + gamma * (pass@K_train - p1). Where a problem sits on the
p1 axis decides what RL can do with it: a problem never solved is a *wall* (no reward signal, it
stays unsolved), a rarely solved one is *hard* (a long shot that can still move a lot when K_train
is large), p1 in the *within reach* band ([0.05, 0.40] by default) is where RL does its work, and
an *easy* problem has little room left. The summary says how much of the predicted lift in
pass@1 each band carries.

pass@K_train per problem is the unbiased estimator 1 - C(n-c, K)/C(n, K) where K_train <= n;
beyond n no unbiased estimator exists and the plug-in 1 - (1 - c/n)^K_train (the seed's own
model, and fp.predict_post_rl's per-problem form) is used and flagged as an extrapolation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastpass.stats import _validate
from fastpass.verdict import GAMMA_BAND, gamma_value, per_problem_pass_at

DEFAULT_REACH = (0.05, 0.40)
# Order of the table: the problems RL works on first, the wall last.
BANDS = ("within reach", "hard", "easy", "wall")
BAND_COLORS = {"within reach": "#1b9e77", "hard": "#d95f02", "easy": "#7570b3", "wall": "#666666"}


def check_reach(reach) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in reach)
    except (TypeError, ValueError):
        raise ValueError(f"reach must be two numbers (low, high), got {reach!r}") from None
    if not 0.0 < lo < hi <= 1.0:
        raise ValueError(f"reach must satisfy 0 < low < high <= 1, got ({lo}, {hi}): e.g. 0.05,0.40")
    return lo, hi


def pass_at_k_train(n, c, K_train: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-problem pass@K_train and a mask of the problems where it is extrapolated (K_train > n):
    fp.verdict's per-problem definition, after checking the counts."""
    n, c = _validate(n, c, np.array([1]), "unbiased")
    return per_problem_pass_at(n, c, int(K_train))


def classify(c: np.ndarray, p1: np.ndarray, reach) -> np.ndarray:
    lo, hi = check_reach(reach)
    band = np.where(p1 > hi, "easy", np.where(p1 >= lo, "within reach", "hard")).astype(object)
    band[np.asarray(c) == 0] = "wall"
    return band


def md_cell(text) -> str:
    """A problem id as one markdown table cell: pipes, backslashes and line breaks escaped, HTML
    neutralised, long ids shortened (the full id is in report.json)."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "\\`")
    return s if len(s) <= 60 else s[:57] + "…"


@dataclass
class FateTable:
    ids: list[str]
    n: np.ndarray
    c: np.ndarray
    p1: np.ndarray
    pass_k: np.ndarray
    extrapolated: np.ndarray
    after: np.ndarray
    after_low: np.ndarray
    after_high: np.ndarray
    band: np.ndarray
    K_train: int
    gamma: float
    gamma_band: tuple[float, float]
    reach: tuple[float, float]

    @property
    def lift(self) -> np.ndarray:
        return self.after - self.p1

    @property
    def order(self) -> np.ndarray:
        """Row order: within reach, hard, easy, wall; the largest predicted lift first in each band."""
        rank = np.array([BANDS.index(b) for b in self.band])
        return np.lexsort((np.arange(len(self.ids)), -self.lift, rank))

    def summary(self) -> dict:
        """Per band: problems, mean p1, and its contribution to the predicted pass@1 lift (the mean over
        *all* problems of the band's lifts, so the bands add up to the total)."""
        total = float(self.lift.mean()) if len(self.ids) else 0.0
        out = {}
        for b in BANDS:
            m = self.band == b
            contrib = float(self.lift[m].sum() / len(self.ids)) if len(self.ids) else 0.0
            out[b] = {"problems": int(m.sum()), "mean_p1": float(self.p1[m].mean()) if m.any() else None,
                      "mean_p1_after": float(self.after[m].mean()) if m.any() else None,
                      "lift": contrib, "share_of_lift": contrib / total if total > 0 else None}
        out["all"] = {"problems": len(self.ids), "mean_p1": float(self.p1.mean()),
                      "mean_p1_after": float(self.after.mean()), "lift": total,
                      "lift_low": float((self.after_low - self.p1).mean()),
                      "lift_high": float((self.after_high - self.p1).mean()),
                      "share_of_lift": 1.0 if total > 0 else None}
        return out

    def rows(self) -> list[dict]:
        return [{"id": self.ids[i], "band": str(self.band[i]), "n": int(self.n[i]), "c": int(self.c[i]),
                 "p1": float(self.p1[i]), f"pass@{self.K_train}": float(self.pass_k[i]),
                 "pass@K_train_extrapolated": bool(self.extrapolated[i]), "p1_after": float(self.after[i]),
                 "p1_after_low": float(self.after_low[i]), "p1_after_high": float(self.after_high[i]),
                 "lift": float(self.lift[i])} for i in self.order]

    def to_dict(self) -> dict:
        return {"model": "p1 -> p1 + gamma * (pass@K_train - p1); pass@K_train unbiased where K_train <= n, "
                         "else the plug-in 1 - (1 - c/n)^K_train (extrapolated)",
                "K_train": self.K_train, "gamma": self.gamma, "gamma_band": list(self.gamma_band),
                "reach": list(self.reach),
                "bands": {"wall": "never solved (c = 0)", "hard": f"solved, p1 < {self.reach[0]}",
                          "within reach": f"{self.reach[0]} <= p1 <= {self.reach[1]}",
                          "easy": f"p1 > {self.reach[1]}"},
                "summary": self.summary(), "problems": self.rows()}

    def to_markdown(self, max_rows: int = 40, figure: str | None = "fate.png") -> str:
        from fastpass.fate_render import markdown

        return markdown(self, max_rows, figure)

    def plot(self, path: str, title: str | None = None) -> None:
        from fastpass.fate_render import plot

        plot(self, path, title)


def fate_table(ids, n, c, K_train: int = 64, gamma: float = 0.7, reach=DEFAULT_REACH,
               gamma_band=GAMMA_BAND) -> FateTable:
    """The fate of every problem after RL: band, pass@K_train, predicted p1 after RL with its gamma band.
    ``gamma`` may be a calibration (fp.load_calibration), like in fp.verdict."""
    gamma, gamma_band = resolve_gamma(gamma, gamma_band)
    if isinstance(K_train, bool) or int(K_train) != K_train or K_train < 1:
        raise ValueError(f"K_train must be a positive integer, got {K_train!r}")
    n_arr, c_arr = _validate(n, c, np.array([1]), "unbiased")
    ids = [str(i) for i in ids]
    if len(ids) != n_arr.size:
        raise ValueError(f"ids has {len(ids)} entries but there are {n_arr.size} problems")
    p1 = c_arr / n_arr
    pk, extra = pass_at_k_train(n_arr, c_arr, int(K_train))
    gap = np.maximum(pk - p1, 0.0)  # the unbiased pass@K >= c/n always; max() only guards rounding
    at = lambda g: p1 + g * gap
    return FateTable(ids, n_arr, c_arr, p1, pk, extra, at(gamma), at(gamma_band[0]), at(gamma_band[1]),
                     classify(c_arr, p1, reach), int(K_train), gamma, tuple(gamma_band), check_reach(reach))


def resolve_gamma(gamma, band=GAMMA_BAND) -> tuple[float, tuple[float, float]]:
    """(gamma, band) checked; ``gamma`` may be a calibration (its fitted gamma, like fp.verdict)."""
    g = gamma_value(gamma)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {g}")
    lo, hi = (float(x) for x in band)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"the gamma band must satisfy 0 <= low <= high <= 1, got ({lo}, {hi})")
    return g, (lo, hi)
