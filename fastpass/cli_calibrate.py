"""`fastpass calibrate`: gamma fitted to your own past RL runs (base screen + measured post-RL
pass@1), with an interval, how well pass@1 + gamma * gap predicted each run, and a calibration
file for `fastpass screen --gamma-from FILE` and fp.verdict(..., gamma=fp.load_calibration(FILE))."""
from __future__ import annotations

import argparse

DEFAULT_OUT = "calibration.json"
PAIRS_HELP = """PAIRS.jsonl: one JSON object per line, a past run:
  {"name": "v3-aime",                              optional label
   "report": "runs/v3/report.json",                the base screen (path relative to PAIRS.jsonl), or
   "counts": {"n": [...], "c": [...]},             its per-problem counts, or
   "pass@1": 0.155, "pass@K": 0.700,               only its means (pass@K at K = K_train)
   "K_train": 64,                                  the RL run's samples per prompt (default: the
                                                   report's K_train, else 64)
   "post_rl_pass1": 0.71,                          measured pass@1 after RL on the same eval, and/or
   "post_rl": {"n": [...], "c": [...]}}            per problem: counts or {"p1": [...]}, same order
                                                   (or matched by "ids" when both sides have them)
--example fits the seed chapter's four reference rows (means only)."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit gamma to your past RL runs and write a calibration file for --gamma-from",
        description="Fits gamma (the share of the elicitation gap an RL run closes) to past runs: measured "
                    "post-RL pass@1 against each base screen's pass@1 + gamma * gap, pooled over runs, with a "
                    "bootstrap interval over runs and problems. Prints how well the planning value 0.7 and "
                    "the fit predicted each run and writes a calibration file.",
        epilog=PAIRS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="?", metavar="PAIRS.jsonl", help="past runs, one JSON object per line")
    p.add_argument("--example", action="store_true", help="fit the seed chapter's reference rows instead")
    p.add_argument("--out", metavar="FILE", default=DEFAULT_OUT, help=f"calibration file (default ./{DEFAULT_OUT})")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the calibration as JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from fastpass.calibration import calibrate, example_runs, load_pairs

    if args.example == (args.pairs is not None):
        raise ValueError("give PAIRS.jsonl or --example (one of them): see fastpass calibrate --help")
    runs = example_runs() if args.example else load_pairs(args.pairs)
    cal = calibrate(runs, n_boot=args.n_boot, seed=args.seed, level=args.level)
    cal.source = "the seed chapter's reference rows" if args.example else args.pairs
    path = cal.save(args.out)
    if args.json:
        print(json.dumps(cal.to_dict(), indent=2))
    else:
        print(cal.to_text())
        print(f"\nwrote {path}: use it with fastpass screen --gamma-from {path}, or "
              f"fp.verdict(curve, gamma=fp.load_calibration({path!r}))")
    return 0
