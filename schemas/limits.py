"""Limits on what the tool accepts: they stop absurd requests (a trillion rows, a PNG that
decodes to 10 GB, a schema of a million nested lists) with one line, before anything is read
or spent. Each is generous for real work and can be raised by its environment variable.

Checked where the request is first known: the schema's size and nesting when it is parsed
(``schemas.safe_yaml``), rows per release with the run's settings, an input's columns at its
header, an image's pixels at its header and the images' count and decoded bytes before they
are decoded. ``error_chars`` bounds every error line the command line prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

PREFIX = "SYNTH_MAX_"


class LimitError(ValueError):
    """A request past one of the limits, or a limit's variable that is not a positive
    integer. The message names the limit and the variable that raises it."""


@dataclass(frozen=True)
class Limits:
    """The limits in force (``limits()`` reads them from the environment)."""

    rows: int = 100_000_000  # rows of one release (SYNTH_MAX_ROWS)
    columns: int = 10_000  # columns of an input file's header or a schema (SYNTH_MAX_COLUMNS)
    categories: int = 1_000_000  # categories of one schema column (SYNTH_MAX_CATEGORIES)
    schema_bytes: int = 16 * 2**20  # size of a schema file (SYNTH_MAX_SCHEMA_BYTES)
    schema_depth: int = 64  # nesting of a schema's YAML (SYNTH_MAX_SCHEMA_DEPTH)
    image_pixels: int = 2**26  # height x width of one image, 8192 x 8192 (SYNTH_MAX_IMAGE_PIXELS)
    images: int = 10_000_000  # images of one input (SYNTH_MAX_IMAGES)
    image_bytes: int = 16 * 2**30  # decoded bytes of an image input (SYNTH_MAX_IMAGE_BYTES)
    compression: int = 200  # decoded / stored size of a compressed member (SYNTH_MAX_COMPRESSION)
    error_chars: int = 400  # characters of one error line (SYNTH_MAX_ERROR_CHARS)

    def check(self, name: str, value: float, what: str) -> None:
        """Raises LimitError if ``value`` (of ``what``) exceeds the limit ``name``."""
        limit = getattr(self, name)
        if value > limit:
            raise LimitError(f"{what}: {value:,.0f} exceeds the limit of {limit:,} "
                             f"(raise it with {variable(name)} if this is meant)")


def variable(name: str) -> str:
    """The environment variable of the limit ``name``."""
    return PREFIX + name.upper()


def limits() -> Limits:
    """The limits in force: the defaults, each overridden by its environment variable.

    Raises:
        LimitError: a variable that is not a positive integer.
    """
    values = {}
    for f in fields(Limits):
        text = os.environ.get(variable(f.name))
        if text is None:
            continue
        try:
            values[f.name] = int(text.replace("_", ""))
        except ValueError:
            values[f.name] = 0
        if not 0 < values[f.name] < 2**62:
            raise LimitError(f"{variable(f.name)}={text[:40]!r} is not a positive integer")
    return Limits(**values)


def bounded(message: str, chars: int | None = None) -> str:
    """``message`` as one line of at most ``chars`` characters (default: the limit in
    force): line breaks and control characters become spaces, the middle of a long line is
    cut out (its start says what failed, its end often the remedy)."""
    if chars is None:
        try:
            chars = limits().error_chars
        except LimitError:
            chars = Limits.error_chars
    line = "".join(ch if ch.isprintable() else " " for ch in message)
    if len(line) <= chars:
        return line
    keep = max(chars - 5, 2)
    head = keep * 2 // 3
    return f"{line[:head]} ... {line[len(line) - (keep - head):]}"
