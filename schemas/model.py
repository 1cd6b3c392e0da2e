"""The schema model: what a data set is, as declared by its owner.

A schema is the only knowledge about a data set that is free of privacy cost. Everything the
synthesizers need to encode a column (numeric bounds, category lists, nullability) comes from
here, never from the rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.roles import (
    ZIP3_VOCABULARY,
    Generalization,
    Identifier,
    Survival,
    released_name,
)

Kind = Literal["integer", "float", "categorical", "boolean", "date", "datetime"]
KINDS: tuple[str, ...] = ("integer", "float", "categorical", "boolean", "date", "datetime")
NUMERIC_KINDS = ("integer", "float")
TEMPORAL_KINDS = ("date", "datetime")
ROLES = ("feature", "target", "identifier", "quasi_identifier")
TRANSFORMS = ("none", "log")
DEFAULT_MISSING = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
# The widest numeric bound: past 2**53 a float64 (how bounds, the encoder's bins and float
# columns hold numbers) no longer holds every whole number, and bins' widths lose all precision.
MAX_EXACT = 2**53
# The widest temporal bounds: pandas holds timestamps as nanoseconds since 1970, from
# 1677-09-21 to 2262-04-11; whole years inside that span keep every bound and offset valid.
FIRST_DAY, LAST_DAY = dt.date(1678, 1, 1), dt.date(2261, 12, 31)
SHOWN = 60  # the most characters of a schema's own text one problem quotes
# The (epsilon, delta) a run's budget may take, as synth.privacy.PrivacyBudget enforces them
# (kept here too so that the schema layer depends on nothing above it): epsilon beyond 1,000
# protects nothing and below 1e-6 nothing can be learnt; a delta below 1e-30 is beneath any
# accountant's precision.
MIN_EPSILON, MAX_EPSILON, MIN_DELTA = 1e-6, 1e3, 1e-30

log = logging.getLogger(__name__)


class SchemaError(ValueError):
    """A schema that does not parse or contradicts itself."""


def show(value: Any, chars: int = SHOWN) -> str:
    """``repr(value)`` cut to ``chars`` characters: how a problem quotes a schema's value, so
    that a hostile value (a category of a megabyte) cannot make the error line long."""
    text = repr(value)
    return text if len(text) <= chars else text[:chars - 3] + "..."


def budget_in_range(epsilon: Any, delta: Any, low_epsilon: float = MIN_EPSILON,
                    low_delta: float = MIN_DELTA) -> bool:
    """Whether a schema's (epsilon, delta) are numbers that a run's budget may take
    (``synth.privacy.PrivacyBudget``): ``low_epsilon <= epsilon <= MAX_EPSILON`` and
    ``low_delta <= delta < 1``. Checked when the schema is read, not once a run has spent."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (epsilon, delta)):
        return False
    return low_epsilon <= epsilon <= MAX_EPSILON and low_delta <= delta < 1  # NaN fails


def range_problem(value: Any, kind: str) -> str | None:
    """Why a bound of a ``kind`` column cannot be used, or None: a number (an int is compared
    exactly, before it is rounded to a float) must be finite and within +/-2**53, a date or
    datetime within the years 1678-2261."""
    if kind in TEMPORAL_KINDS:
        day = value.date() if isinstance(value, dt.datetime) else value
        if FIRST_DAY <= day <= LAST_DAY:
            return None
        return (f"is outside the years {FIRST_DAY.year}-{LAST_DAY.year}, the span a timestamp "
                "holds (pandas counts nanoseconds from 1970)")
    if not (abs(value) <= MAX_EXACT if isinstance(value, int)  # exact, however large
            else math.isfinite(value) and abs(value) <= MAX_EXACT):
        return (f"is not a finite number within +/-2^53 (past {MAX_EXACT:,} a float skips "
                "whole numbers)")
    return None


@dataclass(frozen=True)
class CsvFormat:
    """How the CSV files of a data set are laid out (public, like the rest of the schema).

    Attributes:
        header: whether the first line holds column names; without one, the schema's column
            order names the fields.
        delimiter: the field separator.
        comment: lines starting with this string are skipped (Adult's test file opens with
            ``|1x3 Cross validator``).
    """

    header: bool = True
    delimiter: str = ","
    comment: str | None = None


@dataclass(frozen=True)
class Draft:
    """The mark of a schema drafted from the data (``draft:`` in its YAML), which stays until
    a person has reviewed the schema and deleted the line.

    Attributes:
        dp: whether the draft was made under differential privacy; if not, its values were
            read from the private rows for free and ``synth run`` refuses the schema.
        epsilon: what a DP draft spent (charged to the data set's budget); None otherwise.
        delta: see epsilon.
    """

    dp: bool
    epsilon: float | None = None
    delta: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dp": self.dp}
        if self.dp:
            out["epsilon"], out["delta"] = self.epsilon, self.delta
        return out


@dataclass(frozen=True)
class Column:
    """One declared column.

    Numeric bounds (``minimum``/``maximum``) are floats for integer and float columns and
    ``datetime.date`` / ``datetime.datetime`` for temporal ones. ``name`` is the name every
    step after ingest uses and the release carries; ``input_name`` the input file's column
    (they differ where a Safe Harbor rule or ``output_name`` renames it, see
    ``schemas.roles.released_name``).
    """

    name: str
    kind: Kind
    nullable: bool = False
    minimum: Any = None
    maximum: Any = None
    categories: tuple[str, ...] = ()
    catch_all: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    transform: str = "none"
    bins: int | None = None
    role: str = "feature"
    description: str = ""
    generalize: Generalization | None = None  # a Safe Harbor rule; the fields above are its
    # OUTPUT form (what is trained on and released), the rule keeps the declared input form
    input_name: str = ""  # the input file's column it is read from; "" (default): ``name``
    unit: str = ""  # what a value counts in (mmHg, days...), for the release's metadata
    decimals: int | None = None  # a float column's values are released rounded to these

    def __post_init__(self) -> None:
        if not self.input_name:  # a column read under the name it is released under
            object.__setattr__(self, "input_name", self.name)

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS

    @property
    def is_temporal(self) -> bool:
        return self.kind in TEMPORAL_KINDS

    @property
    def is_ranged(self) -> bool:
        return self.kind in NUMERIC_KINDS + TEMPORAL_KINDS

    @property
    def alias_map(self) -> dict[str, str]:
        return dict(self.aliases)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.input_name, "kind": self.kind}
        if self.name != released_name(self.input_name, self.generalize):
            out["output_name"] = self.name
        if self.role != "feature":
            out["role"] = self.role
        if self.description:
            out["description"] = self.description
        if self.unit:
            out["unit"] = self.unit
        if self.decimals is not None:
            out["decimals"] = self.decimals
        if self.nullable:
            out["nullable"] = True
        gen = self.generalize
        if gen is not None:
            out["kind"] = gen.source_kind
            if gen.source_min is not None:
                out["min"] = _bound_to_yaml(gen.source_min, gen.source_kind)
                out["max"] = _bound_to_yaml(gen.source_max, gen.source_kind)
            out["generalize"] = gen.to_yaml()
        elif self.is_ranged:
            out["min"] = _bound_to_yaml(self.minimum, self.kind)
            out["max"] = _bound_to_yaml(self.maximum, self.kind)
        if self.transform != "none":
            out["transform"] = self.transform
        if self.bins is not None:
            out["bins"] = self.bins
        if self.kind == "categorical" and not (gen is not None and gen.rule == "zip3"
                                               and self.categories == ZIP3_VOCABULARY):
            out["categories"] = list(self.categories)
        if self.catch_all is not None:
            out["catch_all"] = self.catch_all
        if self.aliases:
            out["aliases"] = dict(self.aliases)
        return out


@dataclass(frozen=True)
class Schema:
    """A data set's declared columns, plus how its files are read."""

    name: str
    version: str
    columns: tuple[Column, ...]
    description: str = ""
    source: str = ""
    license: str = ""
    missing_values: tuple[str, ...] = DEFAULT_MISSING
    csv: CsvFormat = field(default_factory=CsvFormat)
    budget: tuple[float, float] | None = None  # total (epsilon, delta) over all its releases
    path: str | None = None  # where it was loaded from, for error messages
    identifiers: tuple[Identifier, ...] = ()  # direct identifiers: dropped at ingest
    survival: Survival | None = None
    order: tuple[str, ...] = ()  # every declared column, identifiers included, in file order
    draft: Draft | None = None  # drafted from the data and not yet reviewed

    @property
    def names(self) -> list[str]:
        """The columns trained on and released (identifiers excluded)."""
        return [c.name for c in self.columns]

    @property
    def input_names(self) -> list[str]:
        """Every declared input column, identifiers included, in declared order."""
        return list(self.order) or [c.input_name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def target(self) -> str | None:
        targets = [c.name for c in self.columns if c.role == "target"]
        return targets[0] if targets else None

    @property
    def where(self) -> str:
        """How error messages name this schema."""
        return self.path or f"schema '{self.name}'"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.draft is not None:
            out["draft"] = self.draft.to_dict()
        for key in ("description", "source", "license"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["missing_values"] = list(self.missing_values)
        if self.csv != CsvFormat():
            out["csv"] = {"header": self.csv.header, "delimiter": self.csv.delimiter}
            if self.csv.comment is not None:
                out["csv"]["comment"] = self.csv.comment
        if self.budget is not None:
            out["budget"] = {"epsilon": self.budget[0], "delta": self.budget[1]}
        if self.survival is not None:
            out["survival"] = self.survival.to_dict()
        declared: dict[str, Identifier | Column] = {**{i.name: i for i in self.identifiers},
                    **{c.input_name: c for c in self.columns}}
        out["columns"] = [declared[n].to_dict() for n in self.input_names]
        return out

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: names the exact public knowledge a run used."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


def refuse_unreviewed_draft(schema: Schema) -> None:
    """Stops a run on a schema drafted from the private rows without DP, until a person has
    reviewed it and deleted its ``draft:`` line. A DP draft passes: its values were noised
    and charged to the data set's budget; a warning asks for a review for sense.

    Raises:
        SchemaError: one line naming the schema and what to do.
    """
    draft = schema.draft
    if draft is None:
        return
    if not draft.dp:
        raise SchemaError(f"{schema.where} is an unreviewed draft read from the private data "
                          "without differential privacy: review every bound, category and "
                          "role against public knowledge, then delete its `draft:` line")
    log.warning("%s is a DP draft (epsilon=%g, delta=%g, charged to data set '%s'): its "
                "values are private; review them for sense, then delete its `draft:` line",
                schema.where, draft.epsilon, draft.delta, schema.name)


def _bound_to_yaml(value: Any, kind: str) -> Any:
    if kind in TEMPORAL_KINDS:
        return value.isoformat()
    if kind == "integer":
        return int(value)
    return float(value)


def pandas_dtype(column: Column) -> Any:
    """The in-memory pandas dtype of a column, shared by every pipeline step.

    integer -> ``Int64``, float -> ``float64`` (NaN for missing), categorical ->
    ``CategoricalDtype`` over the declared categories, boolean -> ``boolean``, date and
    datetime -> ``datetime64[ns]`` (dates at midnight).
    """
    import numpy as np
    import pandas as pd

    if column.kind == "integer":
        return pd.Int64Dtype()
    if column.kind == "float":
        return np.dtype("float64")
    if column.kind == "categorical":
        return pd.CategoricalDtype(categories=list(column.categories))
    if column.kind == "boolean":
        return pd.BooleanDtype()
    return "datetime64[ns]"

