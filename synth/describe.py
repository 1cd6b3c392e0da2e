"""Noisy counts that describe a table under differential privacy: what a DP schema draft is
read from.

Every statistic is a histogram in which one record adds one to at most one key, so each has
L2 sensitivity 1 when a record is added or removed, and each is released once with discrete
Gaussian noise of one scale sigma (OpenDP's exact sampler, fed by a cryptographically secure
generator). There are two kinds of key:

- public keys, fixed before any data is read (round numbers, calendar years, the shapes a
  value may take): every key is noised, whether a record holds it or not;
- keys read from the data (category labels): only those present are noised, and one is
  released only if its noisy count reaches a threshold, so a label held by a single record
  appears with probability at most ``delta_t`` (the thresholded histogram of Korolova et al.,
  WWW 2009, and Wilson et al., PoPETs 2020).

``m`` histograms compose in zero-concentrated DP to ``rho = m / (2 sigma^2)`` (Bun and
Steinke 2016; Canonne, Kamath and Steinke 2020 for the discrete Gaussian), converted to
``(epsilon, delta_g)`` by ``synth.privacy``. The budget's delta is split in half: ``delta_g``
for the Gaussian noise, ``delta_t`` for the thresholds.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from synth.privacy import PrivacyBudget, discrete_gaussian, zcdp_epsilon, zcdp_rho

CANDIDATE_DECADES = range(-6, 16)  # round numbers from 1e-6 to 5e15
YEARS = (1700, 2300)  # calendar years with a key of their own; earlier and later share two
WHOLE = (-1000, 3000)  # whole parts with a key of their own: small counts, ages, years
MISS = 1e-3  # chance that noise alone puts a public key above its cutoff (see cutoff)


def round_numbers() -> np.ndarray:
    """The public candidate bounds: 0 and plus or minus 1, 2 or 5 times a power of ten, from
    1e-6 to 5e15, sorted. Fixed before any data is read; never a value of the data."""
    positive = [float(f"{m}e{e}") for e in CANDIDATE_DECADES for m in (1, 2, 5)]
    return np.array(sorted([-p for p in positive] + [0.0] + positive))


@dataclass(frozen=True)
class Grid:
    """Public keys of a number line: each point of ``points`` is a key, and so is each open
    interval between neighbouring points (the two outermost run to minus and plus infinity).
    A value on a point lands on it, so a round extreme (0, 100) stays its own bound.

    Key ``2i + 1`` is ``points[i]``; key ``2i`` is the interval just below it; key
    ``2 * len(points)`` is the interval above the last point.
    """

    points: np.ndarray

    @property
    def size(self) -> int:
        return 2 * len(self.points) + 1

    def keys(self, values: np.ndarray) -> np.ndarray:
        """The key of each (finite) value."""
        at = np.searchsorted(self.points, values, side="left")
        inside = at < len(self.points)
        on_point = inside & (self.points[np.minimum(at, len(self.points) - 1)] == values)
        return 2 * at + on_point

    def span(self, key: int) -> tuple[float, float]:
        """The smallest and largest value key ``key`` holds (an interval's ends, which are
        round numbers; the grid's outermost points for the unbounded ends)."""
        if key % 2:
            return float(self.points[key // 2]), float(self.points[key // 2])
        i = key // 2
        return (float(self.points[max(i - 1, 0)]),
                float(self.points[min(i, len(self.points) - 1)]))


@dataclass(frozen=True)
class Calibration:
    """The noise of a description: ``histograms`` releases, each of L2 sensitivity 1.

    Attributes:
        sigma: the discrete Gaussian noise's scale.
        threshold: a key read from the data is released when its noisy count is at least this.
        histograms: how many histograms may be released.
        thresholded: how many of them hold keys read from the data (a record may bring a new
            key into each).
        epsilon: what releasing them all spends, at ``delta``.
        delta: ``delta_g`` (the Gaussian part) plus ``delta_t`` (the thresholds).
        delta_gaussian: the Gaussian part of delta.
    """

    sigma: float
    threshold: int
    histograms: int
    thresholded: int
    epsilon: float
    delta: float
    delta_gaussian: float


def calibrate(budget: PrivacyBudget, histograms: int, thresholded: int) -> Calibration:
    """The smallest noise under which ``histograms`` releases spend at most ``budget``, and
    the threshold that keeps a key held by one record out of all ``thresholded`` histograms
    but with probability ``delta / 2``.

    Raises:
        BudgetError: a budget that does not parse (see PrivacyBudget).
    """
    assert histograms >= 1 and 0 <= thresholded <= histograms
    delta_g = budget.delta / 2
    rho = zcdp_rho(PrivacyBudget(budget.epsilon, delta_g))
    sigma = math.sqrt(histograms / (2 * rho))
    threshold = 1
    if thresholded:
        target = (budget.delta - delta_g) / thresholded
        low, high = 1, int(60 * sigma) + 60  # tail(high - 1) is far below any target
        while low < high:  # the smallest t with P[1 + noise >= t] <= target
            mid = (low + high) // 2
            low, high = (low, mid) if tail_bound(sigma, mid - 1) <= target else (mid + 1, high)
        threshold = low
    delta_t = thresholded * tail_bound(sigma, threshold - 1)
    epsilon = min(zcdp_epsilon(histograms / (2 * sigma**2), delta_g), budget.epsilon)
    return Calibration(sigma=sigma, threshold=threshold, histograms=histograms,
                       thresholded=thresholded, epsilon=epsilon, delta=delta_g + delta_t,
                       delta_gaussian=delta_g)


def tail_bound(sigma: float, m: int) -> float:
    """An upper bound on P[X >= m] for X discrete Gaussian of scale sigma and m >= 0: the sum
    of exp(-x^2 / 2 sigma^2) over x >= m is at most its first term plus the integral from m,
    and the normalising sum over all integers is at least sigma * sqrt(2 pi)."""
    z = m / sigma
    first = math.exp(-z * z / 2) / (sigma * math.sqrt(2 * math.pi))
    return 0.5 * math.erfc(z / math.sqrt(2)) + first


def cutoff(sigma: float, keys: int) -> float:
    """The noisy count above which a public key is taken to hold records: noise alone puts
    one of ``keys`` empty keys above it with probability at most ``MISS`` (post-processing:
    it spends nothing)."""
    from statistics import NormalDist

    return 1.0 + sigma * NormalDist().inv_cdf(1 - MISS / keys)


class NoisyCounts:
    """Releases histograms under one Calibration, and says what they spent.

    Args:
        calibration: the noise scale, threshold and number of histograms allowed.
        seed: None (default): OpenDP's discrete Gaussian sampler, which draws from a
            cryptographically secure generator. An integer (tests only) replaces it by numpy
            noise keyed by the seed, the histogram's name and each key, so a key's noise does
            not depend on which other keys are present; that release is NOT private.
    """

    def __init__(self, calibration: Calibration, seed: int | None = None):
        self.calibration, self.seed = calibration, seed
        self.released = 0
        self.read = 0  # histograms released with keys read from the data

    def release(self, name: str, public: np.ndarray, read: dict[str, int] | None = None
                ) -> tuple[np.ndarray, dict[str, float]]:
        """One histogram: the noisy counts of every public key, and, of the keys read from
        the data (``read``: key -> count), those whose noisy count reaches the threshold.
        A histogram that may hold keys read from the data passes ``read`` (if empty), so that
        its threshold is paid for whatever this data set holds.

        Raises:
            RuntimeError: more histograms than the calibration paid for.
        """
        c = self.calibration
        if self.released >= c.histograms or (read is not None and self.read >= c.thresholded):
            raise RuntimeError(f"histogram {name!r} is over the {c.histograms} (with "
                               f"{c.thresholded} thresholded) the description was calibrated for")
        self.released += 1
        self.read += read is not None  # whether or not this data set brought a key into it
        read = read or {}
        labels = list(read)
        counts = np.concatenate([np.asarray(public, dtype="int64"),
                                 np.array([read[k] for k in labels], dtype="int64")])
        noisy = self._noise(name, counts, labels)
        out = noisy[len(public):]
        kept = {k: float(v) for k, v in zip(labels, out) if v >= self.calibration.threshold}
        return noisy[:len(public)], kept

    def spent(self) -> tuple[float, float]:
        """(epsilon, delta) of the histograms released so far."""
        c = self.calibration
        if not self.released:
            return 0.0, 0.0
        epsilon = min(zcdp_epsilon(self.released / (2 * c.sigma**2), c.delta_gaussian),
                      c.epsilon)
        return epsilon, c.delta_gaussian + self.read * tail_bound(c.sigma, c.threshold - 1)

    def _noise(self, name: str, counts: np.ndarray, labels: list[str]) -> np.ndarray:
        sigma = self.calibration.sigma
        if self.seed is None:
            gaussian = discrete_gaussian(sigma)
            return np.asarray(gaussian(counts.tolist()), dtype="float64")
        public = len(counts) - len(labels)
        noise = np.empty(len(counts))
        noise[:public] = np.random.default_rng([self.seed, _hash(name)]).normal(0, sigma, public)
        for i, label in enumerate(labels):  # one generator per key: stable across data sets
            noise[public + i] = np.random.default_rng(
                [self.seed, _hash(name), _hash(label)]).normal(0, sigma)
        return counts + np.round(noise)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
