"""The fate table as markdown and as a figure (p1 before -> predicted p1 after RL, per problem)."""
from __future__ import annotations

import numpy as np

from fastpass.fate import BAND_COLORS, BANDS, md_cell


def _pp(x) -> str:
    return "–" if x is None else f"{100 * x:+.1f} pp"


def markdown(fate, max_rows: int = 40, figure: str | None = "fate.png") -> str:
    K, g = fate.K_train, fate.gamma
    lo, hi = fate.reach
    s = fate.summary()
    extra = int(fate.extrapolated.sum())
    if extra == 0:
        how = "the unbiased estimate (K_train ≤ n)"
    elif extra == len(fate.ids):
        how = (f"the plug-in extrapolation 1 − (1 − c/n)^{K} (marked †: every problem has n < {K}, where no unbiased "
               "estimate exists; a wall stays 0)")
    else:
        how = (f"the plug-in extrapolation 1 − (1 − c/n)^{K} for the {extra} problem{'s' if extra > 1 else ''} with "
               f"n < {K} (marked †; a wall stays 0), the unbiased estimate elsewhere")
    lines = [f"## Per-problem fate after RL (γ = {g:g}, K_train = {K})", "",
             f"Each problem's p1 = c/n moves to p1 + γ·(pass@{K} − p1), with pass@{K} {how}. "
             f"Bands: **within reach** {lo:g} ≤ p1 ≤ {hi:g} (where RL does its work), **hard** solved but "
             f"p1 < {lo:g}, **easy** p1 > {hi:g} (little room left), **wall** never solved in n samples "
             "(no reward signal: predicted to stay unsolved).", "",
             "| band | problems | mean p1 | mean p1 after RL | lift in pass@1 | share of the lift |",
             "|---|---:|---:|---:|---:|---:|"]
    for b in BANDS + ("all",):
        r = s[b]
        if r["problems"] == 0 and b != "all":
            lines.append(f"| {b} | 0 | – | – | – | – |")
            continue
        share = "–" if r["share_of_lift"] is None else f"{100 * r['share_of_lift']:.0f}%"
        name = "**all**" if b == "all" else b
        lines.append(f"| {name} | {r['problems']} | {r['mean_p1']:.3f} | {r['mean_p1_after']:.3f} | "
                     f"{_pp(r['lift'])} | {share} |")
    a = s["all"]
    lines += ["", f"Total predicted lift {_pp(a['lift'])} (γ ∈ [{fate.gamma_band[0]:g}, {fate.gamma_band[1]:g}]: "
              f"{_pp(a['lift_low'])} to {_pp(a['lift_high'])}); a band's lift is its problems' lifts summed and "
              "divided by all problems, so the bands add up to the total.", "",
              f"| id | band | c / n | p1 | pass@{K} | p1 after RL | γ band | lift |",
              "|---|---|---:|---:|---:|---:|:---:|---:|"]
    order = fate.order
    for i in order[:max_rows]:
        mark = " †" if fate.extrapolated[i] else ""
        lines.append(f"| {md_cell(fate.ids[i])} | {fate.band[i]} | {int(fate.c[i])} / {int(fate.n[i])} | "
                     f"{fate.p1[i]:.3f} | {fate.pass_k[i]:.3f}{mark} | {fate.after[i]:.3f} | "
                     f"{fate.after_low[i]:.3f} – {fate.after_high[i]:.3f} | {_pp(fate.lift[i])} |")
    if len(order) > max_rows:
        lines.append(f"| … {len(order) - max_rows} more in report.json (`fate`) | | | | | | | |")
    if figure:
        lines += ["", f"![p1 before and after RL, per problem]({figure})"]
    return "\n".join(lines) + "\n"


def plot(fate, path: str, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    lo, hi = fate.reach
    ax.axvspan(lo, hi, color=BAND_COLORS["within reach"], alpha=0.08, lw=0)
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls=":", label="no change")
    for b in BANDS:
        m = fate.band == b
        if not m.any():
            continue
        x, y = fate.p1[m], fate.after[m]
        err = np.vstack([y - fate.after_low[m], fate.after_high[m] - y])
        ax.errorbar(x, y, yerr=err, fmt="o", ms=5, color=BAND_COLORS[b], ecolor=BAND_COLORS[b], alpha=0.85,
                    elinewidth=1, capsize=0, label=f"{b} ({int(m.sum())})")
    groups: dict[tuple, list[str]] = {}  # problems with the same counts share a point: one label
    for i in range(len(fate.ids)):
        groups.setdefault((round(float(fate.p1[i]), 9), round(float(fate.after[i]), 9)), []).append(str(fate.ids[i]))
    if len(groups) <= 20:  # few points: name them
        for (x, y), names in groups.items():
            label = ", ".join(n[:16] for n in names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")
            ax.annotate(label, (x, y), fontsize=6, xytext=(5, -3), textcoords="offset points", color="#333333",
                        va="top")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("base p1 = c/n")
    ax.set_ylabel(f"predicted p1 after RL (γ = {fate.gamma:g})")
    ax.text(lo + 0.005, 0.98, "within reach", fontsize=7, va="top", color=BAND_COLORS["within reach"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    total = fate.summary()["all"]
    ax.set_title(title or f"Per-problem fate after RL (K_train = {fate.K_train}; bars: γ ∈ [{fate.gamma_band[0]:g}, "
                          f"{fate.gamma_band[1]:g}]): pass@1 {total['mean_p1']:.3f} → {total['mean_p1_after']:.3f}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
