"""The plain draft: the rows read WITHOUT differential privacy, marked ``draft: {dp: false}``.

It never prints a value held by fewer than ``RARE`` rows: numeric and date bounds rest on the
RARE-th smallest and largest values, rounded outward to round numbers; categories held by
fewer rows are left out, counted but not named, and a ``catch_all`` takes them. A float
column's ``decimals:`` is the most decimals that at least RARE values are written with (at
most ``MOST_DECIMALS``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.draft.drafted import Drafted, bounds, catch_all, year_bounds
from pipelines.draft.render import render
from pipelines.draft.shapes import (
    BOOLEAN_TOKENS,
    MAX_CATEGORIES,
    identifier_reasons,
    looks_like_zip,
)
from pipelines.draft.source import data_set_name, read_table
from schemas.roles import AGE_CAP

RARE = 10  # the plain draft prints no value held by fewer rows than this
MOST_DECIMALS = 6  # the plain draft proposes at most this many decimals for a float column
NUMBER = re.compile(r"[+-]?\d*(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


def draft_schema(path: str | Path, name: str | None = None) -> str:
    """YAML text of a draft schema for the CSV or Parquet file at ``path`` (header required),
    read without DP and marked ``draft: {dp: false}``; no value held by fewer than ``RARE``
    rows appears in it.

    Raises:
        DataError: the file is missing, empty or unreadable.
    """
    frame = read_table(path)
    header = [
        f"# DRAFT schema, read from the PRIVATE data in {path} without differential privacy.",
        "# It is not public knowledge until the data owner has reviewed it: check every bound,",
        "# category and role against public documentation, then delete the `draft:` line",
        "# (`synth run` refuses this schema until then). Nothing held by fewer than "
        f"{RARE} rows",
        f"# is printed: bounds rest on the {RARE}th smallest and largest values, rounded "
        "outward",
        f"# (up to {RARE - 1} values at each end of a column may lie beyond them: widen "
        "them, or pass --clip),",
        "# and rarer categories are left out (--map-unknown maps them to the catch_all).",
    ]
    drafted = [_plain(str(c), frame[c]) for c in frame.columns]
    return render(header, data_set_name(path, name), {"dp": False}, drafted)


def _trimmed(ordered: np.ndarray) -> tuple:
    """The RARE-th smallest and RARE-th largest of sorted values (each has RARE rows at or
    beyond it), in order."""
    return tuple(sorted((ordered[RARE - 1], ordered[len(ordered) - RARE])))


def _plain(name: str, values: pd.Series) -> Drafted:
    """One column as the plain draft reads it."""
    if values.isna().all():
        return Drafted(name, None, notes=[f"column '{name}' has no values: left out"])
    reasons = identifier_reasons(name, values)
    detail = f"; {values.nunique():,} distinct values in {len(values):,} rows"
    drafted = Drafted(name, None, identifier=reasons, detail=detail,
                       zip=not reasons and looks_like_zip(name, values))
    col: dict = {"name": name}
    present = values.dropna()
    if values.isna().any():
        col["nullable"] = True
    few = (f"column '{name}' has fewer than {RARE} values, too few to print a bound held by "
           f"{RARE} rows: left out (declare it by hand)")
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        whole = bool((numbers % 1 == 0).all())
        col["kind"] = "integer" if whole else "float"
        drafted.over_89 = bool((numbers > AGE_CAP - 1).any())
        if len(numbers) < RARE:
            drafted.notes.append(few)
            return drafted
        low, high = _trimmed(np.sort(numbers.to_numpy(dtype="float64")))
        declared = bounds(float(low), float(high), whole)
        col["min"], col["max"] = (int(declared[0]), int(declared[1])) if whole else declared
        if declared[0] >= 0 and high > 1000 * max(float(numbers.median()), 1):
            col["transform"] = "log"
        if not whole and (places := decimals(present)):
            col["decimals"] = places
        drafted.col = col
        return drafted
    stamps = pd.to_datetime(present, errors="coerce", format="ISO8601")
    if stamps.notna().all():
        col["kind"] = "date" if (stamps == stamps.dt.normalize()).all() else "datetime"
        if len(stamps) < RARE:
            drafted.notes.append(few)
            return drafted
        low, high = _trimmed(np.sort(stamps.to_numpy()))
        col["min"], col["max"] = year_bounds(pd.Timestamp(low).year, pd.Timestamp(high).year,
                                              col["kind"])
        drafted.col = col
        return drafted
    counts = present.astype(str).value_counts()
    lowered = set(counts.index.str.lower())
    if lowered <= BOOLEAN_TOKENS and len(lowered) <= 2:
        col["kind"] = "boolean"
        drafted.col = col
        return drafted
    col["kind"] = "categorical"
    if len(counts) > MAX_CATEGORIES:  # never list the values of a likely identifier
        drafted.notes.append(f"column '{name}' has {len(counts):,} distinct values: likely an "
                             "identifier or free text, left out; declare its categories by "
                             "hand if it must be synthesized")
        return drafted
    common = sorted(counts[counts >= RARE].index.tolist())
    if not common:
        drafted.notes.append(f"column '{name}': every category is held by fewer than {RARE} "
                             "rows: left out (declare its categories by hand)")
        return drafted
    col["categories"] = common
    rare = int((counts < RARE).sum())
    if rare:
        col["catch_all"] = catch_all(common)
        drafted.notes.append(
            f"column '{name}': {rare} categor{'y' if rare == 1 else 'ies'} held by fewer than "
            f"{RARE} rows left out, not named here; `synth run --map-unknown` maps "
            f"{'it' if rare == 1 else 'them'} to the catch_all '{col['catch_all']}'")
    drafted.col = col
    return drafted


def decimals(values: pd.Series) -> int | None:
    """The most decimals that at least RARE of the numbers ``values`` are written with (as
    text: ``5.70`` has two, ``1e-05`` five), at most MOST_DECIMALS; None where fewer than
    RARE have any. Like a bound, it rests on RARE values: one record written with more
    decimals than the rest does not show."""
    found = values.astype(str).str.strip().str.fullmatch(NUMBER.pattern)
    if len(values) < RARE or not found.all():
        return None
    parts = values.astype(str).str.strip().str.extract(NUMBER.pattern)
    places = parts[0].fillna("").str.len() - pd.to_numeric(parts[1]).fillna(0)
    most = int(np.sort(places.clip(lower=0).to_numpy())[-RARE])
    return min(most, MOST_DECIMALS) or None
