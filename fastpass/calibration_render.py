"""A calibration as plain text: the fit, how well pass@1 + gamma * gap predicted each run, notes."""
from __future__ import annotations

import math


def _pp(x) -> str:
    return f"{100 * x:+5.1f} pp"


def _rmse(errs) -> float | None:
    errs = [e for e in errs if e is not None]
    return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else None


def text(cal) -> str:
    runs, probs = cal.runs, cal.problems
    basis = (f"{runs} run{'s' if runs != 1 else ''}" +
             (f", {probs} problems with base counts" if probs else ", means only (no per-problem counts)"))
    lines = [f"gamma calibrated from {basis}", ""]
    if cal.interval is not None:
        over = " and ".join(w for w, on in (("runs", runs >= 2), ("problems within runs", any(
            r["kind"] == "per_problem" for r in cal.per_run))) if on)
        lines.append(f"  gamma = {cal.gamma:.3f}   {cal.level:.0%} interval [{cal.interval[0]:.3f}, "
                     f"{cal.interval[1]:.3f}]  (bootstrap over {over}, {cal.n_boot} resamples)")
    else:
        lines.append(f"  gamma = {cal.gamma:.3f}   (no interval)")
    if cal.gamma_raw != cal.gamma:
        lines.append(f"  unclipped fit {cal.gamma_raw:.3f}")
    lines += ["", "How well pass@1 + gamma * gap predicted each run (gap at the run's K_train):", ""]
    has_loo = any("predicted_without" in r for r in cal.per_run)
    head = (f"  {'run':<32} {'K':>4} {'probs':>6} {'pass@1':>7} {'gap':>6} {'measured':>9} {'γ=0.7 →':>8} "
            f"{'err':>9} {'fit →':>7} {'err':>9}")
    if has_loo:
        head += f" {'w/o run →':>10} {'err':>9}"
    head += f" {'own γ':>6}"
    lines.append(head)
    err07, errfit, errloo = [], [], []
    for r in cal.per_run:
        e07, efit = r["predicted_at_0.7"] - r["measured"], r["predicted"] - r["measured"]
        err07.append(e07)
        errfit.append(efit)
        name = r["name"] if len(r["name"]) <= 32 else r["name"][:31] + "…"
        mark = "‡" if r["gap_method"] == "beta-prior" else ""
        row = (f"  {name:<32} {r['K_train']:>4} {r['problems'] if r['problems'] else '–':>6} {r['pass@1']:>7.3f} "
               f"{r['gap']:>5.3f}{mark or ' '} {r['measured']:>9.3f} {r['predicted_at_0.7']:>8.3f} {_pp(e07):>9} "
               f"{r['predicted']:>7.3f} {_pp(efit):>9}")
        if has_loo:
            p = r.get("predicted_without")
            eloo = None if p is None else p - r["measured"]
            errloo.append(eloo)
            row += f" {'–' if p is None else f'{p:.3f}':>10} {'–' if eloo is None else _pp(eloo):>9}"
        own = r["gamma_run"]
        row += f" {'–' if own is None else f'{own:.3f}':>6}"
        lines.append(row)
    lines.append("")
    summary = f"  RMS error: planning gamma 0.7 {100 * _rmse(err07):.1f} pp; fitted gamma {100 * _rmse(errfit):.1f} pp"
    if has_loo and _rmse(errloo) is not None:
        summary += (f" (in-sample); fitted without the run itself {100 * _rmse(errloo):.1f} pp — the honest "
                    "estimate of how the calibration predicts a new run")
    lines.append(summary)
    if any(r["gap_method"] == "beta-prior" for r in cal.per_run):
        lines.append("  ‡ K_train > n: the gap is its expectation under a Beta prior fitted to the run's counts")
    if cal.bands:
        lines += ["", "By base p1 band (problems with per-problem post-RL results):",
                  f"  {'band':<14} {'problems':>8} {'mean p1':>8} {'predicted':>10} {'measured':>9}"]
        for b, v in cal.bands.items():
            lines.append(f"  {b:<14} {v['problems']:>8} {v['mean_p1']:>8.3f} {v['predicted']:>10.3f} "
                         f"{v['measured']:>9.3f}")
    if cal.notes:
        lines += [""] + [f"Note: {n}" for n in cal.notes]
    lines += ["", f"The fit rests on {basis}."]
    return "\n".join(lines)
