"""What a draft says about one column, whichever way it was read, and the proposals both
drafts make from what they found: round bounds, whole-year bounds, a catch-all category."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

CATCH_ALL = "other"


@dataclass
class Drafted:
    """What a draft says about one column, whichever way it was read.

    Attributes:
        name: the column.
        col: its YAML mapping; None: left out.
        notes: REVIEW notes, free of values.
        identifier: why it looks like a direct identifier (empty: it does not).
        detail: counts to print beside those reasons (plain draft only).
        zip: it holds ZIP codes (a quasi-identifier).
        over_89: an age over 89 was seen (Safe Harbor's age rule then applies).
    """

    name: str
    col: dict | None
    notes: list[str] = field(default_factory=list)
    identifier: list[str] = field(default_factory=list)
    detail: str = ""
    zip: bool = False
    over_89: bool = False


def round_out(value: float, step: float, down: bool) -> float:
    """Rounds ``value`` outward (down for a minimum, up for a maximum) to a multiple of step."""
    return float(round((math.floor if down else math.ceil)(value / step) * step, 12))


def bounds(low: float, high: float, whole: bool) -> tuple[float, float]:
    """Declared bounds around ``low`` and ``high``, rounded outward to half the range's power
    of ten, so they are round numbers: 17..90 -> 15..90, 12,285..1,484,705 -> 0..1,500,000."""
    if high == low:  # never publish a constant: widen to the neighbouring round numbers
        step = 10 ** math.floor(math.log10(max(abs(low), 1.0)))
        return round_out(low, step, True) - step, round_out(high, step, False) + step
    step = 10 ** math.floor(math.log10(high - low)) / 2
    step = max(step, 1.0) if whole else step
    return round_out(low, step, True), round_out(high, step, False)


def catch_all(categories: list[str]) -> str:
    """The category that takes the values left out: the data's own 'other' if it has one,
    else a new 'other' (added to ``categories``)."""
    for c in categories:
        if c.lower() == CATCH_ALL:
            return c
    categories.append(CATCH_ALL)
    return CATCH_ALL


def year_bounds(first: int, last: int, kind: str) -> tuple[str, str]:
    """Whole-year bounds: the first day of ``first`` to the last moment of ``last``."""
    low = dt.date(first, 1, 1)
    high = dt.datetime(last + 1, 1, 1) - dt.timedelta(seconds=1)
    return low.isoformat(), (high.date() if kind == "date" else high).isoformat()
