"""The only reads of the private data: OpenDP measurements, their zCDP costs summed.

Two primitives: the discrete Gaussian mechanism on integer counts (L2 sensitivity 1 under
add/remove of one record; ``contribution`` c where a privacy unit holds up to c records, the
counts then measured in units of c records) and report-noisy-max with Gumbel noise for
selection (sensitivity: the largest score weight). Everything else in dp-marginals is
post-processing of what they return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from synth.encoding import CodedTable
from synth.privacy import discrete_gaussian, noisy_max

Clique = tuple[int, ...]


@dataclass
class Measurement:
    clique: Clique
    counts: torch.Tensor  # noisy counts, flattened over the clique's cells
    sigma: float
    full: bool = False  # every code counted on its own (merged codes not grouped)


def record_count(measurements: list[Measurement]) -> float:
    """Inverse-variance weighted estimate of the record count from every measurement."""
    num = den = 0.0
    for m in measurements:
        var = m.sigma**2 * len(m.counts)  # one variance per cell
        num += float(m.counts.sum()) / var
        den += 1 / var
    return max(1.0, num / den)


class _Mechanisms:
    """The two private primitives, through OpenDP, with their zCDP costs summed."""

    def __init__(self, codes: np.ndarray, sizes: list[int], seed: int | None,
                 frame: pd.DataFrame | CodedTable | None = None, contribution: int = 1,
                 weights: np.ndarray | None = None):
        self.sizes, self.frame = sizes, frame  # frame: for fine histograms
        self._columns = np.ascontiguousarray(codes.T, dtype=np.int32)  # (columns, rows)
        # whole-number weight of each record (None: 1), a privacy unit's summing to at most
        # ``contribution``: a unit still moves any count by at most that much
        self.weights = weights
        # the most records one privacy unit holds (a person's rows in a child table): counts
        # are measured in units of that many records (see ``exact``)
        self.contribution = contribution
        self.rho_spent = 0.0
        self.log: list[dict] = []
        self._cache: dict[tuple[Clique, bool], np.ndarray] = {}
        self.merged: dict[int, np.ndarray] = {}  # column -> group of each code, for 2+-way
        # a fixed seed (tests only) replaces OpenDP's secure sampling by numpy's
        self.rng = None if seed is None else np.random.default_rng(seed)

    def exact(self, clique: Clique, full: bool = False) -> np.ndarray:
        """Private exact counts of a marginal (never leave this class un-noised); in a 2+-way
        marginal a column with merged codes counts by its groups unless ``full``. With a
        ``contribution`` c above 1, in units of c records (each record weighs 1/c), so that
        one privacy unit moves them by at most 1 in L1 and L2, as one record does when c is
        1: the driver's noise scales, costs and selection sensitivities hold unchanged."""
        counts = self._counts(clique, full)
        return counts if self.contribution == 1 else counts / self.contribution

    def _counts(self, clique: Clique, full: bool) -> np.ndarray:
        if (clique, full) not in self._cache:
            grouped = len(clique) > 1 and not full
            columns = [self.merged[c][self._columns[c]] if grouped and c in self.merged
                       else self._columns[c] for c in clique]
            dims = [int(self.merged[c].max()) + 1 if grouped and c in self.merged
                    else self.sizes[c] for c in clique]
            flat = columns[0].astype(np.int64 if math.prod(dims) >= 2**31 else np.int32)
            for column, size in zip(columns[1:], dims[1:]):  # row-major cell of each row
                flat = flat * size + column
            counts = np.bincount(flat, weights=self.weights, minlength=math.prod(dims))
            self._cache[clique, full] = (counts if self.weights is None
                                         else counts.round().astype("int64"))
        return self._cache[clique, full]

    def measure(self, clique: Clique, sigma: float, full: bool = False) -> np.ndarray:
        """Counts of ``clique`` (see ``exact``) plus discrete Gaussian noise of scale sigma."""
        return self._noisy(self._counts(clique, full), sigma,
                           {"marginal": list(clique), **({"full": True} if full else {})})

    def measurement(self, clique: Clique, sigma: float, full: bool = False) -> Measurement:
        """``measure`` as a ``Measurement``."""
        return Measurement(clique, torch.as_tensor(self.measure(clique, sigma, full)), sigma,
                           full)

    def measure_fine(self, column: int, grid, sigma: float) -> np.ndarray:
        """A column's histogram over its fine states (non-missing values; one record moves
        one count by one), plus discrete Gaussian noise of scale sigma."""
        frame = self.frame  # a CodedTable holds the fine states already
        assert frame is not None  # the fit passes its data whenever it measures fine states
        values = (frame.fine if isinstance(frame, CodedTable) else frame)[
            grid.block.column.name]
        weights = self.weights
        if weights is not None and isinstance(values, pd.Series):  # the present values'
            weights = weights[values.notna().to_numpy()]
        counts = np.bincount(grid.encode(values), weights=weights,
                             minlength=grid.size).round().astype("int64")
        return self._noisy(counts, sigma, {"fine_histogram": column, "states": grid.size})

    def _noisy(self, counts: np.ndarray, sigma: float, what: dict) -> np.ndarray:
        """Integer ``counts`` plus discrete Gaussian noise, in units of ``contribution``
        records: noise of scale sigma * c on the counts, whose L2 sensitivity is c, so the
        cost is that of scale sigma at sensitivity 1, as OpenDP's map states it."""
        c = self.contribution
        meas = discrete_gaussian(sigma * c)
        rho = float(meas.map(c))
        if self.rng is None:
            noisy = np.asarray(meas(counts.tolist()), dtype="float64")
        else:
            noisy = counts + np.round(self.rng.normal(0, sigma * c, counts.shape))
        self.rho_spent += rho
        self.log.append({"mechanism": "discrete Gaussian (OpenDP)", **what, "sigma": sigma * c,
                         "rho": rho, **({"sensitivity": c} if c != 1 else {})})
        return noisy / c if c != 1 else noisy

    def select(self, scores: np.ndarray, sensitivity: float, epsilon: float) -> int:
        """Index of a high score by report-noisy-max (Gumbel), epsilon-DP and eps^2/8-zCDP."""
        scale = 2 * sensitivity / epsilon
        meas = noisy_max(scale)
        rho = float(meas.map(float(sensitivity)))
        if self.rng is None:
            index = int(meas([float(s) for s in scores]))
        else:
            index = int(np.argmax(scores + self.rng.gumbel(0, scale, len(scores))))
        self.rho_spent += rho
        self.log.append({"mechanism": "report noisy max, Gumbel (OpenDP)",
                         "candidates": len(scores), "epsilon": epsilon, "rho": rho})
        return index
