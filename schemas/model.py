"""The schema model: what a data set is, as declared by its owner.

A schema is the only knowledge about a data set that is free of privacy cost. Everything the
synthesizers need to encode a column (numeric bounds, category lists, nullability) comes from
here, never from the rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.roles import (
    ZIP3_VOCABULARY,
    Generalization,
    Identifier,
    Survival,
)

Kind = Literal["integer", "float", "categorical", "boolean", "date", "datetime"]
KINDS: tuple[str, ...] = ("integer", "float", "categorical", "boolean", "date", "datetime")
NUMERIC_KINDS = ("integer", "float")
TEMPORAL_KINDS = ("date", "datetime")
ROLES = ("feature", "target", "identifier", "quasi_identifier")
TRANSFORMS = ("none", "log")
DEFAULT_MISSING = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")

log = logging.getLogger(__name__)


class SchemaError(ValueError):
    """A schema that does not parse or contradicts itself."""


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
    ``datetime.date`` / ``datetime.datetime`` for temporal ones.
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
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.role != "feature":
            out["role"] = self.role
        if self.description:
            out["description"] = self.description
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
        return list(self.order) or self.names

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
        declared = {c.name: c for c in (*self.identifiers, *self.columns)}
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

