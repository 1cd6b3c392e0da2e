"""HIPAA Safe Harbor at ingest: drop direct identifiers, generalise quasi-identifiers.

Both run inside ``pipelines.ingest`` on the raw frame, before it is coerced to the schema:
identifier columns are dropped right after the file is read, before any other step touches
them, and every ``generalize:`` rule of the schema (see ``schemas.roles``) turns its input
column into the output form the schema declares for training and release. The rules use the
schema only (no statistic of the rows), so they cost no privacy; what they change is counted
for the operator's log, never released.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from pipelines.errors import DataError
from schemas import Schema
from schemas.roles import AGE_CAP, SPARSE_ZIP3

log = logging.getLogger(__name__)

ZIP = re.compile(r"^(\d{5})(-?\d{4})?$")


def drop_identifiers(raw: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The raw frame without the schema's identifier columns (those present in it)."""
    names = [i.name for i in schema.identifiers if i.name in raw.columns]
    return raw.drop(columns=names) if names else raw


def generalize(raw: pd.DataFrame, schema: Schema, *, source: str,
               lines: np.ndarray | None = None) -> pd.DataFrame:
    """Applies every ``generalize:`` rule of the schema to the raw frame.

    Every rule reads the raw input columns (an index date is read before it is itself
    generalised), so the order of columns does not matter, and writes its output form under
    the input's column name (``coerce`` then gives it its released name). Values that are
    missing stay missing; values that do not parse are reported; bounds are checked
    afterwards, by coerce, on the output form.

    Raises:
        DataError: naming the file, the column and the first row of every value that does
            not parse (dates as ISO dates, ZIP codes as 5 digits or ZIP+4, ages as numbers).
    """
    rules = [c for c in schema.columns
             if c.generalize is not None and c.input_name in raw.columns]
    if not rules:
        return raw
    missing = set(schema.missing_values)
    raw = raw.reset_index(drop=True)  # a Parquet file's own index would misalign the rules
    out = raw.copy()
    problems: list[tuple[str, str]] = []  # (with the value, redacted)
    for col in rules:
        gen = col.generalize
        assert gen is not None  # rules holds only the columns with a rule
        name = col.input_name  # the input's column: its values are replaced in place
        values = _clean(raw[name], missing)
        if gen.rule == "zip3":
            out[name] = _zip3(values, name, lines, problems)
        elif gen.rule == "age90":
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64",
                                                                      na_value=np.nan)
            # only finite ages above 89 become 90: text or an infinity stays as it was, for
            # coerce to report (never silently turned into an age)
            over = np.isfinite(numbers) & (numbers > AGE_CAP - 1)
            text = values.dtype == object or pd.api.types.is_string_dtype(values)
            out[name] = values.mask(over, str(AGE_CAP) if text else AGE_CAP)
        else:
            stamps = _dates(values, name, lines, problems)
            if gen.rule == "year":
                out[name] = stamps.dt.year.astype("Float64")
            elif gen.reference not in raw.columns:
                continue  # coerce reports the missing reference column
            else:
                assert gen.reference is not None  # parse_generalization: these rules name one
                ref = _dates(_clean(raw[gen.reference], missing), gen.reference, lines, [])
                if gen.rule == "offset_from":
                    out[name] = (stamps - ref).dt.days.astype("Float64")
                else:  # age_at: whole years at the index date, 90 for 90 and older
                    before = (ref.dt.month * 100 + ref.dt.day) < (stamps.dt.month * 100
                                                                  + stamps.dt.day)
                    years = ref.dt.year - stamps.dt.year - before.astype("Int64")
                    out[name] = years.clip(upper=AGE_CAP).astype("Float64")
    if problems:
        raise DataError(f"{source}: " + "; ".join(p for p, _ in problems),
                        public=f"{source}: " + "; ".join(p for _, p in problems))
    return out


def zip3(code: str) -> str:
    """The Safe Harbor form of a 5-digit ZIP (or ZIP+4): its first three digits, or 000 for
    the sparse prefixes HHS lists."""
    prefix = code[:3]
    return "000" if prefix in SPARSE_ZIP3 else prefix


def _clean(values: pd.Series, missing: set[str]) -> pd.Series:
    values = values.reset_index(drop=True)
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        values = values.astype("string").str.strip()
        values = values.mask(values.isin(missing))
    return values


def _where(name: str, bad: np.ndarray, lines: np.ndarray | None) -> str:
    first = int(np.flatnonzero(bad)[0])
    at = f"row {first + 1:,}" + (f" (line {int(lines[first]):,})" if lines is not None else "")
    more = f" ({int(bad.sum()):,} rows in all)" if bad.sum() > 1 else ""
    return f"column '{name}' {{}} in {at}{more}"


def _dates(values: pd.Series, name: str, lines, problems: list) -> pd.Series:
    stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = (values.notna() & stamps.isna()).to_numpy()
    if bad.any():
        where = _where(name, bad, lines)
        value = values[np.flatnonzero(bad)[0]]
        fix = ": write dates as YYYY-MM-DD"
        problems.append((where.format(f"value {value!r} is not an ISO date") + fix,
                         f"column '{name}' holds a value that is not an ISO date" + fix))
    return stamps.dt.normalize()


def _zip3(values: pd.Series, name: str, lines, problems: list) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):  # Parquet may hold ZIPs as numbers
        values = values.map(lambda v: v if pd.isna(v) else f"{int(v):05d}").astype("string")
    text = values.astype("string")
    bad = (text.notna() & ~text.str.fullmatch(ZIP.pattern).fillna(False)).to_numpy()
    if bad.any():
        where = _where(name, bad, lines)
        fix = ": ZIP codes must have 5 digits (or ZIP+4)"
        problems.append((where.format(f"value {text[np.flatnonzero(bad)[0]]!r} is not a ZIP "
                                      "code") + fix,
                         f"column '{name}' holds a value that is not a ZIP code" + fix))
    return text.map(lambda v: v if pd.isna(v) else zip3(v), na_action="ignore")
