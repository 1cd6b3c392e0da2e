"""CSV and Parquet files read into raw frames, as they are, before any coercion.

A CSV's header (a Parquet file's footer) is checked before its body is read: the column
limit, each of the schema's columns present, no name twice (``check_columns``). The schema's
identifier columns are dropped as soon as a CSV is parsed, and never read from a Parquet
file. CSV fields are read as text, with each record's line in the file.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipelines import safe_harbor
from pipelines.errors import DataError, cut
from pipelines.ingest.files import (
    HEADER_FLOOR,
    READ_ERRORS,
    check_file,
    input_limits,
    is_parquet,
    most_decoded,
    open_csv,
    unreadable,
)
from schemas import Schema
from schemas.limits import LimitError, bounded, variable

log = logging.getLogger(__name__)


def read_raw(path: Path, schema: Schema) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Reads the file as-is: CSV as strings, Parquet with its own types; the schema's
    identifier columns are dropped as soon as the file is parsed, before anything else.
    The header (Parquet: the footer) is checked before the body is read: the column limit,
    each required column present, no name twice.

    Returns:
        The frame and, for CSV, the file line number of each record.
    """
    check_file(path)
    try:
        if is_parquet(path):
            open_parquet(path, schema)  # the footer's checks, before any row is read
            frame = read_parquet(path, schema)  # identifier columns never read
            lines = None
        else:
            frame, lines = _read_csv(path, schema)
    except DataError:
        raise
    except (*READ_ERRORS, MemoryError) as exc:
        raise unreadable(path, exc) from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    return frame, lines


def read_parquet(path, schema: Schema) -> pd.DataFrame:
    """A Parquet file's columns but the schema's identifiers: those are not even read."""
    drop = {i.name for i in schema.identifiers}
    names = [n for n in pq.ParquetFile(path).schema_arrow.names if n not in drop]
    return pd.read_parquet(path, columns=names)


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
    check_file(path)
    try:
        if is_parquet(path):
            present = set(open_parquet(path, schema).schema_arrow.names)
            return pd.read_parquet(path, columns=[n for n in names if n in present]).astype(str)
        fmt = schema.csv
        with open_csv(path) as stream:
            return pd.read_csv(
                stream, sep=fmt.delimiter, header=0 if fmt.header else None,
                names=None if fmt.header else schema.input_names,
                usecols=lambda c: str(c).strip() in names, dtype=str, keep_default_na=False,
                index_col=False, engine="python" if len(fmt.delimiter) > 1 else "c"
            ).rename(columns=lambda c: str(c).strip())
    except DataError:
        raise
    except (*READ_ERRORS, MemoryError) as exc:
        raise unreadable(path, exc) from None


def _read_csv(path: Path, schema: Schema) -> tuple[pd.DataFrame, np.ndarray]:
    check_header(path, schema)
    with open_csv(path) as stream:
        frame = pd.read_csv(stream, **csv_options(schema))
    return tidy_csv(frame, schema, path, first_line=2 if schema.csv.header else 1)


def csv_options(schema: Schema) -> dict:
    """``pandas.read_csv`` arguments for the schema's CSV layout (every field as text)."""
    fmt = schema.csv
    return {"sep": fmt.delimiter, "header": 0 if fmt.header else None,
            "names": None if fmt.header else schema.input_names, "dtype": str,
            "keep_default_na": False, "skip_blank_lines": False, "index_col": False,
            "engine": "python" if len(fmt.delimiter) > 1 else "c"}


def check_header(path: Path, schema: Schema) -> None:
    """Reads a CSV's first record alone, before its body: at most ``limits().columns``
    fields, and where it is the header, each of the schema's columns in it, each name once
    (see ``check_columns``). A first line of more than 1 KiB per allowed column is refused
    unparsed: it cannot be a header.

    Raises:
        DataError: naming the file and the problem.
    """
    allowed = input_limits().columns
    cap = max(HEADER_FLOOR, allowed * 1024)
    width = _first_record_width(path, schema, cap)
    if width is not None:  # before pandas builds a frame of that many columns
        _check_width(width, str(path))
    first = {**csv_options(schema), "header": None, "names": None, "nrows": 1}
    with open_csv(path, cap=cap) as stream:
        record = pd.read_csv(stream, **first)
    fields = (["" if pd.isna(v) else str(v).strip() for v in record.iloc[0]] if len(record)
              else [str(c).strip() for c in record.columns])
    if schema.csv.header:
        check_columns(fields, schema, str(path))
    else:  # a record, not names: only its width is checked here
        _check_width(len(fields), str(path))


def _first_record_width(path: Path, schema: Schema, cap: int) -> int | None:
    """The number of fields of a CSV's first record, counted by the csv module without
    building a frame (pandas takes seconds to make one of 100,000 columns only for it to be
    refused); None where the csv module cannot say (a delimiter of several characters, a
    record it cannot parse): pandas then decides, as before."""
    if len(schema.csv.delimiter) != 1:
        return None
    with open_csv(path, cap=cap) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
        try:
            return len(next(csv.reader(text, delimiter=schema.csv.delimiter), []))
        except csv.Error:
            return None


def tidy_csv(frame: pd.DataFrame, schema: Schema, path: Path, first_line: int
             ) -> tuple[pd.DataFrame, np.ndarray]:
    """Records of CSV text whose first is on ``first_line``: identifiers dropped, fields
    stripped, blank and comment lines skipped. Returns them and each one's line number."""
    fmt = schema.csv
    if not fmt.header and frame.shape[1] != len(schema.input_names):
        raise DataError(f"{path}: expected {len(schema.input_names)} fields per line "
                        f"(the schema's columns), found {frame.shape[1]}")
    lines: np.ndarray = np.arange(len(frame)) + first_line
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = safe_harbor.drop_identifiers(frame, schema)  # before anything reads them
    stripped = frame.apply(lambda s: s.str.strip())
    keep = ~(stripped.isna() | (stripped == "")).all(axis=1)
    if fmt.comment:
        keep &= ~stripped.iloc[:, 0].fillna("").str.startswith(fmt.comment)
    return stripped[keep].reset_index(drop=True), lines[keep.to_numpy()]


def open_parquet(path: Path, schema: Schema, **options) -> pq.ParquetFile:
    """A Parquet file opened on its footer alone, checked before any row is read: its
    columns as ``check_columns`` checks a header, row groups that add up to the rows it
    declares, and a declared decoded size within the compression limit.

    Raises:
        DataError: naming the file and the problem; pyarrow's errors for a footer that
            cannot be read (``read_raw`` words them).
    """
    file = pq.ParquetFile(path, **options)
    meta = file.metadata
    check_columns(file.schema_arrow.names, schema, str(path))
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    if sum(g.num_rows for g in groups) != meta.num_rows:
        raise DataError(f"{path}: cannot read input: its footer is inconsistent (its row "
                        "groups do not add up to the rows it declares): a corrupt file")
    decoded = sum(g.total_byte_size for g in groups)
    if decoded > most_decoded(path.stat().st_size):
        raise DataError(f"{path}: cannot read input: its footer declares more than "
                        f"{input_limits().compression:,} times its size of data (a compression "
                        f"bomb?): raise {variable('compression')} if this is meant")
    return file


def check_columns(names, schema: Schema, source: str) -> tuple[str, ...]:
    """The input's columns that the schema does not declare.

    Raises:
        DataError: more columns than ``limits().columns``; a column the schema declares is
            missing; a column named twice (which copy would be read is pandas' guess, and an
            identifier's second copy would escape the release check).
    """
    names = [str(n) for n in names]
    _check_width(len(names), source)
    missing = [c.input_name for c in schema.columns if c.input_name not in names]
    if missing:
        listed = ", ".join(f"'{m}'" for m in missing)
        said = (f"{source}: column{'s' if len(missing) > 1 else ''} {listed} required by "
                f"{schema.where} {'are' if len(missing) > 1 else 'is'} missing")
        # the header found may be a record (a CSV without its header line): the operator's
        # terminal only
        found = ", ".join(cut(n) for n in names[:20])
        raise DataError(f"{said} (found: {found[:200]}{'...' if len(found) > 200 else ''})"
                        f"{_delimiter_hint(names, schema)}",
                        public=f"{said} (the columns found are shown on the operator's "
                               "terminal only)")
    counts = Counter(n for n in names if n)
    twice = [n for n in counts if counts[n] > 1]
    if twice:
        # a name the schema declares is no value from the file; another may be (a record)
        said = (f"column '{cut(twice[0])}' appears {counts[twice[0]]} times in the header"
                if twice[0] in schema.input_names else
                "a column not in the schema appears more than once in the header")
        more = f" (and {len(twice) - 1} more name(s) repeated)" if len(twice) > 1 else ""
        fix = ": which copy to read cannot be told; rename or drop the copies"
        raise DataError(f"{source}: column '{cut(twice[0])}' appears {counts[twice[0]]} times "
                        f"in the header{more}{fix}", public=f"{source}: {said}{more}{fix}")
    return tuple(c for c in names if c not in {d.input_name for d in schema.columns})


def _delimiter_hint(names: list[str], schema: Schema) -> str:
    """A hint where a header read as one column holds another delimiter than the schema's."""
    if len(names) != 1:
        return ""
    found = [d for d in (";", "\t", "|", ",") if d != schema.csv.delimiter and d in names[0]]
    return (f": is it delimited by {found[0]!r}? The schema's csv delimiter is "
            f"{schema.csv.delimiter!r}") if found else ""


def _check_width(count: int, source: str) -> None:
    """Refuses a header (or first record) of more than ``limits().columns`` fields."""
    try:
        input_limits().check("columns", count, f"{source}: its columns")
    except LimitError as exc:
        raise DataError(str(exc)) from None


def log_dropped(source: str, dropped: tuple[str, ...]) -> None:
    """Logs the input's columns that the schema does not declare, in one bounded line."""
    if dropped:
        shown = ", ".join(cut(d) for d in dropped[:20])
        more = f" and {len(dropped) - 20:,} more" if len(dropped) > 20 else ""
        log.warning("%s", bounded(f"{source}: ignoring columns not in the schema: "
                                  f"{shown}{more}"))
