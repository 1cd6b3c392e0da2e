"""The DP draft: the rows read under (epsilon, delta)-DP, charged to the data set's budget in
the ledger under its name, and marked ``draft: {dp: true, epsilon: .., delta: ..}``.

Kinds, bounds, categories and nullability all come from three noisy histograms per column
(``synth.describe``): its shapes, its values, the whole parts of its numbers. The decisions
read the noisy counts alone (post-processing: they spend nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.draft.drafted import Drafted, bounds, catch_all, year_bounds
from pipelines.draft.render import render
from pipelines.draft.shapes import (
    BOOLEAN_TOKENS,
    IDENTIFIER_NAMES,
    MAX_CATEGORIES,
    SHAPED,
    SHAPES,
    ZIP_NAMES,
    ZIP_SHAPE,
)
from pipelines.draft.source import data_set_name, read_table
from pipelines.errors import DataError
from schemas.roles import AGE_CAP
from synth.describe import YEARS, Grid, NoisyCounts, calibrate, cutoff, round_numbers
from synth.privacy import DEFAULT_DELTA, PrivacyBudget

GRID = Grid(round_numbers())
WHOLE_KEYS = (-1000, 3000)  # whole parts with their own key: years, ages, small counts
SHAPE_KEYS = ("missing", "whole", "fraction", "date", "datetime", "zip", "boolean",
              *SHAPES, "text")
HISTOGRAMS = 3  # per column: shapes, values, whole parts
PRESENT = 2.0  # a shape (missing values, fractions) is taken as present above this many noise
# deviations: noise alone crosses it 2% of the time; fewer missing values than that make
# ingest reject their rows, with a message that says to declare the column nullable
FINER = 10  # whole-part bounds replace the round-number ones when this many times narrower


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
    return DpDraft(text=render(header, identity, marker, drafted), name=identity,
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


def _dp_column(name: str, values: pd.Series, counts: NoisyCounts) -> Drafted:
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
               whole_parts: np.ndarray, sigma: float) -> Drafted:
    """The column's draft from its noisy histograms alone (post-processing: spends nothing)."""
    drafted = Drafted(name, None)
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
    group = max(groups, key=groups.__getitem__)
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
        col["min"], col["max"] = year_bounds(first, last, col["kind"])
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
            col["catch_all"] = catch_all(col["categories"])
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
