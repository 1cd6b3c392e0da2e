"""What an operator can do about a quarantined release, read from its failed checks.

The release gate's failed-check lines (``Verdict.failed``: the schema suite, the
measured-marginal checks, the canary audit) are public: they compare the release with the
schema and with what the synthesizer measured under DP. So are the settings a privacy report
states (epsilon, synthesizer). The remedies are derived from those alone, never from the
real rows, so they may go in the release-safe report and the log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.validate.measured import EXPECTATION

# measured_marginal_tv(age x sex): 0.2312 above 0.2000 (the marginal the synthesizer
# measured, 0.15 plus the noise's share)
_MEASURED = re.compile(rf"^{EXPECTATION}\((?P<subject>.*)\): (?P<observed>[0-9.]+) above "
                       r"(?P<bound>[0-9.]+) \(the marginal the synthesizer measured, "
                       r"(?P<limit>[0-9.e+-]+) plus")
ONE_WAY, JOINT = "measured_tv_max", "measured_joint_tv_max"


@dataclass(frozen=True)
class Miss:
    """One failed measured-marginal check: by how much the release missed its bound."""

    subject: str
    observed: float
    bound: float
    limit: float  # the threshold (measured_tv_max or measured_joint_tv_max) it ran under

    @property
    def threshold(self) -> str:
        return JOINT if " x " in self.subject else ONE_WAY

    @property
    def passing_limit(self) -> float:
        """The smallest threshold, to two decimals, under which this check would have
        passed: the distance beyond the noise's share, plus the threshold it ran under."""
        return math.ceil((self.limit + self.observed - self.bound) * 100 + 1e-9) / 100


def misses(failed: Sequence[str]) -> list[Miss]:
    """The measured-marginal checks among ``failed`` lines."""
    out = []
    for line in failed:
        m = _MEASURED.match(line)
        if m:
            out.append(Miss(m["subject"], float(m["observed"]), float(m["bound"]),
                            float(m["limit"])))
    return out


def remedies(failed: Sequence[str], epsilon: float | None = None,
             synthesizer: str | None = None) -> list[str]:
    """What may make the next run pass, one sentence each, for the gate's ``failed`` lines.

    Args:
        failed: the gate's failed-check lines (public).
        epsilon: the epsilon the release spent (public), to suggest a higher one.
        synthesizer: the synthesizer that made it (public).
    """
    out: list[str] = []
    missed = misses(failed)
    if missed:
        worst = {t: max(m.passing_limit for m in missed if m.threshold == t)
                 for t in dict.fromkeys(m.threshold for m in missed)}
        columns = ", ".join(m.subject for m in missed[:6]) + (", ..." if len(missed) > 6
                                                               else "")
        out.append(f"More rows in the input: the release missed what the synthesizer measured "
                   f"for {columns}; the same noise is a smaller share of a larger table.")
        higher = f" than {epsilon:.3g} (twice that halves the noise)" if epsilon else ""
        out.append(f"A higher --epsilon{higher}: it spends more of the data set's budget.")
        out.append("A looser threshold, if that much difference is acceptable for this "
                   "release: " + "; ".join(f"--fidelity-threshold {t}={v:g}"
                                           for t, v in worst.items())
                   + " would have passed these checks.")
        if synthesizer != "dp-marginals":
            out.append("Another synthesizer: --synthesizer dp-marginals fits the measured "
                       "marginals directly.")
        else:
            out.append("Another synthesizer: --synthesizer dp-independent keeps each "
                       "column's distribution (not the associations between columns); the "
                       "DP-SGD ones (dp-ctgan, dp-vae) need many more rows.")
    if any(line.startswith("canary audit") for line in failed):
        out.append("The canary audit failed: an honest mechanism fails it about 1 run in 100 "
                   "(fresh noise is drawn on every run), so run again; if it fails again, "
                   "report it as a bug.")
    if any(line.startswith("expect_") for line in failed):
        out.append("The schema suite failed: the synthesizer produced values the schema does "
                   "not allow. Check the schema's declarations the lines name (bounds, "
                   "categories, nullable); if they are right, report it as a bug.")
    if failed and not out:  # a check without a remedy of its own (an image check, say)
        out.append("A higher --epsilon, a larger input or another --synthesizer: each gives "
                   "the model more signal to fit what the failed checks above compare.")
    return out
