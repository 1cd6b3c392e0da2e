"""Reading a schema: YAML or a mapping to a checked ``Schema``, and back to YAML.

Every problem in a schema file is collected and reported at once, naming the file and the
field; a schema that parses is consistent (bounds in order, references to declared columns,
Safe Harbor rules where a table holds a person's records).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed; followed as Any

from schemas.limits import LimitError, Limits, bounded, limits
from schemas.model import (
    DEFAULT_MISSING,
    KINDS,
    MAX_EPSILON,
    MIN_DELTA,
    MIN_EPSILON,
    NUMERIC_KINDS,
    ROLES,
    TEMPORAL_KINDS,
    TRANSFORMS,
    Column,
    CsvFormat,
    Draft,
    Schema,
    SchemaError,
    budget_in_range,
    range_problem,
    show,
)
from schemas.output import KEYS, check_names, parse_output, released_survival
from schemas.roles import (
    BIRTH,
    SPARSE_ZIP3,
    ZIP3_VOCABULARY,
    Identifier,
    output_form,
    parse_generalization,
    parse_identifier,
    parse_survival,
)
from schemas.safe_yaml import read_yaml

MOST_PROBLEMS = 20  # problems one SchemaError lists; the rest are counted


def _parse_bound(raw: Any, kind: str, what: str, problems: list[str]) -> Any:
    """A declared bound as the model holds it (a float, a date, a naive UTC datetime), or
    None with a problem: not a value of the kind, or one a run could not use (see
    ``schemas.model.range_problem``)."""
    value: Any
    try:
        if kind == "date":
            value = raw if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime) else (
                dt.date.fromisoformat(str(raw)))
        elif kind == "datetime":
            value = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
            if value.tzinfo is not None:  # compare as naive UTC, as ingest stores stamps
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
        elif isinstance(raw, bool):
            raise ValueError
        else:  # an int stays exact for the range check; text is read as a float
            value = raw if isinstance(raw, (int, float)) else float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a stamp past year 9999
        problems.append(f"{what} {show(raw)} is not a valid {kind} bound")
        return None
    why = range_problem(value, kind)
    if why is not None:  # a YAML date reads as 0001-01-01, not datetime.date(1, 1, 1)
        problems.append(f"{what} {show(raw.isoformat() if isinstance(raw, dt.date) else raw)} "
                        f"{why}")
        return None
    if kind in NUMERIC_KINDS:
        value = float(value)
        if kind == "integer" and not value.is_integer():
            problems.append(f"{what} {show(raw)} is not a whole number")
    return value


def _parse_column(raw: Any, index: int, problems: list[str], lim: Limits
                  ) -> Column | Identifier | None:
    if not isinstance(raw, dict):
        problems.append(f"columns[{index}] must be a mapping with at least 'name' and 'kind'")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"columns[{index}] has no name")
        return None
    label = f"column {show(name)}"
    if raw.get("role") == "identifier":
        return parse_identifier(raw, label, problems)
    if raw.get("generalize") == "zip3" and "categories" not in raw:
        raw = {**raw, "categories": list(ZIP3_VOCABULARY)}
    known = {"name", "kind", "nullable", "min", "max", "categories", "catch_all", "aliases",
             "transform", "bins", "role", "description", "generalize", *KEYS}
    for key in sorted(set(map(str, raw)) - known):  # str: a key may be a number or null
        problems.append(f"{label}: unknown key {show(key)} (known: {', '.join(sorted(known))})")
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{label}: kind {show(kind)} is not one of {', '.join(KINDS)}")
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
                problems.append(f"{label}: min {show(raw['min'])} and max {show(raw['max'])} "
                                "cannot be compared (give both with or both without a timezone)")
    elif "min" in raw or "max" in raw:
        problems.append(f"{label}: 'min'/'max' only apply to numeric and temporal columns")
    categories: tuple[str, ...] = ()
    if kind == "categorical":
        cats = raw.get("categories")
        if not isinstance(cats, list) or not cats:
            problems.append(f"{label}: a categorical column needs a non-empty 'categories' list")
        elif (too_many := _past(lim, "categories", len(cats), f"{label}: categories")):
            problems.append(too_many)
        elif any(isinstance(c, (list, dict)) for c in cats):
            problems.append(f"{label}: each category must be a plain value, not a list or "
                            "mapping")
        else:
            categories = tuple(str(c) for c in cats)
            dupes = sorted(c for c, n in Counter(categories).items() if n > 1)
            if dupes:
                problems.append(f"{label}: duplicate categories {show(dupes)}")
    elif "categories" in raw:
        problems.append(f"{label}: 'categories' only apply to categorical columns")
    catch_all = raw.get("catch_all")
    if catch_all is not None:
        catch_all = str(catch_all)
        if kind != "categorical" or catch_all not in categories:
            problems.append(f"{label}: catch_all {show(catch_all)} must be one of its "
                            "categories")
    aliases_raw = raw.get("aliases") or {}
    if not isinstance(aliases_raw, dict):
        problems.append(f"{label}: 'aliases' must map raw values to declared values")
        aliases_raw = {}
    aliases = tuple((str(k), str(v)) for k, v in aliases_raw.items())
    declared = set(categories)
    for k, v in aliases:
        if kind == "categorical" and v not in declared:
            problems.append(f"{label}: alias {show(k)} -> {show(v)} points outside its "
                            "categories")
    transform = raw.get("transform", "none")
    if transform not in TRANSFORMS:
        problems.append(f"{label}: transform {show(transform)} is not one of "
                        f"{', '.join(TRANSFORMS)}")
    elif transform == "log" and (kind not in NUMERIC_KINDS
                                 or (minimum is not None and minimum < 0)):
        problems.append(f"{label}: transform 'log' needs a numeric column with min >= 0")
    bins = raw.get("bins")
    if bins is not None and (not isinstance(bins, int) or isinstance(bins, bool) or bins < 1):
        problems.append(f"{label}: bins must be a positive integer")
    elif bins is not None and (too_many := _past(lim, "categories", bins, f"{label}: bins")):
        problems.append(too_many)  # a bin is a state of the column, as a category is
    role = raw.get("role", "feature")
    if role not in ROLES:
        problems.append(f"{label}: role {show(role)} is not one of {', '.join(ROLES)}")
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
                            f"the sparse {', '.join(SPARSE_ZIP3)}; found {show(bad[:5])}")
        if "000" not in categories:
            categories += ("000",)
    shown = parse_output(raw, name, kind, generalize, (minimum, maximum), label, problems)
    if len(problems) > before:
        return None
    return Column(kind=kind, nullable=nullable, minimum=minimum, maximum=maximum,
                  categories=categories, catch_all=catch_all, aliases=aliases,
                  transform=transform, bins=bins, role=role,
                  description=str(raw.get("description", "")), generalize=generalize, **shown)


def schema_from_dict(raw: Any, path: str | None = None) -> Schema:
    """Builds a Schema from its YAML/JSON form, reporting every problem at once.

    Raises:
        SchemaError: naming the file and each problem found.
    """
    where = path or "schema"
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: a schema must be a mapping with 'name' and 'columns'")
    try:
        lim = limits()
    except LimitError as exc:
        raise SchemaError(bounded(f"{where}: {exc}")) from None
    problems: list[str] = []
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append("'name' is missing")
    cols_raw = raw.get("columns")
    if not isinstance(cols_raw, list) or not cols_raw:
        problems.append("'columns' must be a non-empty list")
        cols_raw = []
    too_many = _past(lim, "columns", len(cols_raw), f"{where}: columns")
    if too_many:  # before any column is read
        raise SchemaError(bounded(too_many))
    parsed = [_parse_column(c, i, problems, lim) for i, c in enumerate(cols_raw)]
    identifiers = [c for c in parsed if isinstance(c, Identifier)]
    columns = _resolve_generalizations([c for c in parsed if isinstance(c, Column)], problems)
    check_names(columns, identifiers, problems)
    for c in columns if identifiers else ():  # a person's record: Safe Harbor applies
        if c.kind in TEMPORAL_KINDS:
            problems.append(f"column {show(c.input_name)}: a {c.kind} in a table with direct "
                            "identifiers "
                            "(a person's record): Safe Harbor allows no date element finer "
                            "than the year: declare role: quasi_identifier with generalize: "
                            "year or {offset_from: <index date column>}")
    names = Counter(cname for c in cols_raw
                    if isinstance(c, dict) and isinstance(cname := c.get("name"), str))
    for dupe in sorted(n for n, count in names.items() if count > 1):
        problems.append(f"duplicate column name {show(dupe)}")
    known = {"name", "version", "description", "source", "license", "missing_values", "csv",
             "budget", "columns", "survival", "draft"}
    for key in sorted(set(map(str, raw)) - known):
        problems.append(f"unknown key {show(key)} (known: {', '.join(sorted(known))})")
    if sum(c.role == "target" for c in columns) > 1:
        problems.append("more than one column has role 'target'")
    missing = raw.get("missing_values", list(DEFAULT_MISSING))
    if not isinstance(missing, list):
        problems.append("'missing_values' must be a list of tokens")
        missing = list(DEFAULT_MISSING)
    csv_raw = _parse_csv(raw.get("csv") or {}, problems)
    budget = _parse_budget(raw.get("budget"), problems)
    draft = _parse_draft(raw.get("draft"), "draft" in raw, problems)
    survival = parse_survival(raw.get("survival"), problems)
    if survival is not None:  # in released names, which the checks and the steps use
        survival = released_survival(survival, columns, problems)
    if problems:
        raise SchemaError(f"{where}: " + _listed(problems))
    assert isinstance(name, str)  # else 'name' is missing was a problem
    return Schema(
        name=name, version=str(raw.get("version", "1")), columns=tuple(columns),
        description=str(raw.get("description", "")), source=str(raw.get("source", "")),
        license=str(raw.get("license", "")), missing_values=tuple(str(m) for m in missing),
        csv=CsvFormat(**csv_raw), budget=budget, path=path, identifiers=tuple(identifiers),
        survival=survival, draft=draft,
        order=tuple(getattr(c, "input_name", c.name) for c in parsed if c is not None),
    )


def _past(lim: Limits, name: str, value: int, what: str) -> str | None:
    """The problem of ``value`` past the limit ``name`` (``Limits.check``'s line), or None."""
    try:
        lim.check(name, value, what)
    except LimitError as exc:
        return str(exc)
    return None


def _listed(problems: list[str], most: int = MOST_PROBLEMS) -> str:
    """The problems as one line: the first ``most``, then how many more there are."""
    shown = "; ".join(problems[:most])
    return shown + (f"; and {len(problems) - most:,} more problems" if len(problems) > most
                    else "")


def _parse_csv(raw: Any, problems: list[str]) -> dict[str, Any]:
    """The ``csv:`` layout as CsvFormat's arguments: ``header`` true or false, ``delimiter``
    and ``comment`` text on one line (ingest hands them to pandas and str.startswith, which
    fail on a number or an empty string only once a run has reserved its budget)."""
    if not isinstance(raw, dict) or set(map(str, raw)) - {"header", "delimiter", "comment"}:
        problems.append("'csv' may only set header, delimiter and comment")
        return {}
    if not isinstance(raw.get("header", True), bool):
        problems.append("csv: header must be true or false")
        return {}
    for key in ("delimiter", "comment"):
        value = raw.get(key, ",")
        if key == "comment" and value is None:  # no comment lines: CsvFormat's default
            continue
        if not (isinstance(value, str) and value and "\n" not in value and "\r" not in value
                and '"' not in value):
            problems.append(f"csv: {key} must be text on one line without a double quote, "
                            f"got {show(value)}")
            return {}
    return dict(raw)


def _resolve_generalizations(columns: list[Column], problems: list[str]) -> list[Column]:
    """Each generalised column in its output form (see schemas.roles); references checked."""
    declared = {c.input_name: c for c in columns}  # input forms, before any is generalised
    out = []
    for c in columns:
        gen = c.generalize
        if gen is None:
            out.append(c)
            continue
        ref = declared.get(gen.reference) if gen.reference else None
        if gen.rule in ("year", "offset_from") and (
                BIRTH.search(c.input_name) or (gen.reference and BIRTH.search(gen.reference))):
            problems.append(f"column {show(c.input_name)}: generalize {gen.rule} "
                            f"{'on' if BIRTH.search(c.input_name) else 'from'} a birth date "
                            "keeps a "
                            "year or an age in days, which Safe Harbor forbids when it may show "
                            "an age over 89: use generalize: {age_at: <date column>} on the "
                            "birth date (ages over 89 become 90), or drop it (role: identifier)")
            continue
        if gen.reference and (ref is None or ref.kind not in TEMPORAL_KINDS):
            problems.append(f"column {show(c.input_name)}: generalize {gen.rule} refers to "
                            f"{show(gen.reference)}, which is not a declared date or datetime "
                            "column (identifiers are dropped and cannot be referred to)")
            continue
        kind, low, high = output_form(gen, ref)
        if gen.rule == "age90" and gen.source_kind == "float":
            # Ingest caps ages over 89 at 90 and keeps the others as they are, so a float age
            # (37.5) stays a float: as an integer column every fractional age was rejected.
            kind = "float"
        if low is not None and low > high:
            problems.append(f"column {show(c.input_name)}: its generalised bounds are empty "
                            f"({low:g} > {high:g}): check min/max against {show(gen.reference)}")
            continue
        why = range_problem(low, kind) or range_problem(high, kind) if low is not None else None
        if why is not None:  # an offset_from's own min/max
            problems.append(f"column {show(c.input_name)}: generalize {gen.rule}: a bound {why}")
            continue
        out.append(replace(c, kind=kind, minimum=low, maximum=high))
    return out


def _parse_budget(raw: Any, problems: list[str]) -> tuple[float, float] | None:
    """The data set's total budget: ``budget: {epsilon: 3, delta: 1e-6}``, within the range
    a run's budget may take (``synth.privacy.PrivacyBudget``)."""
    if raw is None:
        return None
    if not (isinstance(raw, dict) and set(raw) == {"epsilon", "delta"}
            and budget_in_range(raw["epsilon"], raw["delta"])):
        problems.append(f"'budget' must be {{epsilon: a number from {MIN_EPSILON:g} to "
                        f"{MAX_EPSILON:g}, delta: a number from {MIN_DELTA:g} to below 1}}")
        return None
    return float(raw["epsilon"]), float(raw["delta"])


def _parse_draft(raw: Any, present: bool, problems: list[str]) -> Draft | None:
    """The mark of a drafted schema: ``draft: {dp: false}`` (read without DP, refused by
    ``synth run`` until reviewed) or ``draft: {dp: true, epsilon: 1.0, delta: 1e-9}``."""
    if not present:
        return None
    usage = ("'draft' must be {dp: false} or {dp: true, epsilon: <spent>, delta: <spent>}; "
             "delete the line once the schema is reviewed")
    if not isinstance(raw, dict) or not isinstance(raw.get("dp"), bool):
        problems.append(usage)
        return None
    if not raw["dp"]:
        if set(raw) != {"dp"}:
            problems.append(usage)
            return None
        return Draft(dp=False)
    # what a draft spent: at most what a run may (an epsilon of 1e3), and nothing negative
    if set(raw) != {"dp", "epsilon", "delta"} or not budget_in_range(
            raw["epsilon"], raw["delta"], low_epsilon=0.0, low_delta=0.0) or raw["epsilon"] <= 0:
        problems.append(usage)
        return None
    return Draft(dp=True, epsilon=float(raw["epsilon"]), delta=float(raw["delta"]))


def load_schema(path: str | Path) -> Schema:
    """Reads and checks a schema file (YAML or JSON).

    Raises:
        SchemaError: the file is missing, past a limit, does not parse (see
            ``schemas.safe_yaml``), or contradicts itself.
    """
    p = Path(path)
    return schema_from_dict(read_yaml(p, "schema"), str(p))


def dump_schema(schema: Schema) -> str:
    """The YAML text of a schema, in the layout load_schema reads."""
    return yaml.safe_dump(schema.to_dict(), sort_keys=False, allow_unicode=True, width=100)
