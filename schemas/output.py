"""How a column appears in a release, as its schema declares it: the name it is released
under, the unit its values count in, and the decimals a float is rounded to.

Keys of a column in a schema file (all optional, all public):

- ``output_name``: the release's name for the column; without it a Safe Harbor rule that
  changes what the column measures names the new measure (``schemas.roles.released_name``)
  and every other column keeps its input name. The input file keeps its names.
- ``unit``: free text (``mmHg``, ``days``, ``mg/dL``), written into the release's metadata.
- ``decimals``: a float column's released values are rounded to this many decimals (0 to
  ``MAX_DECIMALS``), within its bounds (``pipelines.columns.finish``).
"""

from __future__ import annotations

import math
from typing import Any

from schemas.model import Column, show
from schemas.roles import Generalization, Identifier, Survival, released_name

KEYS = ("output_name", "unit", "decimals")
MAX_DECIMALS = 15  # a float64 holds 15 significant decimal digits; more are noise
NAME_CHARS = 200  # the longest output name, as any name quoted in an error line stays short


def parse_output(raw: dict, name: str, kind: str, gen: Generalization | None, bounds: tuple,
                 label: str, problems: list[str]) -> dict[str, Any]:
    """Column's keyword arguments for ``name`` (released name, input name, unit, decimals)
    from the column's mapping ``raw``; problems are appended, not raised."""
    out_name = raw.get("output_name")
    if out_name is None:
        out_name = released_name(name, gen)
    elif not (isinstance(out_name, str) and out_name.strip() == out_name and out_name
              and len(out_name) <= NAME_CHARS and out_name.isprintable()):
        problems.append(f"{label}: output_name must be a non-empty name of at most "
                        f"{NAME_CHARS} printable characters without surrounding spaces")
        out_name = name
    unit = raw.get("unit", "")
    if not isinstance(unit, str) or "\n" in unit or len(unit) > NAME_CHARS:
        problems.append(f"{label}: unit must be text on one line (mmHg, days, mg/dL...)")
        unit = ""
    decimals = raw.get("decimals")
    if decimals is not None:
        decimals = _decimals(decimals, kind, bounds, label, problems)
    return {"name": out_name, "input_name": name, "unit": unit, "decimals": decimals}


def _decimals(raw: Any, kind: str, bounds: tuple, label: str, problems: list[str]
              ) -> int | None:
    if kind != "float":
        problems.append(f"{label}: decimals only apply to float columns (an integer column "
                        "has none)")
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_DECIMALS:
        problems.append(f"{label}: decimals must be a whole number from 0 to {MAX_DECIMALS}")
        return None
    low, high = bounds
    if low is not None and high is not None and rounded_bounds(low, high, raw) is None:
        problems.append(f"{label}: no value with {raw} decimals lies between min {low:g} and "
                        f"max {high:g}: widen the bounds or declare more decimals")
        return None
    return raw


def rounded_bounds(low: float, high: float, decimals: int) -> tuple[float, float] | None:
    """The smallest and largest values with ``decimals`` decimals within [low, high] (None if
    there is none): where a rounded value beyond a bound is moved to."""
    scale = 10.0 ** decimals
    # round(..., 6) first: 0.1 * 10 is 1.0000000000000002, whose ceiling is not 1
    first, last = math.ceil(round(low * scale, 6)), math.floor(round(high * scale, 6))
    return (first / scale, last / scale) if first <= last else None


def check_names(columns: list[Column], identifiers: list[Identifier],
                problems: list[str]) -> None:
    """The released names are distinct, and none is an identifier's name (a surrogate's
    column, or a name the release must never seem to carry)."""
    taken: dict[str, str] = {i.name: "an identifier" for i in identifiers}
    inputs: set[str] = set()
    for c in columns:
        if c.input_name in inputs:  # a column declared twice: reported as such elsewhere
            continue
        inputs.add(c.input_name)
        if c.name in taken:
            problems.append(f"column {show(c.input_name)}: its release name {show(c.name)} is "
                            f"also the name of {taken[c.name]}: give it another output_name")
        else:
            taken[c.name] = f"column {show(c.input_name)}"


def released_survival(surv: Survival, columns: list[Column], problems: list[str]
                      ) -> Survival:
    """The survival declaration in released names (it may name a column by its released
    name or its input name), checked: it refers to released columns of the right kinds."""
    names = {c.input_name: c.name for c in columns}
    by_name = {c.name: c for c in columns}

    def out(name: str) -> str:  # a released name first, then an input name
        return name if name in by_name else names.get(name, name)

    surv = Survival(out(surv.time), out(surv.event), surv.event_value, surv.follow_up,
                    tuple(out(n) for n in surv.only_with_event))
    time, event = by_name.get(surv.time), by_name.get(surv.event)
    if time is None or not time.is_numeric:
        problems.append(f"survival: time {show(surv.time)} must be a declared numeric column")
    elif not time.minimum <= surv.follow_up <= time.maximum:
        problems.append(f"survival: follow_up {surv.follow_up:g} must lie within "
                        f"{show(surv.time)} bounds {time.minimum:g}..{time.maximum:g}")
    if event is None or event.kind not in ("boolean", "categorical"):
        problems.append(f"survival: event {show(surv.event)} must be a declared boolean or "
                        "categorical column")
    elif event.kind == "categorical" and surv.event_value not in event.categories:
        problems.append(f"survival: event_value {show(surv.event_value)} must be one of "
                        f"{show(surv.event)} categories {show(list(event.categories))}")
    elif event.kind == "boolean" and surv.event_value is not None:
        problems.append("survival: event_value only applies to a categorical event column")
    for name in surv.only_with_event:
        if name not in by_name or not by_name[name].nullable:
            problems.append(f"survival: only_with_event column {show(name)} must be a declared "
                            "nullable column")
    return surv
