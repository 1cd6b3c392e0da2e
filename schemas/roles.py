"""Column roles for medical-style records: direct identifiers, quasi-identifiers generalised
per HIPAA Safe Harbor, surrogate values, and survival outcomes.

A schema column has one role:

- ``feature`` / ``target``: synthesized as declared.
- ``identifier``: a direct identifier (name, MRN, SSN, phone, e-mail, address...). Dropped
  right after the input is read; never reaches a synthesizer. With ``surrogate:`` the release
  may carry fake values generated from the schema alone (never from the input).
- ``quasi_identifier``: generalised before training by its declared ``generalize:`` rule.

A generalised column is declared in its INPUT form (e.g. ``kind: date`` with date bounds);
the schema model holds it in its OUTPUT form, which is what the synthesizer sees and what the
release carries, so training, validation and publishing share one set of columns:

=================================  ==========================================================
``generalize: year``               date/datetime -> integer year, bounds = the bounds' years
``generalize: {offset_from: c}``   date/datetime -> integer days since the same record's date
                                   column ``c`` (the index date); bounds from both columns'
                                   declared bounds unless ``min``/``max`` are given
``generalize: {age_at: c}``        birth date -> integer whole years at the index date ``c``,
                                   90 for everyone 90 or older ("90+")
``generalize: age90``              the age keeps its kind; ages over 89 become 90 ("90+")
``generalize: zip3``               ZIP code -> its first three digits; the 17 sparse prefixes
                                   below become ``000``; categories = the 3-digit vocabulary
=================================  ==========================================================

The release names a column by what it then holds (``released_name``): ``admission_year``,
``age_at_admission``, ``days_from_admission_to_discharge``, unless the schema gives an
``output_name``; the input file keeps its names, and errors about the input name them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

RULES = ("year", "offset_from", "age_at", "age90", "zip3")
BIRTH = re.compile(r"birth|dob|born", re.IGNORECASE)  # a birth date, by its column name
AGE_CAP = 90  # Safe Harbor: ages over 89 aggregate into a single category of 90 or older

# Three-digit ZIP prefixes whose 2000-census areas hold 20,000 people or fewer: Safe Harbor
# (45 CFR 164.514(b)(2)(i)(B)) requires them to be replaced by 000. Public list from HHS,
# "Guidance Regarding Methods for De-identification of Protected Health Information in
# Accordance with the HIPAA Privacy Rule" (2012), section 3.4.
SPARSE_ZIP3 = ("036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830",
               "831", "878", "879", "884", "890", "893")
ZIP3_VOCABULARY = tuple(f"{i:03d}" for i in range(1000) if f"{i:03d}" not in SPARSE_ZIP3)


@dataclass(frozen=True)
class Generalization:
    """A quasi-identifier's Safe Harbor rule and the input form it was declared in.

    Attributes:
        rule: one of ``RULES``.
        reference: the index-date column of ``offset_from`` / ``age_at``.
        source_kind: the declared kind of the input column.
        source_min: the declared input bounds (None for zip3).
        source_max: see source_min.
        explicit: (min, max) given on the rule itself (offset_from only), else None.
    """

    rule: str
    reference: str | None = None
    source_kind: str = ""
    source_min: Any = None
    source_max: Any = None
    explicit: tuple[int, int] | None = None

    def to_yaml(self) -> Any:
        if self.rule in ("offset_from", "age_at"):
            out: dict[str, Any] = {self.rule: self.reference}
            if self.explicit is not None:
                out["min"], out["max"] = self.explicit
            return out
        return self.rule


@dataclass(frozen=True)
class Identifier:
    """A direct identifier column: dropped at ingest.

    Attributes:
        name: the input column.
        surrogate: a Faker provider (``ssn``, ``name``, ``phone_number``...) or
            ``pattern:MRN#######`` (Faker's bothify); None: not carried in the release.
        description: free text.
    """

    name: str
    surrogate: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": "identifier"}
        if self.description:
            out["description"] = self.description
        if self.surrogate is not None:
            out["surrogate"] = (self.surrogate if not self.surrogate.startswith("pattern:")
                                else {"pattern": self.surrogate[len("pattern:"):]})
        return out


@dataclass(frozen=True)
class Survival:
    """A survival outcome: a time column and its event (vs censoring) indicator.

    Attributes:
        time: the time-to-event column (numeric, e.g. days from the index date).
        event: the event indicator column (boolean, or categorical with ``event_value``).
        event_value: the event column's value that means "the event happened".
        follow_up: the end of follow-up in the time column's units: no time is later, and an
            event after it cannot have been observed (such rows are censored at follow_up).
        only_with_event: columns that only have a value when the event happened (cause of
            death), missing otherwise.
    """

    time: str
    event: str
    event_value: str | None
    follow_up: float
    only_with_event: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "event": self.event}
        if self.event_value is not None:
            out["event_value"] = self.event_value
        out["follow_up"] = self.follow_up
        if self.only_with_event:
            out["only_with_event"] = list(self.only_with_event)
        return out


def parse_identifier(raw: dict, label: str, problems: list[str]) -> Identifier | None:
    known = {"name", "role", "kind", "description", "surrogate"}
    for key in sorted(set(map(str, raw)) - known):  # str: a key may be a number or null
        problems.append(f"{label}: an identifier only takes {', '.join(sorted(known))}; "
                        f"remove {key!r:.60} (it is dropped before anything trains)")
    surrogate = raw.get("surrogate")
    if isinstance(surrogate, dict) and set(surrogate) == {"pattern"} and \
            isinstance(surrogate["pattern"], str) and surrogate["pattern"]:
        surrogate = "pattern:" + surrogate["pattern"]
    elif surrogate is not None and not (isinstance(surrogate, str) and surrogate.isidentifier()
                                        and not surrogate.startswith("_")):
        problems.append(f"{label}: surrogate must be a Faker provider name (ssn, name, "
                        "phone_number...) or {pattern: 'MRN#######'}")
        return None
    return Identifier(name=raw["name"], surrogate=surrogate,
                      description=str(raw.get("description", "")))


def parse_generalization(raw: Any, kind: str, minimum: Any, maximum: Any, label: str,
                         problems: list[str]) -> Generalization | None:
    """The rule of ``generalize:``; the reference column is checked by the schema."""
    explicit = None
    if isinstance(raw, dict) and len({"offset_from", "age_at"} & set(raw)) == 1:
        rule = "offset_from" if "offset_from" in raw else "age_at"
        reference = raw[rule]
        extra = set(raw) - {rule} - ({"min", "max"} if rule == "offset_from" else set())
        if extra or not isinstance(reference, str):
            problems.append(f"{label}: generalize {{{rule}: <date column>}} takes a column name"
                            + (" and optional whole-day min/max" if rule == "offset_from" else ""))
            return None
        if "min" in raw or "max" in raw:
            ok = all(isinstance(raw.get(k), int) and not isinstance(raw.get(k), bool)
                     for k in ("min", "max"))
            if not ok or raw["min"] > raw["max"]:
                problems.append(f"{label}: generalize min/max must be whole days, min <= max")
                return None
            explicit = (raw["min"], raw["max"])
    elif raw in ("year", "age90", "zip3"):
        rule, reference = raw, None
    else:
        problems.append(f"{label}: generalize {raw!r:.60} is not one of year, age90, zip3, "
                        "{offset_from: <date column>}, {age_at: <date column>}")
        return None
    needs = {"year": ("date", "datetime"), "offset_from": ("date", "datetime"),
             "age_at": ("date", "datetime"), "age90": ("integer", "float"),
             "zip3": ("categorical",)}[rule]
    if kind not in needs:
        problems.append(f"{label}: generalize {rule} applies to {' or '.join(needs)} columns, "
                        f"not {kind}")
        return None
    if rule == "age90" and minimum is not None and minimum > AGE_CAP:
        problems.append(f"{label}: generalize age90 needs min <= {AGE_CAP}")
        return None
    return Generalization(rule, reference, kind, minimum, maximum, explicit)


# a date word at the end (or start) of a column's name, dropped from the name a rule derives:
# admission_date -> admission, date_admitted -> admitted, AdmissionDate -> Admission
DATE_WORD = re.compile(r"(?i:[_.\- ](date|datetime|dt|time|timestamp|ts|at|on|day))$"
                       r"|(?<=[a-z0-9])(Date|DateTime|Datetime|Time|Timestamp|At|On|Day)$"
                       r"|^(?i:(date|dt)[_.\- ])")


def stem(name: str) -> str:
    """A date column's name without its date word (``admission_date`` -> ``admission``);
    the name itself where nothing would be left."""
    return DATE_WORD.sub("", name) or name


def released_name(name: str, gen: Generalization | None) -> str:
    """The name a column is released under when its schema gives no ``output_name``: a rule
    that changes what the column measures names the new measure (``admission_date`` with
    ``year`` -> ``admission_year``; ``date_of_birth`` with ``{age_at: admission_date}`` ->
    ``age_at_admission``; ``discharge_date`` with ``{offset_from: admission_date}`` ->
    ``days_from_admission_to_discharge``); ``age90`` and ``zip3`` only coarsen the same
    measure, and every other column keeps its input name."""
    if gen is None or gen.rule in ("age90", "zip3"):
        return name
    if gen.rule == "year":
        return f"{stem(name)}_year"
    assert gen.reference is not None  # parse_generalization: age_at/offset_from name one
    if gen.rule == "age_at":
        return f"age_at_{stem(gen.reference)}"
    return f"days_from_{stem(gen.reference)}_to_{stem(name)}"


def describe_rule(gen: Generalization, name: str) -> str:
    """A generalisation in words, naming the input column ``name`` it was applied to."""
    words = {
        "year": f"the calendar year of the input's '{name}'",
        "age_at": f"whole years from the input's '{name}' (a birth date) to its "
                  f"'{gen.reference}', {AGE_CAP} for {AGE_CAP} or older",
        "offset_from": f"whole days from the same record's '{gen.reference}' to its '{name}'",
        "age90": f"the input's '{name}', with ages over {AGE_CAP - 1} given as {AGE_CAP} "
                 f"({AGE_CAP} or older)",
        "zip3": f"the first three digits of the input's ZIP code '{name}', 000 for the "
                f"{len(SPARSE_ZIP3)} sparse prefixes HHS lists",
    }[gen.rule]
    return f"HIPAA Safe Harbor generalisation: {words}"


def output_form(gen: Generalization, ref: Any | None
                ) -> tuple[Literal["integer", "float", "categorical"], Any, Any]:
    """(kind, min, max) of a generalised column; ``ref`` is the reference Column, if any."""
    lo, hi = gen.source_min, gen.source_max
    if gen.rule == "year":
        return "integer", float(lo.year), float(hi.year)
    if gen.rule == "age90":
        return "integer", float(lo), float(min(hi, AGE_CAP))
    if gen.rule == "zip3":
        return "categorical", None, None
    if gen.rule == "offset_from":
        if gen.explicit is not None:
            return "integer", float(gen.explicit[0]), float(gen.explicit[1])
        assert ref is not None  # the caller resolved the reference column
        return ("integer", float(_days(lo) - _days(ref.maximum)),
                float(_days(hi) - _days(ref.minimum)))
    assert ref is not None  # age_at: the caller resolved the reference column
    low = max(0, ref.minimum.year - hi.year - 1)  # age_at: whole years, capped at 90
    return "integer", float(min(low, AGE_CAP)), float(min(ref.maximum.year - lo.year, AGE_CAP))


def _days(value: Any) -> int:
    """Whole days since 1970-01-01 (datetimes floored to their day)."""
    day = value.date() if isinstance(value, dt.datetime) else value
    return (day - dt.date(1970, 1, 1)).days


def parse_survival(raw: Any, problems: list[str]) -> Survival | None:
    """``survival: {time: futime, event: death, event_value: dead, follow_up: 5500}``."""
    if raw is None:
        return None
    keys = {"time", "event", "event_value", "follow_up", "only_with_event"}
    if not isinstance(raw, dict) or not {"time", "event", "follow_up"} <= set(raw) \
            or set(raw) - keys:
        problems.append("'survival' must be {time: <column>, event: <column>, follow_up: "
                        "<end of follow-up in time units>, event_value (categorical event), "
                        "only_with_event: [columns]}")
        return None
    follow = raw["follow_up"]
    # at most 2**53, as every numeric bound (schemas.model.MAX_EXACT): no NaN, no infinity
    if not isinstance(follow, (int, float)) or isinstance(follow, bool) or not (
            0 < follow <= 2**53):
        problems.append("survival: follow_up must be a positive number up to 2^53")
        return None
    with_event = raw.get("only_with_event") or []
    if not isinstance(with_event, list):
        problems.append("survival: only_with_event must be a list of columns")
        return None
    value = raw.get("event_value")
    return Survival(str(raw["time"]), str(raw["event"]), None if value is None else str(value),
                    float(follow), tuple(str(c) for c in with_event))
