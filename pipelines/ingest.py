"""Ingest: the only reader of private data. Reads a CSV or Parquet file into memory and
coerces it to the schema, rejecting what does not fit.

Every problem found is collected and reported at once, naming the file, the column and the
first row where it occurs. Rows are numbered from 1 over the data records (a header line,
blank lines and comment lines are not counted); for CSV input the file's line number is
given too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipelines import safe_harbor
from schemas import Column, Schema, pandas_dtype

log = logging.getLogger(__name__)

TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})
MAX_LISTED = 3  # problems spelled out in the one-line error; the rest are counted


class DataError(ValueError):
    """Input data that cannot be read or does not fit its schema.

    ``str(error)`` quotes the offending values, for the operator's terminal; ``public`` is
    the same message with every value from the data replaced by ``<redacted>``, for places
    that store messages (an orchestrator's logs and state history).
    """

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public if public is not None else message


@dataclass(frozen=True)
class Problem:
    """One kind of violation in one column: where it first occurs and how often."""

    column: str
    first_row: int  # 1-based record number
    first_line: int | None  # CSV line number, when known
    count: int
    message: str  # e.g. "value {value} is above the schema's maximum 90"
    remedy: str
    value: str | None = None  # the offending value, quoted from the data
    public: str | None = None  # the message without anything read from the rows, if it has

    def describe(self, redact: bool = False) -> str:
        """The problem in one phrase; ``redact`` leaves out everything read from the rows
        (the value, where it is, how often): only the column and the rule it breaks."""
        value = "<redacted>" if redact else self.value
        message = (self.public if redact and self.public else self.message).format(value=value)
        if self.first_row == 0:  # a problem of the whole column
            return f"column '{self.column}' {message}: {self.remedy}"
        if redact:
            return f"column '{self.column}' {message}: {self.remedy}"
        at = f"row {self.first_row:,}"
        if self.first_line is not None:
            at += f" (line {self.first_line:,})"
        more = f" ({self.count:,} rows in all)" if self.count > 1 else ""
        return f"column '{self.column}' {message} in {at}{more}: {self.remedy}"


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


def ingest(path: str | Path, schema: Schema, *, clip: bool = False,
           map_unknown: bool = False) -> Ingested:
    """Reads a CSV (optionally gzipped) or Parquet file and coerces it to the schema.

    Args:
        path: the private input file.
        schema: the declared schema; the only source of bounds and categories.
        clip: clip out-of-bounds values to the declared bounds instead of rejecting them.
        map_unknown: map undeclared categories to the column's declared ``catch_all``
            instead of rejecting them.

    Raises:
        DataError: one line naming the file and every problem found.
    """
    path = Path(path)
    raw, lines = read_raw(path, schema)  # identifiers are already dropped
    raw = safe_harbor.generalize(raw, schema, source=str(path), lines=lines)
    return coerce(raw, schema, source=str(path), lines=lines, clip=clip, map_unknown=map_unknown)


def read_raw(path: Path, schema: Schema) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Reads the file as-is: CSV as strings, Parquet with its own types; the schema's
    identifier columns are dropped as soon as the file is parsed, before anything else.

    Returns:
        The frame and, for CSV, the file line number of each record.
    """
    if not path.is_file():
        raise DataError(f"{path}: cannot read input: no such file")
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = safe_harbor.read_parquet(path, schema)  # identifier columns never read
            lines = None
        else:
            frame, lines = _read_csv(path, schema)
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise unreadable(path, exc) from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    return frame, lines


def unreadable(path: Path, exc: BaseException) -> DataError:
    """The error of a file that cannot be parsed. The parser's words may quote the data: the
    operator's terminal gets them (one line, bounded), the public message only their kind."""
    said = (str(exc).splitlines() or [type(exc).__name__])[0]
    return DataError(f"{path}: cannot read input: {said[:300]}",
                     public=f"{path}: cannot read input ({type(exc).__name__}; the details are "
                            "on the operator's terminal)")


def read_identifiers(path: str | Path, schema: Schema) -> pd.DataFrame:
    """The input's identifier columns alone, as text, for the release check that none of
    their values reaches an output. Nothing else reads them; they never reach a model.

    Raises:
        DataError: the file cannot be read.
    """
    path = Path(path)
    names = [i.name for i in schema.identifiers]
    if not names:
        return pd.DataFrame()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            present = set(pq.read_schema(path).names)
            return pd.read_parquet(path, columns=[n for n in names if n in present]).astype(str)
        fmt = schema.csv
        return pd.read_csv(
            path, sep=fmt.delimiter, header=0 if fmt.header else None,
            names=None if fmt.header else schema.input_names, usecols=lambda c: c in names,
            dtype=str, keep_default_na=False, index_col=False,
            engine="python" if len(fmt.delimiter) > 1 else "c")
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read input: {str(exc).splitlines()[0]}") from None


def _read_csv(path: Path, schema: Schema) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_csv(path, **csv_options(schema))
    return tidy_csv(frame, schema, path, first_line=2 if schema.csv.header else 1)


def csv_options(schema: Schema) -> dict:
    """``pandas.read_csv`` arguments for the schema's CSV layout (every field as text)."""
    fmt = schema.csv
    return {"sep": fmt.delimiter, "header": 0 if fmt.header else None,
            "names": None if fmt.header else schema.input_names, "dtype": str,
            "keep_default_na": False, "skip_blank_lines": False, "index_col": False,
            "engine": "python" if len(fmt.delimiter) > 1 else "c"}


def tidy_csv(frame: pd.DataFrame, schema: Schema, path: Path, first_line: int
             ) -> tuple[pd.DataFrame, np.ndarray]:
    """Records of CSV text whose first is on ``first_line``: identifiers dropped, fields
    stripped, blank and comment lines skipped. Returns them and each one's line number."""
    fmt = schema.csv
    if not fmt.header and frame.shape[1] != len(schema.input_names):
        raise DataError(f"{path}: expected {len(schema.input_names)} fields per line "
                        f"(the schema's columns), found {frame.shape[1]}")
    lines = np.arange(len(frame)) + first_line
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = safe_harbor.drop_identifiers(frame, schema)  # before anything reads them
    stripped = frame.apply(lambda s: s.str.strip())
    keep = ~(stripped.isna() | (stripped == "")).all(axis=1)
    if fmt.comment:
        keep &= ~stripped.iloc[:, 0].fillna("").str.startswith(fmt.comment)
    return stripped[keep].reset_index(drop=True), lines[keep.to_numpy()]


def coerce(raw: pd.DataFrame, schema: Schema, *, source: str, lines: np.ndarray | None = None,
           clip: bool = False, map_unknown: bool = False) -> Ingested:
    """Coerces a raw frame to the schema's columns and dtypes (see ``ingest``)."""
    dropped = check_columns(raw.columns, schema, source)
    if dropped:
        log.warning("%s: ignoring columns not in the schema: %s", source, ", ".join(dropped))
    ctx = _Context(source, schema, lines, clip, map_unknown, [])
    frame = ctx.frame(raw)
    if ctx.problems:
        raise_problems(source, ctx.problems)
    report = IngestReport(source=source, rows=len(frame), dropped_columns=dropped,
                          clipped=ctx.clipped, mapped_to_catch_all=ctx.mapped)
    return Ingested(frame=frame, report=report)


def check_columns(names, schema: Schema, source: str) -> tuple[str, ...]:
    """The input's columns that the schema does not declare.

    Raises:
        DataError: a column the schema declares is missing.
    """
    names = list(names)
    missing = [c.name for c in schema.columns if c.name not in names]
    if missing:
        listed = ", ".join(f"'{m}'" for m in missing)
        said = (f"{source}: column{'s' if len(missing) > 1 else ''} {listed} required by "
                f"{schema.where} {'are' if len(missing) > 1 else 'is'} missing")
        # the header found may be a record (a CSV without its header line): the operator's
        # terminal only
        found = ", ".join(map(str, names))
        raise DataError(f"{said} (found: {found[:200]}{'...' if len(found) > 200 else ''})",
                        public=f"{said} (the columns found are shown on the operator's "
                               "terminal only)")
    return tuple(str(c) for c in names if c not in schema.names)


def raise_problems(source: str, problems: list[Problem]) -> None:
    """Raises the one-line DataError that lists ``problems`` (the first few spelled out)."""
    rest = len(problems) - MAX_LISTED
    more = f"; and {rest} more problem{'s' if rest > 1 else ''}" if rest > 0 else ""
    listed = ["; ".join(p.describe(redact) for p in problems[:MAX_LISTED])
              for redact in (False, True)]
    raise DataError(f"{source}: {listed[0]}{more}", public=f"{source}: {listed[1]}{more}")


def no_values(col: Column, rows: int) -> Problem:
    """The problem of a column that has no value in any of its ``rows``."""
    return Problem(col.name, 0, None, rows, f"has no value in any of its {rows:,} rows",
                   "a column with no values cannot be synthesized; drop it from the schema",
                   public="has no value in any row")


class _Context:
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
        """The schema's columns of ``raw``, coerced; problems are collected, not raised."""
        return pd.DataFrame({c.name: self.column(c, raw[c.name]) for c in self.schema.columns})

    def problem(self, col: Column, mask: np.ndarray, message: str, remedy: str,
                value: str | None = None) -> None:
        idx = np.flatnonzero(mask)
        first = int(idx[0])
        line = int(self.lines[first]) if self.lines is not None else None
        self.problems.append(Problem(col.name, self.offset + first + 1, line, len(idx), message,
                                     remedy, value))

    def column(self, col: Column, values: pd.Series) -> pd.Series:
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
        return out.astype(pandas_dtype(col))

    def _categorical(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        labels = values.astype("string")
        if col.aliases:
            labels = labels.replace(col.alias_map)
        unknown = ~is_null & ~labels.isin(col.categories).to_numpy()
        if unknown.any():
            if self.map_unknown and col.catch_all is not None:
                labels = labels.mask(unknown, col.catch_all)
                self.mapped[col.name] = int(unknown.sum())
            else:
                first = labels[np.flatnonzero(unknown)[0]]
                remedy = (f"pass --map-unknown to map it to '{col.catch_all}'"
                          if col.catch_all is not None else
                          f"fix the data, add it to the categories in {self.schema.where}, "
                          f"or declare a catch_all category there")
                self.problem(col, unknown, "value {value} is not a declared category", remedy,
                             repr(first))
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
                         "use true/false, yes/no or 1/0", repr(values[np.flatnonzero(bad)[0]]))
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
                         repr(values[np.flatnonzero(bad)[0]]))
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
                         "write dates as YYYY-MM-DD", repr(values[np.flatnonzero(bad)[0]]))
        if col.kind == "date":
            stamps = stamps.dt.normalize()
        return stamps

    def _ranged(self, col: Column, values: pd.Series, is_null: np.ndarray) -> pd.Series:
        low, high = _bounds(col)
        show = (lambda v: pd.Timestamp(v).date().isoformat() if col.kind == "date" else
                pd.Timestamp(v).isoformat()) if col.is_temporal else _number
        for side, mask, bound in (("below", (values < low).to_numpy(na_value=False), low),
                                  ("above", (values > high).to_numpy(na_value=False), high)):
            if not mask.any():
                continue
            if self.clip:
                self.clipped[col.name] = self.clipped.get(col.name, 0) + int(mask.sum())
                values = values.mask(mask, bound)
            else:
                word = "minimum" if side == "below" else "maximum"
                value = values[np.flatnonzero(mask)[0]]
                self.problem(col, mask, f"value {{value}} is {side} the schema's {word} "
                             f"{show(bound)}", f"fix the data, widen the bound in "
                             f"{self.schema.where}, or pass --clip", show(value))
        return values


def _bounds(col: Column) -> tuple:
    if col.is_temporal:
        return pd.Timestamp(col.minimum), pd.Timestamp(col.maximum)
    return col.minimum, col.maximum


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}"
