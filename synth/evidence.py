"""What a synthesizer measured under DP and may show: its noisy marginals.

A fitted synthesizer that measured marginals with Gaussian noise keeps them as
``noisy_marginals_`` (with its ``encoder_``): outputs of a paid mechanism, so anything computed
from them and the synthetic rows alone is post-processing. The release gate compares the
release with them (``pipelines.validate.measured``) instead of with the real rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NoisyMarginal:
    """One noisy marginal in the encoder's codes.

    Attributes:
        columns: the schema's column names, in the order the counts are flattened.
        counts: noisy counts, one per cell, row-major over ``columns``' codes.
        sigma: the standard deviation of each cell's noise.
    """

    columns: tuple[str, ...]
    counts: np.ndarray
    sigma: float
