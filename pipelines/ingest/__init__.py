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
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import lzma
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import safe_harbor
from pipelines.errors import DataError, Problem, cut, quote, raise_problems
from schemas import Column, Schema, pandas_dtype
from schemas.limits import LimitError, Limits, bounded, limits, variable

log = logging.getLogger(__name__)

TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})
EXACT = 2**53  # whole numbers beyond this are not held exactly by the float64 they pass through
PARQUET = (".parquet", ".pq")
# the compressions pandas would infer from a CSV's suffix, read here as a stream of bytes
DECOMPRESS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
UNSUPPORTED = (".zst", ".zstd", ".tar", ".tgz", ".lz4", ".7z", ".rar", ".br", ".snappy")
# a compressed input may decode to this much before its ratio is checked: small files are
# never bombs, and the check must not refuse a small but repetitive one
DECODED_FLOOR = 64 * 2**20
HEADER_FLOOR = 4 * 2**20  # bytes a header line may have whatever the column limit
# magic numbers of files that are not CSV text, whatever their name says (none can start
# UTF-8 text; Parquet's "PAR1" can, and is checked at both ends, by _check_magic)
MAGIC = ((b"\x1f\x8b", "gzip-compressed: name it .gz"),
         (b"\xfd7zXZ", "xz-compressed: name it .xz"),
         (b"PK\x03\x04", "a zip archive: name it .zip"),
         (b"\xff\xfe", "UTF-16 text: save it as UTF-8"),
         (b"\xfe\xff", "UTF-16 text: save it as UTF-8"))
# what reading a malformed file can raise, from pandas, pyarrow and the decompressors
READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError,
               UnicodeError, ImportError, NotImplementedError, zipfile.BadZipFile,
               lzma.LZMAError, zlib.error, pa.ArrowException,
               pd.errors.ParserError, pd.errors.EmptyDataError)


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
            frame = safe_harbor.read_parquet(path, schema)  # identifier columns never read
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


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is read as Parquet (by its suffix), not as CSV."""
    return path.suffix.lower() in PARQUET


def check_file(path: Path) -> None:
    """The checks made before a file is opened: it exists, is a regular file (a directory, a
    FIFO that would block the run, or a device is refused) and is not empty.

    Raises:
        DataError: naming the file and which check failed.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read input: no such file") from None
    except (OSError, ValueError) as exc:  # a name too long, a loop of links, a NUL in it
        raise unreadable(path, exc) from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: cannot read input: it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: cannot read input: not a regular file (a FIFO, a socket or "
                        "a device): copy the data into a file")
    if info.st_size == 0:
        raise DataError(f"{path}: the file is empty")


def unreadable(path: Path, exc: BaseException) -> DataError:
    """The error of a file that cannot be parsed. The parser's words may quote the data: the
    operator's terminal gets them (one line, bounded), the public message only their kind."""
    said = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    kind = _failure(path, exc)
    if kind is not None:
        return DataError(f"{path}: cannot read input: {kind} ({type(exc).__name__}: {said})",
                         public=f"{path}: cannot read input: {kind}")
    return DataError(f"{path}: cannot read input: {said}",
                     public=f"{path}: cannot read input ({type(exc).__name__}; the details are "
                            "on the operator's terminal)")


def _failure(path: Path, exc: BaseException) -> str | None:
    """What a reading failure means, in words that quote nothing from the file (None where
    the parser's own words must do)."""
    suffix = path.suffix.lower()
    if isinstance(exc, MemoryError):
        return "it does not fit in memory"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text: save it as UTF-8"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "it holds no header and no data rows"
    corrupt = isinstance(exc, (EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile,
                               pa.ArrowException)) or (isinstance(exc, OSError)
                                                       and exc.errno is None)
    if corrupt and (suffix in DECOMPRESS or suffix == ".zip"):
        return f"not a readable {suffix} file (truncated or corrupt?)"
    if corrupt and suffix in PARQUET:
        return "not a Parquet file pyarrow can read (truncated or corrupt?)"
    if isinstance(exc, pd.errors.ParserError):
        return ("malformed CSV (a record with more fields than the header, or a quote left "
                "open)")
    return None


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
    allowed = _limits().columns
    first = {**csv_options(schema), "header": None, "names": None, "nrows": 1}
    with open_csv(path, cap=max(HEADER_FLOOR, allowed * 1024)) as stream:
        record = pd.read_csv(stream, **first)
    fields = (["" if pd.isna(v) else str(v).strip() for v in record.iloc[0]] if len(record)
              else [str(c).strip() for c in record.columns])
    if schema.csv.header:
        check_columns(fields, schema, str(path))
    else:  # a record, not names: only its width is checked here
        _check_width(len(fields), str(path))


@contextlib.contextmanager
def open_csv(path: Path, cap: int | None = None) -> Iterator[BinaryIO]:
    """The bytes of a CSV file, decompressed where its suffix says so (as pandas would infer
    it: .gz, .bz2, .xz, .zip of one file), checked as they are read (``_Guard``): no NUL
    byte, no more than the compression limit allows, at most ``cap`` bytes if given.

    Raises:
        DataError: a suffix of a compression that is not supported, a file that is plainly
            not CSV text (a Parquet file, compressed data under a plain name, UTF-16), or
            any of the guard's checks.
    """
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED:
        raise DataError(f"{path}: cannot read input: {suffix} compression is not supported: "
                        "decompress the file, or compress it with gzip (.gz)")
    stored = path.stat().st_size
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        if suffix in DECOMPRESS:
            stream = stack.enter_context(DECOMPRESS[suffix](raw))
        elif suffix == ".zip":
            archive = stack.enter_context(zipfile.ZipFile(raw))
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise DataError(f"{path}: cannot read input: a .zip input must hold exactly "
                                f"one file, this one holds {len(members)}")
            stream = stack.enter_context(archive.open(members[0]))
        else:
            _check_magic(path, raw)
            stream, stored = raw, None  # not compressed: no ratio to check
        yield io.BufferedReader(_Guard(path, stream, stored, cap), 1 << 20)


def _check_magic(path: Path, raw: BinaryIO) -> None:
    """Refuses a file under a CSV's name whose first bytes say it is something else."""
    head = raw.read(16)
    raw.seek(0)
    if head.startswith(b"PAR1"):
        raw.seek(-4, io.SEEK_END)
        tail = raw.read(4)
        raw.seek(0)
        if tail == b"PAR1":
            raise DataError(f"{path}: cannot read input: it is a Parquet file: name it "
                            ".parquet")
    for magic, what in MAGIC:
        if head.startswith(magic):
            raise DataError(f"{path}: cannot read input: it is {what}")


class _Guard(io.RawIOBase):
    """A CSV's bytes (decompressed) as pandas reads them, checked on the way at no cost
    worth naming: no NUL byte (pandas would silently cut the field at it: the file is
    binary, or corrupt), a compressed file decoding to at most ``limits().compression``
    times its stored size (past ``DECODED_FLOOR``: a bomb is refused before it fills
    memory), and at most ``cap`` bytes where one is given (a header)."""

    def __init__(self, path: Path, stream: BinaryIO, stored: int | None, cap: int | None):
        super().__init__()
        self.path, self.stream, self.cap = path, stream, cap
        self.most = None if stored is None else max(DECODED_FLOOR,
                                                     _limits().compression * stored)
        self.done = 0  # bytes read so far
        self.line = 1  # line of the next byte

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        nul = data.find(b"\0")
        if nul >= 0:
            line = self.line + data.count(b"\n", 0, nul)
            said = "it holds a NUL byte: it is not CSV text (a binary or corrupt file?)"
            raise DataError(f"{self.path}: cannot read input: {said}, first on line {line:,}",
                            public=f"{self.path}: cannot read input: {said}")
        self.line += data.count(b"\n")
        self.done += len(data)
        if self.cap is not None and self.done > self.cap:
            raise DataError(f"{self.path}: cannot read input: its first line is longer than "
                            f"{self.cap:,} bytes: not a header of at most "
                            f"{_limits().columns:,} columns (raise {variable('columns')} if "
                            "this is meant)")
        if self.most is not None and self.done > self.most:
            raise DataError(f"{self.path}: cannot read input: it decompresses to more than "
                            f"{_limits().compression:,} times its size (a compression bomb?): "
                            f"raise {variable('compression')} if this is meant")
        buffer[:len(data)] = data
        return len(data)


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
    if decoded > max(DECODED_FLOOR, _limits().compression * path.stat().st_size):
        raise DataError(f"{path}: cannot read input: its footer declares more than "
                        f"{_limits().compression:,} times its size of data (a compression "
                        f"bomb?): raise {variable('compression')} if this is meant")
    return file


def _limits() -> Limits:
    """The limits in force; a malformed SYNTH_MAX_* variable is a DataError here, one line
    like every other refusal of an input."""
    try:
        return limits()
    except LimitError as exc:
        raise DataError(str(exc)) from None


def _check_width(count: int, source: str) -> None:
    """Refuses a header (or first record) of more than ``limits().columns`` fields."""
    try:
        _limits().check("columns", count, f"{source}: its columns")
    except LimitError as exc:
        raise DataError(str(exc)) from None


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


def log_dropped(source: str, dropped: tuple[str, ...]) -> None:
    """Logs the input's columns that the schema does not declare, in one bounded line."""
    if dropped:
        shown = ", ".join(cut(d) for d in dropped[:20])
        more = f" and {len(dropped) - 20:,} more" if len(dropped) > 20 else ""
        log.warning("%s", bounded(f"{source}: ignoring columns not in the schema: "
                                  f"{shown}{more}"))


def coerce(raw: pd.DataFrame, schema: Schema, *, source: str, lines: np.ndarray | None = None,
           clip: bool = False, map_unknown: bool = False) -> Ingested:
    """Coerces a raw frame to the schema's columns and dtypes (see ``ingest``)."""
    dropped = check_columns(raw.columns, schema, source)
    log_dropped(source, dropped)
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


def no_values(col: Column, rows: int) -> Problem:
    """The problem of a column that has no value in any of its ``rows``."""
    return Problem(col.name, 0, None, rows, f"has no value in any of its {rows:,} rows",
                   "a column with no values cannot be synthesized; drop it from the schema",
                   public="has no value in any row", label=col.input_name)


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
