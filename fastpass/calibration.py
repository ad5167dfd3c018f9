"""gamma calibrated from your own past RL runs.

The seed's model: RL closes a share gamma of each problem's gap, so the measured post-RL pass@1 of
a run is pass@1 + gamma * Delta_K (K = the RL run's samples per prompt). Given base screens and
the measured post-RL pass@1 on the same evals (fp.load_pairs), fit

    gamma = sum_r (measured_r - pass@1_r) / sum_r Delta_K,r        (runs r, each by its means)

the least-squares line through the origin of lift on gap with variance proportional to the gap,
i.e. measured lift over predicted gap, pooled. Not per-problem least squares on each problem's own
noisy gap: that is an errors-in-variables fit and is biased low (300 synthetic runs, 200 problems,
n = 64, true gamma 0.75: mean 0.694), while the pooled ratio of unbiased sums is not (0.749).

Delta_K per run: the unbiased estimate where K <= n for every problem; where K > n no unbiased
estimator exists, so the gap is its expectation under a Beta prior fitted to that run's counts
(beta-binomial maximum likelihood): E[1 - (1-p)^K - p | c of n]. A never-solved problem then
still has a small expected gap, as it should (the plug-in gives it none).

Interval: percentile bootstrap, resampling runs (when there are >= 2) and, inside runs with
per-problem post-RL results, problems. It covers the choice of runs and problems; a run known only
by its aggregate numbers enters as a fixed point. Every result says how many runs it rests on."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from fastpass.calibration_data import EXAMPLE_ROWS, Run, load_pairs
from fastpass.fate import DEFAULT_REACH, classify

FORMAT = 1


@dataclass
class Calibration:
    """A fitted gamma. ``gamma`` (clipped to [0, 1]) is what fp.verdict, fp.predict_post_rl and
    ``fastpass screen --gamma-from`` use; ``gamma_raw`` is the unclipped fit."""

    gamma: float
    interval: tuple[float, float] | None
    level: float
    gamma_raw: float
    runs: int
    problems: int
    per_run: list[dict]
    bands: dict | None = None
    notes: list[str] = field(default_factory=list)
    method: str = "pooled lift / gap; bootstrap over runs and problems"
    n_boot: int = 2000
    seed: int = 0
    source: str | None = None

    def __float__(self) -> float:
        return float(self.gamma)

    def to_dict(self) -> dict:
        from fastpass import __version__

        return {"fastpass_calibration": FORMAT, "gamma": self.gamma,
                "interval": None if self.interval is None else list(self.interval), "level": self.level,
                "gamma_raw": self.gamma_raw, "runs": self.runs, "problems": self.problems,
                "method": self.method, "n_boot": self.n_boot, "seed": self.seed, "per_run": self.per_run,
                "bands": self.bands, "notes": self.notes, "source": self.source, "fastpass": __version__}

    def summary(self) -> dict:
        """The few numbers a report records about where its gamma came from."""
        return {"gamma": self.gamma, "interval": None if self.interval is None else list(self.interval),
                "level": self.level, "runs": self.runs, "problems": self.problems, "source": self.source}

    def save(self, path) -> str:
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
        self.source = self.source or path
        return path

    def to_text(self) -> str:
        from fastpass.calibration_render import text

        return text(self)


def load_calibration(path) -> Calibration:
    """Reads a calibration file written by ``fastpass calibrate`` / Calibration.save."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no calibration file at {path}: write one with fastpass calibrate PAIRS.jsonl "
                                "--out FILE") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a calibration file ({exc.msg} at line {exc.lineno}): write one with "
                         "fastpass calibrate") from None
    if not isinstance(d, dict) or d.get("fastpass_calibration") != FORMAT:
        raise ValueError(f"{path} is not a fastpass calibration file (no \"fastpass_calibration\": {FORMAT}): "
                         "write one with fastpass calibrate")
    g = d.get("gamma")
    if not isinstance(g, (int, float)) or not 0.0 <= g <= 1.0:
        raise ValueError(f"{path}: gamma must be a number in [0, 1], got {g!r}")
    iv = d.get("interval")
    return Calibration(float(g), None if iv is None else (float(iv[0]), float(iv[1])), float(d.get("level", 0.95)),
                       float(d.get("gamma_raw", g)), int(d.get("runs", 0)), int(d.get("problems", 0)),
                       list(d.get("per_run") or []), d.get("bands"), list(d.get("notes") or []),
                       str(d.get("method", "")), int(d.get("n_boot", 0)), int(d.get("seed", 0)), path)


# ---- the fit -----------------------------------------------------------------------------------
def _ratio(lift: np.ndarray, gap: np.ndarray) -> float:
    total = float(np.sum(gap))
    if total <= 0:
        raise ValueError("the runs have no elicitation gap at all (pass@K = pass@1 everywhere): gamma is not "
                         "identifiable from them")
    return float(np.sum(lift)) / total


def calibrate(runs, n_boot: int = 2000, seed: int = 0, level: float = 0.95, reach=DEFAULT_REACH) -> Calibration:
    """Fits gamma to past runs: a PAIRS.jsonl path, or a list of Run (fp.load_pairs / fp.example_runs)."""
    if isinstance(runs, (str, os.PathLike)):
        runs = load_pairs(runs)
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to calibrate on: give at least one base screen with its measured post-RL pass@1")
    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be >= 100, got {n_boot}")
    if not 0.5 <= level < 1.0:
        raise ValueError(f"level must lie in [0.5, 1), got {level}")
    for r in runs:
        r.prepare()
    lift = np.array([r.measured - r.pass1 for r in runs])
    gap = np.array([r.gap for r in runs])
    raw = _ratio(lift, gap)
    boot = _bootstrap(runs, int(n_boot), int(seed))
    tail = (1.0 - level) / 2
    interval, notes = None, []
    if boot is not None:
        lo, hi = np.quantile(boot, tail), np.quantile(boot, 1 - tail)
        interval = (float(np.clip(min(lo, raw), 0, 1)), float(np.clip(max(hi, raw), 0, 1)))
    else:
        notes.append("no interval: one run known only by its means; add runs or per-problem post-RL results")
    gamma = float(np.clip(raw, 0.0, 1.0))
    if raw > 1:
        notes.append(f"the fit is gamma = {raw:.3f} > 1 (RL gained more than the base screen's gap at K_train); "
                     "1 is used, the largest value the model allows")
    elif raw < 0:
        notes.append(f"the fit is gamma = {raw:.3f} < 0 (pass@1 fell after RL); 0 is used")
    per_run = []
    for i, r in enumerate(runs):
        row = r.describe()
        row.update({"gamma_run": float(lift[i] / gap[i]) if gap[i] > 0 else None,
                    "predicted_at_0.7": r.pass1 + 0.7 * r.gap, "predicted": r.pass1 + gamma * r.gap})
        if len(runs) >= 2:  # leave-one-out: how the calibration would have predicted this run
            others = np.arange(len(runs)) != i
            g_out = float(np.clip(_ratio(lift[others], gap[others]), 0.0, 1.0)) if gap[others].sum() > 0 else None
            row["gamma_without"] = g_out
            row["predicted_without"] = None if g_out is None else r.pass1 + g_out * r.gap
        per_run.append(row)
    problems = sum(r.problems or 0 for r in runs)
    if len(runs) < 3:
        notes.append(f"the fit rests on {len(runs)} run{'s' if len(runs) > 1 else ''}: gamma varies between RL "
                     "recipes, so treat it as a rough value until you have more")
    if any(r.gap_method == "beta-prior" for r in runs):
        notes.append("runs with K_train > n use the gap expected under a Beta prior fitted to their counts "
                     "(no unbiased estimate exists there); screen with n >= K_train to avoid that")
    if any(r.kind != "per_problem" for r in runs):
        notes.append("runs without per-problem post-RL results enter the bootstrap as fixed points: their own "
                     "sampling noise is not in the interval")
    return Calibration(gamma, interval, float(level), raw, len(runs), problems, per_run,
                       _bands(runs, gamma, reach), notes, n_boot=int(n_boot), seed=int(seed))


def _bootstrap(runs, n_boot: int, seed: int) -> np.ndarray | None:
    """gamma on resampled runs (when >= 2) and, inside runs with per-problem results, problems."""
    resample_runs = len(runs) >= 2
    per_problem = [r for r in runs if r.kind == "per_problem"]
    if not resample_runs and not per_problem:
        return None
    rng = np.random.default_rng(seed)
    R = len(runs)
    out = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, R, R) if resample_runs else np.arange(R)
        lift = np.empty(R)
        gap = np.empty(R)
        for j, i in enumerate(pick):
            r = runs[i]
            if r.kind == "per_problem":
                idx = rng.integers(0, r.problems, r.problems)
                lift[j], gap[j] = np.mean(r.y[idx] - r.p1[idx]), np.mean(r.g[idx])
            else:
                lift[j], gap[j] = r.measured - r.pass1, r.gap
        out[b] = np.sum(lift) / np.sum(gap) if np.sum(gap) > 0 else np.nan
    out = out[np.isfinite(out)]
    return out if out.size >= max(20, n_boot // 2) else None


def _bands(runs, gamma: float, reach) -> dict | None:
    """Predicted vs measured lift by the base p1 band, over problems with per-problem results."""
    rows = [r for r in runs if r.kind == "per_problem" and r.c is not None]
    if not rows:
        return None
    c = np.concatenate([r.c for r in rows])
    p1 = np.concatenate([r.p1 for r in rows])
    y = np.concatenate([r.y for r in rows])
    g = np.concatenate([r.g for r in rows])
    band = classify(c, p1, reach)
    out = {}
    for b in ("within reach", "hard", "easy", "wall"):
        m = band == b
        if m.any():
            out[b] = {"problems": int(m.sum()), "mean_p1": float(p1[m].mean()),
                      "predicted": float((p1[m] + gamma * g[m]).mean()), "measured": float(y[m].mean())}
    return out


def example_runs() -> list[Run]:
    """The seed chapter's reference rows (base pass@1, pass@64, measured post-RL pass@1)."""
    return [Run(name=name, kind="aggregate", K_train=64, pass1=p1, pass_k=pk, measured=post)
            for name, p1, pk, post in EXAMPLE_ROWS]
