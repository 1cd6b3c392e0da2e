"""The error of an input that cannot be read or does not fit its schema, and its words.

``DataError`` is what every reader of private data raises at the boundary: one bounded line
for the operator's terminal, and a ``public`` copy without anything read from the rows, for
places that store messages. ``Problem`` is one schema violation found while coercing a
column; ``raise_problems`` lists every one of them in a single ``DataError``.

This module imports nothing from ``pipelines``: every layer of it may raise a ``DataError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.limits import LimitError, Limits, bounded, limits

MAX_LISTED = 3  # problems spelled out in the one-line error; the rest are counted
QUOTED = 60  # characters of a value quoted in an error line; a longer one is cut


class DataError(ValueError):
    """Input data that cannot be read or does not fit its schema.

    ``str(error)`` quotes the offending values, for the operator's terminal; ``public`` is
    the same message with every value from the data replaced by ``<redacted>``, for places
    that store messages (an orchestrator's logs and state history).

    Both are one line of at most ``limits().error_chars`` characters (``bounded``): a value,
    a header or a parser's words quoted from a hostile file cannot flood a terminal or a log.
    """

    def __init__(self, message: str, public: str | None = None):
        message = bounded(str(message))
        super().__init__(message)
        self.public = bounded(str(public)) if public is not None else message


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
    label: str | None = None  # the input's name of the column, where it is released renamed

    def describe(self, redact: bool = False, remedy: bool = True) -> str:
        """The problem in one phrase; ``redact`` leaves out everything read from the rows
        (the value, where it is, how often): only the column and the rule it breaks.
        ``remedy=False`` leaves out the remedy, where a line has no room for it."""
        value = "<redacted>" if redact else self.value
        message = (self.public if redact and self.public else self.message).format(value=value)
        fix, name = f": {self.remedy}" if remedy else "", self.label or self.column
        if self.first_row == 0 or redact:  # a problem of the whole column, or no rows named
            return f"column '{name}' {message}{fix}"
        at = f"row {self.first_row:,}"
        if self.first_line is not None:
            at += f" (line {self.first_line:,})"
        more = f" ({self.count:,} rows in all)" if self.count > 1 else ""
        return f"column '{name}' {message} in {at}{more}{fix}"


def raise_problems(source: str, problems: list[Problem]) -> None:
    """Raises the one-line DataError that lists ``problems`` (the first few spelled out)."""
    chars = _error_chars()
    raise DataError(_listing(source, problems, False, chars),
                    public=_listing(source, problems, True, chars))


def _listing(source: str, problems: list[Problem], redact: bool, chars: int) -> str:
    """``problems`` in one line of at most ``chars`` where it can be: up to ``MAX_LISTED``
    spelled out with their remedies; where that is too long, the later ones without
    theirs, then none with its remedy, then as few as fit (one at least); the rest counted.
    Naming more problems comes before naming remedies: a rerun gives each its remedy."""
    full = [p.describe(redact) for p in problems[:MAX_LISTED]]
    short = [p.describe(redact, remedy=False) for p in problems[:MAX_LISTED]]

    def line(items: list[str]) -> str:
        rest = len(problems) - len(items)
        more = f"; and {rest} more problem{'s' if rest > 1 else ''}" if rest > 0 else ""
        return f"{source}: " + "; ".join(items) + more

    options = [full, full[:1] + short[1:], short]
    for n in range(len(short) - 1, 0, -1):
        options += [full[:1] + short[1:n], short[:n]]
    for items in options:
        if len(line(items)) <= chars:
            return line(items)
    return line(short[:1])  # bounded by DataError


def _error_chars() -> int:
    """The characters an error line may have (``limits().error_chars``)."""
    try:
        return limits().error_chars
    except LimitError:
        return Limits.error_chars


def cut(text: str) -> str:
    """``text`` cut to ``QUOTED`` characters (an ellipsis marks the cut), for an error line."""
    return text if len(text) <= QUOTED else text[:QUOTED] + "..."


def quote(value: object) -> str:
    """A value read from the data, quoted for the operator's terminal: at most ``QUOTED``
    characters of it, control characters escaped."""
    return repr(cut(str(value)))
