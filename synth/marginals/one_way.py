"""What the noisy 1-way marginals decide before the rounds, each decision post-processing.

From the 1-way measurements alone: whether to measure them once more (``top_up``), which rare
codes to merge (``merge_rare``), which binned columns to count by runs of bins (``coarsen``)
and which pairs look like recodings of each other (``recodings``). The groupings go into
``_Mechanisms.merged``, shared by the measurements of 2+-way marginals and the model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

from synth.encoding import Block
from synth.marginals.mechanisms import Clique, Measurement, _Mechanisms, record_count

ONE_WAY_MAX = 0.6  # the most of the budget the 1-way marginals may take (see top_up)
RARE_MERGE_MIN_CATEGORIES = 20  # only high-cardinality code columns get rare codes merged
RECODING_SPREAD = 4  # the fewest values a recoding's columns must fill (see recodings)
RECODING_MAX = 0.25  # the most of the budget left for the rounds that recodings may take


def top_up(measurements: list[Measurement], share: float, rho: float, mech: _Mechanisms,
           target: float) -> float:
    """Measures every 1-way marginal again when the first measurements' expected L1 noise
    per column exceeds ``target`` (judged from the noisy record count: post-processing), and
    replaces each pair of measurements by their inverse-variance average (the same
    information). Returns the share of ``rho`` the 1-way marginals took in all."""
    d, sigma0 = len(measurements), measurements[0].sigma
    n = record_count(measurements)
    noise = math.sqrt(2 / math.pi) * sigma0 * float(np.mean(mech.sizes)) / n
    wanted = min(ONE_WAY_MAX, share * (noise / target) ** 2)
    if wanted <= share:
        return share
    sigma1 = math.sqrt(d / (2 * (wanted - share) * rho))
    w0, w1 = sigma0**-2, sigma1**-2
    sigma = (w0 + w1) ** -0.5
    for i, m in enumerate(measurements):
        again = torch.as_tensor(mech.measure((i,), sigma1))
        measurements[i] = Measurement((i,), (w0 * m.counts + w1 * again) / (w0 + w1), sigma)
    return wanted


def merge_rare(measurements: list[Measurement], sigma: float, mech: _Mechanisms,
               blocks: Sequence[Block], rare_merge: float) -> dict[str, list]:
    """Groups each code column's rare codes (noisy count < rare_merge * sigma) for the
    higher-order marginals, and shrinks their noisy 1-way counts (see ``_shrink``). Returns
    the merged categories by column name."""
    merged = {}
    for i, block in enumerate(blocks):
        col = block.column
        if not rare_merge or col.kind != "categorical" or \
                len(col.categories) <= RARE_MERGE_MIN_CATEGORIES:
            continue
        rare = measurements[i].counts.numpy() < rare_merge * sigma  # (codes,)
        if rare.sum() < 2:
            continue
        measurements[i] = _shrink(measurements[i], rare)
        groups = np.where(rare, (~rare).sum(), np.cumsum(~rare) - 1)  # rare: last group
        mech.merged[i] = groups
        merged[col.name] = [c for c, r in zip(col.categories, rare) if r]
    return merged


def _shrink(m: Measurement, cells: np.ndarray) -> Measurement:
    """``m`` with its counts in ``cells`` shrunk towards their mean by the empirical-Bayes
    factor spread / (spread + sigma^2), the spread being their variance beyond the noise's
    (post-processing; their sum is unchanged)."""
    y = m.counts.numpy().astype("float64").copy()
    part = y[cells]
    spread = max(0.0, part.var(ddof=1) - m.sigma**2)
    y[cells] = part.mean() + spread / (spread + m.sigma**2) * (part - part.mean())
    return Measurement(m.clique, torch.as_tensor(y, dtype=m.counts.dtype), m.sigma)


def coarsen(measurements: list[Measurement], parts: int, keep: set[str | None],
            mech: _Mechanisms, blocks: Sequence[Block]) -> dict[str, int]:
    """Groups each binned column of more than ``parts`` bins, except those named in ``keep``,
    into at most ``parts`` runs of adjacent bins, cut at the quantiles of its noisy 1-way
    counts, for the 2+-way marginals (a bin holding a large share, such as a capital gain of
    0, gets a run of its own). Returns the runs per coarsened column name."""
    runs = {}
    for i, block in enumerate(blocks):
        n = block.n_values
        if block.edges is None or n <= parts or block.column.name in keep:
            continue
        p = measurements[i].counts[:n].numpy().clip(min=0)
        middle = (np.cumsum(p) - p / 2) / max(p.sum(), 1.0)
        g = np.unique(np.minimum(parts - 1, (middle * parts).astype("int64")),
                      return_inverse=True)[1]
        g = np.append(g, np.full(block.size - n, g.max() + 1))  # missing: its own group
        mech.merged[i] = g  # the measurements' grouping and the model's
        runs[block.column.name] = int(g.max()) + 1
    return runs


def recodings(measurements: list[Measurement], blocks: Sequence[Block],
              coarsened: dict[str, int], merged: dict[str, list]) -> list[Clique]:
    """Pairs of columns that look like recodings of each other (a code and its label),
    judged from their noisy 1-way counts alone: both hold values (no bin of several values)
    and no merged codes, as many values each, filling at least ``RECODING_SPREAD`` of them
    effectively, one of them coarsened, and their counts in sorted order equal within the
    noise (squared differences summing to at most the number of values in noise variances:
    about what noise alone gives). The closest pairs (in noise variances) first."""
    counts = [m.counts.numpy()[:b.n_values].clip(min=0) for m, b in zip(measurements, blocks)]
    out: list[tuple[float, Clique]] = []
    for i, j in itertools.combinations(range(len(blocks)), 2):
        a, b = blocks[i], blocks[j]
        if a.n_values != b.n_values or not {a.column.name, b.column.name} & set(
                coarsened) or {a.column.name, b.column.name} & set(merged):
            continue
        if any(x.edges is not None and not x.integer_values for x in (a, b)):
            continue
        if min(_effective_cells(counts[i]), _effective_cells(counts[j])) < RECODING_SPREAD:
            continue
        var = measurements[i].sigma ** 2 + measurements[j].sigma ** 2
        distance = float(((np.sort(counts[i]) - np.sort(counts[j])) ** 2).sum()) / var
        if distance <= a.n_values:
            out.append((distance / a.n_values, (i, j)))
    return [pair for _, pair in sorted(out)]


def _effective_cells(p: np.ndarray) -> float:
    """The exponential of a distribution's entropy: how many cells it effectively fills."""
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))
