"""Draft a schema from a private file, for its owner to review.

The draft is read from the private rows, so it is NOT public knowledge until a person has
reviewed it: bounds are rounded outward to round numbers (so they do not reveal the exact
extremes), and categories seen in only a few rows are flagged, because listing a rare value
can itself disclose someone.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import pandas as pd
import yaml

from pipelines.ingest import DataError
from schemas import DEFAULT_MISSING

MAX_CATEGORIES = 50  # more distinct strings than this: not a categorical column
RARE = 10  # categories seen fewer times are flagged for review
NEAR_UNIQUE = 0.9  # share of distinct values above which a text column looks like a key
SHAPED = 0.9  # share of values of an identifier's shape above which the column is one
IDENTIFIER_NAMES = re.compile(
    r"name|mrn|ssn|social.?security|e.?mail|phone|fax|mobile|address|street|medical.?record|"
    r"record.?(no|num)|patient.?id|account|licen[cs]e|passport|ip.?addr|url|device.?id",
    re.IGNORECASE)
SHAPES = {  # value shapes of direct identifiers (HIPAA's list), matched on whole values
    "e-mail addresses": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"),
    "SSNs": re.compile(r"\d{3}-\d{2}-\d{4}"),
    "phone numbers": re.compile(r"(\+?\d{1,3}[-. ]?)?\(?\d{3}\)?[-. ]?\d{3}[-. ]?\d{4}"
                                r"(\s*(x|ext\.?)\s*\d+)?"),
    "record numbers": re.compile(r"[A-Za-z]{1,5}[-#]?\d{4,}"),
}
ZIP_NAMES = re.compile(r"zip|postal|postcode", re.IGNORECASE)
ZIP_SHAPE = re.compile(r"\d{5}(-?\d{4})?")
BIRTH_NAMES = re.compile(r"birth|dob", re.IGNORECASE)
AGE_NAMES = re.compile(r"(.*[_.\- ])?age([_.\- ].*)?", re.IGNORECASE)


def identifier_reasons(name: str, values: pd.Series) -> list[str]:
    """Why a column looks like a direct identifier (empty: it does not). Says nothing about
    any value, so the reasons can be printed."""
    present = values.dropna().astype(str)
    hit = IDENTIFIER_NAMES.search(name)
    reasons = [f"its name contains '{hit.group(0)}'"] if hit else []
    if not len(present):
        return reasons
    if pd.to_numeric(present, errors="coerce").notna().all() or \
            pd.to_datetime(present, errors="coerce", format="ISO8601").notna().all():
        return reasons  # measurements and dates are not keys, whatever their spread
    for what, shape in SHAPES.items():
        if present.str.fullmatch(shape.pattern).mean() >= SHAPED:
            reasons.append(f"its values are shaped like {what}")
            break
    if present.nunique() >= NEAR_UNIQUE * len(present) and len(present) >= 20:
        reasons.append("nearly every row has its own value")
    return reasons


def _looks_like_zip(name: str, values: pd.Series) -> bool:
    present = values.dropna().astype(str)
    return len(present) > 0 and present.str.fullmatch(ZIP_SHAPE.pattern).mean() >= SHAPED and (
        bool(ZIP_NAMES.search(name)) or present.str.startswith("0").any())


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
    roles = _roles(frame)
    for column in frame.columns:
        if frame[column].isna().all():
            lines.append(f"  # REVIEW: column '{column}' has no values: left out")
            continue
        if column in roles:
            lines += roles[column]
            continue
        col, notes = _column(str(column), frame[column])
        lines += [f"  # REVIEW: {n}" for n in notes]
        if col is None:
            continue
        body = yaml.safe_dump([col], sort_keys=False, width=100, allow_unicode=True)
        lines += ["  " + ln for ln in body.rstrip().splitlines()]
    return "\n".join(lines) + "\n"


def _roles(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Draft lines of the columns proposed as identifiers or quasi-identifiers, all marked
    for review; no value of the data appears in them."""
    out: dict[str, list[str]] = {}
    for column in frame.columns:
        values = frame[column]
        reasons = identifier_reasons(str(column), values)
        if reasons:
            out[column] = [
                (f"  # REVIEW: column '{column}' looks like a direct identifier "
                f"({'; '.join(reasons)}; {values.nunique():,} distinct values in "
                f"{len(values):,} rows): dropped before training, never released; add "
                "surrogate: <Faker provider> to carry fake values"),
                f"  - {{name: {json.dumps(str(column))}, role: identifier}}"]
        elif _looks_like_zip(str(column), values):
            out[column] = [
                (f"  # REVIEW: column '{column}' looks like a ZIP code: a quasi-identifier, "
                "generalised to 3 digits (000 for the sparse areas) per HIPAA Safe Harbor"),
                (f"  - {{name: {json.dumps(str(column))}, kind: categorical, role: quasi_identifier, "
                "generalize: zip3}")]
    if not out:  # no person-level identifiers: dates stay ordinary features
        return out
    dates = {}
    for column in frame.columns:
        if column in out or frame[column].isna().all():
            continue
        col, _ = _column(str(column), frame[column])
        if col is not None and col["kind"] in ("date", "datetime"):
            dates[column] = col
    for column, col in dates.items():
        others = [d for d in dates if d != column and not BIRTH_NAMES.search(str(d))]
        if BIRTH_NAMES.search(str(column)) and others:
            col["generalize"] = {"age_at": others[0]}
            how = f"age in whole years at '{others[0]}', 90 for 90 and older"
        elif BIRTH_NAMES.search(str(column)):  # no date to take an age at: a birth year may
            out[column] = [f"  # REVIEW: column '{column}' is a birth date and no other date "
                           "gives an age at: dropped (a birth year may show an age over 89, "
                           "which Safe Harbor forbids)",
                           f"  - {{name: {column}, role: identifier}}"]
            continue
        else:
            col["generalize"] = "year"
            how = "its year" + (f" (or day offsets: generalize: {{offset_from: {others[0]}}})"
                                if others else "")
        col = {"name": col.pop("name"), "kind": col.pop("kind"), "role": "quasi_identifier",
               **col}
        body = yaml.safe_dump([col], sort_keys=False, width=100).rstrip().splitlines()
        out[column] = [(f"  # REVIEW: column '{column}' is a date of a person's record: a "
                       f"quasi-identifier, generalised to {how} per HIPAA Safe Harbor")] + [
                           "  " + ln for ln in body]
    for column in frame.columns:  # ages over 89 are identifying (Safe Harbor)
        if column in out or not AGE_NAMES.fullmatch(str(column)):
            continue
        col, _ = _column(str(column), frame[column])
        if col is not None and col["kind"] in ("integer", "float") and col["max"] > 89:
            col = {"name": col.pop("name"), "kind": col.pop("kind"),
                   "role": "quasi_identifier", **col, "generalize": "age90"}
            body = yaml.safe_dump([col], sort_keys=False, width=100).rstrip().splitlines()
            out[column] = [(f"  # REVIEW: column '{column}' is an age: a quasi-identifier, "
                           "ages over 89 become 90 (\"90 or older\") per HIPAA Safe Harbor")] + [
                               "  " + ln for ln in body]
    return out
