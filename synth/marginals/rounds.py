"""The plan of AIM's rounds: the noise of each round and the candidates it selects from.

``_Rounds`` splits the budget left after the 1-way marginals over the planned rounds (and the
last of it over ``LAST_ROUNDS``), halving the noise when a measurement stops moving the model;
``_Candidates`` lists every 1..degree-way marginal with its workload weight and cells. Both
are functions of public quantities (the schema's sizes, the budget, noisy counts).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from synth.marginals.mechanisms import Clique

LAST_ROUNDS = 2  # rounds the last of the budget is spread over
NOISE_L1 = math.sqrt(2 / math.pi)  # a cell's expected L1 noise per unit of sigma


@dataclass
class _Rounds:
    """The noise of AIM's rounds: ``sigma`` of each measurement, ``epsilon`` of each
    selection, ``share`` of a round's budget spent on the measurement."""

    sigma: float
    epsilon: float
    share: float
    last: int = 0  # rounds left once the rest of the budget is split evenly

    @classmethod
    def plan(cls, rounds: int, rho: float, selection_share: float) -> _Rounds:
        """``rho`` split evenly over ``rounds`` rounds."""
        share = 1 - selection_share
        return cls(math.sqrt(rounds / (2 * share * rho)),
                   math.sqrt(8 * selection_share * rho / rounds), share)

    def next(self, remaining: float) -> None:
        """Before each round: once less than two rounds as planned are left, the rest is split
        evenly over ``LAST_ROUNDS`` rounds, measurement and selection alike."""
        if not self.last and remaining < 2 * (1 / (2 * self.sigma**2) + self.epsilon**2 / 8):
            self.last = LAST_ROUNDS
        if self.last:
            self.sigma = math.sqrt(self.last / (2 * self.share * remaining))
            self.epsilon = math.sqrt(8 * (1 - self.share) * remaining / self.last)
            self.last -= 1

    def anneal(self, moved: float, cells: int) -> None:
        """After each round: where the measurement moved the model by no more than its
        expected noise, measure more precisely from now on (unless in the last rounds)."""
        if moved <= NOISE_L1 * self.sigma * cells and not self.last:
            self.sigma, self.epsilon = self.sigma / 2, self.epsilon * 2


@dataclass(frozen=True)
class _Candidates:
    """AIM's candidates (every 1..degree-way marginal but those of a column merged into one
    group), each with its weight (the columns it shares with the 2..degree-way workload,
    summed) and its cells (in a 2+-way marginal merged codes count as their groups)."""

    cliques: list[Clique]
    weights: dict[Clique, float]
    cells: dict[Clique, int]
    cells_in_order: np.ndarray  # each clique's cells, in the order of ``cliques``

    @classmethod
    def of(cls, sizes: list[int], degree: int, merged: dict[int, np.ndarray]) -> _Candidates:
        d = len(sizes)
        cliques = [c for k in range(1, degree + 1) for c in itertools.combinations(range(d), k)]
        by_size = {s: _workload_weight(s, d, degree) for s in range(1, min(degree, d) + 1)}
        weights = {r: by_size[len(r)] for r in cliques}
        groups = {c: int(g.max()) + 1 for c, g in merged.items()}
        cliques = [r for r in cliques if len(r) == 1 or all(groups.get(c, 2) > 1 for c in r)]
        cells = {r: math.prod(groups.get(c, sizes[c]) if len(r) > 1 else sizes[c] for c in r)
                 for r in cliques}
        return cls(cliques, weights, cells, np.array([cells[r] for r in cliques]))


def _workload_weight(s: int, d: int, degree: int) -> float:
    """The columns a clique of ``s`` of ``d`` columns shares with the 2..degree-way workload,
    summed over the workload: the number of k-column sets meeting it in j columns is
    C(s, j) C(d - s, k - j)."""
    return float(sum(j * math.comb(s, j) * math.comb(d - s, k - j)
                     for k in range(2, degree + 1) for j in range(1, min(s, k) + 1)))
