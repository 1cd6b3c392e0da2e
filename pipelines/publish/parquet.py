"""The Parquet of a release: Arrow types taken from the Schema (never inferred from the frame),
the ``synth.`` key-values of the footer, the file written and fsynced, and read back.

Each field carries what its column holds (``pipelines.columns.field_metadata``), and the
footer the release's metadata (epsilon, delta, run id...) under ``synth.<key>``, so that a
reader of the file alone knows what it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.columns import column_notes, field_metadata, surrogate_metadata
from pipelines.publish.names import PREFIX, PublishError
from schemas.model import Column, Schema, pandas_dtype

_ARROW_TYPES = {"integer": pa.int64(), "float": pa.float64(), "boolean": pa.bool_(),
                "date": pa.date32(), "datetime": pa.timestamp("us")}


def to_arrow(frame: pd.DataFrame, schema: Schema, metadata: Mapping[str, str]) -> pa.Table:
    """Builds the Arrow table of a release with types taken from the schema, not inferred.

    Columns follow the schema's order; the frame's index is dropped. Missing values (NaN
    included) become nulls. Datetimes are floored to microseconds and dates to days.

    Args:
        frame: rows with (at least castable to) the dtypes of ``schemas.pandas_dtype``.
        schema: the declared columns; categoricals become ``dictionary<int32, string>`` over
            the declared categories, in their declared order.
        metadata: string key-values stored on the Arrow schema as ``synth.<key>``, plus the
            whole mapping as JSON under ``synth.metadata``; ``synth.schema_fingerprint`` is
            added from ``schema.fingerprint()``. Each field carries what its column holds
            (``pipelines.columns.field_metadata``: description, unit, rule, ``synthetic``),
            and ``synth.columns`` holds the same per column as JSON, for readers of the
            file's key-values alone.

    Raises:
        PublishError: listing every problem at once (missing or unexpected columns, values
            outside the declared categories, nulls in non-nullable columns, bad metadata).
    """
    problems: list[str] = []
    # identifiers the schema asks to carry as fake surrogates come first, as strings
    fakes = [i.name for i in schema.identifiers if i.surrogate and i.name in frame.columns]
    missing = [n for n in schema.names if n not in frame.columns]
    extra = [str(n) for n in frame.columns if n not in schema.names and n not in fakes]
    twice = sorted({str(n) for n in frame.columns[frame.columns.duplicated()]})
    if missing:
        problems.append(f"columns {missing} are declared but absent from the frame")
    if extra:
        problems.append(f"columns {extra} are not in the schema (drop them before publishing)")
    if twice:
        problems.append(f"columns {twice} appear more than once in the frame")
    surrogates = [pa.array(frame[n].astype("string"), pa.string(), from_pandas=True)
                  for n in fakes if n not in twice]
    if any(a.null_count for a in surrogates):
        problems.append(f"surrogate columns {fakes} have missing values")
    arrays = [_to_array(frame[c.name], c, problems) for c in schema.columns
              if c.name not in missing and c.name not in twice]
    meta = _metadata(metadata, schema, problems)
    if problems:
        raise PublishError(f"cannot publish against {schema.where}: " + "; ".join(problems))
    idents = {i.name: i for i in schema.identifiers}
    fields = [pa.field(n, pa.string(), nullable=False, metadata=surrogate_metadata(idents[n]))
              for n in fakes] + [
        pa.field(c.name, a.type, nullable=c.nullable, metadata=field_metadata(c))
        for c, a in zip(schema.columns, arrays)]
    meta[PREFIX + "columns"] = json.dumps(column_notes(schema, fakes), sort_keys=True)
    return pa.Table.from_arrays(surrogates + arrays, schema=pa.schema(fields, metadata=meta))


def _to_array(series: pd.Series, column: Column, problems: list[str]) -> pa.Array:
    label = f"column '{column.name}'"
    if column.kind == "categorical":
        cat = pd.Categorical(series, categories=list(column.categories))
        unknown = sorted({str(v) for v in series[series.notna() & (cat.codes == -1)]})
        if unknown:
            problems.append(f"{label} has values {unknown[:5]} outside its declared categories")
        codes = cat.codes.astype("int32")  # (rows,), -1 for missing
        array = pa.DictionaryArray.from_arrays(
            pa.array(codes, mask=codes == -1), pa.array(column.categories, pa.string()))
    else:
        try:
            values = series.astype(pandas_dtype(column))
        except (TypeError, ValueError) as exc:
            problems.append(f"{label} does not cast to {pandas_dtype(column)} ({exc})")
            return pa.nulls(len(series), _ARROW_TYPES[column.kind])
        if column.is_temporal:
            values = values.dt.floor("D" if column.kind == "date" else "us")
            array = pa.array(values, pa.timestamp("ns"), from_pandas=True)
            array = array.cast(_ARROW_TYPES[column.kind])
        else:
            array = pa.array(values, _ARROW_TYPES[column.kind], from_pandas=True)
    if array.null_count and not column.nullable:
        problems.append(f"{label} has {array.null_count} missing values but is not nullable")
    return array


def _metadata(metadata: Mapping[str, str], schema: Schema, problems: list[str]) -> dict[str, str]:
    merged = {"schema_fingerprint": schema.fingerprint(), **metadata}
    bad = [k for k, v in merged.items() if not (isinstance(k, str) and k and isinstance(v, str))]
    reserved = [k for k in ("metadata", "columns") if k in merged]
    if bad or reserved:
        problems.append(f"metadata keys {bad or reserved} need non-empty string keys other "
                        "than 'metadata' and 'columns' and string values (json.dumps anything "
                        "structured)")
        return {}
    if merged["schema_fingerprint"] != schema.fingerprint():
        problems.append("metadata 'schema_fingerprint' is not this schema's fingerprint")
    meta = {PREFIX + k: v for k, v in merged.items()}
    meta[PREFIX + "metadata"] = json.dumps(merged, sort_keys=True)
    return meta


def footer_metadata(metadata: Mapping[str, str], schema) -> dict[str, str]:
    """The ``synth.`` footer key-values ``to_arrow`` stores, for any schema with ``where``
    and ``fingerprint()`` (tabular or image).

    Raises:
        PublishError: bad keys or values, or a fingerprint that is not the schema's.
    """
    problems: list[str] = []
    meta = _metadata(metadata, schema, problems)
    if problems:
        raise PublishError(f"cannot publish against {schema.where}: " + "; ".join(problems))
    return meta


def write_parquet(table: pa.Table, path: Path) -> None:
    """Writes ``table`` as the Parquet file ``path`` and fsyncs it (not atomic by itself:
    the caller writes into a staging folder, see ``pipelines.publish.atomic``)."""
    with open(path, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())


def read_release_metadata(parquet_path: Path) -> dict[str, str]:
    """Reads the ``synth.`` key-values of a release's Parquet footer, prefix stripped.

    ``synth.metadata`` (the same mapping as JSON) and ``synth.columns`` (the columns' notes,
    see ``read_column_metadata``) are left out.

    Raises:
        PublishError: the file is missing or not Parquet.
    """
    try:
        raw = pq.read_metadata(parquet_path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise PublishError(f"{parquet_path}: cannot read Parquet metadata ({exc}); "
                           "check the path points at a release's data.parquet") from exc
    out = {k.decode()[len(PREFIX):]: v.decode() for k, v in raw.items()
           if k.decode().startswith(PREFIX)}
    out.pop("metadata", None)
    out.pop("columns", None)
    return out


def read_column_metadata(parquet_path: Path) -> dict[str, dict[str, str]]:
    """What each column of a release says it holds: its Arrow field metadata (description,
    unit, rule, ``synthetic``...; see ``pipelines.columns.field_metadata``), by column name,
    in the file's column order.

    Raises:
        PublishError: the file is missing or not Parquet.
    """
    try:
        schema = pq.read_schema(parquet_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise PublishError(f"{parquet_path}: cannot read Parquet schema ({exc}); "
                           "check the path points at a release's data.parquet") from exc
    return {f.name: {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            for f in schema}
