"""Batched ingest: a large CSV or Parquet input read a batch at a time and encoded straight
into compact integer codes, so memory stays near one batch plus the codes.

Each batch goes through the same steps as ``pipelines.ingest.ingest`` (identifiers dropped
as the file is read, Safe Harbor rules, then the per-column checks of ``coerce``), with its
rows numbered from where the batch starts in the file. Problems are gathered over every batch
and reported as one DataError worded exactly as the unbatched path words it (first row, first
value, count in all). A checked batch is encoded by ``synth.encoding.TableEncoder`` and its
codes written into one array per column, of the smallest unsigned dtype that holds the
column's states (uint8 for at most 256). For Parquet the row count comes from the file's
metadata and the arrays are allocated once; for CSV the batches' codes are joined at the end.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipelines.errors import DataError, Problem, raise_problems
from pipelines.ingest import generalize
from pipelines.ingest.coercion import Coercion, IngestReport, no_values
from pipelines.ingest.files import (
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
    tidy_csv,
)
from schemas import Schema
from synth.encoding import DEFAULT_MAX_BINS, TableEncoder

BATCH_ROWS = 262_144


@dataclass(frozen=True)
class Encoded:
    """A checked input as codes: one array per schema column, in schema order."""

    codes: dict[str, np.ndarray]  # each of code_dtype(its block's size)
    encoder: TableEncoder
    report: IngestReport

    def matrix(self) -> np.ndarray:
        """Codes as ``TableEncoder.encode`` gives them: (rows, columns) int64."""
        return np.stack([c.astype("int64") for c in self.codes.values()], axis=1)


def code_dtype(states: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds codes 0 .. states - 1."""
    return np.min_scalar_type(max(states - 1, 0))


def ingest_encoded(path: str | Path, schema: Schema, *, clip: bool = False,
                   map_unknown: bool = False, batch_rows: int = BATCH_ROWS,
                   max_bins: int = DEFAULT_MAX_BINS, encoder: TableEncoder | None = None,
                   visit: Callable[[pd.DataFrame, int], None] | None = None) -> Encoded:
    """Reads, checks and encodes ``path`` in batches of ``batch_rows`` rows.

    Same arguments and errors as ``pipelines.ingest.ingest``; the codes equal
    ``TableEncoder(schema, max_bins).encode(ingest(path, schema).frame)`` (or ``encoder``'s).
    ``visit(frame, first_row)`` sees each checked batch while the input is not yet known to
    be rejected (to sample rows, say); its rows are rows ``first_row``... of the file.

    Raises:
        DataError: one line naming the file and every problem found, over all batches.
    """
    path = Path(path)
    source = str(path)
    check_file(path)
    encoder = encoder or TableEncoder(schema, max_bins=max_bins)
    dtypes = [code_dtype(size) for size in encoder.sizes]
    file = _open_parquet(path, schema) if is_parquet(path) else None
    parquet = file is not None
    total = file.metadata.num_rows if file is not None else None  # None: not Parquet
    # per column: an array of the footer's rows (Parquet), else a list of each batch's codes
    out: list[Any] = [[] for _ in dtypes] if total is None else _allocate(path, total, dtypes)
    problems: list[Problem] = []
    clipped: dict[str, int] = {}
    mapped: dict[str, int] = {}
    null_rows = {c.name: 0 for c in schema.columns}  # rows of batches with no value
    dropped: tuple[str, ...] = ()
    rows = 0
    for raw, lines in _batches(path, schema, batch_rows, file):
        if rows == 0:
            dropped = check_columns(raw.columns, schema, source)
            log_dropped(source, dropped)
        if total is not None and rows + len(raw) > total:
            raise _miscounted(path)
        raw = _generalize(raw, schema, source, lines, rows)
        ctx = Coercion(source, schema, lines, clip, map_unknown, [], offset=rows, batch=True)
        frame = ctx.frame(raw)
        problems += ctx.problems
        for name in ctx.all_null:
            null_rows[name] += len(frame)
        for counts, more in ((clipped, ctx.clipped), (mapped, ctx.mapped)):
            for name, n in more.items():
                counts[name] = counts.get(name, 0) + n
        if not problems:  # once the input is known to be rejected, only check the rest
            if visit is not None:
                visit(frame, rows)
            codes = encoder.encode(frame)
            for i, dtype in enumerate(dtypes):
                if parquet:
                    out[i][rows:rows + len(frame)] = codes[:, i]
                else:
                    out[i].append(codes[:, i].astype(dtype))
        rows += len(frame)
    if rows == 0:
        raise DataError(f"{path}: the file has no data rows")
    if parquet and rows != total:  # the codes' tail would be unset memory
        raise _miscounted(path)
    problems = _merge(problems, schema, null_rows, rows)
    if problems:
        raise_problems(source, problems)
    if not parquet:
        out = [np.concatenate(parts).astype(dtype, copy=False)
               for parts, dtype in zip(out, dtypes)]
    report = IngestReport(source=source, rows=rows, dropped_columns=dropped, clipped=clipped,
                          mapped_to_catch_all=mapped)
    return Encoded(dict(zip(schema.names, out)), encoder, report)


def _open_parquet(path: Path, schema: Schema) -> pq.ParquetFile:
    """The Parquet input opened on its footer, checked as ``read_raw`` checks it."""
    try:
        # no pre-buffering: it would hold every column chunk of a row group, read ahead
        return open_parquet(path, schema, pre_buffer=False, buffer_size=1 << 20)
    except DataError:
        raise
    except (*READ_ERRORS, MemoryError) as exc:
        raise unreadable(path, exc) from None


def _allocate(path: Path, total: int, dtypes: list[np.dtype]) -> list[np.ndarray]:
    """The code arrays of the ``total`` rows a footer declares; a count no memory holds (a
    hostile footer's, say) is a DataError, not a MemoryError."""
    try:
        return [np.empty(total, dtype) for dtype in dtypes]
    except (MemoryError, ValueError):
        raise DataError(f"{path}: cannot read input: its footer declares {total:,} rows, more "
                        "than memory holds their codes for",
                        public=f"{path}: cannot read input: its footer declares more rows "
                               "than memory holds their codes for") from None


def _miscounted(path: Path) -> DataError:
    """The error of a Parquet file whose row groups hold other rows than its footer says."""
    return DataError(f"{path}: cannot read input: it holds a different number of rows than "
                     "its footer declares: a corrupt file")


def _batches(path: Path, schema: Schema, batch_rows: int, file: pq.ParquetFile | None
             ) -> Iterator[tuple[pd.DataFrame, np.ndarray | None]]:
    """The input's records a batch at a time, as ``read_raw`` reads them, with CSV lines:
    from ``file`` where the input is Parquet, opened by ``_open_parquet``."""
    try:
        if file is not None:
            drop = {i.name for i in schema.identifiers}
            names = [n for n in file.schema_arrow.names if n not in drop]  # never read
            for batch in file.iter_batches(batch_size=batch_rows, columns=names):
                yield batch.to_pandas(), None
            return
        check_header(path, schema)  # before the body: width, names present, each once
        first = 2 if schema.csv.header else 1
        with open_csv(path) as stream, pd.read_csv(stream, chunksize=batch_rows,
                                                   **csv_options(schema)) as chunks:
            for chunk in chunks:
                frame, lines = tidy_csv(chunk, schema, path, first)
                first += len(chunk)
                if len(frame):
                    yield frame, lines
    except DataError:
        raise
    except (*READ_ERRORS, MemoryError) as exc:
        raise unreadable(path, exc) from None


ROW = re.compile(r"(?<= in row )(\d[\d,]*)")


def _generalize(raw: pd.DataFrame, schema: Schema, source: str, lines, offset: int):
    """``safe_harbor.generalize`` on one batch; a rejection names rows of the whole file.
    (Unlike the per-column checks it stops at the first batch with a problem, and the
    counts it gives are of that batch.)"""
    try:
        return generalize(raw, schema, source=source, lines=lines)
    except DataError as exc:
        def shift(text: str) -> str:
            return ROW.sub(lambda m: f"{int(m.group(1).replace(',', '')) + offset:,}", text)
        raise DataError(shift(str(exc)), public=shift(exc.public)) from None


_RANK = (("has no value", 0), ("is missing", 1), ("whole number", 3), ("is below", 4),
         ("is above", 5))


def _merge(problems: list[Problem], schema: Schema, null_rows: dict[str, int], rows: int
           ) -> list[Problem]:
    """The batches' problems as the whole input's: one per column and kind, at its first
    row, counting every batch, in the order the unbatched checks find them."""
    merged: dict[tuple, Problem] = {}
    for p in problems:
        key = (p.column, p.message, p.remedy)
        seen = merged.get(key)
        merged[key] = (p if seen is None else
                       dataclasses.replace(seen, count=seen.count + p.count))
    for col in schema.columns:  # no value in any batch: a problem of the whole column
        if null_rows[col.name] == rows:
            merged = {k: p for k, p in merged.items() if p.column != col.name}
            merged[("", col.name)] = no_values(col, rows)

    def order(p: Problem) -> tuple[int, int]:
        rank = next((r for word, r in _RANK if word in p.message), 2)
        return schema.names.index(p.column), rank

    return sorted(merged.values(), key=order)
