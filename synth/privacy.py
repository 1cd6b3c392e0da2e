"""Privacy budgets and accounting, through Opacus's maintained accountants.

The budget goes in explicitly (``PrivacyBudget``); what was spent comes out explicitly
(``PrivacyReport``), computed by Opacus's accountant from the exact history of
(noise multiplier, sampling rate, steps) that training executed. The counting mechanisms
(``discrete_gaussian``, ``noisy_max``) are OpenDP's, whose maps state their zCDP cost.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

# the range every accountant handles, the same as a schema's declared budget
from schemas.model import MAX_EPSILON, MIN_DELTA, MIN_EPSILON

ACCOUNTANTS = ("prv", "rdp")
DEFAULT_DELTA = 1e-9


class BudgetError(ValueError):
    """A privacy budget that cannot be honoured."""


@dataclass(frozen=True)
class PrivacyBudget:
    """The (epsilon, delta) a release may spend, in total, on everything that reads the data.

    Raises:
        BudgetError: epsilon outside [1e-6, 1e3] or delta outside [1e-30, 1).
    """

    epsilon: float
    delta: float = DEFAULT_DELTA

    def __post_init__(self):
        if not (isinstance(self.epsilon, (int, float)) and math.isfinite(self.epsilon)
                and MIN_EPSILON <= self.epsilon <= MAX_EPSILON):
            raise BudgetError(f"epsilon must be a number from {MIN_EPSILON:g} to "
                              f"{MAX_EPSILON:g}, got {self.epsilon!r:.40}")
        if not (isinstance(self.delta, (int, float)) and MIN_DELTA <= self.delta < 1):
            raise BudgetError(f"delta must be a number from {MIN_DELTA:g} to below 1, got "
                              f"{self.delta!r:.40}")


@dataclass(frozen=True)
class PrivacyReport:
    """What fitting spent, and how it was computed.

    Attributes:
        epsilon: the epsilon the accountant gives for the executed history at ``delta``.
        delta: the delta of the guarantee.
        target_epsilon: the epsilon that was asked for (``epsilon`` never exceeds it).
        accountant: how the steps were composed: an Opacus accountant name ("prv" or "rdp")
            for DP-SGD, "zcdp" for Gaussian and exponential mechanisms composed in zero-
            concentrated DP.
        mechanism: a one-line description of the whole mechanism.
        noise_multiplier, sampling_rate, steps, max_grad_norm, expected_batch_size: the
            DP-SGD part (sigma, Poisson rate q, steps, clipping bound C, q times the noisy
            record count); None when the synthesizer does not train by DP-SGD. q and the
            steps come from the noisy count (listed in ``measurements``), never from the
            exact number of records.
        measurements: every other private step, one dict each (mechanism, its parameters and
            its privacy cost), in the order run.
    """

    epsilon: float
    delta: float
    target_epsilon: float
    accountant: str
    mechanism: str = ("DP-SGD (Opacus): Poisson sampling, per-sample gradient clipping, "
                      "Gaussian noise")
    noise_multiplier: float | None = None
    sampling_rate: float | None = None
    steps: int | None = None
    max_grad_norm: float | None = None
    expected_batch_size: float | None = None
    measurements: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def zcdp_delta(rho: float, epsilon: float) -> float:
    """The delta at which rho-zCDP implies (epsilon, delta)-DP, by the tight conversion of
    Canonne, Kamath and Steinke (2020, Proposition 7 / Corollary 13):
    delta = min over alpha > 1 of exp((alpha-1)(alpha*rho - epsilon)) / (alpha-1)
    * (1 - 1/alpha)^alpha."""
    if rho <= 0:
        return 0.0
    if epsilon <= rho:
        return 1.0

    def log_delta(alpha: float) -> float:
        return ((alpha - 1) * (alpha * rho - epsilon) + alpha * math.log1p(-1 / alpha)
                - math.log(alpha - 1))

    # log_delta is convex in alpha: ternary search on (1, upper]
    lo, hi = 1.0 + 1e-9, max(2.0, (epsilon + 1) / (2 * rho) + 2)
    for _ in range(200):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if log_delta(a) < log_delta(b):
            hi = b
        else:
            lo = a
    return min(1.0, math.exp(log_delta((lo + hi) / 2)))


@functools.lru_cache(maxsize=4096)  # a pure function, searched 40,000 steps deep
def zcdp_epsilon(rho: float, delta: float) -> float:
    """The smallest epsilon such that rho-zCDP implies (epsilon, delta)-DP."""
    lo, hi = rho, rho + 2 * math.sqrt(rho * math.log(1 / delta)) + 1e-12  # the classic bound
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if zcdp_delta(rho, mid) > delta else (lo, mid)
    return hi


def zcdp_rho(budget: PrivacyBudget) -> float:
    """The largest rho whose zCDP guarantee implies the budget's (epsilon, delta)-DP."""
    return _zcdp_rho(float(budget.epsilon), float(budget.delta))


@functools.lru_cache(maxsize=4096)
def _zcdp_rho(epsilon: float, delta: float) -> float:
    lo, hi = 0.0, epsilon
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if zcdp_delta(mid, epsilon) <= delta else (lo, mid)
    return lo


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise BudgetError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, "
                          f"got {accountant!r}")


def epsilon_of(noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
               accountant: str = "prv") -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps, by a fresh Opacus accountant."""
    from opacus.accountants import create_accountant

    _check_accountant(accountant)
    acct = create_accountant(mechanism=accountant)
    acct.history = [(noise_multiplier, sampling_rate, steps)]
    return float(acct.get_epsilon(delta=delta))


def calibrate_noise(budget: PrivacyBudget, sampling_rate: float, steps: int,
                    accountant: str = "prv") -> float:
    """The smallest noise multiplier (to Opacus's search tolerance) whose epsilon after
    ``steps`` steps at ``sampling_rate`` stays within the budget.

    Raises:
        BudgetError: the budget is too small for any noise level Opacus will search.
    """
    from opacus.accountants.utils import get_noise_multiplier

    _check_accountant(accountant)
    try:
        sigma = get_noise_multiplier(target_epsilon=budget.epsilon, target_delta=budget.delta,
                                     sample_rate=sampling_rate, steps=steps,
                                     accountant=accountant)
    except ValueError as exc:
        raise BudgetError(f"cannot reach epsilon={budget.epsilon} at delta={budget.delta} "
                          f"with {steps} steps at sampling rate {sampling_rate:.4g}: {exc}") \
            from None
    return float(sigma)


# --- composition of several Gaussian mechanisms --------------------------------------------
# A history is a list of (noise_multiplier, sampling_rate, steps), as Opacus's accountants
# keep it: a Gaussian mechanism run once on all the data (a noised histogram, say) is the
# entry (std / L2 sensitivity, 1.0, 1); DP-SGD is (sigma, q, steps).

History = list[tuple[float, float, int]]


def epsilon_of_history(history: History, delta: float, accountant: str = "prv") -> float:
    """Epsilon of a composition of (subsampled) Gaussian mechanisms, by a fresh Opacus
    accountant given the whole ``history``.

    A pure function of public numbers, remembered per process: a calibration's search asks
    for the sigma it returns, and the spend reported after training asks again."""
    _check_accountant(accountant)
    return _epsilon(tuple((float(s), float(q), int(t)) for s, q, t in history), float(delta),
                    accountant)


@functools.lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float,
             accountant: str) -> float:
    import warnings

    from opacus.accountants import create_accountant

    acct = create_accountant(mechanism=accountant)
    acct.history = list(history)
    with warnings.catch_warnings():  # PRV takes log(1 - q), -inf at q = 1: harmless there
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(acct.get_epsilon(delta=delta))


def _smallest_sigma(epsilon_at, target: float, what: str, tolerance: float = 0.01) -> float:
    """The smallest sigma (to ``tolerance`` of the target) with epsilon_at(sigma) <= target;
    epsilon_at must decrease in sigma.

    Returns a sigma whose epsilon is in [(1 - tolerance) * target, target] or, where the
    accountant's epsilon steps over that band, the upper end of a bracket narrowed to 1e-4
    of itself. Each evaluation is a whole accountant run, so the search is a secant on log
    epsilon against log sigma (epsilon is close to a power of sigma), aimed at the band's
    middle and kept inside a bracket whose stuck end has its weight halved (the Illinois
    rule), rather than halving a bracket from zero.
    """
    aim = math.log(target * (1 - tolerance / 2))

    def gap(sigma: float) -> tuple[float, bool, bool]:
        """log epsilon - aim; whether epsilon is over the target; whether it is in the band
        (both decided on epsilon itself, never on its rounded logarithm)."""
        eps = epsilon_at(sigma)
        if not eps < math.inf:  # inf or nan: too little noise
            return math.inf, True, False
        return math.log(max(eps, 1e-300)) - aim, eps > target, eps >= (1 - tolerance) * target

    high, (g_high, over, done) = 1.0, gap(1.0)
    low, g_low = 0.0, math.inf
    while over:  # epsilon above the target at ``high``: more noise
        low, g_low = high, g_high
        high *= 2.0
        if high > 1e6:
            raise BudgetError(f"cannot reach epsilon={target:.4g} for {what}, even at noise "
                              f"multiplier 1e6: raise the budget")
        g_high, over, done = gap(high)
    while low == 0.0 and not done:  # well within the target at 1: less noise
        # where epsilon ~ 1/sigma crosses the aim, but not below a quarter: the accountants
        # slow down sharply at small sigma (PRV took seconds per evaluation at 0.1)
        sigma = min(max(high * math.exp(g_high), high / 4), 0.999 * high)
        g, over, in_band = gap(sigma)
        if over:
            low, g_low = sigma, g
        else:
            high, g_high, done = sigma, g, in_band
    w_low, w_high, moved = g_low, g_high, 0  # the secant's weights; the end moved last
    while not done and high - low > 1e-4 * high:
        a, b = math.log(low), math.log(high)
        x = (a + b) / 2 if not math.isfinite(w_low) else b - w_high * (b - a) / (w_high - w_low)
        sigma = math.exp(min(max(x, a + 1e-3 * (b - a)), b - 1e-3 * (b - a)))
        g, over, in_band = gap(sigma)
        if over:
            low, g_low, w_low = sigma, g, g
            w_high = w_high / 2 if moved == -1 else w_high
            moved = -1
        else:
            high, g_high, w_high, done = sigma, g, g, in_band
            w_low = w_low / 2 if moved == 1 else w_low
            moved = 1
    return high


def gaussian_noise_multiplier(epsilon: float, delta: float, accountant: str = "prv") -> float:
    """Noise multiplier (noise std / L2 sensitivity) of one Gaussian release on all the data
    whose epsilon alone, at ``delta``, is at most ``epsilon``.

    Raises:
        BudgetError: the accountant cannot certify ``epsilon`` at any noise level (Opacus's
            RDP orders stop at 63, which floors its epsilon for a single release).
    """
    return _smallest_sigma(lambda s: epsilon_of_history([(s, 1.0, 1)], delta, accountant),
                           epsilon, "one Gaussian release")


def calibrate_noise_after(budget: PrivacyBudget, prior: History, sampling_rate: float,
                          steps: int, accountant: str = "prv") -> float:
    """The smallest DP-SGD noise multiplier (to 1% of the budget's epsilon) such that the
    ``prior`` mechanisms followed by ``steps`` steps at ``sampling_rate`` compose, by the
    accountant, to at most ``budget.epsilon``.

    Raises:
        BudgetError: the prior mechanisms alone already spend the budget, or it cannot be
            reached.
    """
    _check_accountant(accountant)
    if prior and epsilon_of_history(prior, budget.delta, accountant) >= budget.epsilon:
        raise BudgetError(f"the mechanisms before DP-SGD already spend epsilon="
                          f"{budget.epsilon} at delta={budget.delta}: raise the budget")
    return _smallest_sigma(
        lambda s: epsilon_of_history(list(prior) + [(s, sampling_rate, steps)], budget.delta,
                                     accountant),
        budget.epsilon, f"{steps} DP-SGD steps at sampling rate {sampling_rate:.4g}")


def discrete_gaussian(scale: float):
    """OpenDP's discrete Gaussian mechanism on vectors of integers (L2 distance), in zCDP.
    Its own modules, not its prelude: the prelude also imports its sklearn, polars and other
    extras, slow to import in every process that measures."""
    from opendp import domains, measurements, metrics, mod

    mod.enable_features("contrib")
    return measurements.make_gaussian(domains.vector_domain(domains.atom_domain(T=int)),
                                      metrics.l2_distance(T=int), scale=scale)


def noisy_max(scale: float):
    """OpenDP's report-noisy-max with Gumbel noise on vectors of scores (L-infinity distance),
    in zCDP (see ``discrete_gaussian`` on the imports)."""
    from opendp import domains, measurements, measures, metrics, mod

    mod.enable_features("contrib")
    return measurements.make_noisy_max(
        domains.vector_domain(domains.atom_domain(T=float, nan=False)),
        metrics.linf_distance(T=float), measures.zero_concentrated_divergence(), scale=scale)
