"""Reading a schema: YAML or a mapping to a checked ``Schema``, and back to YAML.

Every problem in a schema file is collected and reported at once, naming the file and the
field; a schema that parses is consistent (bounds in order, references to declared columns,
Safe Harbor rules where a table holds a person's records).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from schemas.model import (
    DEFAULT_MISSING,
    KINDS,
    NUMERIC_KINDS,
    ROLES,
    TEMPORAL_KINDS,
    TRANSFORMS,
    Column,
    CsvFormat,
    Draft,
    Schema,
    SchemaError,
)
from schemas.roles import (
    BIRTH,
    SPARSE_ZIP3,
    ZIP3_VOCABULARY,
    Identifier,
    Survival,
    output_form,
    parse_generalization,
    parse_identifier,
    parse_survival,
)


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
    elif transform == "log" and (kind not in NUMERIC_KINDS
                                 or (minimum is not None and minimum < 0)):
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
             "budget", "columns", "survival", "draft"}
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
    draft = _parse_draft(raw.get("draft"), "draft" in raw, problems)
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
        survival=survival, order=tuple(c.name for c in parsed if c is not None), draft=draft,
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
        if gen.rule == "age90" and gen.source_kind == "float":
            # Ingest caps ages over 89 at 90 and keeps the others as they are, so a float age
            # (37.5) stays a float: as an integer column every fractional age was rejected.
            kind = "float"
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
    numbers = all(isinstance(raw.get(k), (int, float)) and not isinstance(raw.get(k), bool)
                  for k in ("epsilon", "delta"))
    if set(raw) != {"dp", "epsilon", "delta"} or not numbers or not (
            0 < raw["epsilon"] < float("inf") and 0 <= raw["delta"] < 1):
        problems.append(usage)
        return None
    return Draft(dp=True, epsilon=float(raw["epsilon"]), delta=float(raw["delta"]))


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
