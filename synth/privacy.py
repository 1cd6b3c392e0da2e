"""Privacy budgets and accounting, through Opacus's maintained accountants.

The budget goes in explicitly (``PrivacyBudget``); what was spent comes out explicitly
(``PrivacyReport``), computed by Opacus's accountant from the exact history of
(noise multiplier, sampling rate, steps) that training executed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ACCOUNTANTS = ("prv", "rdp")
DEFAULT_DELTA = 1e-9


class BudgetError(ValueError):
    """A privacy budget that cannot be honoured."""


@dataclass(frozen=True)
class PrivacyBudget:
    """The (epsilon, delta) a release may spend, in total, on everything that reads the data.

    Raises:
        BudgetError: epsilon <= 0 (or not finite), or delta outside (0, 1).
    """

    epsilon: float
    delta: float = DEFAULT_DELTA

    def __post_init__(self):
        if not (isinstance(self.epsilon, (int, float)) and math.isfinite(self.epsilon)
                and self.epsilon > 0):
            raise BudgetError(f"epsilon must be a positive number, got {self.epsilon!r}")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            raise BudgetError(f"delta must lie strictly between 0 and 1, got {self.delta!r}")


@dataclass(frozen=True)
class PrivacyReport:
    """What a DP-SGD training run spent, and how it was computed.

    Attributes:
        epsilon: the epsilon the accountant gives for the executed history at ``delta``.
        delta: the delta of the guarantee.
        target_epsilon: the epsilon that was asked for (``epsilon`` never exceeds it).
        accountant: Opacus accountant name ("prv" or "rdp").
        noise_multiplier: sigma, the Gaussian noise std in units of ``max_grad_norm``.
        sampling_rate: q, the Poisson sampling probability of each record per step.
        steps: DP-SGD steps executed.
        max_grad_norm: per-sample clipping bound C.
        expected_batch_size: q times the number of records.
        mechanism: a one-line description of the mechanism.
    """

    epsilon: float
    delta: float
    target_epsilon: float
    accountant: str
    noise_multiplier: float
    sampling_rate: float
    steps: int
    max_grad_norm: float
    expected_batch_size: float
    mechanism: str = ("DP-SGD (Opacus): Poisson sampling, per-sample gradient clipping, "
                      "Gaussian noise")

    def to_dict(self) -> dict:
        return asdict(self)


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
