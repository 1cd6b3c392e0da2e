"""Pre-flight: what the public facts of a run say about its release before budget is spent.

A run's schema (its columns, each one's cells: categories, or bins of a numeric or date
column) and its (epsilon, delta) fix how much noise its one-way marginals carry, whatever
the private rows hold. However a synthesizer splits its budget, measuring the d columns'
one-way marginals by the Gaussian mechanism leaves each count a noise of standard deviation
at least ``sqrt(d / (2 rho))``, rho being the zCDP budget the (epsilon, delta) allow (the
whole budget spent on them, and nothing else). A column of k cells then differs from its
noisy measurement by a total variation distance of about ``k * sigma * sqrt(2 / pi) / (2 n)``
over n rows, so below

    n = k * sigma * sqrt(2 / pi) / (2 * measured_tv_max)

rows its marginal is mostly noise at the resolution of the release gate's one-way threshold.
The gate allows for the noise it knows of, so such a release is mostly published with little
of the data's signal, or quarantined where the model could not fit what was measured. ``warnings``
names that row count when it is at least ``WARN_ROWS``: the row count itself is private, so
it warns, and never refuses. It reads no data: only the schema and the settings.
"""

from __future__ import annotations

import math

from pipelines.config import RunConfig
from schemas import Schema
from synth.base import make_synthesizer
from synth.encoding import DEFAULT_MAX_BINS, TableEncoder
from synth.privacy import PrivacyBudget, zcdp_rho

WARN_ROWS = 1_000  # warn when a smaller input would leave a one-way marginal mostly noise
SHOWN = 3  # the most columns one warning names


def noise_floor(columns: int, epsilon: float, delta: float) -> float:
    """The smallest standard deviation of noise per count with which ``columns`` one-way
    marginals can be measured together under (epsilon, delta) by the Gaussian mechanism
    (all of the budget on them, in zCDP)."""
    return math.sqrt(columns / (2 * zcdp_rho(PrivacyBudget(epsilon, delta))))


def noisy_below(cells: int, sigma: float, tv_max: float) -> float:
    """The rows below which noise of std ``sigma`` on each of ``cells`` counts moves a
    one-way marginal by more than ``tv_max`` in total variation distance (its expectation)."""
    return cells * sigma * math.sqrt(2 / math.pi) / (2 * max(tv_max, 1e-9))


def warnings(schema: Schema, config: RunConfig) -> list[str]:
    """Warning lines for a run whose public facts predict noise-dominated one-way marginals
    (see the module's docstring); empty when there is nothing to warn of, or the fidelity
    checks are off. Public: reads the schema and the settings, no data."""
    if not config.fidelity.enabled or not schema.columns:
        return []
    params = config.synthesizer_params()
    max_bins = make_synthesizer(config.synthesizer, **params).get_params().get(
        "max_bins", DEFAULT_MAX_BINS)
    sizes = TableEncoder(schema, max_bins=max_bins).sizes
    sigma = noise_floor(len(sizes), config.epsilon, config.delta)
    tv_max = config.fidelity.measured_tv_max
    needed = sorted(((noisy_below(k, sigma, tv_max), name, k)
                     for name, k in zip(schema.names, sizes)), reverse=True)
    over = [(rows, name, k) for rows, name, k in needed if rows >= WARN_ROWS]
    if not over:
        return []
    named = ", ".join(f"'{name}' ({k} cells)" for _, name, k in over[:SHOWN]) + (
        f" and {len(over) - SHOWN} more" if len(over) > SHOWN else "")
    rows = over[0][0]
    return [(f"pre-flight: at epsilon={config.epsilon:g} each one-way count of this schema's "
             f"{len(sizes)} columns carries noise of std >= {sigma:.3g}: with fewer than about "
             f"{_round_up(rows):,} input rows the one-way marginal of {named} is mostly noise "
             f"(beyond measured_tv_max={tv_max:g}): the release will carry little of its "
             "signal, and may be quarantined; a higher --epsilon, fewer columns or fewer "
             "categories or bins help (the input's size is private: nothing is refused)")]


def _round_up(rows: float) -> int:
    """``rows`` rounded up to two significant digits."""
    step = 10 ** max(0, int(math.log10(max(rows, 1))) - 1)
    return int(math.ceil(rows / step) * step)
