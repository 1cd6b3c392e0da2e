"""What the Prefect UI shows of a release run, as artifacts on the flow run.

Prefect's database may be shared or hosted, so only what the release itself may show goes
there: the privacy report's claim (epsilon, delta, accountant, synthesizer, released rows),
where the release is, what its data set has spent of its budget, and the release gate (the
schema suite on the synthetic rows, the release against the synthesizer's DP measurements,
the canary audit). Nothing compared with the real rows and no count of private rows.

The release-safe HTML report is linked over HTTP when the run is served (``make serve``
serves the reports under the output root: ``flows.reports``; ``SYNTH_REPORTS_URL`` says
where), never as a ``file://`` link a browser would not open from the UI.
"""
# No `from __future__ import annotations` here (see flows/release.py).

import os
from pathlib import Path

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from pipelines.paths import ROOT_ENV
from pipelines.progress import budget_line

REPORTS_ENV = "SYNTH_REPORTS_URL"  # where `make serve` serves the output root's reports


def report_url(folder: Path, name: str = "report.html") -> str | None:
    """The HTTP address of ``folder/name`` on the report server, when this run is served
    and ``folder`` lies under the output root; else None."""
    base, root = os.environ.get(REPORTS_ENV), os.environ.get(ROOT_ENV)
    if not base or not root:
        return None
    try:
        relative = Path(folder).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    return f"{base.rstrip('/')}/{relative.as_posix()}/{name}"


def _claim(report: dict, where: Path, status: str, budget: str) -> str:
    rows = [("status", status), ("release", f"`{where}`"),
            ("epsilon", f"{report['epsilon']:.4f}"), ("delta", f"{report['delta']:.3g}"),
            ("accountant", report["accountant"]), ("synthesizer", report["synthesizer"]),
            ("rows released", _rows(report["rows_released"])), ("budget", budget),
            ("release gate", report.get("validation", "-"))]
    return "| fact | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def release_artifacts(report: dict, where: Path, published: bool, failed: tuple[str, ...],
                      ledger, data_set: str, total: tuple[float, float] | None,
                      gate: list[dict], kind: str = "release") -> None:
    """The ``release`` summary (markdown), the gate's checks (table, key ``release-checks``)
    and the release-safe HTML report (``release-report``): a link when served, else its
    path on the runner's host."""
    status = "Published" if published else "QUARANTINED"
    url = report_url(where)
    html = (f"[the release-safe report]({url})" if url else
            f"`{where / 'report.html'}` on the runner's host (served over HTTP by "
            "`make serve`)")
    failed_lines = "\n".join(f"- {line}" for line in failed) or "none"
    claim = _claim(report, where, status, budget_line(ledger, data_set, total))
    create_markdown_artifact(
        key=kind, description=f"Synthetic {kind}: {status.lower()}",
        markdown=f"## {status}: {data_set}\n\n{claim}\n\nFailed checks:\n{failed_lines}\n\n"
                 f"Report: {html}\n\nGuarantee: {report.get('guarantee', '')}\n")
    create_table_artifact(key="release-checks", table=gate or [{"suite": "-", "check": "-"}],
                          description="The release gate: schema suite, the release against "
                                      "the synthesizer's DP measurements, canary audit")
    if url:
        create_link_artifact(key="release-report", link=url, link_text="release report",
                             description="The release-safe HTML report (no real-data "
                                         "statistics)")
    else:  # not served: where the file is (a file:// link would not open from the UI)
        create_markdown_artifact(key="release-report", description="The release-safe HTML "
                                 "report", markdown=f"Report: {html}\n")


def _rows(rows: int | dict[str, int]) -> str:
    """A release's row count, or each table's (a multi-table release)."""
    if isinstance(rows, dict):
        return ", ".join(f"{table} {count:,}" for table, count in rows.items())
    return f"{rows:,}"
