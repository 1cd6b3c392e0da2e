"""Draft a schema from a private file, for its owner to review.

The draft is read from the private rows, so it is NOT public knowledge until a person has
reviewed it: bounds are rounded outward to round numbers (so they do not reveal the exact
extremes), and categories seen in only a few rows are flagged, because listing a rare value
can itself disclose someone.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
import yaml

from pipelines.ingest import DataError
from schemas import DEFAULT_MISSING

MAX_CATEGORIES = 50  # more distinct strings than this: not a categorical column
RARE = 10  # categories seen fewer times are flagged for review


def round_out(value: float, step: float, down: bool) -> float:
    """Rounds ``value`` outward (down for a minimum, up for a maximum) to a multiple of step."""
    return float(round((math.floor if down else math.ceil)(value / step) * step, 12))


def bounds(low: float, high: float, whole: bool) -> tuple[float, float]:
    """Declared bounds around observed extremes, rounded outward to half the range's power of
    ten, so they do not reveal the exact extremes: age 17..90 -> 15..90, 12,285..1,484,705 ->
    0..1,500,000."""
    if high == low:  # never publish a constant: widen to the neighbouring round numbers
        step = 10 ** math.floor(math.log10(max(abs(low), 1.0)))
        return round_out(low, step, True) - step, round_out(high, step, False) + step
    step = 10 ** math.floor(math.log10(high - low)) / 2
    step = max(step, 1.0) if whole else step
    return round_out(low, step, True), round_out(high, step, False)


def _column(name: str, values: pd.Series) -> tuple[dict | None, list[str]]:
    notes: list[str] = []
    col: dict = {"name": name}
    present = values.dropna()
    if values.isna().any():
        col["nullable"] = True
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        whole = (numbers % 1 == 0).all()
        col["kind"] = "integer" if whole else "float"
        low, high = bounds(float(numbers.min()), float(numbers.max()), whole)
        col["min"], col["max"] = (int(low), int(high)) if whole else (low, high)
        if numbers.min() >= 0 and numbers.max() > 1000 * max(numbers.median(), 1):
            col["transform"] = "log"
        return col, notes
    stamps = pd.to_datetime(present, errors="coerce", format="ISO8601")
    if len(present) and stamps.notna().all():
        col["kind"] = "date" if (stamps == stamps.dt.normalize()).all() else "datetime"
        low = dt.date(stamps.min().year, 1, 1)
        high = dt.datetime(stamps.max().year + 1, 1, 1) - dt.timedelta(seconds=1)
        if col["kind"] == "date":
            high = high.date()
        col["min"], col["max"] = low.isoformat(), high.isoformat()
        return col, notes
    counts = present.astype(str).value_counts()
    lowered = set(counts.index.str.lower())
    if lowered and lowered <= {"true", "false", "yes", "no", "t", "f", "y", "n", "0", "1"} \
            and len(lowered) <= 2:
        col["kind"] = "boolean"
        return col, notes
    col["kind"] = "categorical"
    if len(counts) > MAX_CATEGORIES:  # never list the values of a likely identifier
        notes.append(f"column '{name}' has {len(counts):,} distinct values: likely an "
                     "identifier or free text, left out; declare its categories by hand if "
                     "it must be synthesized")
        return None, notes
    col["categories"] = sorted(counts.index.tolist())
    rare = sorted(counts[counts < RARE].index.tolist())
    if rare:
        notes.append(f"rare (seen in fewer than {RARE} rows; remove or merge before "
                     f"publishing the schema): {', '.join(rare)}")
    return col, notes


def draft_schema(path: str | Path, name: str | None = None) -> str:
    """YAML text of a draft schema for the CSV or Parquet file at ``path`` (header required).

    Raises:
        DataError: the file is missing, empty or unreadable.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read input: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read input: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda s: s.str.strip().mask(s.str.strip().isin(DEFAULT_MISSING))
                        if s.dtype == object else s)
    lines = [
        "# DRAFT schema, read from the PRIVATE data in " + str(path) + ".",
        "# It is not public knowledge until the data owner has reviewed it: check every bound",
        "# and category against public documentation, remove flagged rare categories, and",
        "# only then treat it as public. Bounds were rounded outward to round numbers.",
        yaml.safe_dump({"name": name or path.name.split(".")[0], "version": "1",
                        "missing_values": list(DEFAULT_MISSING)}, sort_keys=False).rstrip(),
        "columns:",
    ]
    for column in frame.columns:
        if frame[column].isna().all():
            lines.append(f"  # REVIEW: column '{column}' has no values: left out")
            continue
        col, notes = _column(str(column), frame[column])
        lines += [f"  # REVIEW: {n}" for n in notes]
        if col is None:
            continue
        body = yaml.safe_dump([col], sort_keys=False, width=100, allow_unicode=True)
        lines += ["  " + ln for ln in body.rstrip().splitlines()]
    return "\n".join(lines) + "\n"
