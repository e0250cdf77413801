"""Learning-curve extrapolation (Domhan, Springenberg and Hutter, IJCAI 2015, "Speeding up
automatic hyperparameter optimization of deep neural networks by extrapolation of learning
curves"), in numpy only.

The paper
---------
A learning curve y_1..y_n (validation accuracy after each epoch) is modelled as a weighted
combination of 11 increasing, saturating parametric families,
``f_comb(x) = sum_k w_k f_k(x | theta_k)``, plus Gaussian noise of standard deviation sigma.
The prior restricts the weights and sigma to positive values and the curve to one that
increases from the first to the last predicted epoch and ends inside [0, 1]. Each family is
first fitted alone by maximum likelihood (least squares); the fits, with equal weights, start
an affine-invariant ensemble MCMC (emcee) over all parameters at once. The posterior
predictive at the final epoch m gives P(y_m > y_best), which stops runs that are unlikely to
beat the best one so far.

This implementation
-------------------
- The 11 families of :data:`FAMILIES`, with x the epoch (x >= 1). ``ilog2`` is
  ``c - a / log(x + 1)``: the paper's ``log(x)`` is 0 at epoch 1, so x + 1 keeps it defined.
- Step 1, per-family fits: our own Nelder-Mead (at most 400 iterations), batched over 2 to 4
  deterministic starting points derived from the data (linear regressions for ``vap``,
  ``loglog_linear`` and ``ilog2``; for the others, guesses of the asymptote and of the first
  value), then restarted once from each end point. The squared error is minimised within
  that family's own share of the prior's support (finite on 1..m, f(1) < f(m), f(m) in
  [0, 1]), enforced by an exact L1 penalty with a 1e-6 margin; a family with no finite fit
  inside the support is dropped. Requiring each fit to lie in the support makes the
  equal-weight start lie in it too.
- Step 2, MCMC: our own stretch-move sampler (Goodman and Weare, 2010; stretch scale a = 2),
  vectorised over the walkers (each half of the ensemble is proposed and evaluated as one
  array). ``sampler="joint"`` (the default) moves all parameters at once, as emcee does;
  ``sampler="blocked"`` (:func:`blocked_sample`) is Metropolis-within-Gibbs: per sweep a
  stretch move on each family's theta_k, one on log v, and an exact Gibbs draw of sigma.
  Walkers start in a small ball around the ML fits (1% relative), the weights at 1/K (10%
  spread) and sigma at the residual root-mean-square of that start.
- The weights are sampled as unnormalised v_k > 0 with an Exp(1) prior, w = v / sum(v):
  exactly a uniform (Dirichlet(1, ..., 1)) prior on the simplex, with a proper prior on the
  otherwise free scale of v.
- sigma has a flat prior on (SIGMA_MIN, inf), SIGMA_MIN = 1e-4 (one image in 10 000): the
  floor keeps the posterior proper when the curve is fitted exactly (a flat curve, n = 2).
  The other parameters have flat priors restricted to the support.
- Defaults: 100 walkers, 300 burn-in steps, then 300 steps kept every 10th: 3000 posterior
  samples, chosen so that one fit with n <= 30 and m <= 60 takes about 1 s on one core (about
  half of it the ML fits); ``python kerasnas/estimation/curves.py`` times one.
- Caveat: the posterior defined here (flat priors on theta inside a support that constrains
  only the combined curve) is improper, so no sampler converges and every prediction depends
  on the chain's length and start. Two reasons: (1) several families have directions in which
  the likelihood tends to a positive constant (pow3 as alpha -> inf is a step after epoch 1;
  likewise hill3, log_power, exp4, ...), where the flat prior has infinite mass; (2) most
  families have an amplitude parameter, so w_k f_k is unchanged when w_k shrinks and the
  amplitude grows as 1 / w_k, which gives the small-w_k end infinite prior volume. The
  blocked sampler shows it: over 2000 sweeps such parameters drift to 1e100-1e280, while the
  weights still stay near their start, 1/K or the least-squares weights (the weight-amplitude
  ridge; the weight block's acceptance falls from 7% to 1-2%). On the 40 curves of
  ``benchmarks/lc_sampler.py``, from 6 of 20 epochs, the blocked sampler predicts worse than
  the joint one (MAE 0.10 against 0.05, mean error -0.08 against -0.03, Kendall tau 0.66
  against 0.69, the epoch-6 value 0.82) at 1.6 to 2.7 times the time, and the two starts
  disagree for both (mean weights 0.57 and 0.70 apart in total variation). The joint sampler,
  the default, barely leaves its start: its weights stay near 1/K and its spread reflects the
  start, not a posterior. With 2 to 4 families the blocked sampler does move the weights off
  a family that fits badly (tests/test_curves.py) and the joint one does not. Bounding theta
  to a box and each family to the support does not rescue the model: with 6 points and ~40
  flat-prior parameters the posterior mass goes to large sigma and poor curves (a curve at
  1.0 predicted 0.58 +- 0.92). An informative prior would be a model change, left undone.
- The same inputs and ``seed`` give identical results (one ``numpy.random.Generator``).

Units: epochs are 1-based integers (epoch 1 is the first evaluation); accuracies and sigma are
fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SIGMA_MIN = 1e-4  # floor of the noise standard deviation (the prior's support)
MARGIN = 1e-6  # how far inside the support an ML fit must end
PENALTY = 1e3  # weight of the L1 penalty that keeps the ML fits inside the support
STRETCH = 2.0  # the stretch move's scale a: z in [1/a, a]
SAMPLERS = ("blocked", "joint")  # LearningCurveModel(sampler=...)


@dataclass(frozen=True)
class Family:
    """One parametric learning-curve family.

    ``fn(x, theta)`` takes epochs x of shape (m,) (floats >= 1) and parameters theta of shape
    (B, p), and returns the curves, shape (B, m). ``guesses(y)`` returns deterministic
    starting points for the fit, shape (S, p), from the observed accuracies y, shape (n,).
    """

    name: str
    params: tuple[str, ...]
    formula: str
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    guesses: Callable[[np.ndarray], np.ndarray]

    @property
    def dim(self) -> int:
        return len(self.params)

    def __call__(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The curves at epochs x, shape (B, m), for theta of shape (B, p) or (p,)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        with np.errstate(all="ignore"):
            return self.fn(np.asarray(x, dtype=float), theta)


# ----------------------------------------------------------------------------------------
# the 11 families: x (m,), theta (B, p) -> (B, m)


def _cols(theta: np.ndarray) -> list[np.ndarray]:
    """The columns of theta (B, p) as p arrays of shape (B, 1), to broadcast against x."""
    return [theta[:, i : i + 1] for i in range(theta.shape[1])]


def _vap(x, theta):
    a, b, c = _cols(theta)
    return np.exp(a + b / x + c * np.log(x))


def _pow3(x, theta):
    c, a, alpha = _cols(theta)
    return c - a * x ** (-alpha)


def _loglog_linear(x, theta):
    a, b = _cols(theta)
    return np.log(a * np.log(x) + b)


def _hill3(x, theta):
    ymax, eta, kappa = _cols(theta)
    return ymax * x**eta / (kappa**eta + x**eta)


def _log_power(x, theta):
    a, b, c = _cols(theta)
    return a / (1.0 + (x / np.exp(b)) ** c)


def _pow4(x, theta):
    c, a, b, alpha = _cols(theta)
    return c - (a * x + b) ** (-alpha)


def _mmf(x, theta):
    alpha, beta, kappa, delta = _cols(theta)
    return alpha - (alpha - beta) / (1.0 + (kappa * x) ** delta)


def _exp4(x, theta):
    c, a, b, alpha = _cols(theta)
    return c - np.exp(-a * x**alpha + b)


def _janoschek(x, theta):
    alpha, beta, kappa, delta = _cols(theta)
    return alpha - (alpha - beta) * np.exp(-kappa * x**delta)


def _weibull(x, theta):
    alpha, beta, kappa, delta = _cols(theta)
    return alpha - (alpha - beta) * np.exp(-((kappa * x) ** delta))


def _ilog2(x, theta):
    c, a = _cols(theta)
    return c - a / np.log(x + 1.0)


# ----------------------------------------------------------------------------------------
# deterministic starting points, from the observed accuracies y (n,)


def _levels(y: np.ndarray) -> list[tuple[float, float]]:
    """Pairs (A, lo): a guess of the asymptote A and of the value at epoch 1, 0 < lo < A."""
    top, first = float(y.max()), float(y[0])
    span = max(top - first, 0.02)
    pairs = []
    for r in (0.25, 1.0):
        asymptote = min(top + r * span, 1.0)
        lo = max(min(first, asymptote - 0.01), 0.1 * asymptote)
        pairs.append((asymptote, lo))
    return pairs


def _decay(asymptote: float, lo: float, top: float, n: int, power: float) -> tuple[float, float]:
    """(a, b) of ``A - exp(b - a x^power)`` through (1, lo) and about (n, top)."""
    gap_top = max(asymptote - top, 0.1 * (asymptote - lo))
    ratio = max((asymptote - lo) / gap_top, 1.1)
    a = math.log(ratio) / (n**power - 1.0)
    return a, a + math.log(asymptote - lo)


def _regress(columns: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of target on the given columns (min-norm if underdetermined)."""
    design = np.stack(columns, axis=1)
    return np.linalg.lstsq(design, target, rcond=None)[0]


def _epochs(y: np.ndarray) -> np.ndarray:
    return np.arange(1.0, len(y) + 1.0)


def _guess_vap(y):
    x, logy = _epochs(y), np.log(np.clip(y, 1e-3, None))
    full = _regress([np.ones_like(x), 1.0 / x, np.log(x)], logy)
    a, b = _regress([np.ones_like(x), 1.0 / x], logy)
    return np.array([full, [a, b, 0.0], [a, b, 0.05]])


def _guess_pow3(y):
    return np.array([[A, A - lo, al] for A, lo in _levels(y) for al in (0.5, 1.0)])


def _guess_loglog_linear(y):
    x = _epochs(y)
    a, b = _regress([np.log(x), np.ones_like(x)], np.exp(y))
    return np.array([[a, b], [max(a, 0.01), max(b, 1.0)]])


def _guess_hill3(y):
    return np.array(
        [[A, eta, (A / lo - 1.0) ** (1.0 / eta)] for A, lo in _levels(y) for eta in (1.0, 2.0)]
    )


def _guess_log_power(y):
    return np.array(
        [[A, -math.log(A / lo - 1.0) / c, c] for A, lo in _levels(y) for c in (-1.0, -2.0)]
    )


def _guess_pow4(y):
    out = []
    for A, lo in _levels(y):
        for alpha in (0.5, 1.0):
            k = (A - lo) ** (-1.0 / alpha)
            out.append([A, 0.5 * k, 0.5 * k, alpha])
    return np.array(out)


def _guess_mmf(y):
    return np.array(
        [
            [A, 0.5 * lo, (0.5 * lo / (A - lo)) ** (1.0 / delta), delta]
            for A, lo in _levels(y)
            for delta in (1.0, 2.0)
        ]
    )


def _exp_like(y: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(A, a, b, power) of ``A - exp(b - a x^power)`` for each level pair and power."""
    top, n = float(y.max()), len(y)
    return [
        (A, *_decay(A, lo, top, n, power), power) for A, lo in _levels(y) for power in (0.5, 1.0)
    ]


def _guess_exp4(y):
    return np.array([[A, a, b, power] for A, a, b, power in _exp_like(y)])


def _guess_janoschek(y):
    return np.array([[A, A - math.exp(b), a, power] for A, a, b, power in _exp_like(y)])


def _guess_weibull(y):
    return np.array(
        [[A, A - math.exp(b), a ** (1.0 / power), power] for A, a, b, power in _exp_like(y)]
    )


def _guess_ilog2(y):
    x = _epochs(y)
    c, a = _regress([np.ones_like(x), -1.0 / np.log(x + 1.0)], y)
    return np.array([[c, a], [min(float(y.max()) + 0.05, 1.0), 0.3]])


def _family(name, params, formula, fn, guesses) -> tuple[str, Family]:
    return name, Family(name, tuple(params.split()), formula, fn, guesses)


FAMILIES: dict[str, Family] = dict(
    [
        _family("vap", "a b c", "exp(a + b/x + c log x)", _vap, _guess_vap),
        _family("pow3", "c a alpha", "c - a x^-alpha", _pow3, _guess_pow3),
        _family("loglog_linear", "a b", "log(a log x + b)", _loglog_linear, _guess_loglog_linear),
        _family(
            "hill3", "ymax eta kappa", "ymax x^eta / (kappa^eta + x^eta)", _hill3, _guess_hill3
        ),
        _family("log_power", "a b c", "a / (1 + (x / e^b)^c)", _log_power, _guess_log_power),
        _family("pow4", "c a b alpha", "c - (a x + b)^-alpha", _pow4, _guess_pow4),
        _family(
            "mmf",
            "alpha beta kappa delta",
            "alpha - (alpha - beta) / (1 + (kappa x)^delta)",
            _mmf,
            _guess_mmf,
        ),
        _family("exp4", "c a b alpha", "c - exp(-a x^alpha + b)", _exp4, _guess_exp4),
        _family(
            "janoschek",
            "alpha beta kappa delta",
            "alpha - (alpha - beta) exp(-kappa x^delta)",
            _janoschek,
            _guess_janoschek,
        ),
        _family(
            "weibull",
            "alpha beta kappa delta",
            "alpha - (alpha - beta) exp(-(kappa x)^delta)",
            _weibull,
            _guess_weibull,
        ),
        _family(
            "ilog2", "c a", "c - a / log(x + 1)  (x + 1: defined at epoch 1)", _ilog2, _guess_ilog2
        ),
    ]
)


# ----------------------------------------------------------------------------------------
# step 1: maximum-likelihood (least-squares) fit of one family, within the prior's support


def _support_violation(curves: np.ndarray) -> np.ndarray:
    """How far curves (B, m) are from f(1) < f(m) and f(m) in [0, 1], with the margin; (B,)."""
    first, last = curves[:, 0], curves[:, -1]
    return (
        np.maximum(first - last + MARGIN, 0.0)
        + np.maximum(last - (1.0 - MARGIN), 0.0)
        + np.maximum(MARGIN - last, 0.0)
    )


def _in_support(curves: np.ndarray) -> np.ndarray:
    """Whether curves (B, m) are finite, increase from epoch 1 to m and end in [0, 1]; (B,)."""
    first, last = curves[:, 0], curves[:, -1]
    finite = np.isfinite(curves).all(axis=1)
    with np.errstate(invalid="ignore"):
        return finite & (first < last) & (last >= 0.0) & (last <= 1.0)


def _ml_cost(family: Family, y: np.ndarray, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The penalised squared error of the family, theta (B, p) -> (B,); +inf if not finite."""
    n = len(y)

    def cost(theta: np.ndarray) -> np.ndarray:
        curves = family(x, theta)
        with np.errstate(all="ignore"):
            value = ((curves[:, :n] - y) ** 2).sum(axis=1) + PENALTY * _support_violation(curves)
        value[~np.isfinite(curves).all(axis=1) | ~np.isfinite(value)] = np.inf
        return value

    return cost


def _initial_simplex(x0: np.ndarray) -> np.ndarray:
    """Simplices (B, p + 1, p) around points x0 (B, p): steps of 5% (0.00025 at zero)."""
    batch, p = x0.shape
    steps = np.where(x0 != 0.0, 0.05 * x0, 0.00025)
    simplex = np.repeat(x0[:, None, :], p + 1, axis=1)
    simplex[:, 1:, :] += steps[:, None, :] * np.eye(p)[None]
    return simplex


# reflection, expansion, outside and inside contraction: centroid + coef * (centroid - worst)
_NM_COEFS = np.array([1.0, 2.0, 0.5, -0.5])


def nelder_mead(
    cost: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    max_iter: int = 400,
    xatol: float = 1e-7,
    fatol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``cost`` (N, p) -> (N,) from each of the B points x0 (B, p) at once.

    The standard Nelder-Mead moves (reflection 1, expansion 2, contractions 1/2, shrink 1/2),
    with all four candidate points of every simplex evaluated as one batch. A value of +inf
    (outside the domain) is never accepted over a finite one. Returns the best points (B, p)
    and their costs (B,).
    """
    simplex = _initial_simplex(np.asarray(x0, dtype=float))
    batch, n_vertices, p = simplex.shape
    values = cost(simplex.reshape(-1, p)).reshape(batch, n_vertices)
    rows = np.arange(batch)
    for _ in range(max_iter):
        order = np.argsort(values, axis=1)
        simplex = np.take_along_axis(simplex, order[:, :, None], axis=1)
        values = np.take_along_axis(values, order, axis=1)
        if _nm_converged(simplex, values, xatol, fatol).all():
            break
        centroid = simplex[:, :-1].mean(axis=1)
        direction = centroid - simplex[:, -1]
        points = centroid[:, None, :] + _NM_COEFS[None, :, None] * direction[:, None, :]
        f = cost(points.reshape(-1, p)).reshape(batch, 4)
        choice = _nm_choice(values, f)
        keep = choice >= 0
        simplex[rows[keep], -1] = points[rows[keep], choice[keep]]
        values[rows[keep], -1] = f[rows[keep], choice[keep]]
        shrink = rows[~keep]
        if len(shrink):
            best = simplex[shrink, :1]
            simplex[shrink, 1:] = best + 0.5 * (simplex[shrink, 1:] - best)
            values[shrink, 1:] = cost(simplex[shrink, 1:].reshape(-1, p)).reshape(len(shrink), p)
    best = np.argmin(values, axis=1)
    return simplex[rows, best], values[rows, best]


def _nm_converged(simplex, values, xatol, fatol) -> np.ndarray:
    """Which sorted simplices (B, p + 1, p) have shrunk to tolerance, or are all +inf; (B,)."""
    with np.errstate(invalid="ignore"):
        flat = values[:, -1] - values[:, 0] <= fatol
    small = np.abs(simplex[:, 1:] - simplex[:, :1]).max(axis=(1, 2)) <= xatol
    return (flat & small) | np.isinf(values[:, 0])


def _nm_choice(values: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Which candidate replaces each simplex's worst vertex: the column of f (B, 4), or -1 to
    shrink. values (B, p + 1) are sorted; f holds reflection, expansion and contractions."""
    best, second, worst = values[:, 0], values[:, -2], values[:, -1]
    fr, fe, f_out, f_in = f.T
    return np.select(
        [
            (fr < best) & (fe < fr),
            fr < second,
            (fr < worst) & (f_out <= fr),
            (fr >= worst) & (f_in < worst),
        ],
        [1, 0, 2, 3],
        default=-1,
    )


def fit_family(family: Family, y: np.ndarray, max_epoch: int) -> np.ndarray | None:
    """The least-squares parameters (p,) of one family on accuracies y (n,) at epochs 1..n,
    inside the prior's support on epochs 1..max_epoch; None if no start leads there."""
    x = np.arange(1.0, max_epoch + 1.0)
    cost = _ml_cost(family, y, x)
    with np.errstate(all="ignore"):
        starts = family.guesses(y)
    starts = starts[np.isfinite(starts).all(axis=1)]
    if not len(starts):
        return None
    theta, value = nelder_mead(cost, starts)
    theta, value = nelder_mead(cost, theta)  # restart: a fresh simplex where the last stalled
    ok = np.isfinite(value) & _in_support(family(x, theta))
    if not ok.any():
        return None
    return theta[np.flatnonzero(ok)[np.argmin(value[ok])]]


# ----------------------------------------------------------------------------------------
# step 2: the combined model and its posterior


class _Posterior:
    """The log posterior of the combined model over a flat parameter vector
    ``[theta_1, ..., theta_K, v_1, ..., v_K, sigma]`` (weights w = v / sum v)."""

    def __init__(self, families: Sequence[Family], y: np.ndarray, max_epoch: int):
        self.families = tuple(families)
        self.y = y
        self.x = np.arange(1.0, max_epoch + 1.0)
        bounds = np.cumsum([0] + [f.dim for f in self.families])
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self.n_theta = int(bounds[-1])
        self.dim = self.n_theta + len(self.families) + 1

    def weights(self, p: np.ndarray) -> np.ndarray:
        v = p[:, self.n_theta : self.n_theta + len(self.families)]
        return v / v.sum(axis=1, keepdims=True)

    def curves(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f_comb at epochs 1..m, (B, m), for parameter vectors p (B, dim), and whether every
        family is finite on 1..m, (B,)."""
        w = self.weights(p)
        total = np.zeros((len(p), len(self.x)))
        finite = np.ones(len(p), dtype=bool)
        for k, (family, part) in enumerate(zip(self.families, self.slices, strict=True)):
            f = family(self.x, p[:, part])
            finite &= np.isfinite(f).all(axis=1)
            with np.errstate(all="ignore"):
                total += w[:, k : k + 1] * f
        return total, finite

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Log posterior (B,) of parameter vectors p (B, dim), up to a constant; -inf outside
        the support."""
        v, sigma = p[:, self.n_theta : -1], p[:, -1]
        ok = (v > 0).all(axis=1) & (sigma > SIGMA_MIN)
        out = np.full(len(p), -np.inf)
        if not ok.any():
            return out
        total, finite = self.curves(p[ok])
        ok_sub = finite & _in_support(total)
        n = len(self.y)
        with np.errstate(all="ignore"):
            sse = ((total[:, :n] - self.y) ** 2).sum(axis=1)
            s = sigma[ok]
            lp = -n * np.log(s) - 0.5 * sse / s**2 - v[ok].sum(axis=1)
        lp[~ok_sub | ~np.isfinite(lp)] = -np.inf
        out[ok] = lp
        return out


def stretch_sample(
    log_prob: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    burn_in: int,
    steps: int,
    thin: int,
    rng: np.random.Generator,
    a: float = STRETCH,
) -> tuple[np.ndarray, float]:
    """Affine-invariant ensemble sampling with the stretch move (Goodman and Weare, 2010).

    start: (W, D) walkers, all with finite ``log_prob`` ((N, D) -> (N,)). Each step updates
    the two halves of the ensemble in turn, each walker against a random walker of the other
    half, with z drawn from g(z) ~ 1/sqrt(z) on [1/a, a]. Returns the positions after the
    burn-in, every ``thin``-th step, shape (steps // thin, W, D), and the acceptance rate.
    """
    pos = np.array(start, dtype=float)
    walkers, dim = pos.shape
    lp = log_prob(pos)
    if not np.isfinite(lp).all():
        raise ValueError("start: every walker must have a finite log probability")
    halves = (np.arange(walkers // 2), np.arange(walkers // 2, walkers))
    kept, accepted = [], 0
    for step in range(burn_in + steps):
        for moving, other in (halves, halves[::-1]):
            z = ((a - 1.0) * rng.random(len(moving)) + 1.0) ** 2 / a
            partner = pos[other[rng.integers(len(other), size=len(moving))]]
            proposal = partner + z[:, None] * (pos[moving] - partner)
            lp_new = log_prob(proposal)
            log_ratio = (dim - 1) * np.log(z) + lp_new - lp[moving]
            accept = np.log(rng.random(len(moving))) < log_ratio
            pos[moving[accept]] = proposal[accept]
            lp[moving[accept]] = lp_new[accept]
            accepted += int(accept.sum()) if step >= burn_in else 0
        if step >= burn_in and (step - burn_in + 1) % thin == 0:
            kept.append(pos.copy())
    rate = accepted / max(steps * walkers, 1)
    return np.array(kept), rate


def _draw_sigma(
    sse: np.ndarray, n: int, sigma: np.ndarray, rng: np.random.Generator, tries: int = 4
) -> np.ndarray:
    """A Gibbs update of the noise sigma (W,) given each walker's squared error sse (W,).

    Under the flat prior on (SIGMA_MIN, inf), 1 / sigma^2 given the rest is Gamma with shape
    (n - 1) / 2 and rate sse / 2, truncated to sigma > SIGMA_MIN. Up to ``tries`` draws of the
    untruncated Gamma are made; the first inside the truncation is taken, and a walker with
    none keeps its sigma (a valid kernel: the chance of none does not depend on sigma).
    """
    out = sigma.copy()
    todo = np.flatnonzero(sse > 0.0)
    for _ in range(tries):
        if not len(todo):
            break
        with np.errstate(all="ignore"):
            draw = 1.0 / np.sqrt(rng.gamma(0.5 * (n - 1), 2.0 / sse[todo]))
        ok = np.isfinite(draw) & (draw > SIGMA_MIN)
        out[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return out


def blocked_sample(
    posterior: _Posterior,
    start: np.ndarray,
    burn_in: int,
    steps: int,
    thin: int,
    rng: np.random.Generator,
    a: float = STRETCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Metropolis-within-Gibbs over the posterior's blocks, each by ensemble stretch moves.

    start: (W, dim) walkers ``[theta_1, ..., theta_K, v, sigma]``, all with finite posterior.
    Each step (sweep) updates, for both halves of the ensemble in turn, each family's theta_k
    by a stretch move against the other half's theta_k (a move in that block's p dimensions,
    acceptance factor z^(p - 1)), then the weights by a stretch move in log v (K dimensions;
    the density in log v carries the Jacobian prod v), then draws sigma from its exact
    conditional (:func:`_draw_sigma`). The family curves of every walker are cached, so a
    theta_k move evaluates only family k. Returns the positions after the burn-in, every
    ``thin``-th step, shape (steps // thin, W, dim), and the acceptance rate of each block
    after the burn-in, shape (K + 1,) (the families', then the weights').
    """
    post = posterior
    pos = np.array(start, dtype=float)
    if not np.isfinite(post(pos)).all():
        raise ValueError("start: every walker must have a finite log probability")
    walkers = len(pos)
    k_count, n, y = len(post.families), len(post.y), post.y
    theta = pos[:, : post.n_theta].copy()
    log_v = np.log(pos[:, post.n_theta : -1])
    sigma = pos[:, -1].copy()
    pairs = zip(post.families, post.slices, strict=True)
    cached = np.stack([f(post.x, theta[:, s]) for f, s in pairs], axis=1)  # (W, K, m)
    halves = (np.arange(walkers // 2), np.arange(walkers // 2, walkers))
    accepted = np.zeros(k_count + 1)
    kept = []

    def stretch(moving, other, block):
        z = ((a - 1.0) * rng.random(len(moving)) + 1.0) ** 2 / a
        partner = block[other[rng.integers(len(other), size=len(moving))]]
        with np.errstate(all="ignore"):
            return z, partner + z[:, None] * (block[moving] - partner)

    for step in range(burn_in + steps):
        w = _softmax(log_v)
        total = np.einsum("bk,bkm->bm", w, cached)
        sse = ((total[:, :n] - y) ** 2).sum(axis=1)
        counting = step >= burn_in
        for k, (family, part) in enumerate(zip(post.families, post.slices, strict=True)):
            for moving, other in (halves, halves[::-1]):
                z, proposal = stretch(moving, other, theta[:, part])
                f_new = family(post.x, proposal)
                with np.errstate(all="ignore"):
                    t_new = total[moving] + w[moving, k, None] * (f_new - cached[moving, k])
                    sse_new = ((t_new[:, :n] - y) ** 2).sum(axis=1)
                    log_ratio = (part.stop - part.start - 1) * np.log(z) - 0.5 * (
                        sse_new - sse[moving]
                    ) / sigma[moving] ** 2
                ok = np.isfinite(f_new).all(axis=1) & _in_support(t_new) & np.isfinite(log_ratio)
                accept = ok & (np.log(rng.random(len(moving))) < np.where(ok, log_ratio, 0.0))
                idx = moving[accept]
                theta[idx, part] = proposal[accept]
                cached[idx, k] = f_new[accept]
                total[idx], sse[idx] = t_new[accept], sse_new[accept]
                accepted[k] += accept.sum() if counting else 0
        for moving, other in (halves, halves[::-1]):
            z, proposal = stretch(moving, other, log_v)
            with np.errstate(all="ignore"):
                w_new = _softmax(proposal)
                t_new = np.einsum("bk,bkm->bm", w_new, cached[moving])
                sse_new = ((t_new[:, :n] - y) ** 2).sum(axis=1)
                inv = 0.5 / sigma[moving] ** 2
                lp_new = -inv * sse_new - np.exp(proposal).sum(1) + proposal.sum(1)
                lp_old = -inv * sse[moving] - np.exp(log_v[moving]).sum(1) + log_v[moving].sum(1)
                log_ratio = (k_count - 1) * np.log(z) + lp_new - lp_old
            ok = _in_support(t_new) & np.isfinite(log_ratio)
            accept = ok & (np.log(rng.random(len(moving))) < np.where(ok, log_ratio, 0.0))
            idx = moving[accept]
            log_v[idx], w[idx] = proposal[accept], w_new[accept]
            total[idx], sse[idx] = t_new[accept], sse_new[accept]
            accepted[-1] += accept.sum() if counting else 0
        sigma = _draw_sigma(sse, n, sigma, rng)
        if counting and (step - burn_in + 1) % thin == 0:
            kept.append(np.concatenate([theta, np.exp(log_v), sigma[:, None]], axis=1))
    return np.array(kept), accepted / max(steps * walkers, 1)


def _softmax(log_v: np.ndarray) -> np.ndarray:
    """Weights w = v / sum(v), (B, K), from log v (B, K), without overflow."""
    e = np.exp(log_v - log_v.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------
# the public face


@dataclass(frozen=True, eq=False)
class CurvePrediction:
    """The posterior prediction of one learning curve at epochs 1..m.

    epochs: (m,) 1-based. mean, std: (m,) posterior predictive mean and standard deviation of
    the accuracy (std includes the noise sigma). samples: (S, m) posterior samples of f_comb,
    without the noise. noise: (S,) the sigma of each sample. families: the families kept in
    the ensemble; weights: (K,) their posterior mean weights. acceptance: the sampler's
    acceptance rate after the burn-in (the blocked sampler: the mean over its blocks);
    block_acceptance: (K + 1,) the blocked sampler's rate per block (families, then the
    weights), None for the joint sampler.
    """

    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray
    noise: np.ndarray
    families: tuple[str, ...]
    weights: np.ndarray
    acceptance: float
    block_acceptance: np.ndarray | None = None

    def prob_greater(self, y_best: float, epoch: int | None = None) -> float:
        """P(y_epoch > y_best) under the posterior predictive, noise included, in [0, 1].

        epoch: 1-based, default the last predicted one. Averages, over the samples,
        P(f_comb(epoch) + N(0, sigma^2) > y_best).
        """
        if not _is_real(y_best) or not math.isfinite(y_best):
            raise ValueError(f"y_best must be a finite number, got {y_best!r}")
        m = len(self.epochs)
        epoch = m if epoch is None else epoch
        if not _is_int(epoch) or not 1 <= epoch <= m:
            raise ValueError(f"epoch must be an integer in 1..{m}, got {epoch!r}")
        z = (self.samples[:, epoch - 1] - y_best) / self.noise
        return float(np.clip(_normal_cdf(z).mean(), 0.0, 1.0))


_erfc = np.frompyfunc(math.erfc, 1, 1)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF, elementwise (exact to double precision, monotone)."""
    return 0.5 * _erfc(-np.asarray(z, dtype=float) / math.sqrt(2.0)).astype(float)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


class LearningCurveModel:
    """Domhan et al.'s learning-curve model: per-family least-squares fits, then MCMC over
    the weighted combination (see the module docstring).

    families: names from :data:`FAMILIES`. walkers: ensemble size, at least twice the
    number of sampled parameters (48 with all 11 families). burn_in: steps discarded; steps:
    steps after it, of which every ``thin``-th is kept, giving walkers * (steps // thin)
    samples. seed: seeds the ``numpy.random.Generator`` of the sampler. sampler: "joint" (one
    stretch move over all parameters) or "blocked" (:func:`blocked_sample`; a step is a
    sweep over the blocks, about 2.7 times the joint step's time with 11 families).
    """

    def __init__(
        self,
        families: Sequence[str] = tuple(FAMILIES),
        walkers: int = 100,
        burn_in: int = 300,
        steps: int = 300,
        thin: int = 10,
        seed: int = 0,
        sampler: str = "joint",
    ):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        self.sampler = sampler
        self.families = _check_families(families)
        dim = sum(FAMILIES[f].dim for f in self.families) + len(self.families) + 1
        if not _is_int(walkers) or walkers < 2 * dim:
            raise ValueError(
                f"walkers must be an integer >= 2 * {dim} (twice the number of sampled "
                f"parameters of these families), got {walkers!r}"
            )
        for name, value, least in (("burn_in", burn_in, 0), ("steps", steps, 1), ("thin", thin, 1)):
            if not _is_int(value) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if thin > steps:
            raise ValueError(f"thin must be at most steps ({steps}), got {thin}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.walkers, self.burn_in, self.steps, self.thin = walkers, burn_in, steps, thin
        self.seed = seed

    def fit(self, accuracies: Sequence[float], max_epoch: int) -> CurvePrediction:
        """Fit the observed accuracies y_1..y_n (n >= 2, each finite and in [0, 1], at epochs
        1..n) and predict epochs 1..max_epoch (max_epoch >= n)."""
        y = _check_accuracies(accuracies)
        if not _is_int(max_epoch) or max_epoch < len(y):
            raise ValueError(
                f"max_epoch must be an integer >= the number of accuracies ({len(y)}), "
                f"got {max_epoch!r}"
            )
        fits = {name: fit_family(FAMILIES[name], y, max_epoch) for name in self.families}
        kept = [name for name, theta in fits.items() if theta is not None]
        if not kept:
            raise RuntimeError("no learning-curve family could be fitted inside the prior")
        posterior = _Posterior([FAMILIES[k] for k in kept], y, max_epoch)
        rng = np.random.default_rng(self.seed)
        start = _start_walkers(posterior, [fits[k] for k in kept], self.walkers, rng)
        args = (posterior, start, self.burn_in, self.steps, self.thin, rng)
        blocks = None
        if self.sampler == "joint":
            chain, rate = stretch_sample(*args)
        else:
            chain, blocks = blocked_sample(*args)
            rate = float(blocks.mean())
        flat = chain.reshape(-1, posterior.dim)
        samples, _ = posterior.curves(flat)
        noise = flat[:, -1]
        std = np.sqrt(samples.var(axis=0) + np.mean(noise**2))
        return CurvePrediction(
            epochs=np.arange(1, max_epoch + 1),
            mean=samples.mean(axis=0),
            std=std,
            samples=samples,
            noise=noise,
            families=tuple(kept),
            weights=posterior.weights(flat).mean(axis=0),
            acceptance=rate,
            block_acceptance=blocks,
        )


def _check_families(families: Sequence[str]) -> tuple[str, ...]:
    if isinstance(families, str):
        raise ValueError(f"families must be a sequence of names, not one string: {families!r}")
    names = tuple(families)
    if not names:
        raise ValueError("families must name at least one family")
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(f"families: unknown family {unknown[0]!r}; known: {', '.join(FAMILIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"families must not repeat a name, got {names!r}")
    return names


def _check_accuracies(accuracies: Sequence[float]) -> np.ndarray:
    try:
        y = np.asarray(accuracies, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"accuracies must be a sequence of numbers: {error}") from None
    if y.ndim != 1:
        raise ValueError(f"accuracies must be one-dimensional, got shape {y.shape}")
    if len(y) < 2:
        raise ValueError(f"accuracies must hold at least 2 values (epochs 1, 2), got {len(y)}")
    if not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"accuracies must be finite; epoch {bad + 1} is {y[bad]}")
    outside = np.flatnonzero((y < 0.0) | (y > 1.0))
    if len(outside):
        bad = int(outside[0])
        raise ValueError(f"accuracies must lie in [0, 1]; epoch {bad + 1} is {y[bad]}")
    return y


def _start_walkers(
    posterior: _Posterior, fits: Sequence[np.ndarray], walkers: int, rng: np.random.Generator
) -> np.ndarray:
    """Walkers (W, dim) in a small ball around the ML fits, weights 1/K, all in the support.

    A walker outside the support is drawn again with half the spread, up to 40 times."""
    theta = np.concatenate(fits)
    k = len(fits)
    center = np.concatenate([theta, np.ones(k), [1.0]])
    total, _ = posterior.curves(center[None])
    rms = float(np.sqrt(np.mean((total[0, : len(posterior.y)] - posterior.y) ** 2)))
    center[-1] = max(rms, 2.0 * SIGMA_MIN)
    scale = np.concatenate([0.01 * np.maximum(np.abs(theta), 0.01), np.full(k + 1, 0.1)])
    start = np.empty((walkers, posterior.dim))
    todo = np.arange(walkers)
    for _ in range(40):
        noise = rng.standard_normal((len(todo), posterior.dim)) * scale
        draw = center + noise
        draw[:, posterior.n_theta :] = center[posterior.n_theta :] * np.exp(
            noise[:, posterior.n_theta :]
        )
        start[todo] = draw
        todo = todo[~np.isfinite(posterior(draw))]
        if not len(todo):
            return start
        scale = 0.5 * scale
    raise RuntimeError("could not start the walkers inside the prior's support")


def probability_of_improvement(
    accuracies: Sequence[float], max_epoch: int, y_best: float, seed: int = 0, **kwargs
) -> float:
    """P(y_max_epoch > y_best) for a curve observed at epochs 1..n (see
    :meth:`LearningCurveModel.fit` and :meth:`CurvePrediction.prob_greater`); kwargs go to
    :class:`LearningCurveModel`."""
    model = LearningCurveModel(seed=seed, **kwargs)
    return model.fit(accuracies, max_epoch).prob_greater(y_best)


if __name__ == "__main__":
    import time

    true = 0.95 - 0.5 * np.arange(1.0, 31.0) ** -0.7
    observed = true[:9] + np.random.default_rng(0).normal(0.0, 0.005, 9)
    began = time.perf_counter()
    prediction = LearningCurveModel().fit(observed, 30)
    seconds = time.perf_counter() - began
    print(
        f"fit n=9, m=30: {seconds:.2f} s; final mean {prediction.mean[-1]:.4f} "
        f"+- {prediction.std[-1]:.4f} (true {true[-1]:.4f}); acceptance "
        f"{prediction.acceptance:.2f}; families {', '.join(prediction.families)}"
    )
