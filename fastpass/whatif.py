"""The what-if page: one self-contained HTML file (inline CSS, SVG and script; no network) with the
seed chapter's interactive figure — sliders for base p1, the RL sampling K and gamma; the base and
post-RL pass@K curves with the shaded elicitation gap; the chapter's presets; the lift and the
verdict updating live — and, given a screen's report, the run's own per-problem p1 distribution.

The numbers on the page are fp's: one p1 follows fp.predict_post_rl(p1, K, gamma); the simulator
preset embeds fp.simulate()'s problems; a run embeds its (n, c) counts and uses the unbiased
pass@k where K <= n (fp.pass_at_k), the plug-in beyond (fastpass.fate); the verdict is
fp.verdict on the curve {1: pass@1, K: pass@K}. tests/test_whatif_browser.py checks this in a
real headless browser."""
from __future__ import annotations

import base64
import html
import json
import math
import os

from fastpass.fate import DEFAULT_REACH, check_reach
from fastpass.verdict import GAMMA_BAND

VERDICT_RULE = ("the seed's rule: GO when γ·(pass@K − pass@1) ≥ min_lift, else SKIP; on a run's counts "
                "fp.verdict(curve, γ, K_train=K) adds INCONCLUSIVE when too few problems were solved or the "
                "interval of the lift (gap resampled over problems, γ across the band) contains min_lift")
SIM_ALPHA, SIM_BETA, SIM_PROBLEMS = 0.6, 2.2, 200
MAX_EMBEDDED_WEIGHTS = 600_000  # problems x resamples; beyond, the page resamples by itself (noted on it)

PRESETS = [
    {"name": "Chapter figure", "mode": "single", "p1": 0.15, "K": 64, "gamma": 0.8,
     "note": "The chapter's figure as it opens: one problem type with p1 = 0.15, K = 64, γ = 0.8 — gap 0.850, "
             "lift +0.680, pass@1 after RL 0.830."},
    {"name": "Weak 7B base", "mode": "single", "p1": 0.0005, "K": 64, "gamma": 0.8,
     "note": "A p1 crushed against 0 (the chapter's p1 = 0.0005, where 64 samples succeed only ≈3% of the "
             "time): the base curve is flat, the gap is small and post-RL pass@1 barely improves."},
    {"name": "Hopeless eval", "mode": "single", "p1": 0.001, "K": 256, "gamma": 0.8,
     "note": "Even at K = 256 the base reaches only ~22%, and 80% of that ceiling is the most this RL run "
             "delivers."},
    {"name": "Saturated base", "mode": "single", "p1": 0.8, "K": 64, "gamma": 0.8,
     "note": "p1 past 0.7: the base is nearly saturated, so the gap collapses again — little room for RL."},
    {"name": "Seed simulator", "mode": "simulator", "K": 64, "gamma": 0.8,
     "note": f"fastpass simulate: {SIM_PROBLEMS} problems with p1 ~ Beta({SIM_ALPHA}, {SIM_BETA}) (seed 0), "
             "the chapter's script — pass@1 0.208 → 0.741 after RL."},
]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;color:#1f2933;
background:#fff;padding:0 16px}
h1{font-size:1.35rem;margin:0 0 4px} .sub{color:#52606d;margin:0 0 14px;font-size:.92rem}
#presets button{margin:0 6px 6px 0;padding:5px 10px;border:1px solid #9aa5b1;border-radius:14px;background:#f5f7fa;
cursor:pointer;font-size:.85rem} #presets button:hover{background:#e4e7eb}
#preset-note{color:#52606d;font-size:.85rem;min-height:2.4em;margin:2px 0 10px}
.wrap{display:flex;gap:20px;flex-wrap:wrap} .controls{flex:1 1 280px} .plot{flex:2 1 600px}
.ctl{margin-bottom:12px} .ctl label{display:flex;justify-content:space-between;font-size:.9rem}
.ctl input[type=range]{width:100%} .ctl b{font-variant-numeric:tabular-nums}
select{width:100%;padding:3px;font-size:.85rem}
.out{display:grid;grid-template-columns:1fr auto;gap:4px 10px;font-size:.92rem;margin-top:8px}
.out span:nth-child(even){text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
.verdict{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff}
.verdict.go{background:#1b9e77} .verdict.skip{background:#b91c1c}
svg{width:100%;height:auto;background:#fff;border:1px solid #e4e7eb}
.grid{stroke:#e4e7eb;stroke-width:1} .tick{font-size:11px;fill:#52606d} .axis{font-size:12px;fill:#323f4b}
.base{fill:none;stroke:#06b6d4;stroke-width:2.5} .extrapolated{stroke-dasharray:5 4}
.after{fill:none;stroke:#f59e0b;stroke-width:2.5} .gap{fill:#06b6d4;fill-opacity:.18;stroke:none}
.band{fill:#f59e0b;fill-opacity:.16;stroke:none} .kline{stroke:#9aa5b1;stroke-dasharray:3 3}
.base-dot{fill:#06b6d4} .after-dot{fill:#f59e0b}
.legend{font-size:.82rem;color:#52606d;margin:6px 0} .sw{display:inline-block;width:14px;height:4px;margin:0 4px 2px 8px;
vertical-align:middle} table{border-collapse:collapse;font-size:.85rem;margin-top:6px}
td,th{padding:3px 10px;white-space:nowrap;border-bottom:1px solid #e4e7eb;text-align:right} td:first-child,th:first-child{text-align:left}
.notes{font-size:.82rem;color:#52606d;margin-top:16px} .notes li{margin-bottom:4px}
"""

BODY = """
<h1>What if: pass@K before and after RL</h1>
<p class="sub">__SOURCE__</p>
<div id="presets"></div>
<p id="preset-note"></p>
<div class="wrap">
 <div class="controls">
  <div class="ctl"><label for="mode">Eval set</label><select id="mode">__OPTIONS__</select></div>
  <div class="ctl"><label for="p1">Base pass@1 (p₁) <b id="p1-label"></b></label>
   <input type="range" id="p1" min="0" max="1" step="0.0005"></div>
  <div class="ctl"><label for="K">RL sampling K (K_train) <b id="K-label"></b></label>
   <input type="range" id="K" min="1" max="256" step="1"></div>
  <div class="ctl"><label for="gamma">Gap-closure γ <b id="gamma-label"></b></label>
   <input type="range" id="gamma" min="0" max="1" step="0.01"></div>
  <div class="out">
   <span>pass@1 base</span><span id="out-pass1"></span>
   <span id="out-passK-name">pass@K base</span><span id="out-passK"></span>
   <span>elicitation gap Δ_K</span><span id="out-gap"></span>
   <span>expected lift γ·Δ_K</span><span id="out-lift"></span>
   <span>pass@1 after RL</span><span id="out-after"></span>
   <span>… over γ ∈ [__BLO__, __BHI__]</span><span id="out-after-band"></span>
   <span id="out-afterK-name">pass@K after RL</span><span id="out-afterK"></span>
   <span>lift</span><span id="out-lift-pp"></span>
   <span>estimated cost</span><span id="out-cost"></span>
   <span>verdict</span><span><span id="out-verdict" class="verdict"></span></span>
  </div>
  <p id="out-why" class="legend"></p>
  <p id="extrapolated-note" class="legend" hidden>† K is larger than n for some problems: their pass@K is
   the plug-in extrapolation 1 − (1 − c/n)^K (dashed).</p>
  <div id="fate" hidden><table><thead><tr><th>band</th><th>problems</th><th>lift</th><th>share</th></tr></thead>
   <tbody id="fate-body"></tbody></table></div>
 </div>
 <div class="plot">
  <svg id="chart" viewBox="0 0 640 360" role="img" aria-label="pass@K before and after RL"></svg>
  <div class="legend"><span class="sw" style="background:#06b6d4"></span>base pass@K
   <span class="sw" style="background:#06b6d4;opacity:.3;height:10px"></span>elicitation gap (up to K)
   <span class="sw" style="background:#f59e0b"></span>after RL at γ
   <span class="sw" style="background:#f59e0b;opacity:.3;height:10px"></span>γ ∈ [__BLO__, __BHI__]</div>
 </div>
</div>
<ul class="notes">
 <li>Model (the seed chapter's): RL with a verifiable reward moves each problem's p₁ to p₁ + γ·(pass@K − p₁);
  K is the RL run's samples per prompt; γ is the share of the gap it closes (published runs 0.6–0.9, planning
  value 0.7). After RL the curve is flat: best-of-K stops paying.</li>
 <li>Verdict: __RULE__, with min_lift = __MINLIFT__; cost = lift in pp × $__COST__ per pp (a planning rate,
  not a quote).</li>
 <li>Bands: wall = never solved (stays unsolved), hard = p₁ &lt; __RLO__, within reach = __RLO__ ≤ p₁ ≤ __RHI__,
  easy = p₁ &gt; __RHI__. A band's lift is its problems' lifts divided by all problems.</li>
 <li>__FOOT__</li>
</ul>
"""


def _report_dict(report) -> dict | None:
    if report is None:
        return None
    if isinstance(report, (str, os.PathLike)):
        path = os.fspath(report)
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a fastpass report.json ({exc.msg} at line {exc.lineno}): pass the "
                             "report.json a screen wrote") from None
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if isinstance(report, dict):
        return report
    raise TypeError(f"report must be a ScreenReport, a report.json path or its dict, got {type(report).__name__}")


def _run_set(rep: dict) -> dict:
    rows = rep.get("per_problem")
    if not isinstance(rows, list) or not rows:
        raise ValueError("the report has no per_problem counts: pass a report.json written by fastpass screen")
    try:
        n = [int(r["n"]) for r in rows]
        c = [int(r["c"]) for r in rows]
    except (KeyError, TypeError, ValueError):
        raise ValueError("the report's per_problem rows need integer n and c: pass a report.json written by "
                         "fastpass screen") from None
    bad = [i for i, (a, b) in enumerate(zip(n, c)) if a < 1 or not 0 <= b <= a]
    if bad:
        raise ValueError(f"per_problem[{bad[0]}] has c = {c[bad[0]]}, n = {n[bad[0]]}: need 0 <= c <= n, n >= 1")
    model = (rep.get("config") or {}).get("model", "model")
    return {"kind": "counts", "n": n, "c": c, "label": f"this run's {len(n)} problems",
            "title": f"{model}: {len(n)} problems × n = {min(n)}", "boot": _boot(len(n), rep)}


def _boot(P: int, rep: dict) -> dict:
    """fp.verdict's bootstrap settings and, when small enough to embed, its exact resampling weights
    (they depend only on the number of problems and the seed), so the page's INCONCLUSIVE calls are
    fp.verdict's own."""
    import inspect

    import numpy as np

    from fastpass._intervals import bootstrap_means
    from fastpass.verdict import verdict

    defaults = {k: v.default for k, v in inspect.signature(verdict).parameters.items()}
    unc = (rep.get("verdict") or {}).get("uncertainty") or {}
    n_boot = int(unc.get("n_boot", defaults.get("n_boot", 1000)))
    out = {"n_boot": n_boot, "level": float(unc.get("level", defaults.get("level", 0.95))),
           "min_solved": int(unc.get("min_solved", defaults.get("min_solved", 10)))}
    if P * n_boot <= MAX_EMBEDDED_WEIGHTS:
        w = np.rint(bootstrap_means(np.eye(P), n_boot, int(defaults.get("seed", 0))) * P).astype(np.int64)
        if w.max() <= 255:
            out["weights_b64"] = base64.b64encode(w.astype(np.uint8).tobytes()).decode("ascii")
    return out


def whatif_html(report=None, *, min_lift: float | None = None, cost_per_pp_usd: float | None = None,
                reach=None) -> str:
    """The page as a string. ``report``: a ScreenReport, a report.json path or its dict (optional)."""
    from fastpass import __version__
    from fastpass.simulate import simulate

    rep = _report_dict(report)
    cfg = (rep or {}).get("config") or {}
    min_lift = float(cfg.get("min_lift", 0.05) if min_lift is None else min_lift)
    cost = float(cfg.get("cost_per_pp_usd", 250_000) if cost_per_pp_usd is None else cost_per_pp_usd)
    fate = (rep or {}).get("fate") or {}
    reach = check_reach(reach if reach is not None else fate.get("reach", cfg.get("reach", DEFAULT_REACH)))
    band = tuple(float(x) for x in fate.get("gamma_band", GAMMA_BAND))
    sim = simulate(SIM_PROBLEMS, SIM_ALPHA, SIM_BETA, seed=0, ks=(1,))
    sets = {"simulator": {"kind": "rates", "form": "pow", "p": sim.p1,
                          "label": f"Beta({SIM_ALPHA}, {SIM_BETA}) simulator, {SIM_PROBLEMS} problems"}}
    presets = list(PRESETS)
    options = [("single", "One p₁ for every problem (slider)"), ("simulator", sets["simulator"]["label"])]
    kmax = 256
    if rep is not None:
        run = _run_set(rep)
        sets["run"] = run
        post = rep.get("post_rl") or {}
        K = int(post.get("K_train", cfg.get("K_train", 64)))
        g = float(post.get("gamma", cfg.get("gamma", 0.7)))
        presets.append({"name": "This run", "mode": "run", "K": K, "gamma": g,
                        "note": f"{run['title']}: each problem's own p₁ = c/n; γ = {g:g} and K = {K} as in the "
                                "report."})
        options.append(("run", run["title"]))
        kmax = max(kmax, 1 << math.ceil(math.log2(max(max(run["n"]), K))))
        kmax = min(kmax, 4096)
        source = (f"{html.escape(run['title'])} — from {html.escape(str(cfg.get('data', 'a screen')))}; "
                  "choose a preset or move a slider.")
    else:
        source = ("The seed chapter's interactive figure (no report given: run <code>fastpass whatif --report "
                  "runs/x/report.json</code> for your own model's problems).")
    start = "This run" if rep is not None else "Chapter figure"
    data = {"axis": {"kmax": kmax}, "sets": sets, "presets": presets, "start": start,
            "defaults": {"p1": 0.15, "K": 64, "gamma": 0.8, "min_lift": min_lift, "cost_per_pp": cost,
                         "gamma_band": list(band), "reach": list(reach)}}
    from fastpass._whatif_js import JS

    foot = (f"Written by fastpass {__version__}. One file, no network: the numbers are computed in this page by "
            "the same formulas as fp.predict_post_rl, fp.verdict and fp.simulate.")
    body = BODY
    for key, val in (("__SOURCE__", source), ("__RULE__", html.escape(VERDICT_RULE)),
                     ("__MINLIFT__", f"{min_lift:g}"), ("__COST__", f"{cost:,.0f}"), ("__BLO__", f"{band[0]:g}"),
                     ("__BHI__", f"{band[1]:g}"), ("__RLO__", f"{reach[0]:g}"), ("__RHI__", f"{reach[1]:g}"),
                     ("__FOOT__", html.escape(foot)),
                     ("__OPTIONS__", "".join(f'<option value="{v}">{html.escape(t)}</option>' for v, t in options))):
        body = body.replace(key, val)
    # "<" inside a script element can end it early ("</script>") or change how it is parsed ("<!--"):
    # JSON's \u003c keeps the text the same and the markup inert
    blob = json.dumps(data, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>fastpass what-if: pass@K before and after RL</title>\n"
            f"<style>{CSS}</style></head><body>{body}\n"
            f"<script type=\"application/json\" id=\"fp-data\">{blob}</script>\n"
            f"<script>{JS}</script>\n</body></html>\n")


def write_whatif(path, report=None, **kw) -> str:
    """Writes the page to ``path`` (atomically) and returns the path."""
    text = whatif_html(report, **kw)
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path
