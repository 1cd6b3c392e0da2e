"""The schema model: what a data set is, as declared by its owner.

A schema is the only knowledge about a data set that is free of privacy cost. Everything the
synthesizers need to encode a column (numeric bounds, category lists, nullability) comes from
here, never from the rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from schemas.roles import (
    BIRTH,
    SPARSE_ZIP3,
    ZIP3_VOCABULARY,
    Generalization,
    Identifier,
    Survival,
    output_form,
    parse_generalization,
    parse_identifier,
    parse_survival,
)

Kind = Literal["integer", "float", "categorical", "boolean", "date", "datetime"]
KINDS: tuple[str, ...] = ("integer", "float", "categorical", "boolean", "date", "datetime")
NUMERIC_KINDS = ("integer", "float")
TEMPORAL_KINDS = ("date", "datetime")
ROLES = ("feature", "target", "identifier", "quasi_identifier")
TRANSFORMS = ("none", "log")
DEFAULT_MISSING = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")


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


def _bound_to_yaml(value: Any, kind: str) -> Any:
    if kind in TEMPORAL_KINDS:
        return value.isoformat()
    if kind == "integer":
        return int(value)
    return float(value)


def _parse_bound(raw: Any, kind: str, what: str, problems: list[str]) -> Any:
    try:
        if kind == "date":
            return raw if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime) else (
                dt.date.fromisoformat(str(raw)))
        if kind == "datetime":
            value = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
            if value.tzinfo is not None:  # compare as naive UTC, as ingest stores stamps
                value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return value
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError
        if kind == "integer" and value != int(value):
            problems.append(f"{what} {raw!r} is not a whole number")
        return value
    except (TypeError, ValueError):
        problems.append(f"{what} {raw!r} is not a valid {kind} bound")
        return None


def _parse_column(raw: Any, index: int, problems: list[str]) -> Column | None:
    if not isinstance(raw, dict):
        problems.append(f"columns[{index}] must be a mapping with at least 'name' and 'kind'")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"columns[{index}] has no name")
        return None
    label = f"column '{name}'"
    if raw.get("role") == "identifier":
        return parse_identifier(raw, label, problems)
    if raw.get("generalize") == "zip3" and "categories" not in raw:
        raw = {**raw, "categories": list(ZIP3_VOCABULARY)}
    known = {"name", "kind", "nullable", "min", "max", "categories", "catch_all", "aliases",
             "transform", "bins", "role", "description", "generalize"}
    for key in sorted(set(raw) - known):
        problems.append(f"{label}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{label}: kind {kind!r} is not one of {', '.join(KINDS)}")
        return None
    before = len(problems)
    minimum = maximum = None
    if kind in NUMERIC_KINDS + TEMPORAL_KINDS:
        if "min" not in raw or "max" not in raw:
            problems.append(f"{label}: a {kind} column needs declared 'min' and 'max' bounds")
        else:
            minimum = _parse_bound(raw["min"], kind, f"{label}: min", problems)
            maximum = _parse_bound(raw["max"], kind, f"{label}: max", problems)
            try:
                if minimum is not None and maximum is not None and minimum > maximum:
                    problems.append(f"{label}: min {raw['min']} is above max {raw['max']}")
            except TypeError:  # e.g. a timezone-aware bound beside a naive one
                problems.append(f"{label}: min {raw['min']} and max {raw['max']} cannot be "
                                "compared (give both with or both without a timezone)")
    elif "min" in raw or "max" in raw:
        problems.append(f"{label}: 'min'/'max' only apply to numeric and temporal columns")
    categories: tuple[str, ...] = ()
    if kind == "categorical":
        cats = raw.get("categories")
        if not isinstance(cats, list) or not cats:
            problems.append(f"{label}: a categorical column needs a non-empty 'categories' list")
        else:
            categories = tuple(str(c) for c in cats)
            dupes = sorted({c for c in categories if categories.count(c) > 1})
            if dupes:
                problems.append(f"{label}: duplicate categories {dupes}")
    elif "categories" in raw:
        problems.append(f"{label}: 'categories' only apply to categorical columns")
    catch_all = raw.get("catch_all")
    if catch_all is not None:
        catch_all = str(catch_all)
        if kind != "categorical" or catch_all not in categories:
            problems.append(f"{label}: catch_all {catch_all!r} must be one of its categories")
    aliases_raw = raw.get("aliases") or {}
    if not isinstance(aliases_raw, dict):
        problems.append(f"{label}: 'aliases' must map raw values to declared values")
        aliases_raw = {}
    aliases = tuple((str(k), str(v)) for k, v in aliases_raw.items())
    for k, v in aliases:
        if kind == "categorical" and v not in categories:
            problems.append(f"{label}: alias {k!r} -> {v!r} points outside its categories")
    transform = raw.get("transform", "none")
    if transform not in TRANSFORMS:
        problems.append(f"{label}: transform {transform!r} is not one of {', '.join(TRANSFORMS)}")
    elif transform == "log" and (kind not in NUMERIC_KINDS or (minimum is not None and minimum < 0)):
        problems.append(f"{label}: transform 'log' needs a numeric column with min >= 0")
    bins = raw.get("bins")
    if bins is not None and (not isinstance(bins, int) or isinstance(bins, bool) or bins < 1):
        problems.append(f"{label}: bins must be a positive integer")
    role = raw.get("role", "feature")
    if role not in ROLES:
        problems.append(f"{label}: role {role!r} is not one of {', '.join(ROLES)}")
    nullable = raw.get("nullable", False)
    if not isinstance(nullable, bool):
        problems.append(f"{label}: nullable must be true or false")
    generalize = None
    if "generalize" in raw:
        generalize = parse_generalization(raw["generalize"], kind, minimum, maximum, label,
                                          problems)
    elif role == "quasi_identifier" and kind in TEMPORAL_KINDS:
        problems.append(f"{label}: a quasi-identifier {kind} needs a Safe Harbor rule: "
                        "generalize: year or {offset_from: <index date column>}")
    if generalize is not None and generalize.rule == "zip3":
        bad = [c for c in categories if c != "000" and (c in SPARSE_ZIP3 or len(c) != 3
                                                        or not c.isdigit())]
        if bad:
            problems.append(f"{label}: zip3 categories must be 3-digit prefixes other than "
                            f"the sparse {', '.join(SPARSE_ZIP3)}; found {bad[:5]}")
        if "000" not in categories:
            categories += ("000",)
    if len(problems) > before:
        return None
    return Column(name=name, kind=kind, nullable=nullable, minimum=minimum, maximum=maximum,
                  categories=categories, catch_all=catch_all, aliases=aliases,
                  transform=transform, bins=bins, role=role,
                  description=str(raw.get("description", "")), generalize=generalize)


def schema_from_dict(raw: Any, path: str | None = None) -> Schema:
    """Builds a Schema from its YAML/JSON form, reporting every problem at once.

    Raises:
        SchemaError: naming the file and each problem found.
    """
    where = path or "schema"
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: a schema must be a mapping with 'name' and 'columns'")
    problems: list[str] = []
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append("'name' is missing")
    cols_raw = raw.get("columns")
    if not isinstance(cols_raw, list) or not cols_raw:
        problems.append("'columns' must be a non-empty list")
        cols_raw = []
    parsed = [_parse_column(c, i, problems) for i, c in enumerate(cols_raw)]
    identifiers = [c for c in parsed if isinstance(c, Identifier)]
    columns = _resolve_generalizations([c for c in parsed if isinstance(c, Column)], problems)
    for c in columns if identifiers else ():  # a person's record: Safe Harbor applies
        if c.kind in TEMPORAL_KINDS:
            problems.append(f"column '{c.name}': a {c.kind} in a table with direct identifiers "
                            "(a person's record): Safe Harbor allows no date element finer "
                            "than the year: declare role: quasi_identifier with generalize: "
                            "year or {offset_from: <index date column>}")
    names = [c.get("name") for c in cols_raw if isinstance(c, dict)]
    for dupe in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1}):
        problems.append(f"duplicate column name '{dupe}'")
    known = {"name", "version", "description", "source", "license", "missing_values", "csv",
             "budget", "columns", "survival"}
    for key in sorted(set(map(str, raw)) - known):
        problems.append(f"unknown key '{key}' (known: {', '.join(sorted(known))})")
    if sum(c.role == "target" for c in columns) > 1:
        problems.append("more than one column has role 'target'")
    missing = raw.get("missing_values", list(DEFAULT_MISSING))
    if not isinstance(missing, list):
        problems.append("'missing_values' must be a list of tokens")
        missing = list(DEFAULT_MISSING)
    csv_raw = raw.get("csv") or {}
    if not isinstance(csv_raw, dict) or set(csv_raw) - {"header", "delimiter", "comment"}:
        problems.append("'csv' may only set header, delimiter and comment")
        csv_raw = {}
    budget = _parse_budget(raw.get("budget"), problems)
    survival = parse_survival(raw.get("survival"), problems)
    if survival is not None:
        _check_survival(survival, columns, problems)
    if problems:
        raise SchemaError(f"{where}: " + "; ".join(problems))
    return Schema(
        name=name, version=str(raw.get("version", "1")), columns=tuple(columns),
        description=str(raw.get("description", "")), source=str(raw.get("source", "")),
        license=str(raw.get("license", "")), missing_values=tuple(str(m) for m in missing),
        csv=CsvFormat(**csv_raw), budget=budget, path=path, identifiers=tuple(identifiers),
        survival=survival, order=tuple(c.name for c in parsed if c is not None),
    )


def _resolve_generalizations(columns: list[Column], problems: list[str]) -> list[Column]:
    """Each generalised column in its output form (see schemas.roles); references checked."""
    declared = {c.name: c for c in columns}  # input forms, before any is generalised
    out = []
    for c in columns:
        gen = c.generalize
        if gen is None:
            out.append(c)
            continue
        ref = declared.get(gen.reference) if gen.reference else None
        if gen.rule in ("year", "offset_from") and (
                BIRTH.search(c.name) or (gen.reference and BIRTH.search(gen.reference))):
            problems.append(f"column '{c.name}': generalize {gen.rule} "
                            f"{'on' if BIRTH.search(c.name) else 'from'} a birth date keeps a "
                            "year or an age in days, which Safe Harbor forbids when it may show "
                            "an age over 89: use generalize: {age_at: <date column>} on the "
                            "birth date (ages over 89 become 90), or drop it (role: identifier)")
            continue
        if gen.reference and (ref is None or ref.kind not in TEMPORAL_KINDS):
            problems.append(f"column '{c.name}': generalize {gen.rule} refers to "
                            f"'{gen.reference}', which is not a declared date or datetime "
                            "column (identifiers are dropped and cannot be referred to)")
            continue
        kind, low, high = output_form(gen, ref)
        if low is not None and low > high:
            problems.append(f"column '{c.name}': its generalised bounds are empty "
                            f"({low:g} > {high:g}): check min/max against '{gen.reference}'")
            continue
        out.append(replace(c, kind=kind, minimum=low, maximum=high))
    return out


def _check_survival(surv: Survival, columns: list[Column], problems: list[str]) -> None:
    """The survival declaration refers to released columns of the right kinds."""
    by_name = {c.name: c for c in columns}
    time, event = by_name.get(surv.time), by_name.get(surv.event)
    if time is None or not time.is_numeric:
        problems.append(f"survival: time '{surv.time}' must be a declared numeric column")
    elif not time.minimum <= surv.follow_up <= time.maximum:
        problems.append(f"survival: follow_up {surv.follow_up:g} must lie within "
                        f"'{surv.time}' bounds {time.minimum:g}..{time.maximum:g}")
    if event is None or event.kind not in ("boolean", "categorical"):
        problems.append(f"survival: event '{surv.event}' must be a declared boolean or "
                        "categorical column")
    elif event.kind == "categorical" and surv.event_value not in event.categories:
        problems.append(f"survival: event_value {surv.event_value!r} must be one of "
                        f"'{surv.event}' categories {list(event.categories)}")
    elif event.kind == "boolean" and surv.event_value is not None:
        problems.append("survival: event_value only applies to a categorical event column")
    for name in surv.only_with_event:
        if name not in by_name or not by_name[name].nullable:
            problems.append(f"survival: only_with_event column '{name}' must be a declared "
                            "nullable column")


def _parse_budget(raw: Any, problems: list[str]) -> tuple[float, float] | None:
    """The data set's total budget: ``budget: {epsilon: 3, delta: 1e-6}``."""
    if raw is None:
        return None
    ok = isinstance(raw, dict) and set(raw) == {"epsilon", "delta"} and all(
        isinstance(raw[k], (int, float)) and not isinstance(raw[k], bool) for k in raw)
    if not ok or not (0 < raw["epsilon"] < float("inf") and 0 < raw["delta"] < 1):
        problems.append("'budget' must be {epsilon: a positive number, delta: a number "
                        "between 0 and 1}")
        return None
    return float(raw["epsilon"]), float(raw["delta"])


def load_schema(path: str | Path) -> Schema:
    """Reads and checks a schema file (YAML or JSON).

    Raises:
        SchemaError: the file is missing, does not parse, or contradicts itself.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"{p}: cannot read schema: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise SchemaError(f"{p}: schema does not parse as YAML{at}: "
                          f"{getattr(exc, 'problem', exc)}") from None
    return schema_from_dict(raw, str(p))


def dump_schema(schema: Schema) -> str:
    """The YAML text of a schema, in the layout load_schema reads."""
    return yaml.safe_dump(schema.to_dict(), sort_keys=False, allow_unicode=True, width=100)


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

