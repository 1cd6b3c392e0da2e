"""Validate a synthetic table against its schema with Great Expectations.

The suite is built from the schema alone (column order, dtypes, declared categories and
bounds, nullability), so building and running it reads nothing private. This is the only
module that imports great_expectations; it does so lazily because the import alone costs
several CPU-seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from schemas import Column, Schema

logger = logging.getLogger(__name__)

# GX's pandas type check compares the column dtype against the names below. Names such as
# "Int64" or "category" resolve to numpy's int64 or to nothing, so a correct Int64 or
# categorical column would fail; these were checked against GX 1.24.1 on pandas extension
# dtypes. Categorical dtypes only pass ExpectColumnValuesToBeOfType, by their scalar type.
_TYPE_NAMES = {"integer": "Int64Dtype", "float": "float64", "boolean": "BooleanDtype",
               "date": "datetime64[ns]", "datetime": "datetime64[ns]"}
_CATEGORICAL_TYPE = "CategoricalDtypeType"


@dataclass(frozen=True)
class ValidationOutcome:
    """What a validation run found.

    Attributes:
        success: whether every expectation passed.
        evaluated: how many expectations were evaluated.
        failed: one readable line per failed expectation.
        result: the GX validation result as a JSON-serialisable dict.
    """

    success: bool
    evaluated: int
    failed: tuple[str, ...]
    result: dict

    def to_json(self) -> str:
        """A summary, then GX's full result, as indented JSON."""
        doc = {"success": self.success, "evaluated": self.evaluated,
               "failed": list(self.failed), "result": self.result}
        return json.dumps(doc, indent=2) + "\n"


class ValidationFailed(Exception):
    """A synthetic table failed its checks; ``outcome`` says which, ``quarantine`` where the
    rows and reports were put instead of the release location (None: nowhere)."""

    def __init__(self, outcome: ValidationOutcome, quarantine: Path | None = None):
        self.outcome = outcome
        self.quarantine = quarantine
        where = f"; the release is quarantined in {quarantine}" if quarantine else ""
        super().__init__(f"synthetic data failed {len(outcome.failed)} of {outcome.evaluated} "
                         f"expectations: " + "; ".join(outcome.failed) + where)


def _bound(column: Column, value: Any) -> Any:
    """A schema bound in the form GX compares with the column's in-memory dtype."""
    if column.kind == "integer":
        return int(value)
    if column.kind == "float":
        return float(value)
    # GX raises on date and ISO-string bounds for a datetime64 column; naive datetimes work.
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time())
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def expectations_for(schema: Schema) -> list:
    """The GX expectations that a table following ``schema`` must meet.

    Args:
        schema: the declared columns; nothing is read from any data.

    Returns:
        GX Core 1.x expectation objects: the ordered column list, then per column its
        dtype, its allowed values or declared bounds, and non-nullness where declared.
    """
    import great_expectations.expectations as gxe

    out: list = [gxe.ExpectTableColumnsToMatchOrderedList(column_list=schema.names)]
    for c in schema.columns:
        if c.kind == "categorical":
            out.append(gxe.ExpectColumnValuesToBeOfType(column=c.name, type_=_CATEGORICAL_TYPE))
            out.append(gxe.ExpectColumnValuesToBeInSet(column=c.name, value_set=list(c.categories)))
        else:
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=c.name,
                                                            type_list=[_TYPE_NAMES[c.kind]]))
        if c.kind == "boolean":
            out.append(gxe.ExpectColumnValuesToBeInSet(column=c.name, value_set=[False, True]))
        if c.is_ranged:
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=c.name, min_value=_bound(c, c.minimum), max_value=_bound(c, c.maximum)))
        if not c.nullable:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=c.name))
    return out


def validate_synthetic(frame: pd.DataFrame, schema: Schema) -> ValidationOutcome:
    """Runs the schema's expectations on a synthetic table.

    Args:
        frame: synthetic rows, in the dtypes of ``schemas.pandas_dtype``.
        schema: the schema the rows claim to follow.

    Returns:
        The outcome; it does not raise on failure (raise ``ValidationFailed`` to stop).
    """
    outcome = run_suite(frame, f"{schema.name}-schema", expectations_for(schema), "SUMMARY",
                        describe=lambda r: _describe(r, frame))
    logger.info("validated %d rows of %s: %d of %d expectations failed", len(frame),
                schema.name, len(outcome.failed), outcome.evaluated)
    return outcome


def run_suite(frame: pd.DataFrame, name: str, expectations: list, result_format: Any,
              describe: Callable[[dict], str]) -> ValidationOutcome:
    """Runs expectations on one in-memory batch and sums up the result.

    Args:
        frame: the batch.
        name: the suite's name (a unique suffix is added).
        expectations: GX expectation objects.
        result_format: GX's result format for every expectation.
        describe: one line for a failed expectation's result.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )

    # A fresh in-memory context per call, with unique names, so that repeated calls in one
    # process never collide in GX's stores; no Data Docs site (GX's default ephemeral context
    # would create a temporary directory for one on every call and leave it behind).
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)))
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    tag = uuid.uuid4().hex[:12]
    batch = (context.data_sources.add_pandas(name=f"batch-{tag}")
             .add_dataframe_asset(name=f"{name}-{tag}")
             .add_batch_definition_whole_dataframe(f"whole-{tag}"))
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}-{tag}",
                                                   expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-validation-{tag}", data=batch, suite=suite))
    run = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    result = _jsonable(run.to_json_dict())
    # GX returns results in its own order; the suite's order reads table-first, then by column.
    order = {str(e.id): i for i, e in enumerate(suite.expectations)}
    result["results"].sort(key=lambda r: order.get(r["expectation_config"].get("id"), len(order)))
    failed = tuple(describe(r) for r in result["results"] if not r["success"])
    return ValidationOutcome(success=bool(run.success), evaluated=len(result["results"]),
                             failed=failed, result=result)


def save_outcome(outcome: ValidationOutcome, path: Path) -> None:
    """Writes the outcome as indented JSON: a summary, then GX's full result.

    Args:
        outcome: what ``validate_synthetic`` returned.
        path: the JSON file to write; its folder must exist.
    """
    Path(path).write_text(outcome.to_json(), encoding="utf-8")


def _jsonable(value: Any) -> Any:
    """A deep copy that ``json.dumps`` accepts (numpy scalars, as in STACK-NOTES 2.4)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, (dt.date, dt.datetime, pd.Timestamp)):
            return obj.isoformat()
        return str(obj)
    return json.loads(json.dumps(value, default=default))


def _describe(result: dict, frame: pd.DataFrame) -> str:
    """One line naming a failed expectation, its column and what was wrong."""
    config = result["expectation_config"]
    kind, kwargs = config["type"], config["kwargs"]
    column = kwargs.get("column")
    found = result.get("result") or {}
    if kind == "expect_table_columns_to_match_ordered_list":
        expected, observed = kwargs["column_list"], list(frame.columns)
        missing = [c for c in expected if c not in observed]
        extra = [c for c in observed if c not in expected]
        parts = (([f"missing {missing}"] if missing else [])
                 + ([f"unexpected {extra}"] if extra else []))
        what = ", ".join(parts) or "order differs"
        return f"{kind}: {what}"
    if column is not None and column not in frame.columns:
        return f"{kind}({column}): column is missing"
    # exception_info is either one record or a mapping of metric id to record.
    info = result.get("exception_info") or {}
    records = [info] if "raised_exception" in info else list(info.values())
    raised = [r for r in records if isinstance(r, dict) and r.get("raised_exception")]
    if raised:
        message = (str(raised[0].get("exception_message") or "").splitlines() or ["?"])[0]
        return f"{kind}({column}): could not run: {message}"
    if kind in ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"):
        expected = kwargs.get("type_list") or kwargs.get("type_")
        return f"{kind}({column}, {expected}): dtype is {frame[column].dtype}"
    counts = f"{found.get('unexpected_count')} of {found.get('element_count')} rows"
    sample = found.get("partial_unexpected_list") or []
    if kind == "expect_column_values_to_be_between":
        low, high = _number(kwargs.get("min_value")), _number(kwargs.get("max_value"))
        return f"{kind}({column}, {low}..{high}): {counts} outside, e.g. {sample[:5]}"
    if kind == "expect_column_values_to_be_in_set":
        return f"{kind}({column}): {counts} outside the declared set, e.g. {sample[:5]}"
    if kind == "expect_column_values_to_not_be_null":
        return f"{kind}({column}): {counts} null"
    return f"{kind}({column}): {found}"


def _number(value: Any) -> Any:
    """A bound as people write it: 17 rather than 17.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
