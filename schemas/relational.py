"""The multi-table schema: persons and the rows each of them has in other tables.

The privacy unit is a person: one row of the ``person`` table plus every row that references
it in a child table. Each table is declared as a one-table schema (its ``columns``,
``missing_values``, ``csv``, ``survival``), plus what links it:

    kind: multi-table
    name: pbc
    person: patients                 # the table whose rows are persons
    tables:
      - name: patients
        key: id                      # primary key: read to link rows, never released
        columns: [...]
      - name: visits
        parent: {table: patients, key: id}   # this table's column `id` names its person
        max_rows_per_person: 16      # rows beyond it are dropped before any measurement
        sequence: {column: day, start: 0, within: futime}
        per_person: [futime, status] # one value per person, repeated on each of their rows
        same_as: {age: age}          # columns that repeat a person-table column
        columns: [...]

``sequence``: the child rows of a person are ordered by ``column`` (a number of days since
enrolment): the first is at ``start``, they increase, and none lies past the person's
``within`` (a person-table or ``per_person`` column: the follow-up time). ``per_person``:
columns of the child table that hold one value per person (a follow-up time, an outcome);
they are modelled with the person, once. ``same_as``: child columns that hold the person's
value of a parent column, released as that value (never modelled twice). Keys are declared
here, not among the columns: they are read only to link rows and replaced by fresh
synthetic keys. Everything here is public, as for one table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.limits import bounded
from schemas.model import Schema, SchemaError, show
from schemas.parse import _parse_budget, _parse_draft, schema_from_dict
from schemas.safe_yaml import read_yaml

KIND = "multi-table"
MAX_CAP = 10_000  # the largest declared rows per person
_TOP = ("kind", "name", "version", "description", "source", "license", "person", "tables",
        "budget", "draft")
_LINKS = ("key", "parent", "max_rows_per_person", "sequence", "per_person", "same_as")


@dataclass(frozen=True)
class Sequence:
    """Child rows ordered by ``column``: the first at ``start``, increasing, at most the
    person's ``within`` (a person-table or per-person column; None: no upper bound)."""

    column: str
    start: float | None = None
    within: str | None = None


@dataclass(frozen=True)
class Child:
    """How a child table hangs off the person table."""

    key: str  # the column naming the person (the foreign key)
    cap: int  # rows per person kept; the rest are dropped before any measurement
    sequence: Sequence | None = None
    per_person: tuple[str, ...] = ()  # columns holding one value per person
    same_as: tuple[tuple[str, str], ...] = ()  # (child column, parent column)


@dataclass(frozen=True)
class MultiTableSchema:
    """Tables linked to one person table; ``children[name]`` for each other table."""

    name: str
    version: str
    person: str
    key: str  # the person table's primary key
    tables: dict[str, Schema]
    children: dict[str, Child]
    description: str = ""
    source: str = ""
    license: str = ""
    budget: tuple[float, float] | None = None
    path: str | None = None
    draft: Any = None
    raw: Any = None  # the parsed file, for the fingerprint

    @property
    def where(self) -> str:
        return self.path or f"schema '{self.name}'"

    @property
    def names(self) -> list[str]:
        """The tables, the person table first."""
        return [self.person, *self.children]

    def fingerprint(self) -> str:
        blob = json.dumps(self.raw, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


def is_multi_table(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("kind") == KIND


def is_multi_table_schema(path: str | Path) -> bool:
    """Whether a schema file declares ``kind: multi-table`` (a file that cannot be read is
    not: the tabular loader then reports what is wrong with it)."""
    try:
        return is_multi_table(read_yaml(Path(path), "schema"))
    except SchemaError:
        return False


def load_multi_table_schema(path: str | Path) -> MultiTableSchema:
    """Reads and checks a multi-table schema file.

    Raises:
        SchemaError: one line naming the file and every problem found.
    """
    return multi_table_from_dict(read_yaml(Path(path), "schema"), str(path))


def multi_table_from_dict(raw: Any, path: str | None = None) -> MultiTableSchema:
    where = path or "schema"
    if not is_multi_table(raw):
        raise SchemaError(f"{where}: a multi-table schema is a mapping with kind: {KIND}")
    problems: list[str] = []
    for key in sorted(set(map(str, raw)) - set(_TOP)):
        problems.append(f"unknown key {show(key)} (known: {', '.join(_TOP)})")
    name, person = raw.get("name"), raw.get("person")
    if not isinstance(name, str) or not name:
        problems.append("'name' is missing")
    entries = raw.get("tables")
    if not isinstance(entries, list) or len(entries) < 2:
        raise SchemaError(bounded(f"{where}: 'tables' must list at least two tables "
                                  "(the person table and a table of their rows)"))
    tables: dict[str, Schema] = {}
    links: dict[str, dict] = {}
    for i, entry in enumerate(entries):
        label = f"tables[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"{label} must be a mapping with a 'name'")
            continue
        table = entry["name"]
        label = f"table {show(table)}"
        if table in tables:
            problems.append(f"{label} is declared twice")
            continue
        links[table] = {k: entry[k] for k in _LINKS if k in entry}
        body = {k: v for k, v in entry.items() if k not in _LINKS}
        linked = _key_of(links[table], label, problems)
        if linked is not None:  # read to link rows, never modelled or released
            body["columns"] = _with_identifier(body.get("columns"), linked)
        try:
            tables[table] = schema_from_dict(body, path)
        except SchemaError as exc:
            problems.append(f"{label}: {str(exc).removeprefix(where + ': ')}")
    if not isinstance(person, str) or person not in links:
        problems.append(f"'person' must name one of the tables ({', '.join(map(show, links))})")
        raise SchemaError(bounded(f"{where}: " + "; ".join(problems)))
    pkey = links[person].get("key")
    if not isinstance(pkey, str) or "parent" in links[person]:
        problems.append(f"the person table {show(person)} needs 'key' (its primary key) "
                        "and no 'parent'")
    children = {t: c for t, spec in links.items() if t != person
                if (c := _child(t, spec, person, tables, problems)) is not None}
    budget = _parse_budget(raw.get("budget"), problems)
    draft = _parse_draft(raw.get("draft"), "draft" in raw, problems)
    if problems:
        raise SchemaError(bounded(f"{where}: " + "; ".join(problems)))
    assert isinstance(name, str) and isinstance(pkey, str)
    return MultiTableSchema(
        name=name, version=str(raw.get("version", "1")), person=person, key=pkey,
        tables=tables, children=children, description=str(raw.get("description", "")),
        source=str(raw.get("source", "")), license=str(raw.get("license", "")),
        budget=budget, path=path, draft=draft, raw=raw)


def _key_of(spec: dict, label: str, problems: list[str]) -> str | None:
    if "key" in spec:
        key = spec["key"]
    elif isinstance(spec.get("parent"), dict):
        key = spec["parent"].get("key")
    else:
        return None
    if not isinstance(key, str) or not key:
        problems.append(f"{label}: a key must be a column name")
        return None
    return key


def _with_identifier(columns: Any, key: str) -> Any:
    """The table's columns with its key declared an identifier: ingest then drops it before
    anything is modelled, and the release check scans every output for its values."""
    if not isinstance(columns, list):
        return columns
    named = [c for c in columns if isinstance(c, dict) and c.get("name") == key]
    if named:
        return columns  # declared by the owner (a second declaration is a problem below)
    return [{"name": key, "role": "identifier"}, *columns]


def _child(table: str, spec: dict, person: str, tables: dict[str, Schema],
           problems: list[str]) -> Child | None:
    label = f"table {show(table)}"
    parent = spec.get("parent")
    if not isinstance(parent, dict) or parent.get("table") != person:
        problems.append(f"{label}: 'parent' must be {{table: {person}, key: <column>}} "
                        "(every table but the person table references a person)")
        return None
    key = parent.get("key")
    cap = spec.get("max_rows_per_person")
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CAP:
        problems.append(f"{label}: 'max_rows_per_person' must be a whole number from 1 to "
                        f"{MAX_CAP} (rows beyond it are dropped before any measurement)")
        return None
    own, parent_schema = tables.get(table), tables.get(person)
    if own is None or parent_schema is None or not isinstance(key, str):
        return None  # its own problems are listed already
    known = set(own.names)
    per_person = spec.get("per_person", [])
    if not isinstance(per_person, list) or not set(per_person) <= known:
        problems.append(f"{label}: 'per_person' must list columns of this table")
        per_person = []
    pnames = set(parent_schema.names)
    sequence = _sequence(spec.get("sequence"), label, known, pnames | set(per_person), own,
                         problems)
    same = spec.get("same_as", {})
    if not isinstance(same, dict):
        problems.append(f"{label}: 'same_as' maps this table's columns to the person "
                        "table's")
        same = {}
    for c, p in same.items():
        if c not in known or p not in pnames:
            problems.append(f"{label}: same_as {show(c)}: {show(p)} must name a column here "
                            f"and one of {show(person)}")
    if set(per_person) & set(same):
        problems.append(f"{label}: a column is either per_person or same_as")
    if sequence is not None and sequence.column in set(same) | set(per_person):
        problems.append(f"{label}: the sequence column varies from row to row: it cannot be "
                        "per_person or same_as")
    return Child(key=key, cap=cap, sequence=sequence, per_person=tuple(map(str, per_person)),
                 same_as=tuple((str(c), str(p)) for c, p in same.items()))


def _sequence(raw: Any, label: str, known: set[str], pnames: set[str], own: Schema,
              problems: list[str]) -> Sequence | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("column") not in known:
        problems.append(f"{label}: 'sequence' must be {{column: <a numeric column>, start: "
                        "<number>, within: <a person-table column>}")
        return None
    column = own.column(raw["column"])
    if not column.is_numeric:
        problems.append(f"{label}: the sequence column {show(column.name)} must be numeric")
    start, within = raw.get("start"), raw.get("within")
    if start is not None and (isinstance(start, bool) or not isinstance(start, (int, float))):
        problems.append(f"{label}: sequence start must be a number")
        start = None
    if within is not None and within not in pnames:
        problems.append(f"{label}: sequence within {show(within)} must name a column of the "
                        "person table or a per_person column")
        within = None
    for key in sorted(set(map(str, raw)) - {"column", "start", "within"}):
        problems.append(f"{label}: unknown sequence key {show(key)}")
    return Sequence(column.name, None if start is None else float(start), within)

