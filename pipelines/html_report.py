"""The run's report as one self-contained HTML file: opens offline, no script, no fetch.

Two variants from the same function. The internal one, for the data owner, compares the
synthetic rows with the real ones (fidelity numbers, real-vs-synthetic marginals and
association matrices, leakage checks): statistics of the real data, so it is written apart
from the release. The release-safe one, which ships with the release, holds the privacy
statement, the release gate (schema suite, the release against the synthesizer's DP
measurements) and plots of the synthetic rows only. Plots are inline SVG drawn here (a few
bars and a heatmap do not need a plotting library); images, such as a contact sheet, are
inline PNG.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.remedies import remedies
from schemas import ImageSchema, Schema
from synth.encoding import TableEncoder
from synth.metrics import association_matrix

REAL, SYNTHETIC = "#1f6feb", "#f08c00"  # bar colours, also checked in a screenshot test
BINS = 20
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1b1f24}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:left}th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}
.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:6px}.note{background:#fff8c5;
padding:.5em 1em;border-radius:6px}.key span{display:inline-block;width:12px;height:12px;
margin:0 4px 0 12px;vertical-align:middle}
"""


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report may show; the private fields are used by the internal one only.

    Attributes:
        schema: the data set's schema (tabular or image).
        privacy: the privacy report (``pipelines.report.privacy_report``).
        synthetic: the released rows.
        structural: the schema suite's summary: (passed, evaluated, failed lines).
        gate: the measured-marginal checks' rows (``pipelines.validate.measured.rows``:
            public) or None.
        fidelity: the advisory fidelity suite's rows against the real data
            (``pipelines.validate.fidelity.observed``; internal report only) or None.
        real: the real rows compared with (internal report only), or None.
        checks: release checks (leakage, audit) as a dict of sections, internal only.
        images: PNG images to show, by caption (for example a contact sheet).
        quarantined: the gate's failed-check lines (``Verdict.failed``: public) of a release
            that was quarantined instead of published; empty for a published one. The
            report then says QUARANTINED in its title and heading and names remedies
            (``pipelines.remedies``).
    """

    schema: Schema | ImageSchema
    privacy: dict[str, Any]
    synthetic: pd.DataFrame
    structural: tuple[int, int, tuple[str, ...]]
    gate: list[dict] | None = None
    fidelity: list[dict] | None = None
    real: pd.DataFrame | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    quarantined: tuple[str, ...] = ()


def render(inputs: ReportInputs, internal: bool) -> str:
    """The report as an HTML document (a string); ``internal`` adds the real-data sections."""
    s = inputs.schema
    title = (f"{s.name}: DP synthetic release" + (" QUARANTINED" if inputs.quarantined else "")
             + (" (internal report)" if internal else ""))
    parts = [f"<h1>{_e(title)}</h1>", _quarantine(inputs), _privacy(inputs.privacy),
             _validation(inputs, internal)]
    columns = getattr(s, "columns", ())  # an image schema has none: its images show below
    if len(inputs.synthetic) and columns:
        parts.append(_marginals(inputs, internal))
        if len(columns) > 1:
            parts.append(_associations(inputs, internal))
    if internal and inputs.checks:
        parts.append(_checks(inputs.checks))
    for caption, png in inputs.images.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{_e(caption)}</h2><img alt='{_e(caption)}' "
                     f"src='data:image/png;base64,{data}' style='max-width:100%'>")
    if not internal:
        parts.append("<p>This report holds no statistic of the real data: its checks compare "
                     "the release with the schema and with what the synthesizer measured under "
                     "differential privacy. The data owner keeps an internal report.</p>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str] | None, rows: list[list[Any]], raw: bool = False) -> str:
    cell = (lambda v: str(v)) if raw else _e
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _privacy(p: dict[str, Any]) -> str:
    rows = [["guarantee", p.get("guarantee", "")],
            ["epsilon, delta", f"{p['epsilon']:.4g}, {p['delta']:.3g}"],
            ["accountant", p.get("accountant", "")], ["mechanism", p.get("mechanism", "")],
            ["synthesizer", p.get("synthesizer", "")], ["noise", p.get("noise", "")],
            ["rows released", _rows(p.get("rows_released", 0))],
            ["public inputs", "; ".join(p.get("public_inputs", []))],
            ["steps that read the private data", "; ".join(p.get("private_steps", []))],
            ["release gate", p.get("release_gate", "none")],
            ["code version", p.get("code_version", "")], ["created", p.get("created", "")]]
    return "<h2>Privacy statement</h2>" + _table(None, rows)


def _quarantine(inputs: ReportInputs) -> str:
    """What failed and what to try next (public lines only); nothing for a published release."""
    if not inputs.quarantined:
        return ""
    p = inputs.privacy
    failed = inputs.quarantined
    steps = remedies(failed, p.get("epsilon"), p.get("synthesizer"))
    return ("<h2 class='bad'>QUARANTINED: not published</h2><p class='note'>This release "
            f"failed {len(failed)} of the release gate's checks, so it was put in the "
            "quarantine folder instead of the release location. Its budget was spent (the "
            "ledger counts it; <code>synth budget</code> lists it as quarantined): a rerun "
            "spends again.</p>" + "".join(f"<p class='bad'>{_e(line)}</p>" for line in failed)
            + "<h3>What to try</h3><ul>" + "".join(f"<li>{_e(s)}</li>" for s in steps)
            + "</ul>")


def _verdict(ok: bool) -> str:
    return "<span class='ok'>passed</span>" if ok else "<span class='bad'>FAILED</span>"


def _validation(inputs: ReportInputs, internal: bool) -> str:
    passed, evaluated, failed = inputs.structural
    out = ["<h2>Release gate</h2>",
           f"<p>Schema suite (Great Expectations): {_verdict(not failed)}, {passed} of "
           f"{evaluated} expectations.</p>"]
    out += [f"<p class='bad'>{_e(line)}</p>" for line in failed]
    out.append(_suite("Measured marginals (the release against the synthesizer's noisy "
                      "measurements)", inputs.gate, observed=True))
    if internal:
        out.append("<h2>Advisory checks against the real rows (internal)</h2>")
        out.append(_suite("Fidelity suite", inputs.fidelity, observed=True))
    return "".join(out)


def _suite(title: str, rows: list[dict] | None, observed: bool) -> str:
    if rows is None:
        return f"<p>{_e(title)}: not run.</p>"
    ok = sum(r["success"] for r in rows)
    head = f"<p>{_e(title)}: {_verdict(ok == len(rows))}, {ok} of {len(rows)} checks.</p>"
    header = ["check", "subject", "threshold"] + (["observed"] if observed else []) + [""]
    table = [[r["expectation"], r["subject"], r["threshold"]]
             + ([f"{r['observed']:.4f}" if r["observed"] is not None else "-"] if observed
                else []) + [_verdict(r["success"])] for r in rows]
    return head + _table(header, [[_e(v) for v in r[:-1]] + [r[-1]] for r in table], raw=True)


def _histograms(frame: pd.DataFrame, binning: TableEncoder) -> list[np.ndarray]:
    codes = binning.encode(frame)
    return [np.bincount(codes[:, i], minlength=n) / max(len(frame), 1)
            for i, n in enumerate(binning.sizes)]


def _labels(block) -> list[str]:
    c = block.column
    values = list(c.categories) if c.kind == "categorical" else (
        ["false", "true"] if c.kind == "boolean" else [""] * block.n_values)
    return values + (["missing"] if c.nullable else [])


def _bars(name: str, labels: list[str], series: list[tuple[str, np.ndarray]], lo="", hi="") -> str:
    """A grouped bar chart of frequencies, one group per bin: an SVG of 340 x 170."""
    w, h, top, base = 340, 170, 18, 130
    k, m = len(labels), len(series)
    peak = max(float(v.max()) for _, v in series) or 1.0
    slot = (w - 20) / k
    bars = []
    for j, (colour, values) in enumerate(series):
        for i, v in enumerate(values):
            bh = (base - top) * float(v) / peak
            x = 10 + i * slot + j * slot / (m + 0.5)
            bars.append(f"<rect x='{x:.1f}' y='{base - bh:.1f}' width='{slot / (m + 0.5):.1f}' "
                        f"height='{bh:.1f}' fill='{colour}'><title>{_e(labels[i])}: "
                        f"{float(v):.3f}</title></rect>")
    ticks = ""
    if all(labels) and k <= 12:
        ticks = "".join(f"<text x='{10 + (i + .5) * slot:.1f}' y='{base + 12}' font-size='8' "
                        f"text-anchor='end' transform='rotate(-35 {10 + (i + .5) * slot:.1f} "
                        f"{base + 12})'>{_e(lab[:14])}</text>" for i, lab in enumerate(labels))
    else:
        ticks = (f"<text x='10' y='{base + 14}' font-size='10'>{_e(lo)}</text><text x='{w - 10}'"
                 f" y='{base + 14}' font-size='10' text-anchor='end'>{_e(hi)}</text>")
    return (f"<svg class='card' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>"
            f"<text x='10' y='13' font-size='12' font-weight='600'>{_e(name)}</text>"
            f"<line x1='10' y1='{base}' x2='{w - 10}' y2='{base}' stroke='#888'/>"
            f"{''.join(bars)}{ticks}</svg>")


def _marginals(inputs: ReportInputs, internal: bool) -> str:
    assert isinstance(inputs.schema, Schema)  # render draws columns of a tabular schema only
    binning = TableEncoder(inputs.schema, max_bins=BINS)
    synthetic = _histograms(inputs.synthetic, binning)
    real = _histograms(inputs.real, binning) if internal and inputs.real is not None else None
    charts = []
    for i, block in enumerate(binning.blocks):
        c = block.column
        series = ([(REAL, real[i])] if real is not None else []) + [(SYNTHETIC, synthetic[i])]
        lo, hi = (str(c.minimum), str(c.maximum)) if c.is_ranged else ("", "")
        charts.append(_bars(c.name, _labels(block), series, lo, hi))
    key = ("<p class='key'>" + (f"<span style='background:{REAL}'></span>real" if real is not None
                                else "") + f"<span style='background:{SYNTHETIC}'></span>synthetic"
           " (numbers in fixed bins from the schema's bounds)</p>")
    return "<h2>Column distributions</h2>" + key + f"<div class='grid'>{''.join(charts)}</div>"


def _heatmap(title: str, matrix: np.ndarray, names: list[str], diverging: bool = False) -> str:
    """A matrix as coloured cells: an SVG, blue for high (or red/blue around 0 if diverging)."""
    k, cell, pad = len(names), 16, 110
    size = pad + k * cell + 10
    rects = []
    for i in range(k):
        for j in range(k):
            v = float(matrix[i, j])
            if diverging:
                a = min(abs(v) / 0.2, 1.0)
                colour = f"rgba(207,34,46,{a:.2f})" if v > 0 else f"rgba(31,111,235,{a:.2f})"
            else:
                colour = f"rgba(31,111,235,{min(max(v, 0), 1):.2f})"
            rects.append(f"<rect x='{pad + j * cell}' y='{pad + i * cell}' width='{cell}' "
                         f"height='{cell}' fill='{colour}' stroke='#eee'><title>{_e(names[i])} x "
                         f"{_e(names[j])}: {v:.3f}</title></rect>")
    text = "".join(f"<text x='{pad - 4}' y='{pad + i * cell + 12}' font-size='10' "
                   f"text-anchor='end'>{_e(n[:16])}</text><text x='{pad + i * cell + 11}' "
                   f"y='{pad - 4}' font-size='10' transform='rotate(-60 {pad + i * cell + 11} "
                   f"{pad - 4})'>{_e(n[:16])}</text>" for i, n in enumerate(names))
    return (f"<svg class='card' width='{size}' height='{size + 16}'><text x='6' y='14' "
            f"font-size='12' font-weight='600'>{_e(title)}</text>{''.join(rects)}{text}</svg>")


def _associations(inputs: ReportInputs, internal: bool) -> str:
    assert isinstance(inputs.schema, Schema)  # render draws columns of a tabular schema only
    binning = TableEncoder(inputs.schema, max_bins=BINS)
    names = inputs.schema.names
    synthetic = association_matrix(binning.encode(inputs.synthetic), binning.sizes)
    maps = [_heatmap("synthetic", synthetic, names)]
    if internal and inputs.real is not None:
        real = association_matrix(binning.encode(inputs.real), binning.sizes)
        maps = [_heatmap("real", real, names), maps[0],
                _heatmap("synthetic - real", synthetic - real, names, diverging=True)]
    return ("<h2>Associations (Cramer's V between columns)</h2>"
            f"<div class='grid'>{''.join(maps)}</div>")


def _checks(checks: dict[str, Any]) -> str:
    out = [("<h2>Privacy checks</h2><p class='note'>Similarity metrics (copies, distances, "
            "attack risks) are smoke alarms, not proof of privacy: the guarantee is the "
            "differential privacy statement above. The canary audit is a tripwire for gross "
            "implementation errors, not a certificate.</p>")]
    for section, values in checks.items():
        out.append(f"<h3>{_e(section)}</h3>")
        if isinstance(values, dict):
            warnings = values.get("warnings") or []
            out += [f"<p class='warn'>warning: {_e(w)}</p>" for w in warnings]
            rows = [[k, v] for k, v in values.items() if k != "warnings"]
            out.append(_table(["check", "value"], rows))
        else:
            out.append(f"<p>{_e(values)}</p>")
    return "".join(out)


def _rows(rows: int | dict[str, int]) -> str:
    """A release's row count, or each table's (a multi-table release)."""
    if isinstance(rows, dict):
        return ", ".join(f"{table} {count:,}" for table, count in rows.items())
    return f"{rows:,}"
