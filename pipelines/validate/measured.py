"""The release gate's fidelity check: the release against what the synthesizer measured
under DP, never against the real rows.

Each noisy marginal a synthesizer paid for (``synth.evidence.NoisyMarginal``) is compared with
the same marginal of the synthetic rows by total variation distance. Both sides are public
(the release, and a DP mechanism's output), so the check, its values and the decision to
publish are post-processing: covered by the release's (epsilon, delta). The bound follows the
known noise: the threshold plus what the measurement's noise and the sample's size can
explain (the expected noise term and three of its standard deviations), so a measurement too
noisy to tell anything passes rather than quarantines at random.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipelines.validate import ValidationOutcome

EXPECTATION = "measured_marginal_tv"
SPREAD = 3.0  # standard deviations of the noise term added to the bound


def allowance(cells: int, sigma: float, total: float, rows: int) -> float:
    """The total variation distance that the measurement's noise (``cells`` cells of std
    ``sigma`` over about ``total`` records) and a sample of ``rows`` rows explain alone."""
    total = max(total, 1.0)
    noise = cells * sigma * math.sqrt(2 / math.pi) + SPREAD * sigma * math.sqrt(cells)
    sampling = math.sqrt(2 * cells / (math.pi * max(rows, 1)))
    return 0.5 * noise / total + 0.5 * sampling


def validate_measured(model: object, synthetic: pd.DataFrame, one_way_max: float,
                      multi_way_max: float) -> ValidationOutcome | None:
    """Compares the release with each of the model's noisy marginals.

    Args:
        model: a fitted synthesizer; None is returned when it kept no noisy marginals
            (``noisy_marginals_``) or no ``encoder_``.
        synthetic: the released rows (the schema's columns).
        one_way_max: the largest distance allowed for a 1-way marginal beyond the noise's.
        multi_way_max: the same for a marginal of two or more columns.

    Returns:
        The outcome: one result per marginal, with its distance and bound (public values).
    """
    measured = getattr(model, "noisy_marginals_", None)
    encoder = getattr(model, "encoder_", None)
    if not measured or encoder is None:
        return None
    codes = encoder.encode(synthetic)  # (rows, columns)
    position = {b.column.name: i for i, b in enumerate(encoder.blocks)}
    results, failed = [], []
    for m in measured:
        index = [position[c] for c in m.columns]
        dims = [encoder.sizes[i] for i in index]
        flat = np.ravel_multi_index(codes[:, index].T, dims)
        ours = np.bincount(flat, minlength=math.prod(dims)) / max(len(codes), 1)
        noisy = np.clip(np.asarray(m.counts, dtype="float64"), 0, None)
        total = float(np.asarray(m.counts, dtype="float64").sum())
        theirs = noisy / noisy.sum() if noisy.sum() > 0 else np.full(len(noisy), 1 / len(noisy))
        distance = 0.5 * float(np.abs(ours - theirs).sum())
        limit = one_way_max if len(m.columns) == 1 else multi_way_max
        bound = min(1.0, limit + allowance(len(noisy), m.sigma, total, len(codes)))
        subject = " x ".join(m.columns)
        ok = distance <= bound
        results.append({"expectation": EXPECTATION, "subject": subject,
                        "threshold": round(bound, 6), "observed": round(distance, 6),
                        "success": ok})
        if not ok:
            failed.append(f"{EXPECTATION}({subject}): {distance:.4f} above {bound:.4f} (the "
                          f"marginal the synthesizer measured, {limit:g} plus the noise's share)")
    return ValidationOutcome(success=not failed, evaluated=len(results), failed=tuple(failed),
                             result={"results": results})


def rows(outcome: ValidationOutcome) -> list[dict]:
    """(expectation, subject, threshold, observed value, success) per marginal."""
    return list(outcome.result["results"])
