"""Tests for pipelines.validate: the GX suite built from a schema, on tiny real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.validate import (
    ValidationFailed,
    ValidationOutcome,
    expectations_for,
    save_outcome,
    validate_synthetic,
)
from schemas import SCHEMA_DIR, load_schema, pandas_dtype, schema_from_dict

ADULT_DATA = Path("/work/shared/datasets/adult/adult.data")


@pytest.fixture(scope="module")
def adult_schema():
    return load_schema(SCHEMA_DIR / "adult.yaml")


@pytest.fixture(scope="module")
def adult_rows(adult_schema):
    """300 real Adult rows, cast to the schema's in-memory dtypes (a stand-in for synthetic)."""
    if not ADULT_DATA.exists():
        pytest.skip(f"{ADULT_DATA} is not available")
    raw = pd.read_csv(ADULT_DATA, header=None, names=adult_schema.names, nrows=300,
                      skipinitialspace=True, na_values=["?"])
    return raw.astype({c.name: pandas_dtype(c) for c in adult_schema.columns})


@pytest.fixture
def adult(adult_rows):
    return adult_rows.copy()


def failures_naming(outcome: ValidationOutcome, column: str) -> list[str]:
    return [line for line in outcome.failed if f"({column}" in line or f"'{column}'" in line]


def test_correct_frame_passes(adult, adult_schema):
    assert adult["workclass"].isna().any(), "sample should exercise a nullable column's nulls"
    outcome = validate_synthetic(adult, adult_schema)
    assert outcome.success, outcome.failed
    assert outcome.failed == ()
    assert outcome.evaluated == len(expectations_for(adult_schema))
    json.dumps(outcome.result)
    assert outcome.result["statistics"]["successful_expectations"] == outcome.evaluated


def test_suite_comes_from_schema(adult_schema):
    types = [e.expectation_type for e in expectations_for(adult_schema)]
    n_cat = sum(c.kind == "categorical" for c in adult_schema.columns)
    n_int = sum(c.kind == "integer" for c in adult_schema.columns)
    assert types[0] == "expect_table_columns_to_match_ordered_list"
    assert types.count("expect_column_values_to_be_in_set") == n_cat
    assert types.count("expect_column_values_to_be_of_type") == n_cat
    assert types.count("expect_column_values_to_be_in_type_list") == n_int
    assert types.count("expect_column_values_to_be_between") == n_int
    non_null = sum(not c.nullable for c in adult_schema.columns)
    assert types.count("expect_column_values_to_not_be_null") == non_null


def test_value_above_bound_fails(adult, adult_schema):
    adult.loc[[3, 7], "age"] = 120
    outcome = validate_synthetic(adult, adult_schema)
    assert not outcome.success
    (line,) = outcome.failed
    assert line.startswith("expect_column_values_to_be_between(age, 17..90)")
    assert "2 of 300 rows outside" in line and "120" in line


def test_category_outside_declared_set_fails(adult, adult_schema):
    # Same kind of dtype (categorical), so only the value check can catch it.
    adult["race"] = adult["race"].cat.add_categories(["Martian"])
    adult.loc[5, "race"] = "Martian"
    outcome = validate_synthetic(adult, adult_schema)
    assert not outcome.success
    (line,) = outcome.failed
    assert line.startswith("expect_column_values_to_be_in_set(race)")
    assert "Martian" in line


def test_null_in_non_nullable_column_fails(adult, adult_schema):
    adult.loc[0, "education"] = np.nan
    adult.loc[1, "age"] = pd.NA
    outcome = validate_synthetic(adult, adult_schema)
    assert not outcome.success
    assert failures_naming(outcome, "education") == [
        "expect_column_values_to_not_be_null(education): 1 of 300 rows null"]
    assert failures_naming(outcome, "age") == [
        "expect_column_values_to_not_be_null(age): 1 of 300 rows null"]


def test_missing_column_fails(adult, adult_schema):
    outcome = validate_synthetic(adult.drop(columns=["hours-per-week"]), adult_schema)
    assert not outcome.success
    assert outcome.failed[0] == (
        "expect_table_columns_to_match_ordered_list: missing ['hours-per-week']")
    assert all("hours-per-week" in line for line in outcome.failed)
    assert len(outcome.failed) > 1  # the column's own expectations cannot run either
    json.dumps(outcome.result)


@pytest.mark.parametrize("column, dtype", [
    ("age", "int64"),      # numpy int instead of the nullable Int64
    ("age", "float64"),
    ("sex", "str"),        # plain strings instead of the declared categorical
    ("hours-per-week", "Float64"),
])
def test_wrong_dtype_fails(adult, adult_schema, column, dtype):
    adult[column] = adult[column].astype(dtype)
    outcome = validate_synthetic(adult, adult_schema)
    assert not outcome.success
    (line,) = outcome.failed
    assert f"({column}, " in line and line.endswith(f"dtype is {adult[column].dtype}")


def test_temporal_and_boolean_columns_validate():
    schema = schema_from_dict({"name": "events", "columns": [
        {"name": "day", "kind": "date", "min": "2020-01-01", "max": "2020-12-31"},
        {"name": "at", "kind": "datetime", "min": "2020-01-01T00:00:00",
         "max": "2020-12-31T23:59:59", "nullable": True},
        {"name": "flag", "kind": "boolean", "nullable": True},
        {"name": "score", "kind": "float", "min": 0, "max": 1},
    ]})
    frame = pd.DataFrame({
        "day": ["2020-01-01", "2020-06-30", "2020-12-31"],
        "at": ["2020-01-01 00:00:00", None, "2020-12-31 23:59:59"],
        "flag": [True, None, False],
        "score": [0.0, 0.5, 1.0],
    }).astype({c.name: pandas_dtype(c) for c in schema.columns})
    outcome = validate_synthetic(frame, schema)
    assert outcome.success, outcome.failed

    frame.loc[2, "day"] = pd.Timestamp("2021-01-01")
    frame.loc[0, "at"] = pd.Timestamp("2019-12-31 23:59:59")
    outcome = validate_synthetic(frame, schema)
    assert [line.split("(")[1].split(",")[0] for line in outcome.failed] == ["day", "at"]
    assert "2021-01-01" in outcome.failed[0]
    json.dumps(outcome.result)

    frame["day"] = frame["day"].astype("datetime64[us]")
    assert failures_naming(validate_synthetic(frame, schema), "day")[0].startswith(
        "expect_column_values_to_be_in_type_list(day, ['datetime64[ns]'])")


def test_save_outcome_round_trips(adult, adult_schema, tmp_path):
    adult.loc[3, "age"] = 120
    outcome = validate_synthetic(adult, adult_schema)
    path = tmp_path / "validation.json"
    save_outcome(outcome, path)
    with path.open(encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["success"] is False
    assert doc["failed"] == list(outcome.failed)
    assert doc["result"] == outcome.result


def test_validation_failed_lists_failures_on_one_line(adult, adult_schema):
    adult.loc[3, "age"] = 120
    adult.loc[0, "education"] = np.nan
    outcome = validate_synthetic(adult, adult_schema)
    error = ValidationFailed(outcome)
    assert error.outcome is outcome
    message = str(error)
    assert "\n" not in message
    assert "failed 2 of" in message and "(age" in message and "(education)" in message
