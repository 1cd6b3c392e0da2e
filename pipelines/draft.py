"""Draft a schema from a private file, for its owner to review.

Both drafts carry a ``draft:`` line that stays until a person has reviewed the schema and
deleted it (see docs/schema-draft.md):

- ``draft_schema`` reads the rows WITHOUT differential privacy and writes
  ``draft: {dp: false}``: ``synth run`` refuses the schema until that line is gone. It never
  prints a value held by fewer than ``RARE`` rows: numeric and date bounds rest on the
  RARE-th smallest and largest values, rounded outward to round numbers, so no record beyond
  them moves a bound by itself (and up to RARE - 1 values of a column may lie beyond its
  bounds: ``synth run --clip``, or widen them); categories held by fewer rows are left out,
  counted but not named, and a ``catch_all`` takes them under ``--map-unknown``. What it
  reads from every row: each column's kind, whether any value is missing, whether any age is
  over 89, which values are shaped like identifiers. A float column's ``decimals:`` is the
  most decimals that at least RARE values are written with (at most ``MOST_DECIMALS``).
- ``draft_dp_schema`` reads them under (epsilon, delta)-DP, charged to the data set's budget
  in the ledger under its name, and writes ``draft: {dp: true, epsilon: .., delta: ..}``:
  kinds, bounds, categories and nullability all come from noisy counts (``synth.describe``).
  It proposes no ``decimals:`` (a value's precision would be one more private read, left to
  the reviewer, as its header says). ``synth run`` accepts it; it still wants a review.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipelines.ingest import DataError
from schemas import DEFAULT_MISSING
from schemas.roles import AGE_CAP
from synth.describe import YEARS, Grid, NoisyCounts, calibrate, cutoff, round_numbers
from synth.privacy import DEFAULT_DELTA, PrivacyBudget

MAX_CATEGORIES = 50  # more distinct strings than this: not a categorical column
RARE = 10  # the plain draft prints no value held by fewer rows than this
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
BOOLEAN_TOKENS = {"true", "false", "yes", "no", "t", "f", "y", "n", "0", "1"}
CATCH_ALL = "other"
MOST_DECIMALS = 6  # the plain draft proposes at most this many decimals for a float column
NUMBER = re.compile(r"[+-]?\d*(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


@dataclass
class _Drafted:
    """What a draft says about one column, whichever way it was read.

    Attributes:
        name: the column.
        col: its YAML mapping; None: left out.
        notes: REVIEW notes, free of values.
        identifier: why it looks like a direct identifier (empty: it does not).
        detail: counts to print beside those reasons (plain draft only).
        zip: it holds ZIP codes (a quasi-identifier).
        over_89: an age over 89 was seen (Safe Harbor's age rule then applies).
    """

    name: str
    col: dict | None
    notes: list[str] = field(default_factory=list)
    identifier: list[str] = field(default_factory=list)
    detail: str = ""
    zip: bool = False
    over_89: bool = False


@dataclass(frozen=True)
class DpDraft:
    """A DP draft and what it spent.

    Attributes:
        text: the YAML text.
        name: the data set's identity: the schema's name and the ledger's key.
        epsilon: spent, and charged to the ledger.
        delta: see epsilon.
        ledger: where it was charged.
        entry: the ledger entry.
    """

    text: str
    name: str
    epsilon: float
    delta: float
    ledger: str
    entry: int


def read_table(path: str | Path) -> pd.DataFrame:
    """The file's rows: CSV fields as stripped text, Parquet with its own types; missing
    tokens as NaN, column names stripped.

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
    return frame.apply(lambda s: s.str.strip().mask(s.str.strip().isin(DEFAULT_MISSING))
                       if s.dtype == object else s)


def data_set_name(path: str | Path, name: str | None = None) -> str:
    """The data set's identity: ``name``, else the file name up to its first dot."""
    return name or Path(path).name.split(".")[0]


# --- the plain draft ------------------------------------------------------------------------

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
    return _render(header, data_set_name(path, name), {"dp": False}, drafted)


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
    """Declared bounds around ``low`` and ``high``, rounded outward to half the range's power
    of ten, so they are round numbers: 17..90 -> 15..90, 12,285..1,484,705 -> 0..1,500,000."""
    if high == low:  # never publish a constant: widen to the neighbouring round numbers
        step = 10 ** math.floor(math.log10(max(abs(low), 1.0)))
        return round_out(low, step, True) - step, round_out(high, step, False) + step
    step = 10 ** math.floor(math.log10(high - low)) / 2
    step = max(step, 1.0) if whole else step
    return round_out(low, step, True), round_out(high, step, False)


def _trimmed(ordered: np.ndarray) -> tuple:
    """The RARE-th smallest and RARE-th largest of sorted values (each has RARE rows at or
    beyond it), in order."""
    return tuple(sorted((ordered[RARE - 1], ordered[len(ordered) - RARE])))


def _plain(name: str, values: pd.Series) -> _Drafted:
    """One column as the plain draft reads it."""
    if values.isna().all():
        return _Drafted(name, None, notes=[f"column '{name}' has no values: left out"])
    reasons = identifier_reasons(name, values)
    detail = f"; {values.nunique():,} distinct values in {len(values):,} rows"
    drafted = _Drafted(name, None, identifier=reasons, detail=detail,
                       zip=not reasons and _looks_like_zip(name, values))
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
        col["min"], col["max"] = _year_bounds(pd.Timestamp(low).year, pd.Timestamp(high).year,
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
        col["catch_all"] = _catch_all(common)
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


def _catch_all(categories: list[str]) -> str:
    """The category that takes the values left out: the data's own 'other' if it has one,
    else a new 'other' (added to ``categories``)."""
    for c in categories:
        if c.lower() == CATCH_ALL:
            return c
    categories.append(CATCH_ALL)
    return CATCH_ALL


def _year_bounds(first: int, last: int, kind: str) -> tuple[str, str]:
    """Whole-year bounds: the first day of ``first`` to the last moment of ``last``."""
    low = dt.date(first, 1, 1)
    high = dt.datetime(last + 1, 1, 1) - dt.timedelta(seconds=1)
    return low.isoformat(), (high.date() if kind == "date" else high).isoformat()


# --- the DP draft ---------------------------------------------------------------------------

GRID = Grid(round_numbers())
WHOLE_KEYS = (-1000, 3000)  # whole parts with their own key: years, ages, small counts
SHAPE_KEYS = ("missing", "whole", "fraction", "date", "datetime", "zip", "boolean",
              *SHAPES, "text")
HISTOGRAMS = 3  # per column: shapes, values, whole parts
PRESENT = 2.0  # a shape (missing values, fractions) is taken as present above this many noise
# deviations: noise alone crosses it 2% of the time; fewer missing values than that make
# ingest reject their rows, with a message that says to declare the column nullable
FINER = 10  # whole-part bounds replace the round-number ones when this many times narrower


def draft_dp_schema(path: str | Path, epsilon: float, delta: float = DEFAULT_DELTA,
                    name: str | None = None, ledger: str | Path | None = None,
                    seed: int | None = None) -> DpDraft:
    """A draft schema read under (epsilon, delta)-DP, charged to the budget ledger under the
    data set's identity (``name``, else the file name's stem), which becomes the schema's
    ``name``, so later runs spend from the same total.

    The (epsilon, delta) is reserved before any row is read, cancelled if the file cannot be
    read, and committed with what the noisy counts spent (at most the reservation).

    Args:
        seed: tests only: fixes the noise, and the draft is then NOT private.

    Raises:
        DataError: the file is missing, empty or unreadable; BudgetError: a bad budget, or
            one past the data set's total (BudgetExceeded).
    """
    from pipelines.ledger import Ledger

    budget = PrivacyBudget(epsilon, delta)
    PrivacyBudget(epsilon, delta / 2)  # calibrate's share of delta: refused before reserving
    path, identity = Path(path), data_set_name(path, name)
    if not path.is_file():
        raise DataError(f"{path}: cannot read input: no such file")
    book = Ledger(ledger)
    entry = book.reserve(identity, identity, str(path), "(schema draft)", "schema-draft",
                         budget.epsilon, budget.delta, None)
    try:
        frame = read_table(path)
    except BaseException:
        book.cancel(entry)  # no noise was drawn: nothing was spent
        raise
    book.start(entry)
    columns = len(frame.columns)
    counts = NoisyCounts(calibrate(budget, HISTOGRAMS * columns, columns), seed=seed)
    drafted = [_dp_column(str(c), frame[c], counts) for c in frame.columns]
    spent_epsilon, spent_delta = counts.spent()
    book.commit(entry, spent_epsilon, spent_delta)
    header = [
        f"# DRAFT schema, read from the data in {path} under differential privacy",
        f"# (epsilon={spent_epsilon:.4g}, delta={spent_delta:.3g}, charged to data set "
        f"'{identity}' in the budget ledger):",
        "# kinds, bounds, categories and nullability come from noisy counts, and a value held",
        "# by few rows never appears. Review it for sense: bounds are round numbers (values",
        "# beyond them need --clip), categories held by few rows are left out (--map-unknown",
        "# maps them to the catch_all). Delete the `draft:` line once reviewed. No float",
        "# column has `decimals:` (a value's precision would be one more private read):",
        "# declare it from the data's documentation.",
    ]
    marker = {"dp": True, "epsilon": float(f"{spent_epsilon:.6g}"),
              "delta": float(f"{spent_delta:.6g}")}
    return DpDraft(text=_render(header, identity, marker, drafted), name=identity,
                   epsilon=spent_epsilon, delta=spent_delta, ledger=book.location, entry=entry)


def _shapes(name: str, values: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Each row's shape (an index into SHAPE_KEYS: a public key), its number (NaN if none)
    and its time stamp (NaT if none)."""
    n = len(values)
    shape = np.full(n, SHAPE_KEYS.index("text"))
    missing = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values):
        shape[:] = SHAPE_KEYS.index("boolean")
        shape[missing] = 0
        return shape, np.full(n, np.nan), pd.Series(pd.NaT, index=values.index)
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values
        numbers = np.full(n, np.nan)
    else:
        text = values.astype("string")
        zipped = (text.str.fullmatch(ZIP_SHAPE.pattern).fillna(False).to_numpy(dtype=bool)
                  if ZIP_NAMES.search(name) else np.zeros(n, dtype=bool))
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        numbers[zipped | ~np.isfinite(numbers)] = np.nan
        rest = text.where(np.isnan(numbers) & ~zipped)
        try:
            stamps = pd.to_datetime(rest, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):  # offsets mixed with naive stamps
            stamps = pd.to_datetime(rest, errors="coerce", format="ISO8601", utc=True)
        lowered = text.str.lower()
        unknown = (np.isnan(numbers) & stamps.isna().to_numpy() & ~zipped & ~missing)
        for what in (*SHAPES, "boolean"):  # identifier shapes, then booleans, then text
            hit = (lowered.isin(BOOLEAN_TOKENS) if what == "boolean" else
                   text.str.fullmatch(SHAPES[what].pattern)).fillna(False).to_numpy(dtype=bool)
            shape[unknown & hit] = SHAPE_KEYS.index(what)
            unknown &= ~hit
        shape[zipped] = SHAPE_KEYS.index("zip")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    stamps = stamps.reset_index(drop=True)
    dated = stamps.notna().to_numpy()
    midnight = (stamps == stamps.dt.normalize()).to_numpy()
    shape[dated] = np.where(midnight[dated], SHAPE_KEYS.index("date"),
                            SHAPE_KEYS.index("datetime"))
    counted = ~np.isnan(numbers)
    shape[counted] = np.where(numbers[counted] % 1 == 0, SHAPE_KEYS.index("whole"),
                              SHAPE_KEYS.index("fraction"))
    shape[missing] = SHAPE_KEYS.index("missing")
    return shape, numbers, stamps


def _dp_column(name: str, values: pd.Series, counts: NoisyCounts) -> _Drafted:
    """One column from three noisy histograms (each record in one key of each): its shapes;
    its values (round-number keys for numbers, years for dates, labels read from the data
    for the rest, released above the threshold); the whole parts of its numbers."""
    shape, numbers, stamps = _shapes(name, values)
    shapes = np.bincount(shape, minlength=len(SHAPE_KEYS))
    counted = ~np.isnan(numbers)
    years = stamps.dt.year.to_numpy(dtype="float64", na_value=np.nan)
    dated = ~np.isnan(years)
    year_keys = np.clip(years[dated], YEARS[0] - 1, YEARS[1]).astype(int) - (YEARS[0] - 1)
    value = np.concatenate([
        np.bincount(GRID.keys(numbers[counted]), minlength=GRID.size),
        np.bincount(year_keys, minlength=YEARS[1] - YEARS[0] + 2)])
    labelled = np.isin(shape, [SHAPE_KEYS.index(s) for s in ("boolean", *SHAPES, "text")])
    labels = values[labelled].astype(str).value_counts().to_dict()
    whole = np.clip(np.floor(numbers[counted]), WHOLE_KEYS[0] - 1, WHOLE_KEYS[1]).astype(int)
    whole_parts = np.bincount(whole - (WHOLE_KEYS[0] - 1),
                              minlength=WHOLE_KEYS[1] - WHOLE_KEYS[0] + 2)
    noisy_shapes, _ = counts.release(f"{name}/shapes", shapes)
    noisy_values, kept = counts.release(f"{name}/values", value, labels)
    noisy_whole, _ = counts.release(f"{name}/whole parts", whole_parts)
    return _dp_decide(name, dict(zip(SHAPE_KEYS, noisy_shapes)), noisy_values, kept,
                      noisy_whole, counts.calibration.sigma)


def _dp_decide(name: str, shapes: dict[str, float], values: np.ndarray, kept: dict[str, float],
               whole_parts: np.ndarray, sigma: float) -> _Drafted:
    """The column's draft from its noisy histograms alone (post-processing: spends nothing)."""
    drafted = _Drafted(name, None)
    hit = IDENTIFIER_NAMES.search(name)
    drafted.identifier = [f"its name contains '{hit.group(0)}'"] if hit else []
    present = sum(v for k, v in shapes.items() if k != "missing")
    if present <= 2 * sigma * math.sqrt(len(SHAPE_KEYS)):
        drafted.notes.append(f"column '{name}': no values clear the noise: left out")
        return drafted
    for what in SHAPES:
        if shapes[what] >= SHAPED * present:
            drafted.identifier.append(f"its values are shaped like {what}")
    drafted.zip = not drafted.identifier and shapes["zip"] >= SHAPED * present
    col: dict = {"name": name}
    if shapes["missing"] > PRESENT * sigma:
        col["nullable"] = True
    groups = {"number": shapes["whole"] + shapes["fraction"],
              "time": shapes["date"] + shapes["datetime"],
              "label": sum(shapes[k] for k in ("boolean", *SHAPES, "text"))}
    group = max(groups, key=groups.get)
    if group == "number":
        whole = shapes["fraction"] <= PRESENT * sigma
        col["kind"] = "integer" if whole else "float"
        found = _number_bounds(values[:GRID.size], whole_parts, whole, sigma)
        if found is None:
            drafted.notes.append(f"column '{name}': no bound clears the noise at this epsilon: "
                                 "left out (declare it by hand)")
            return drafted
        low, high, median = found
        col["min"], col["max"] = (int(low), int(high)) if whole else (low, high)
        if low >= 0 and high > 1000 * max(median, 1):
            col["transform"] = "log"
        drafted.over_89 = high > AGE_CAP - 1
    elif group == "time":
        col["kind"] = "date" if shapes["datetime"] <= PRESENT * sigma else "datetime"
        noisy = values[GRID.size:]
        years = np.flatnonzero(noisy > cutoff(sigma, len(noisy)))
        if not len(years):
            drafted.notes.append(f"column '{name}': no year clears the noise at this epsilon: "
                                 "left out (declare it by hand)")
            return drafted
        first, last = (int(np.clip(y - 1, 0, YEARS[1] - YEARS[0] - 1)) + YEARS[0]
                       for y in (years[0], years[-1]))
        col["min"], col["max"] = _year_bounds(first, last, col["kind"])
    elif shapes["boolean"] >= SHAPED * present:
        col["kind"] = "boolean"
    else:
        col["kind"] = "categorical"
        if sum(kept.values()) < groups["label"] / 2 or len(kept) > MAX_CATEGORIES:
            drafted.notes.append(f"column '{name}': most of its values are held by few rows "
                                 "(an identifier or free text?) or are too many: left out")
            return drafted
        col["categories"] = sorted(kept)
        spread = sigma * math.sqrt(len(kept) + len(SHAPES) + 2)  # of the difference below
        if groups["label"] - sum(kept.values()) > 2 * spread:
            col["catch_all"] = _catch_all(col["categories"])
            drafted.notes.append(f"column '{name}': categories held by few rows are left out; "
                                 f"`synth run --map-unknown` maps them to the catch_all "
                                 f"'{col['catch_all']}'")
    drafted.col = col
    return drafted


def _number_bounds(values: np.ndarray, whole_parts: np.ndarray, whole: bool, sigma: float
                   ) -> tuple[float, float, float] | None:
    """(min, max, median) from the noisy round-number keys: the ends of the outermost keys
    that clear the noise; from the whole-part keys instead, rounded outward, where those
    give a range FINER times narrower (a column of years 1995..2003 is not drafted
    1000..5000). None if no key clears the noise."""
    keys = np.flatnonzero(values > cutoff(sigma, len(values)))
    if not len(keys):
        return None
    low, high = GRID.span(int(keys[0]))[0], GRID.span(int(keys[-1]))[1]
    mass = np.cumsum(np.clip(values, 0, None))
    median = GRID.span(int(np.searchsorted(mass, mass[-1] / 2)))[1]
    inner = np.flatnonzero(whole_parts[1:-1] > cutoff(sigma, len(whole_parts)))
    if len(inner):
        first = WHOLE_KEYS[0] + int(inner[0])
        last = WHOLE_KEYS[0] + int(inner[-1]) + (0 if whole else 1)
        spans = [GRID.span(int(k)) for k in keys]
        # only where the whole parts hold what the round-number keys hold: a column of
        # zeros and a thin spread of thousands (capital gains) keeps its round bounds
        covered = all(a <= last and b >= first for a, b in spans)
        if covered and high - low > FINER * max(last - first, 1):
            low, high = bounds(first, last, whole)
    if whole:
        low, high = math.floor(low), math.ceil(high)
    return float(low), float(high), float(median)


# --- writing either draft -------------------------------------------------------------------

def _render(header: list[str], name: str, marker: dict, drafted: list[_Drafted]) -> str:
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


def _roles(drafted: list[_Drafted]) -> dict[str, list[str]]:
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
