"""How an image input is refused: violations collected and listed in one line, or the input
refused outright, before anything is decoded.

``Problems`` groups violations by kind (the first occurrence, with its values, and a count)
and raises one ``DataError`` naming them all; ``refuse`` and the refusals built on it stop at
the first thing that makes the input hostile (past a limit, a bomb). Each message has a
public copy without anything computed from the private images.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, NoReturn

from pipelines.errors import DataError
from schemas.image import ImageSchema
from schemas.limits import LimitError, Limits, bounded, limits, variable

# A member or file that decodes to at most this many bytes is not held to the compression
# limit: it decodes in milliseconds, and small arrays (sorted labels) compress a thousandfold.
SMALL = 16 * 2**20
# What zipfile, zlib, gzip and numpy's header parser raise on hostile bytes (DataError, a
# ValueError, is re-raised before these are caught).
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, RuntimeError, NotImplementedError, OverflowError,
    struct.error, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile)
try:
    import lzma

    READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


class Problems:
    """Violations grouped by kind: the first occurrence, with its values, and a count.

    The error line names the source and the schema once; each problem names its file
    relative to the source, and drops its remedy where the line has no room for it (the last
    problem keeps its remedy longest): every problem fits in the one bounded line.
    """

    def __init__(self, schema: ImageSchema, source: Path):
        self.schema, self.source = schema, source
        self.kinds: dict[str, list[Any]] = {}  # kind -> [what, public, fix, count]

    def name(self, path: Path) -> str:
        """How a problem names ``path``: relative to the source (or the folder holding it)."""
        if path == self.source:
            return path.name
        for base in (self.source, self.source.parent):
            if path.is_relative_to(base):
                return str(path.relative_to(base))
        return str(path)

    def add(self, kind: str, what: str, fix: str, public: str | None = None) -> None:
        """Records a violation: ``what`` may quote the data; ``public`` (default ``what``)
        may not (no value, index or count read from the private images)."""
        first = self.kinds.setdefault(kind, [what, what if public is None else public, fix, 0])
        first[3] += 1

    def raise_any(self) -> None:
        if not self.kinds:
            return
        schema = Path(self.schema.path).name if self.schema.path else self.schema.where
        head = f"{self.source} does not fit {schema}: "
        full = [(what, fix, f" ({count:,} in all)" if count > 1 else "")
                for what, _, fix, count in self.kinds.values()]
        public = [(redacted, fix, "")  # no count: it is computed from the private images
                  for _, redacted, fix, _ in self.kinds.values()]
        raise DataError(_fitted(head, full), _fitted(head, public))


def _fitted(head: str, parts: list[tuple[str, str, str]]) -> str:
    """``head`` and the (what, fix, more) parts as one line: with every fix if it fits the
    line limit, else with the last one's only, else with none (``DataError`` bounds it)."""
    try:
        chars = limits().error_chars
    except LimitError:
        chars = Limits.error_chars
    for keep in (len(parts), 1, 0):
        line = head + "; ".join(
            f"{what}: {fix}{more}" if i >= len(parts) - keep else f"{what}{more}"
            for i, (what, fix, more) in enumerate(parts))
        if len(line) <= chars:
            break
    return line


def refuse(message: str, public: str | None = None) -> NoReturn:
    """Raises the one-line DataError of an input refused outright; ``public`` is the message
    without anything computed from the private images (counts, sizes), default ``message``."""
    raise DataError(bounded(message), bounded(message if public is None else public))


def image_limits() -> Limits:
    """The limits in force; a limit variable that is not a positive integer is a DataError."""
    try:
        return limits()
    except LimitError as exc:
        refuse(str(exc))


def too_many(source: Path, lim: Limits) -> NoReturn:
    refuse(f"{source}: holds more than {lim.images:,} images, the limit: give a smaller set, "
            f"or raise {variable('images')} if this is meant")


def too_big(source: Path, declared: int, lim: Limits, what: str = "decode to") -> NoReturn:
    tail = (f"more than the limit of {lim.image_bytes:,} bytes: give a smaller set, or raise "
            f"{variable('image_bytes')} if this is meant")
    refuse(f"{source}: its images {what} {declared:,} bytes, {tail}",
            f"{source}: its images {what} {tail}")


def expands(source: Path, member: str, ratio: float, lim: Limits) -> NoReturn:
    fix = (f"a zip or gzip bomb? Store the data uncompressed, or raise "
           f"{variable('compression')} if this is meant")
    refuse(f"{source}: {member} expands {ratio:,.0f}-fold when decompressed, more than the "
            f"limit of {lim.compression:,}: {fix}",
            f"{source}: {member} expands more than {lim.compression:,}-fold when "
            f"decompressed: {fix}")
