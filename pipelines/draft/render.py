"""Either draft written as YAML: its header, its ``draft:`` marker, and a line per column,
with the columns that look like direct identifiers or quasi-identifiers (ZIP codes, dates of
a person's record, ages) proposed with their HIPAA Safe Harbor roles, all marked REVIEW. No
value of the data appears in what this adds.
"""

from __future__ import annotations

import json
import re

import yaml  # type: ignore[import-untyped]  # no stubs installed; followed as Any

from pipelines.draft.drafted import Drafted
from schemas import DEFAULT_MISSING
from schemas.roles import AGE_CAP

BIRTH_NAMES = re.compile(r"birth|dob", re.IGNORECASE)
AGE_NAMES = re.compile(r"(.*[_.\- ])?age([_.\- ].*)?", re.IGNORECASE)


def render(header: list[str], name: str, marker: dict, drafted: list[Drafted]) -> str:
    lines = header + [
        yaml.safe_dump({"name": name, "version": "1"}, sort_keys=False).rstrip(),
        yaml.safe_dump({"draft": marker}, default_flow_style=None, sort_keys=False).rstrip()
        + "  # delete this line once the schema is reviewed",
        yaml.safe_dump({"missing_values": list(DEFAULT_MISSING)}).rstrip(),
        "columns:",
    ]
    roles = _roles(drafted)
    for d in drafted:
        if d.name in roles:
            lines += roles[d.name]
            continue
        lines += [f"  # REVIEW: {n}" for n in d.notes]
        if d.col is not None:
            body = yaml.safe_dump([d.col], sort_keys=False, width=100, allow_unicode=True)
            lines += ["  " + ln for ln in body.rstrip().splitlines()]
    return "\n".join(lines) + "\n"


def _roles(drafted: list[Drafted]) -> dict[str, list[str]]:
    """Draft lines of the columns proposed as identifiers or quasi-identifiers, all marked
    for review; no value of the data appears in them."""
    out: dict[str, list[str]] = {}
    for d in drafted:
        column = d.name
        if d.identifier:
            out[column] = [
                (f"  # REVIEW: column '{column}' looks like a direct identifier "
                 f"({'; '.join(d.identifier)}{d.detail}): dropped before training, never "
                 "released; add surrogate: <Faker provider> to carry fake values"),
                f"  - {{name: {json.dumps(column)}, role: identifier}}"]
        elif d.zip:
            out[column] = [
                (f"  # REVIEW: column '{column}' looks like a ZIP code: a quasi-identifier, "
                 "generalised to 3 digits (000 for the sparse areas) per HIPAA Safe Harbor"),
                (f"  - {{name: {json.dumps(column)}, kind: categorical, "
                 "role: quasi_identifier, generalize: zip3}")]
    if not out:  # no person-level identifiers: dates and ages stay ordinary features
        return out
    dates = {d.name: dict(d.col) for d in drafted if d.name not in out and d.col is not None
             and d.col["kind"] in ("date", "datetime")}
    for column, col in dates.items():
        others = [c for c in dates if c != column and not BIRTH_NAMES.search(c)]
        if BIRTH_NAMES.search(column) and others:
            col["generalize"] = {"age_at": others[0]}
            how = f"age in whole years at '{others[0]}', 90 for 90 and older"
        elif BIRTH_NAMES.search(column):  # no date to take an age at: a birth year may
            out[column] = [f"  # REVIEW: column '{column}' is a birth date and no other date "
                           "gives an age at: dropped (a birth year may show an age over 89, "
                           "which Safe Harbor forbids)",
                           f"  - {{name: {json.dumps(column)}, role: identifier}}"]
            continue
        else:
            col["generalize"] = "year"
            how = "its year" + (f" (or day offsets: generalize: {{offset_from: {others[0]}}})"
                                if others else "")
        out[column] = [(f"  # REVIEW: column '{column}' is a date of a person's record: a "
                        f"quasi-identifier, generalised to {how} per HIPAA Safe Harbor")
                       ] + _quasi(col)
    for d in drafted:  # ages over 89 are identifying (Safe Harbor)
        if d.name in out or d.col is None or not AGE_NAMES.fullmatch(d.name) \
                or d.col["kind"] not in ("integer", "float") or not d.over_89:
            continue
        col = {**d.col, "generalize": "age90"}
        if col["max"] < AGE_CAP:  # ages over 89 become 90, which the bound must admit
            col["max"] = AGE_CAP if col["kind"] == "integer" else float(AGE_CAP)
        out[d.name] = [f"  # REVIEW: {n}" for n in d.notes] + [
            (f"  # REVIEW: column '{d.name}' is an age: a quasi-identifier, ages over 89 "
             "become 90 (\"90 or older\") per HIPAA Safe Harbor")] + _quasi(col)
    return out


def _quasi(col: dict) -> list[str]:
    col = {"name": col.pop("name"), "kind": col.pop("kind"), "role": "quasi_identifier", **col}
    body = yaml.safe_dump([col], sort_keys=False, width=100, allow_unicode=True)
    return ["  " + ln for ln in body.rstrip().splitlines()]
