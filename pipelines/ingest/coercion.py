"""A raw frame coerced to the schema: each column parsed as its kind, checked against its
declared bounds and categories, every problem collected (``Problem``) and reported at once.

Rows are numbered from 1 over the data records; for CSV input the file's line number is given
too. An infinity is refused, never clipped; a quoted value is cut to 60 characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.errors import Problem, quote, raise_problems
from pipelines.ingest.readers import check_columns, log_dropped
from schemas import Column, Schema, pandas_dtype

TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})
EXACT = 2**53  # whole numbers beyond this are not held exactly by the float64 they pass through


@dataclass(frozen=True)
class IngestReport:
    """What ingest did. Counts of private rows: for the operator's log, never released."""

    source: str
    rows: int
    dropped_columns: tuple[str, ...] = ()
    clipped: dict[str, int] = field(default_factory=dict)
    mapped_to_catch_all: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Ingested:
    frame: pd.DataFrame  # one column per schema column, dtypes from schemas.pandas_dtype
    report: IngestReport


def coerce(raw: pd.DataFrame, schema: Schema, *, source: str, lines: np.ndarray | None = None,
           clip: bool = False, map_unknown: bool = False) -> Ingested:
    """Coerces a raw frame to the schema's columns and dtypes (see ``ingest``)."""
    dropped = check_columns(raw.columns, schema, source)
    log_dropped(source, dropped)
    ctx = Coercion(source, schema, lines, clip, map_unknown, [])
    frame = ctx.frame(raw)
    if ctx.problems:
        raise_problems(source, ctx.problems)
    report = IngestReport(source=source, rows=len(frame), dropped_columns=dropped,
                          clipped=ctx.clipped, mapped_to_catch_all=ctx.mapped)
    return Ingested(frame=frame, report=report)


def no_values(col: Column, rows: int) -> Problem:
    """The problem of a column that has no value in any of its ``rows``."""
    return Problem(col.name, 0, None, rows, f"has no value in any of its {rows:,} rows",
                   "a column with no values cannot be synthesized; drop it from the schema",
                   public="has no value in any row", label=col.input_name)


class Coercion:
    """Per-call state for coercing columns: where to report, and what was changed."""

    def __init__(self, source, schema, lines, clip, map_unknown, problems, offset: int = 0,
                 batch: bool = False):
        self.source, self.schema, self.lines = source, schema, lines
        self.clip, self.map_unknown, self.problems = clip, map_unknown, problems
        self.clipped: dict[str, int] = {}
        self.mapped: dict[str, int] = {}
        # a batch of a larger input (pipelines.batched): rows are numbered from offset + 1,
        # and a column with no value in this batch is only missing values here
        self.offset, self.batch = offset, batch
        self.all_null: set[str] = set()

    def frame(self, raw: pd.DataFrame) -> pd.DataFrame:
        """The schema's columns of ``raw`` (read by their input names), coerced, under their
        released names; problems are collected, not raised, naming the input's columns."""
        return pd.DataFrame({c.name: self.column(c, raw[c.input_name])
                             for c in self.schema.columns})

    def problem(self, col: Column, mask: np.ndarray, message: str, remedy: str,
                value: str | None = None, public: str | None = None) -> None:
        idx = np.flatnonzero(mask)
        first = int(idx[0])
        line = int(self.lines[first]) if self.lines is not None else None
        self.problems.append(Problem(col.name, self.offset + first + 1, line, len(idx), message,
                                     remedy, value, public, col.input_name))

    def column(self, col: Column, values: pd.Series) -> pd.Series:
        """One column coerced; values that no check foresaw (bytes that are not UTF-8 in a
        Parquet file, say) are a problem of the whole column, never a traceback."""
        try:
            return self._column(col, values)
        except (ValueError, TypeError, ArithmeticError, UnicodeError, pa.ArrowException) as exc:
            self.problems.append(Problem(
                col.name, 0, None, len(values),
                f"holds values that cannot be read as {col.kind} ({type(exc).__name__})",
                "fix the data", label=col.input_name))
            return pd.Series(pd.NA, index=range(len(values)), dtype=object)

    def _column(self, col: Column, values: pd.Series) -> pd.Series:
        values = values.reset_index(drop=True)
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            values = values.astype("string").str.strip()
            values = values.mask(values.isin(self.schema.missing_values))
        is_null = values.isna().to_numpy()
        if is_null.all() and not self.batch:
            self.problems.append(no_values(col, len(values)))
            return pd.Series(pd.NA, index=values.index, dtype=object)
        if is_null.any() and not col.nullable:
            self.problem(col, is_null, "is missing a value",
                         f"fix the data or declare the column nullable in {self.schema.where}")
        if is_null.all():
            self.all_null.add(col.name)
            return pd.Series(index=values.index, dtype=pandas_dtype(col))
        if col.kind == "categorical":
            out = self._categorical(col, values, is_null)
        elif col.kind == "boolean":
            out = self._boolean(col, values, is_null)
        elif col.is_temporal:
            out = self._ranged(col, self._parse_temporal(col, values, is_null), is_null)
        else:
            out = self._ranged(col, self._parse_numeric(col, values, is_null), is_null)
            if col.kind == "integer":
                out = self._exact(col, out)
        return out.astype(pandas_dtype(col))

    def _categorical(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        labels = values.astype("string")
        if col.aliases:
            labels = labels.replace(col.alias_map)
        unknown = ~is_null & ~labels.isin(col.categories).to_numpy()
        if unknown.any():
            if self.map_unknown and col.catch_all is not None:
                labels = labels.mask(unknown, col.catch_all)
                self.mapped[col.input_name] = int(unknown.sum())
            else:
                first = labels[np.flatnonzero(unknown)[0]]
                remedy = (f"pass --map-unknown to map it to '{col.catch_all}'"
                          if col.catch_all is not None else
                          f"fix the data, add it to the categories in {self.schema.where}, "
                          f"or declare a catch_all category there")
                self.problem(col, unknown, "value {value} is not a declared category", remedy,
                             quote(first))
        return labels

    def _boolean(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        if pd.api.types.is_bool_dtype(values):
            return values
        lowered = values.astype("string").str.lower()
        truth = lowered.isin(TRUE_TOKENS).to_numpy()
        falsity = lowered.isin(FALSE_TOKENS).to_numpy()
        bad = ~is_null & ~truth & ~falsity
        if bad.any():
            self.problem(col, bad, "value {value} is not a boolean",
                         "use true/false, yes/no or 1/0", quote(values[np.flatnonzero(bad)[0]]))
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[truth] = True
        out[falsity] = False
        return out

    def _parse_numeric(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        if pd.api.types.is_bool_dtype(values):
            values = values.astype("float64")
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = ~is_null & numbers.isna().to_numpy()
        if bad.any():
            self.problem(col, bad, "value {value} is not a number", "fix the data",
                         quote(values[np.flatnonzero(bad)[0]]))
        infinite = np.isinf(numbers.to_numpy())
        if infinite.any():  # never within bounds, and no measurement to clip: refused
            self.problem(col, infinite, "holds an infinite value {value}",
                         "fix the data (--clip does not clip an infinity)",
                         quote(values[np.flatnonzero(infinite)[0]]),
                         public="holds an infinite value")
            numbers = numbers.mask(infinite)
        if col.kind == "integer":
            frac = ~np.isnan(numbers.to_numpy()) & (numbers.to_numpy() % 1 != 0)
            if frac.any():
                self.problem(col, frac, "value {value} is not a whole number",
                             f"fix the data or declare the column float in {self.schema.where}",
                             _number(numbers[np.flatnonzero(frac)[0]]))
                numbers = numbers.round()
        return numbers

    def _parse_temporal(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        bad = ~is_null & stamps.isna().to_numpy()
        if bad.any():
            self.problem(col, bad, "value {value} is not an ISO " + col.kind,
                         "write dates as YYYY-MM-DD", quote(values[np.flatnonzero(bad)[0]]))
        if col.kind == "date":
            stamps = stamps.dt.normalize()
        return stamps

    def _ranged(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        low, high = ((pd.Timestamp(col.minimum), pd.Timestamp(col.maximum)) if col.is_temporal
                     else (col.minimum, col.maximum))
        show = (lambda v: pd.Timestamp(v).date().isoformat() if col.kind == "date" else
                pd.Timestamp(v).isoformat()) if col.is_temporal else _number
        for side, mask, bound in (("below", (values < low).to_numpy(na_value=False), low),
                                  ("above", (values > high).to_numpy(na_value=False), high)):
            if not mask.any():
                continue
            if self.clip:
                self.clipped[col.input_name] = self.clipped.get(col.input_name, 0) + int(
                    mask.sum())
                values = values.mask(mask, bound)
            else:
                word = "minimum" if side == "below" else "maximum"
                value = values[np.flatnonzero(mask)[0]]
                self.problem(col, mask, f"value {{value}} is {side} the schema's {word} "
                             f"{show(bound)}", f"fix the data, widen the bound in "
                             f"{self.schema.where}, or pass --clip", show(value))
                values = values.mask(mask)  # rejected: no dtype need hold it (2**64, say)
        return values

    def _exact(self, col: Column, values: pd.Series) -> pd.Series:
        """Whole numbers within the bounds but beyond 2**53: the float64 they are parsed
        through does not hold them exactly (nor the int64 they go to, past 2**63)."""
        big = (values.abs() > EXACT).to_numpy(na_value=False)
        if big.any():
            self.problem(col, big, "value {value} is too large to hold exactly (beyond 2**53)",
                         f"fix the data or declare the column float in {self.schema.where}",
                         _number(values[np.flatnonzero(big)[0]]))
            values = values.mask(big)
        return values


def _number(value: float) -> str:
    """A number for an error line: whole numbers in full up to 1e15, others as %g (never
    hundreds of digits)."""
    if not np.isfinite(value) or abs(value) >= 1e15 or value != int(value):
        return f"{value:g}"
    return f"{int(value)}"
