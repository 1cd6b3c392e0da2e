"""What the release's columns say they hold: the last step on the synthetic rows before
they are checked and published (``finish``), and the words every column of a release's
Parquet file carries (``field_metadata``, ``column_notes``; see docs/columns.md).

Everything here comes from the schema (public) and is applied to synthetic rows only: no
value, count or statistic of the private input is read, so nothing here costs privacy.
"""

from __future__ import annotations

import pandas as pd

from schemas import Column, Schema
from schemas.output import rounded_bounds
from schemas.roles import Identifier, describe_rule

NOTE = ("synthetic: sampled from a differentially private model of the input; no row "
        "describes a real person")
SURROGATE_NOTE = ("synthetic: a fake value generated from the schema and secret random bits, "
                  "never from the input")
# the unit a generalisation's output counts in, where the schema declares none
RULE_UNITS = {"age_at": "years", "offset_from": "days", "age90": "years"}


def finish(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The synthetic rows as the release shows them: each float column with ``decimals:``
    rounded to that many decimals; a rounded value beyond a bound is moved to the nearest
    value with those decimals within the bounds. Other columns are returned as they are."""
    out = frame.copy()
    for col in schema.columns:
        if col.decimals is None or col.kind != "float" or col.name not in out.columns:
            continue
        values = pd.to_numeric(out[col.name], errors="coerce").astype("float64")
        bounds = rounded_bounds(col.minimum, col.maximum, col.decimals)
        assert bounds is not None  # parse checked: a value with those decimals lies within
        low, high = bounds
        out[col.name] = values.round(col.decimals).clip(lower=low, upper=high)
    return out


def field_metadata(col: Column) -> dict[str, str]:
    """The Arrow field metadata of a released column (keys and values are text):
    ``description`` (the schema's; for a generalised column without one, its rule),
    ``unit`` (declared, or the unit a rule's output counts in), ``decimals``,
    ``generalization`` (the Safe Harbor rule in words) and ``input_column`` (the input's
    name, where the column was generalised or renamed), ``synthetic`` = ``true`` and
    ``note``."""
    gen = col.generalize
    rule = describe_rule(gen, col.input_name) if gen is not None else ""
    meta = {"description": col.description or rule,
            "unit": col.unit or (RULE_UNITS.get(gen.rule, "") if gen is not None else ""),
            "decimals": "" if col.decimals is None else str(col.decimals),
            "generalization": rule,
            "input_column": col.input_name if gen is not None or col.input_name != col.name
            else ""}
    return {k: v for k, v in meta.items() if v} | {"synthetic": "true", "note": NOTE}


def surrogate_metadata(ident: Identifier) -> dict[str, str]:
    """The Arrow field metadata of a surrogate identifier column: fake values only."""
    assert ident.surrogate is not None  # callers pass the identifiers with a surrogate
    what = (f"pattern {ident.surrogate[len('pattern:'):]}"
            if ident.surrogate.startswith("pattern:") else f"Faker provider {ident.surrogate}")
    described = ident.description or f"a fake stand-in for the input's '{ident.name}'"
    return {"description": described, "surrogate": what, "synthetic": "true",
            "note": SURROGATE_NOTE}


def column_notes(schema: Schema, surrogates: list[str]) -> dict[str, dict[str, str]]:
    """Every released column's field metadata by its name, surrogates first: the same words,
    for readers that see only a file's key-value metadata (DuckDB's
    ``parquet_kv_metadata``)."""
    fakes = {i.name: surrogate_metadata(i) for i in schema.identifiers if i.name in surrogates}
    return fakes | {c.name: field_metadata(c) for c in schema.columns}
