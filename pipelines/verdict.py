"""What a table release's checks found (``Verdict``), and the release gate's rule in words
(``GATE``, quoted in the privacy report)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipelines.leakage import LeakageReport
from pipelines.validate import ValidationOutcome
from pipelines.validate.measured import rows as measured_rows
from synth.audit import AuditResult


@dataclass(frozen=True)
class Verdict:
    """What the checks of a release found.

    The gate (``success``) rests on public inputs only: the schema suite (synthetic rows),
    the comparison with the marginals the synthesizer measured under DP, and the canary
    audit (no data). The rest compares with the real rows: advisory, for the data owner's
    internal report, and never decides anything.

    Attributes:
        structural: the schema suite (synthetic rows only: public).
        measured: the release against the synthesizer's noisy marginals (public), None when
            it measured none or the fidelity checks are off.
        audit: the one-run canary audit of the model's mechanism (reads no private data).
        fidelity: advisory: the fidelity suite against the real training rows (internal).
        leakage: advisory: copies, attack risks, DCR against held-out rows (internal).
        identifier_hits: advisory alarm: per identifier column of the input, how many of its
            values appear in a text cell of the output (internal).
    """

    structural: ValidationOutcome
    measured: ValidationOutcome | None
    audit: AuditResult | None = None
    fidelity: ValidationOutcome | None = None
    leakage: LeakageReport | None = None
    identifier_hits: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return (self.structural.success and (self.measured is None or self.measured.success)
                and (self.audit is None or self.audit.passed))

    @property
    def failed(self) -> tuple[str, ...]:
        """The gate's failed checks, one line each (public)."""
        audit = () if self.audit is None or self.audit.passed else (
            f"canary audit: empirical epsilon lower bound {self.audit.epsilon_lower:.3f} "
            f"exceeds the claimed {self.audit.epsilon_claimed:.3f}: the mechanism adds less "
            "noise than it accounts for",)
        return (self.structural.failed + (self.measured.failed if self.measured else ())
                + audit)

    @property
    def evaluated(self) -> int:
        return self.structural.evaluated + (self.measured.evaluated if self.measured else 0)

    def summary(self) -> str:
        """One line of the gate's pass counts (public: no statistic of the real data)."""
        def counts(o: ValidationOutcome) -> str:
            return f"passed {o.evaluated - len(o.failed)} of {o.evaluated}"
        measured = counts(self.measured) if self.measured else "none measured"
        return f"schema suite {counts(self.structural)}, measured marginals {measured}"

    def public_json(self) -> str:
        """validation.json of the release: the schema suite and the measured-marginal checks
        in full (both public); nothing compared with the real rows."""
        doc = json.loads(self.structural.to_json())
        if self.measured is not None:
            doc["measured_marginals"] = json.loads(self.measured.to_json())
        return json.dumps(doc, indent=2) + "\n"


GATE = ("published only if these checks passed: the schema suite (synthetic rows only), the "
        "synthetic rows against the marginals the synthesizer measured under DP (their noise "
        "taken into account) and the canary audit of the mechanism (no data). All three read "
        "only the release and the mechanism's DP outputs, so the decision to publish is "
        "covered by the (epsilon, delta) above. Comparisons with the real rows (fidelity "
        "suite, leakage checks, identifier scan) are advisory: they stay in the data owner's "
        "internal report and never decide publication; an owner who withholds a release "
        "after reading them acts outside this guarantee.")


def gate_rows(verdict: Verdict) -> list[dict]:
    """The release gate's checks, one row each, for a table artifact (public)."""
    rows: list[dict] = [{"suite": "schema", "check": line, "success": False}
                        for line in verdict.structural.failed]
    if verdict.measured is not None:
        rows += [{"suite": "measured marginals", "check": f"{r['expectation']}({r['subject']})",
                  "threshold": r["threshold"], "observed": r["observed"],
                  "success": r["success"]} for r in measured_rows(verdict.measured)]
    if verdict.audit is not None:
        rows.append({"suite": "canary audit", "check": "empirical epsilon lower bound (99%) "
                     "at most the claim", "threshold": verdict.audit.epsilon_claimed,
                     "observed": verdict.audit.epsilon_lower, "success": verdict.audit.passed})
    return rows
