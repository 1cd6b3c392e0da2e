"""Ingest: the only reader of private data. Reads a CSV or Parquet file into memory and
coerces it to the schema, rejecting what does not fit.

Every problem found is collected and reported at once, naming the file, the column and the
first row where it occurs. Rows are numbered from 1 over the data records (a header line,
blank lines and comment lines are not counted); for CSV input the file's line number is
given too.

Whatever the file holds, a failure is a ``DataError`` of one bounded line, never a traceback:
a header (Parquet: its footer) is checked before the body is read (the column limit, each
name once); a stream that is truncated, not what its suffix says, binary (a NUL byte) or a
compression bomb is refused as it is read; an infinity is refused, never clipped; a quoted
value is cut to 60 characters, and the public message quotes nothing from the file.

The parts, each below the next (this package re-exports the names other code uses):

    pipelines.errors   DataError, Problem and the one-line listing of problems (a leaf)
    files              the file's bytes: checked before opening, decompressed and guarded
    readers            CSV and Parquet into raw frames; headers and footers checked first
    pipelines.safe_harbor  identifiers dropped, quasi-identifiers generalised (by readers
                       and by ``generalize`` here)
    coercion           the raw frame coerced to the schema, every problem collected
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import safe_harbor
from pipelines.errors import DataError, Problem, raise_problems
from pipelines.ingest.coercion import (
    Coercion,
    Ingested,
    IngestReport,
    coerce,
    no_values,
)
from pipelines.ingest.files import (
    PARQUET,
    READ_ERRORS,
    check_file,
    is_parquet,
    open_csv,
    unreadable,
)
from pipelines.ingest.readers import (
    check_columns,
    check_header,
    csv_options,
    log_dropped,
    open_parquet,
    read_identifiers,
    read_parquet,
    read_raw,
    tidy_csv,
)
from schemas import Schema

__all__ = [
    "PARQUET", "READ_ERRORS", "Coercion", "DataError", "IngestReport", "Ingested", "Problem",
    "check_columns", "check_file", "check_header", "coerce", "csv_options", "generalize",
    "ingest", "is_parquet", "log_dropped", "no_values", "open_csv", "open_parquet",
    "raise_problems", "read_identifiers", "read_parquet", "read_raw", "tidy_csv",
    "unreadable",
]


def ingest(path: str | Path, schema: Schema, *, clip: bool = False,
           map_unknown: bool = False) -> Ingested:
    """Reads a CSV (optionally compressed: .gz, .bz2, .xz or a .zip of one file) or Parquet
    file and coerces it to the schema.

    Args:
        path: the private input file.
        schema: the declared schema; the only source of bounds and categories.
        clip: clip out-of-bounds values to the declared bounds instead of rejecting them
            (never an infinity: that is no measurement, and is refused).
        map_unknown: map undeclared categories to the column's declared ``catch_all``
            instead of rejecting them.

    Raises:
        DataError: one line naming the file and every problem found; a file that cannot be
            read, whatever the reason, is one too.
    """
    path = Path(path)
    raw, lines = read_raw(path, schema)  # identifiers are already dropped
    raw = generalize(raw, schema, source=str(path), lines=lines)
    return coerce(raw, schema, source=str(path), lines=lines, clip=clip, map_unknown=map_unknown)


def generalize(raw: pd.DataFrame, schema: Schema, *, source: str,
               lines: np.ndarray | None = None) -> pd.DataFrame:
    """``safe_harbor.generalize``; a rule that fails on a value it cannot read (not one it
    reports itself) is a DataError naming the rules' columns, not a traceback."""
    try:
        return safe_harbor.generalize(raw, schema, source=source, lines=lines)
    except DataError:
        raise
    except (ValueError, TypeError, ArithmeticError, UnicodeError) as exc:
        names = ", ".join(f"'{c.input_name}'" for c in schema.columns if c.generalize)
        raise DataError(f"{source}: the schema's generalize rules (column(s) {names}) cannot "
                        f"read the input's values ({type(exc).__name__}): fix the data"
                        ) from None
