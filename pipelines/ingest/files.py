"""The bytes of an input file, checked before and as they are read.

Before a file is opened: it exists, is a regular file and is not empty (``check_file``). A
CSV's bytes are decompressed where its suffix says so and guarded as pandas reads them
(``open_csv``): no NUL byte, no compression bomb, a header of bounded length. A failure to
read is worded for the operator's terminal and, without the parser's words, for the public
message (``unreadable``).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

import pandas as pd
import pyarrow as pa

from pipelines.errors import DataError
from schemas.limits import LimitError, Limits, limits, variable

PARQUET = (".parquet", ".pq")
# what a CSV's bytes are read from: a file, a decompressing stream or a .zip member
ByteStream = IO[bytes] | io.BufferedIOBase
# the compressions pandas would infer from a CSV's suffix, read here as a stream of bytes
DECOMPRESS: dict[str, Callable[[BinaryIO], io.BufferedIOBase]] = {
    ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
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
    stored: int | None = path.stat().st_size
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        if suffix in DECOMPRESS:
            stream: ByteStream = stack.enter_context(DECOMPRESS[suffix](raw))
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

    def __init__(self, path: Path, stream: ByteStream, stored: int | None,
                 cap: int | None):
        super().__init__()
        self.path, self.stream, self.cap = path, stream, cap
        self.most = None if stored is None else most_decoded(stored)
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
                            f"{input_limits().columns:,} columns (raise {variable('columns')} if "
                            "this is meant)")
        if self.most is not None and self.done > self.most:
            raise DataError(f"{self.path}: cannot read input: it decompresses to more than "
                            f"{input_limits().compression:,} times its size (a compression bomb?): "
                            f"raise {variable('compression')} if this is meant")
        buffer[:len(data)] = data
        return len(data)


def most_decoded(stored: int) -> int:
    """The bytes a compressed input of ``stored`` bytes may decode to: ``limits().compression``
    times its size, never less than ``DECODED_FLOOR``."""
    return max(DECODED_FLOOR, input_limits().compression * stored)


def input_limits() -> Limits:
    """The limits in force; a malformed SYNTH_MAX_* variable is a DataError here, one line
    like every other refusal of an input."""
    try:
        return limits()
    except LimitError as exc:
        raise DataError(str(exc)) from None
