"""`fastpass whatif`: the what-if page (sliders for p1, K and gamma; presets; live verdict) as one
self-contained HTML file, for the seed chapter's model or a screen's own problems."""
from __future__ import annotations

DEFAULT_OUT = "whatif.html"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "whatif", help="write the what-if page: pass@K before/after RL with sliders for p1, K and gamma",
        description="Writes one self-contained HTML file (no network) with the seed chapter's interactive "
                    "figure: sliders for base pass@1, the RL run's K and gamma, the base and post-RL pass@K "
                    "curves with the shaded elicitation gap, the chapter's presets, and the lift and verdict "
                    "updating live. With --report it also holds that screen's own per-problem pass rates.")
    p.add_argument("--report", metavar="REPORT_JSON", help="a screen's report.json (e.g. runs/x/report.json)")
    p.add_argument("--out", metavar="FILE", default=DEFAULT_OUT, help=f"output file (default ./{DEFAULT_OUT})")
    p.add_argument("--min-lift", type=float, help="the verdict's threshold (default: the report's, else 0.05)")
    p.add_argument("--cost-per-pp", type=float, metavar="USD",
                   help="planning cost per pp of lift (default: the report's, else 250000)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from fastpass.whatif import write_whatif

    if args.report is not None and not os.path.isfile(args.report):
        raise FileNotFoundError(f"no report at {args.report}: pass the report.json a fastpass screen wrote "
                                "(e.g. fastpass-screen/report.json)")
    path = write_whatif(args.out, args.report, min_lift=args.min_lift, cost_per_pp_usd=args.cost_per_pp)
    what = f"{args.report}'s problems and " if args.report else ""
    print(f"wrote {path}: {what}the seed chapter's presets; open it in a browser (no network needed)")
    return 0
