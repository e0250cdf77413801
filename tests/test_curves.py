"""kerasnas.estimation.curves: Domhan et al.'s learning-curve extrapolation (numpy only)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from kerasnas.estimation import curves
from kerasnas.estimation.curves import FAMILIES, LearningCurveModel

M = 30  # the epoch to extrapolate to
N_SEEN = 9  # 30% of M
EPOCHS = np.arange(1.0, M + 1.0)
SMALL = dict(families=("pow3", "exp4"), walkers=24, burn_in=20, steps=20, thin=2)


def _curve(name: str, theta) -> np.ndarray:
    return FAMILIES[name](EPOCHS, np.asarray(theta, dtype=float))[0]


def _noisy(truth: np.ndarray, n: int = N_SEEN, sd: float = 0.005, seed: int = 0) -> np.ndarray:
    return np.clip(truth[:n] + np.random.default_rng(seed).normal(0.0, sd, n), 0.0, 1.0)


# ----------------------------------------------------------------------------------------
# the families

E = math.e
HAND = {  # name: (theta, [(x, f(x)), ...]), computed by hand
    "vap": ([0.0, 1.0, 1.0], [(1.0, E), (2.0, 2.0 * math.sqrt(E))]),
    "pow3": ([1.0, 0.5, 1.0], [(1.0, 0.5), (2.0, 0.75)]),
    "loglog_linear": ([1.0, 1.0], [(1.0, 0.0), (E, math.log(2.0))]),
    "hill3": ([1.0, 2.0, 2.0], [(1.0, 0.2), (2.0, 0.5)]),
    "log_power": ([1.0, math.log(2.0), -1.0], [(2.0, 0.5), (4.0, 2.0 / 3.0)]),
    "pow4": ([1.0, 1.0, 1.0, 1.0], [(1.0, 0.5), (3.0, 0.75)]),
    "mmf": ([1.0, 0.0, 0.5, 1.0], [(2.0, 0.5), (6.0, 0.75)]),
    "exp4": ([1.0, 1.0, 0.0, 1.0], [(1.0, 1.0 - 1.0 / E), (2.0, 1.0 - E**-2)]),
    "janoschek": ([1.0, 0.0, 1.0, 2.0], [(1.0, 1.0 - 1.0 / E), (2.0, 1.0 - E**-4)]),
    "weibull": ([1.0, 0.0, 0.5, 2.0], [(2.0, 1.0 - 1.0 / E), (4.0, 1.0 - E**-4)]),
    "ilog2": ([1.0, 1.0], [(1.0, 1.0 - 1.0 / math.log(2.0)), (E - 1.0, 0.0)]),
}


def test_the_eleven_families_of_the_paper():
    assert set(FAMILIES) == set(HAND)
    assert [FAMILIES[f].dim for f in FAMILIES] == [len(HAND[f][0]) for f in FAMILIES]


@pytest.mark.parametrize("name", list(HAND))
def test_family_values_by_hand(name):
    theta, points = HAND[name]
    x = np.array([p[0] for p in points])
    got = FAMILIES[name](x, theta)
    assert got.shape == (1, len(points))
    np.testing.assert_allclose(got[0], [p[1] for p in points], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(HAND))
def test_families_are_vectorised_over_a_batch_of_parameters(name):
    theta = np.array(HAND[name][0])
    batch = np.stack([theta, theta * 1.1])
    got = FAMILIES[name](EPOCHS, batch)
    assert got.shape == (2, M)
    np.testing.assert_allclose(got[1], FAMILIES[name](EPOCHS, theta * 1.1)[0])


# ----------------------------------------------------------------------------------------
# the two numerical tools


def test_nelder_mead_minimises_a_batch_of_rosenbrocks():
    def rosenbrock(p):
        return (1.0 - p[:, 0]) ** 2 + 100.0 * (p[:, 1] - p[:, 0] ** 2) ** 2

    best, value = curves.nelder_mead(rosenbrock, np.array([[-1.2, 1.0], [2.0, 2.0]]), 2000)
    np.testing.assert_allclose(best, [[1.0, 1.0], [1.0, 1.0]], atol=1e-4)
    assert (value < 1e-8).all()


def test_stretch_sampler_recovers_a_correlated_gaussian():
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    precision = np.linalg.inv(cov)

    def log_prob(p):
        d = p - [3.0, -1.0]
        return -0.5 * np.einsum("bi,ij,bj->b", d, precision, d)

    rng = np.random.default_rng(1)
    start = rng.normal(0.0, 0.1, (40, 2)) + [3.0, -1.0]
    chain, rate = curves.stretch_sample(log_prob, start, 200, 2000, 5, rng)
    flat = chain.reshape(-1, 2)
    assert chain.shape == (400, 40, 2) and 0.2 < rate < 0.9
    np.testing.assert_allclose(flat.mean(axis=0), [3.0, -1.0], atol=0.1)
    np.testing.assert_allclose(np.cov(flat.T), cov, atol=0.15)


def test_fit_family_recovers_a_noiseless_curve():
    truth = _curve("pow3", [0.95, 0.5, 0.7])
    theta = curves.fit_family(FAMILIES["pow3"], truth[:N_SEEN], M)
    np.testing.assert_allclose(_curve("pow3", theta), truth, atol=2e-3)


# ----------------------------------------------------------------------------------------
# extrapolation of synthetic curves: fit the first 9 of 30 epochs (N(0, 0.005) noise)

SYNTHETIC = {  # name: (theta, tolerance of the final mean)
    "pow3": ([0.95, 0.5, 0.7], 0.02),
    "mmf": ([0.92, 0.1, 0.3, 1.5], 0.03),
    "exp4": ([0.9, 0.5, 0.0, 0.6], 0.05),
}


@functools.cache
def _synthetic(name: str) -> tuple[np.ndarray, curves.CurvePrediction]:
    """The true curve of a family (30 epochs) and the prediction from its first 9, noisy."""
    truth = _curve(name, SYNTHETIC[name][0])
    return truth, LearningCurveModel(seed=0).fit(_noisy(truth), M)


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_extrapolates_a_synthetic_curve(name):
    truth, prediction = _synthetic(name)
    tolerance = SYNTHETIC[name][1]
    mean, std = prediction.mean[-1], prediction.std[-1]
    assert abs(mean - truth[-1]) < tolerance
    assert mean - 3 * std <= truth[-1] <= mean + 3 * std
    assert 0.0 < std < 0.1
    # the fit follows the observed part of the curve (loosely: with flat priors on 48
    # parameters the posterior of sigma is several times the true noise)
    np.testing.assert_allclose(prediction.mean[:N_SEEN], truth[:N_SEEN], atol=0.03)


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_every_sample_lies_in_the_prior_support(name):
    _, p = _synthetic(name)
    s = p.samples
    assert s.shape == (100 * (300 // 10), M) and p.noise.shape == (len(s),)
    assert p.epochs.tolist() == list(range(1, M + 1))
    assert np.isfinite(s).all() and (s[:, -1] > s[:, 0]).all()
    assert ((s[:, -1] >= 0.0) & (s[:, -1] <= 1.0)).all()
    assert (p.noise > curves.SIGMA_MIN).all()
    assert p.weights.shape == (len(p.families),) and p.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p.mean, s.mean(axis=0))
    assert (p.std**2 >= s.var(axis=0)).all()  # the noise adds to the spread of f_comb


@functools.cache
def _blocked(families: tuple[str, ...], seed: int = 0) -> curves.CurvePrediction:
    """The blocked sampler on the pow3 curve of SYNTHETIC (first 9 of 30 epochs, noisy)."""
    truth = _curve("pow3", SYNTHETIC["pow3"][0])
    model = LearningCurveModel(
        families, walkers=40, burn_in=300, steps=300, thin=10, seed=seed, sampler="blocked"
    )
    return model.fit(_noisy(truth), M)


def test_the_blocked_sampler_moves_the_weights_off_a_badly_fitting_family():
    # loglog_linear fits these 9 epochs badly (least-squares residual rms 0.024, pow3 0.003):
    # the blocked sampler takes its weight well under the start 1/2 (0.13-0.23 over seeds
    # 0-2); the joint sampler, which barely moves the weights, keeps 0.33-0.37
    p = _blocked(("pow3", "loglog_linear"))
    assert p.families == ("pow3", "loglog_linear")
    assert p.weights[1] < 0.3
    assert p.block_acceptance.shape == (3,) and (p.block_acceptance > 0.05).all()
    assert abs(p.mean[-1] - _curve("pow3", SYNTHETIC["pow3"][0])[-1]) < 0.03


def test_the_blocked_sampler_stays_in_the_support_and_is_deterministic():
    p = _blocked(("pow3", "exp4", "ilog2"))
    s = p.samples
    assert s.shape == (40 * 30, M) and np.isfinite(s).all() and (s[:, -1] > s[:, 0]).all()
    assert ((s[:, -1] >= 0.0) & (s[:, -1] <= 1.0)).all() and (p.noise > curves.SIGMA_MIN).all()
    y = _noisy(_curve("pow3", [0.95, 0.5, 0.7]), n=6)
    a, b = (LearningCurveModel(seed=3, sampler="blocked", **SMALL).fit(y, 20) for _ in "ab")
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.noise, b.noise)


def test_the_gibbs_draw_of_sigma_matches_its_conditional():
    # sigma^-2 | sse ~ Gamma((n - 1) / 2, rate sse / 2): E[sigma^-2] = (n - 1) / sse
    rng = np.random.default_rng(0)
    sse, n = np.full(20000, 0.02), 6
    draw = curves._draw_sigma(sse, n, np.full(len(sse), 0.5), rng)
    assert (draw > curves.SIGMA_MIN).all()
    assert np.mean(draw**-2) == pytest.approx((n - 1) / 0.02, rel=0.03)
    # an exact fit (sse 0) keeps its sigma; a tiny one mostly keeps it (truncation)
    kept = curves._draw_sigma(np.array([0.0, 1e-30]), n, np.array([2e-4, 3e-4]), rng)
    np.testing.assert_array_equal(kept, [2e-4, 3e-4])


def test_prob_greater_is_monotone_in_y_best():
    _, p = _synthetic("pow3")
    grid = np.linspace(0.0, 1.5, 61)
    probs = np.array([p.prob_greater(float(y)) for y in grid])
    assert ((probs >= 0.0) & (probs <= 1.0)).all()
    assert (np.diff(probs) <= 0.0).all() and probs[0] > probs[-1]
    assert probs[0] > 0.999 and probs[-1] < 0.001
    assert p.prob_greater(p.mean[-1]) == pytest.approx(0.5, abs=0.15)


def test_prob_greater_matches_sampling_the_predictive():
    _, p = _synthetic("pow3")
    rng = np.random.default_rng(0)
    for epoch, y_best in ((M, float(p.mean[-1]) + 0.01), (5, float(p.mean[4]) - 0.005)):
        draws = p.samples[:, epoch - 1] + p.noise * rng.standard_normal((50, len(p.noise)))
        assert p.prob_greater(y_best, epoch) == pytest.approx((draws > y_best).mean(), abs=0.01)


# ----------------------------------------------------------------------------------------
# determinism, edge cases, the wrapper


def test_the_same_seed_gives_identical_results_and_another_seed_does_not():
    y = _noisy(_curve("pow3", [0.95, 0.5, 0.7]), n=6)
    a = LearningCurveModel(seed=3, **SMALL).fit(y, 20)
    b = LearningCurveModel(seed=3, **SMALL).fit(y, 20)
    c = LearningCurveModel(seed=4, **SMALL).fit(y, 20)
    for field in ("mean", "std", "samples", "noise"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.samples, c.samples)


def test_probability_of_improvement_is_the_wrapped_model():
    y = _noisy(_curve("pow3", [0.95, 0.5, 0.7]), n=6)
    expected = LearningCurveModel(seed=2, **SMALL).fit(y, 20).prob_greater(0.85)
    assert curves.probability_of_improvement(y, 20, 0.85, seed=2, **SMALL) == expected


def test_a_flat_curve_predicts_its_value():
    p = LearningCurveModel().fit([0.7] * 6, M)
    assert p.mean[-1] == pytest.approx(0.7, abs=0.02)
    assert p.std[-1] < 0.02
    assert p.prob_greater(0.8) < 0.05


def test_a_curve_at_one():
    p = LearningCurveModel().fit([1.0] * 5, 20)
    assert p.mean[-1] == pytest.approx(1.0, abs=0.01) and p.std[-1] < 0.02
    assert (p.samples[:, -1] <= 1.0).all()


def test_two_epochs_are_enough():
    p = LearningCurveModel().fit([0.3, 0.5], 20)
    assert p.mean.shape == p.std.shape == (20,) and np.isfinite(p.std).all()
    np.testing.assert_allclose(p.mean[:2], [0.3, 0.5], atol=0.05)
    assert 0.5 < p.mean[-1] <= 1.0
    assert p.prob_greater(0.2) > 0.99


# ----------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize(
    "accuracies, max_epoch, argument",
    [
        ([0.5, 1.2, 0.7], 10, "accuracies"),
        ([-0.1, 0.5], 10, "accuracies"),
        ([0.5, float("nan"), 0.7], 10, "accuracies"),
        ([0.5, float("inf")], 10, "accuracies"),
        ([0.5], 10, "accuracies"),
        ([[0.5, 0.6]], 10, "accuracies"),
        (["a", "b"], 10, "accuracies"),
        ([0.5, 0.6, 0.7], 2, "max_epoch"),
        ([0.5, 0.6, 0.7], 10.0, "max_epoch"),
    ],
)
def test_bad_fit_arguments_are_named(accuracies, max_epoch, argument):
    with pytest.raises(ValueError, match=argument):
        LearningCurveModel().fit(accuracies, max_epoch)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(walkers=50), "walkers"),  # all 11 families sample 48 parameters
        (dict(families=("pow3",), walkers=9), "walkers"),  # pow3 alone samples 5
        (dict(walkers=100.0), "walkers"),
        (dict(families=("pow3", "pow5")), "families"),
        (dict(families="pow3"), "families"),
        (dict(families=()), "families"),
        (dict(families=("pow3", "pow3")), "families"),
        (dict(burn_in=-1), "burn_in"),
        (dict(steps=0), "steps"),
        (dict(thin=0), "thin"),
        (dict(steps=5, thin=6), "thin"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(sampler="emcee"), "sampler"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        LearningCurveModel(**kwargs)


def test_a_single_family_with_few_walkers_is_allowed():
    LearningCurveModel(families=("pow3",), walkers=10)


def test_bad_prob_greater_arguments_are_named():
    _, p = _synthetic("pow3")
    with pytest.raises(ValueError, match="y_best"):
        p.prob_greater(float("nan"))
    for epoch in (0, M + 1, 2.0):
        with pytest.raises(ValueError, match="epoch"):
            p.prob_greater(0.5, epoch)
