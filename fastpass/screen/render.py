"""report.md and passk.png from a ScreenReport."""
from __future__ import annotations

from fastpass.verdict import GAMMA_BAND

MAX_PROBLEM_ROWS = 40

POST_RL_MODEL = ("per problem p1 = c/n -> p1 + gamma * (pass@K_train - p1), pass@K_train unbiased where "
                 "K_train <= n, else the plug-in 1 - (1 - c/n)^K_train; after-RL pass@k = mean 1 - (1 - p1_after)^k")
SIMULATE_DIFFERENCE = ("`fastpass simulate` applies the same formula to each simulated problem's true rate, so every "
                       "problem gains; a screen only has c/n, so a problem never solved in n samples stays at 0 and the "
                       "after-RL curve stays under the share of problems ever solved. simulate's gamma default is 0.8 "
                       "(the seed chapter's script); screen plans with 0.7 (--gamma sets either).")


def _pct(x) -> str:
    return f"{100 * float(x):.1f}%"


def markdown(rep) -> str:
    cfg, v, tp = rep.config, rep.verdict, rep.throughput
    gamma = v.gamma
    band = v.gamma_band
    post = rep.post_rl_pass1()
    u = v.uncertainty or {}
    lines = [f"# fastpass screen: {cfg.get('model', 'model')}", ""]
    lines.append(f"{len(rep.ids)} problems x n = {int(rep.n.min())} samples · preset `{cfg.get('preset', '?')}` · "
                 f"temperature {cfg.get('temperature', '?')} · max_new_tokens {cfg.get('max_new_tokens', '?')} · "
                 f"seed {cfg.get('seed', '?')} · device {cfg.get('device', '?')}")
    lines += ["", f"## Verdict: **{v.decision}**", ""]
    if u.get("reasons"):
        lines.append(f"The screen is too weak to decide (the point estimate alone would say {u['rule_decision']}):")
        lines += [f"- {r}" for r in u["reasons"]]
        lines += ["", "What would make it decisive:"] + [f"- {a}" for a in u["to_decide"]] + [""]
    extrapolated = (f"; pass@{v.kmax} extrapolated per problem from c/n, as n = {u['n']} < {v.kmax}"
                    if u.get("pass@Kmax_extrapolated") else "")
    lines.append(f"{'Point estimate: RL' if u.get('reasons') else 'RL'} with a verifiable reward is predicted to take "
                 f"pass@1 from **{_pct(v.pass1)}** to **{_pct(v.expected_pass1)}** (γ = {gamma}: it closes that share "
                 f"of the elicitation gap pass@{v.kmax} − pass@1 = {_pct(v.gap)}{extrapolated}); over γ ∈ "
                 f"[{GAMMA_BAND[0]}, {GAMMA_BAND[1]}]: {_pct(band['low']['expected_pass@1'])} – "
                 f"{_pct(band['high']['expected_pass@1'])}.")
    lines.append(f"Expected lift {v.expected_lift_pp:.1f} pp; estimated cost ${v.estimated_cost_usd:,.0f} "
                 f"(lift × ${v.cost_per_pp_usd:,.0f} per pp, a planning rate).")
    cal = cfg.get("gamma_calibration")
    if cal:  # fastpass screen --gamma-from FILE (fastpass/calibration.py)
        iv = cal.get("interval")
        lines.append(f"γ = {cal['gamma']:.3f} was fitted to {cal['runs']} past RL run{'s' if cal['runs'] != 1 else ''}"
                     f" ({cal.get('source') or 'a calibration file'}"
                     + (f"; {cal.get('level', 0.95):.0%} interval [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "; no interval")
                     + "), not the planning value 0.7.")
    if u:
        lo, hi = u["lift_interval"]
        lines.append(f"Rule: GO when the {u['level']:.0%} interval of γ·gap (gap bootstrapped over problems, γ over "
                     f"[{u['gamma_range'][0]:g}, {u['gamma_range'][1]:g}]) lies at or above min_lift = "
                     f"{v.min_lift:g}, SKIP when it lies below, INCONCLUSIVE when it contains min_lift or fewer "
                     f"than {u['min_solved']} problems were ever solved. Here: [{lo:.3f}, {hi:.3f}], "
                     f"{u['solved']} of {u['problems']} problems solved at least once.")
    else:
        lines.append(f"Rule: GO when γ·gap ≥ {v.min_lift:g}.")
    lines += ["", "## pass@k (unbiased estimator, 95% intervals)", "",
              f"| k | pass@k | 95% CI | gap Δ_k = pass@k − pass@1 | after RL, γ = {gamma} |",
              "|---:|---:|:---:|---:|---:|"]
    iv = rep.curve.intervals() or {}
    for k, val in zip(rep.curve.ks, rep.curve.values):
        k = int(k)
        ci = f"[{iv[k][0]:.3f}, {iv[k][1]:.3f}]" if k in iv else "–"
        lines.append(f"| {k} | {val:.3f} | {ci} | {rep.gaps[k]:+.3f} | {rep.after_rl['gamma'][k - 1]:.3f} |")
    lines += ["", f"After-RL model (K_train = {rep.prediction.K_train}): {POST_RL_MODEL}. Averaged over problems "
              f"it is the verdict's prediction, {post['value']:.3f} (γ band {post['low']:.3f} – {post['high']:.3f}). "
              f"{SIMULATE_DIFFERENCE}", ""]
    if tp:
        lines += ["## Throughput", "",
                  f"{tp.get('samples', 0)} samples, {tp.get('tokens', 0)} generated tokens in "
                  f"{tp.get('seconds', 0):.1f} s of sampling: **{tp.get('samples_per_s', 0):.1f} samples/s, "
                  f"{tp.get('tokens_per_s', 0):.1f} tokens/s** "
                  f"({tp.get('problems_sampled', 0)} problems sampled in this run, "
                  f"{tp.get('problems_resumed', 0)} resumed from samples.jsonl).", ""]
    lines += rep.fate.to_markdown(MAX_PROBLEM_ROWS, figure="fate.png").splitlines()  # fastpass/fate_render.py
    lines += ["", "What if γ or K were different? Open [whatif.html](whatif.html) (one self-contained page: "
              "sliders for K and γ over this run's problems, the chapter's presets, the verdict live).", ""]
    solved = int((rep.c > 0).sum())
    lines += ["", f"Solved at least once: {solved} / {len(rep.ids)}; never: {len(rep.ids) - solved}; "
              f"always: {int((rep.c == rep.n).sum())}.", "",
              "## What this does and does not say", "",
              "- pass@k is the unbiased estimator 1 − C(n−c, k)/C(n, k), averaged over problems; the "
              f"intervals are {rep.curve.ci or 'not computed'} (problems resampled), so they cover the "
              "choice of problems and the sampling noise, not a different eval set.",
              "- The prediction assumes RL closes a share γ of each problem's pass@K_train − pass@1 gap; "
              f"γ ∈ [{GAMMA_BAND[0]}, {GAMMA_BAND[1]}] is the range seen in published runs, 0.7 is a "
              "planning value, not a measurement of this model.",
              "- RL sharpens what the model can already sample: problems never solved in n samples "
              "are predicted to stay unsolved, and the after-RL curve is flatter (diversity collapses).",
              "- The cost is the lift in pp times a planning rate, not a quote.",
              "", "![pass@k](passk.png)", ""]
    return "\n".join(lines)


def plot(rep, path: str) -> None:
    import matplotlib.pyplot as plt

    fig = figure(rep)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight" keeps the legend beside the axes in the file
    plt.close(fig)


def figure(rep):
    """The pass@k figure: base curve with its interval, predicted post-RL band and curve. The legend
    sits outside the axes (it hid low curves), and the y-axis ends just above the data (a fixed
    0-1 axis flattened small pass rates into the floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = rep.full_curve.ks
    fig, ax = plt.subplots(figsize=(9.0, 4.2))  # 6.4 in of axes, the rest for the legend
    ax.plot(ks, rep.full_curve.values, "-", color="C0", label="base model (measured)")
    if rep.full_curve.lo is not None:
        ax.fill_between(ks, rep.full_curve.lo, rep.full_curve.hi, color="C0", alpha=0.15,
                        label="base, 95% interval")
    ax.plot(rep.curve.ks, rep.curve.values, "o", color="C0")
    gamma = rep.prediction.gamma
    ax.fill_between(ks, rep.after_rl["low"], rep.after_rl["high"], color="C1", alpha=0.25,
                    label=f"predicted post-RL, γ ∈ [{GAMMA_BAND[0]}, {GAMMA_BAND[1]}]")
    ax.plot(ks, rep.after_rl["gamma"], "--", color="C1", label=f"after RL, γ = {gamma} (diversity collapse)")
    ax.axhline(rep.verdict.pass1, color="gray", lw=0.8, ls=":", label="base pass@1")
    ax.set_xscale("log", base=2)
    ax.set_xlim(1, max(2, int(ks.max())))
    ax.set_ylim(0, y_top(rep))
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    ax.set_title(f"{rep.config.get('model', 'model')}: {len(rep.ids)} problems — {rep.verdict.decision}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def y_top(rep) -> float:
    """Top of the y-axis: 10% above the highest plotted value (interval ends included), at most 1.02."""
    tops = [rep.full_curve.values.max(), rep.after_rl["high"].max()]
    if rep.full_curve.hi is not None:
        tops.append(rep.full_curve.hi.max())
    return float(min(1.02, max(0.02, 1.1 * max(tops))))
