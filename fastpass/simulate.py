"""The seed chapter's simulator: a synthetic eval set with per-problem success rates drawn from
Beta(alpha, beta), its pass@K curve, and the curve after an RL run that closes a fraction gamma
of each problem's K_train gap. Defaults reproduce the seed script's numbers exactly
(pass@1 = 0.208, pass@64 = 0.875 before; pass@1 = 0.741 after with K_train = 64, gamma = 0.8).
The seed's prose quotes 0.21/0.36/0.50/0.64, which its own code does not produce; we follow
the code.

The after-RL model is the one `fastpass screen` and fp.verdict use (fastpass.verdict): each
problem's rate p -> p + gamma * (pass@K_train - p). Two things differ, on purpose:
- here p is each simulated problem's true rate, so pass@K_train = 1 - (1 - p)^K_train is exact and
  every problem gains; a screen estimates p by c/n, so a problem never solved in n samples stays
  at 0 and its after-RL curve stays under the share of problems ever solved;
- gamma defaults to 0.8, the seed script's value (it reproduces the script's numbers); a screen
  plans with 0.7, the seed's production planning value. Both take gamma as an argument."""
from __future__ import annotations

import random
from dataclasses import dataclass
from statistics import mean

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SEED_GAMMA = 0.8  # the seed script's gamma; screens plan with 0.7
POST_RL_MODEL = ("per problem p -> p + gamma * (pass@K_train - p), pass@K_train = 1 - (1 - p)^K_train with p "
                 "the true rate; after-RL pass@K = mean 1 - (1 - p_after)^K (the formula of fastpass screen)")
SCREEN_DIFFERENCE = ("fastpass screen applies this formula to what n samples show (p = c/n, pass@K_train estimated "
                     "from c: unbiased where K_train <= n, plug-in beyond): a problem never solved in n samples stays "
                     "at 0 there, so its after-RL curve stays under the share of problems ever solved, "
                     "while here every problem has p > 0 and gains. gamma here defaults to 0.8, the seed script's "
                     "value; screen plans with 0.7 (--gamma sets either).")


def _beta_sample(rng: random.Random, alpha: float, beta: float) -> float:
    x = rng.gammavariate(alpha, 1.0)
    y = rng.gammavariate(beta, 1.0)
    return x / (x + y)


def _pass_at(p1: list[float], K: int) -> float:
    return mean(1.0 - (1.0 - p) ** K for p in p1)


def post_rl_p1(p1: float, K_train: int, gamma: float) -> float:
    return p1 + gamma * ((1.0 - (1.0 - p1) ** K_train) - p1)


@dataclass
class Simulation:
    p1: list[float]
    p1_after: list[float]
    before: dict[int, float]
    after: dict[int, float]
    K_train: int
    gamma: float

    def gaps(self, ks=(4, 16, 64)) -> dict[int, float]:
        return {K: _pass_at(self.p1, K) - self.before_at(1) for K in ks}

    def before_at(self, K: int) -> float:
        return self.before[K] if K in self.before else _pass_at(self.p1, K)

    def to_dict(self) -> dict:
        return {"p1": list(self.p1), "p1_after": list(self.p1_after),
                "before": dict(self.before), "after": dict(self.after),
                "K_train": self.K_train, "gamma": self.gamma,
                "post_rl_model": POST_RL_MODEL, "differs_from_screen": SCREEN_DIFFERENCE}


def simulate(n_problems: int = 200, alpha: float = 0.6, beta: float = 2.2, seed: int = 0,
             K_train: int = 64, gamma: float = SEED_GAMMA, ks=DEFAULT_KS) -> Simulation:
    if n_problems < 1:
        raise ValueError(f"n_problems must be >= 1, got {n_problems}")
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be > 0, got alpha={alpha}, beta={beta}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if K_train < 1:
        raise ValueError(f"K_train must be >= 1, got {K_train}")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    rng = random.Random(seed)
    p1 = [_beta_sample(rng, alpha, beta) for _ in range(n_problems)]
    p1_after = [post_rl_p1(p, K_train, gamma) for p in p1]
    return Simulation(p1=p1, p1_after=p1_after,
                      before={K: _pass_at(p1, K) for K in ks},
                      after={K: _pass_at(p1_after, K) for K in ks},
                      K_train=int(K_train), gamma=float(gamma))
