"""`fastpass simulate`: the seed chapter's simulator and its tables."""
from __future__ import annotations

import json
import textwrap


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a base model's pass@K curve before and after RL",
                       description="Per-problem rates ~ Beta(alpha, beta); RL closes gamma of the "
                                   "K_train gap. Defaults reproduce the seed chapter's script.")
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--alpha", type=float, default=0.6)
    p.add_argument("--beta", type=float, default=2.2)
    p.add_argument("--gamma", type=float, default=0.8,
                   help="share of each problem's K_train gap RL closes (default 0.8, the seed script's value; "
                        "fastpass screen plans with 0.7)")
    p.add_argument("--k-train", type=int, default=64, help="K of the RL run's group size (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the before/after curves")
    p.add_argument("--json", action="store_true", help="print machine-readable output")
    p.set_defaults(func=run)


def format_tables(sim) -> str:
    from fastpass.simulate import POST_RL_MODEL, SCREEN_DIFFERENCE  # here: `fastpass --help` stays stdlib-light

    ks = sorted(sim.before)
    out = [f"Base model pass@K curve over {len(sim.p1)} problems:", "    K |  pass@K", "  ----+--------"]
    for K in ks:
        p = sim.before[K]
        out.append(f"  {K:3d} | {p:6.3f}  {'█' * int(p * 40)}")
    p1 = sim.before_at(1)
    out.append(f"\npass@1(base)   = {p1:.3f}")
    for K, gap in sim.gaps().items():
        out.append(f"  gap @ K={K:3d}  = {gap:+.3f}   (= pass@{K} - pass@1)")
    p1_after = sim.after[1] if 1 in sim.after else None
    if p1_after is not None:
        out.append(f"\npass@1 BEFORE RL = {p1:.3f}")
        out.append(f"pass@1 AFTER  RL = {p1_after:.3f}    (RL closed {100 * sim.gamma:.0f}% of the "
                   f"K={sim.K_train} gap)")
    out += ["\npass@K curve AFTER RL:", "    K |  pass@K(before)  pass@K(after)   delta",
            "  ----+--------------------------------------"]
    for K in ks:
        pb, pa = sim.before[K], sim.after[K]
        out.append(f"  {K:3d} |     {pb:6.3f}        {pa:6.3f}      {pa - pb:+.3f}")
    out += ["", textwrap.fill(f"After-RL model: {POST_RL_MODEL}.", 96),
            textwrap.fill(f"Why `fastpass screen` draws a different after-RL curve: {SCREEN_DIFFERENCE}", 96)]
    return "\n".join(out)


def plot(sim, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(sim.before)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, [sim.before[k] for k in ks], "o-", label="base model")
    ax.plot(ks, [sim.after[k] for k in ks], "s-", label=f"after RL (γ={sim.gamma}, K_train={sim.K_train})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K")
    ax.set_ylabel("pass@K")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Simulated pass@K, {len(sim.p1)} problems")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> int:
    from fastpass.simulate import simulate

    sim = simulate(n_problems=args.problems, alpha=args.alpha, beta=args.beta, seed=args.seed,
                   K_train=args.k_train, gamma=args.gamma)
    if args.json:
        d = sim.to_dict()
        d["gaps"] = sim.gaps()
        print(json.dumps(d))
    else:
        print(format_tables(sim))
    if args.plot:
        plot(sim, args.plot)
        if not args.json:
            print(f"\nwrote {args.plot}")
    return 0
