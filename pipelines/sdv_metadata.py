"""SDV's single-table metadata and this tool's schemas, both ways, without importing SDV.

SDV (the Synthetic Data Vault) describes a table by a JSON document: each column's
``sdtype`` (numerical, categorical, boolean, datetime, id, or a kind of personal information
such as email), a primary key, and a few formats. It holds no bounds and no category lists,
which a schema must declare (differential privacy needs them from public knowledge); SDV 2's
detected metadata does record ranges and values (``range_min``, ``range_values``...), but
read from the rows without DP, so they are never copied. So:

- ``schema_from_sdv`` drafts a schema from such a document (SDV's single-table format, or its
  multi-table format holding one table or naming one with ``table``). The draft carries
  ``draft: {dp: false}``, so that ``synth run`` refuses it until a person has reviewed it and
  deleted that line, and every value the user must supply is ``null`` with a ``FILL IN``
  comment: ``synth schema check`` lists what is missing. ``id`` columns, the keys and columns
  of personal information become identifiers (dropped at ingest).
- ``schema_to_sdv`` writes SDV's single-table metadata for a schema: the input table it
  declares, identifiers included (sdtype id).

SDV is not imported here (its licence keeps it out of the release path): the documents are
plain JSON. A metadata file is read with the care of a schema file: a regular file, at most
``limits().schema_bytes`` bytes of UTF-8, nesting at most ``limits().schema_depth`` levels,
no key written twice, no NaN or Infinity, at most ``limits().columns`` columns; every
refusal is a ``SchemaError`` of one bounded line naming the file.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed; followed as Any

from schemas import DEFAULT_MISSING, Schema, SchemaError
from schemas.limits import LimitError, bounded, limits
from schemas.model import show

SINGLE_SPEC = "SINGLE_TABLE_V1"
TABLE_KEYS = frozenset({"columns", "primary_key", "alternate_keys", "sequence_key",
                        "sequence_index", "column_relationships", "METADATA_SPEC_VERSION"})
MULTI_KEYS = frozenset({"tables", "relationships", "METADATA_SPEC_VERSION"})
NAME_CHARS = 256  # the longest column or table name taken
TIME_CODES = ("%H", "%I", "%M", "%S", "%f", "%p", "%z", "%X", "%c", "%T", "%R")
FILL = "FILL IN"


def read_metadata(path: str | Path) -> Any:
    """The JSON document of an SDV metadata file, read with a schema file's care.

    Raises:
        SchemaError: one bounded line naming the file: it cannot be read, is past a limit,
            is not UTF-8 JSON, writes a key twice or holds NaN or Infinity.
    """
    p = Path(path)
    try:
        lim = limits()
    except LimitError as exc:
        raise SchemaError(bounded(f"{p}: {exc}")) from None

    def refuse(problem: str) -> SchemaError:
        return SchemaError(bounded(f"{p}: {problem}"))

    try:
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):
            raise refuse("is not a regular file: give the path of an SDV metadata JSON file")
        if info.st_size > lim.schema_bytes:
            raise refuse(f"SDV metadata of {info.st_size:,} bytes exceeds the limit of "
                         f"{lim.schema_bytes:,} (raise it with SYNTH_MAX_SCHEMA_BYTES if this "
                         "is meant)")
        with open(p, "rb") as f:
            data = f.read(lim.schema_bytes + 1)
    except OSError as exc:
        raise refuse(f"cannot read the SDV metadata: {exc.strerror or exc}") from None
    if len(data) > lim.schema_bytes:
        raise refuse(f"SDV metadata exceeds the limit of {lim.schema_bytes:,} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(f"SDV metadata is not UTF-8 text (byte {exc.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise refuse(f"SDV metadata does not parse as JSON at line {exc.lineno}: "
                     f"{exc.msg}") from None
    except ValueError as exc:  # a duplicate key, NaN or Infinity
        raise refuse(f"SDV metadata {exc}") from None
    except RecursionError:
        raise refuse(f"SDV metadata is nested past {lim.schema_depth} levels") from None
    if _depth(doc) > lim.schema_depth:
        raise refuse(f"SDV metadata is nested past {lim.schema_depth} levels")
    return doc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"writes the key {show(key)} twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not a JSON number")


def _depth(doc: Any) -> int:
    """The nesting depth of a JSON document (1 for a scalar), without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        children = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else ())
        stack.extend((c, depth + 1) for c in children)
    return deepest


def pick_table(doc: Any, where: str, table: str | None = None) -> tuple[str | None, dict]:
    """The table a metadata document describes: (its name, or None for the single-table
    format, and its dict).

    Raises:
        SchemaError: not SDV metadata, several tables and no ``table``, or no such table.
    """
    if not isinstance(doc, dict):
        raise SchemaError(f"{where}: SDV metadata must be a JSON object")
    if "tables" not in doc:
        if table is not None:
            raise SchemaError(f"{where}: --table applies to SDV's multi-table metadata (with "
                              "'tables'); this is single-table metadata")
        return None, doc
    extra = sorted(set(doc) - MULTI_KEYS)
    tables = doc["tables"]
    if extra or not isinstance(tables, dict):
        raise SchemaError(f"{where}: not SDV multi-table metadata: expected 'tables' (an "
                          f"object) and 'relationships'" + (f", not {show(extra)}" if extra
                                                           else ""))
    if table is None:
        if len(tables) != 1:
            names = ", ".join(show(t, 40) for t in list(tables)[:10])
            raise SchemaError(f"{where}: SDV metadata of {len(tables)} tables ({names}"
                              f"{', ...' if len(tables) > 10 else ''}): name one with --table")
        table = next(iter(tables))
    if table not in tables:
        raise SchemaError(f"{where}: SDV metadata has no table {show(table)} (it has "
                          f"{', '.join(show(t, 40) for t in list(tables)[:10])})")
    return table, tables[table]


def schema_from_sdv(path: str | Path, name: str | None = None, table: str | None = None
                    ) -> str:
    """The YAML text of a draft schema for the table an SDV metadata file describes.

    Args:
        path: SDV's single-table metadata, or its multi-table metadata.
        name: the data set's name (default: the table's name in multi-table metadata, else
            the file's name up to its first dot).
        table: the table of multi-table metadata (needed when it holds several).

    Raises:
        SchemaError: one bounded line naming the file (see ``read_metadata``, ``pick_table``),
            or a document that is not SDV metadata: unknown keys, a column without a known
            shape, a key naming no column.
    """
    where = str(path)
    found, meta = pick_table(read_metadata(path), where, table)
    columns = _columns(meta, where)
    name = name or found or Path(path).name.split(".")[0] or "data"
    _check_name(name, where, "data set name")
    keys = _keys(meta, columns, where)
    lines = [
        f"# DRAFT schema, converted from the SDV metadata in {Path(path).name}"
        + (f" (table {found})" if found else "") + ".",
        "# SDV's metadata holds no bounds and no category lists: every `null` marked FILL IN",
        "# must be declared from PUBLIC knowledge (a data dictionary, the study's design), never",
        "# read from the private rows (`synth schema draft --epsilon` reads them under DP).",
        "# `synth schema check` lists what is still missing; `synth run` refuses this schema",
        "# until the `draft:` line is deleted. SDV's id columns, keys and personal information",
        "# are identifiers here: dropped before training, never released. No value of the",
        "# metadata is copied (SDV 2 records ranges and values read from the rows, without DP).",
        yaml.safe_dump({"name": name, "version": "1"}, sort_keys=False).rstrip(),
        "draft: {dp: false}  # delete this line once every FILL IN is declared and reviewed",
        yaml.safe_dump({"missing_values": list(DEFAULT_MISSING)}, default_flow_style=None,
                       width=100).rstrip(),
    ]
    if meta.get("sequence_key") is not None or meta.get("sequence_index") is not None:
        lines.append("# REVIEW: SDV marks this table sequential (sequence_key/sequence_index): "
                     "this tool synthesizes independent rows")
    lines.append("columns:")
    for column, spec in columns.items():
        lines += _column_lines(column, spec, column in keys)
    return "\n".join(lines) + "\n"


def _columns(meta: Any, where: str) -> dict[str, dict]:
    if not isinstance(meta, dict) or not isinstance(meta.get("columns"), dict):
        raise SchemaError(f"{where}: not SDV table metadata: expected an object with "
                          "'columns' (an object of column name to its sdtype)")
    extra = sorted(set(meta) - TABLE_KEYS)
    if extra:
        raise SchemaError(bounded(f"{where}: SDV table metadata has unknown keys "
                                  f"{show(extra)} (expected some of "
                                  f"{', '.join(sorted(TABLE_KEYS))})"))
    columns = meta["columns"]
    try:
        limits().check("columns", len(columns), f"{where}: SDV metadata columns")
    except LimitError as exc:
        raise SchemaError(bounded(str(exc))) from None
    if not columns:
        raise SchemaError(f"{where}: SDV metadata declares no columns")
    for column, spec in columns.items():
        _check_name(column, where, "column name")
        if not isinstance(spec, dict) or not isinstance(spec.get("sdtype"), str):
            raise SchemaError(bounded(f"{where}: column {show(column)}: expected an object "
                                      "with an 'sdtype' string"))
        _check_name(spec["sdtype"], where, f"column {show(column)}'s sdtype")
    return columns


def _check_name(value: Any, where: str, what: str) -> None:
    if not isinstance(value, str) or not value.strip() or not value.isprintable() \
            or len(value) > NAME_CHARS:
        raise SchemaError(bounded(f"{where}: {what} {show(value)} is not a name of 1 to "
                                  f"{NAME_CHARS} printable characters"))


def _keys(meta: dict, columns: dict, where: str) -> set[str]:
    """The columns SDV's metadata names as keys (primary, alternate): identifiers here."""
    named: list[Any] = []
    for key in ("primary_key", "alternate_keys"):
        value = meta.get(key)
        for item in value if isinstance(value, list) else [value]:
            named += item if isinstance(item, list) else [item]  # composite keys: lists
    out = set()
    for column in named:
        if column is None:
            continue
        if not isinstance(column, str) or column not in columns:
            raise SchemaError(bounded(f"{where}: the key {show(column)} names no column of "
                                      "the SDV metadata"))
        out.add(column)
    return out


def _column_lines(column: str, spec: dict, key: bool) -> list[str]:
    """The draft's lines of one column (indented for the ``columns:`` list)."""
    sdtype = spec["sdtype"]
    quoted = json.dumps(column)  # a JSON string is a YAML string
    if key or sdtype == "id" or (sdtype not in ("numerical", "categorical", "boolean",
                                                "datetime") and spec.get("pii") is not False):
        why = ("SDV's key" if key else "SDV sdtype id" if sdtype == "id" else
               f"SDV sdtype {json.dumps(sdtype)} (personal information)")
        hint = ("; to carry fake values, add surrogate: <Faker provider> (SDV's sdtype names "
                "one)" if sdtype not in ("id", "numerical", "categorical", "boolean",
                                         "datetime") else "")
        return [f"  # REVIEW: {why}: an identifier, dropped before training{hint}",
                f"  - {{name: {quoted}, role: identifier}}"]
    out = [f"  - name: {quoted}"]
    if sdtype == "numerical":  # SDV 1's computer_representation, SDV 2's decimal_places
        representation = str(spec.get("computer_representation", "Float"))
        whole = (representation.lstrip("U").startswith("Int")
                 or spec.get("decimal_places") == 0)
        return out + [f"    kind: {'integer' if whole else 'float'}"] + _bounds("value")
    if sdtype == "boolean":
        return out + ["    kind: boolean"]
    if sdtype == "datetime":
        form = spec.get("datetime_format")
        timed = not isinstance(form, str) or any(code in form for code in TIME_CODES)
        note = "" if isinstance(form, str) else "  # REVIEW: date if it holds no time of day"
        return out + [f"    kind: {'datetime' if timed else 'date'}{note}"] + _bounds(
            "date" if not timed else "time")
    out.append("    kind: categorical")
    if sdtype == "ordinal":
        out[0] += "  # REVIEW: SDV sdtype ordinal (categories are unordered here)"
    elif sdtype != "categorical":
        out[0] += f"  # REVIEW: SDV sdtype {json.dumps(sdtype)} (not personal information)"
    return [*out, (f"    categories: null  # {FILL}: every value it can take, from public "
                   "knowledge (add catch_all: for the rest)")]


def _bounds(what: str) -> list[str]:
    return [f"    min: null  # {FILL}: the smallest {what} it can hold, from public knowledge",
            f"    max: null  # {FILL}: the largest"]


def schema_to_sdv(schema: Schema) -> dict[str, Any]:
    """SDV's single-table metadata for the input table ``schema`` declares: each column's
    sdtype (integer and float: numerical, with SDV's ``computer_representation``; date:
    datetime with ``%Y-%m-%d``), identifiers as sdtype id. No primary key is named (a
    schema does not say which column is unique), nor bounds or categories (SDV's metadata
    has no place for them)."""
    declared = schema.to_dict()["columns"]
    columns: dict[str, dict[str, Any]] = {}
    for c in declared:
        kind = c.get("kind")
        if c.get("role") == "identifier":
            columns[c["name"]] = {"sdtype": "id"}
        elif kind in ("integer", "float"):
            columns[c["name"]] = {"sdtype": "numerical", "computer_representation":
                                  "Int64" if kind == "integer" else "Float"}
        elif kind == "date":
            columns[c["name"]] = {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"}
        elif kind == "datetime":
            columns[c["name"]] = {"sdtype": "datetime"}
        else:  # categorical, boolean
            columns[c["name"]] = {"sdtype": kind}
    return {"METADATA_SPEC_VERSION": SINGLE_SPEC, "columns": columns}
