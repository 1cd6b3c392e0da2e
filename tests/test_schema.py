"""Tests for schemas.model and schemas.parse: the shipped schemas, the YAML round trip, and
every contradiction a schema file can hold, each reported as a SchemaError naming the file and
the problem."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml

from schemas import (
    SCHEMA_DIR,
    CsvFormat,
    Schema,
    SchemaError,
    dump_schema,
    load_schema,
    pandas_dtype,
    schema_from_dict,
)

ADULT = SCHEMA_DIR / "adult.yaml"
FLCHAIN = SCHEMA_DIR / "flchain.yaml"

# A small valid schema; each contradiction test below breaks one thing in a copy of it.
TOY = {
    "name": "toy",
    "version": "1",
    "columns": [
        {"name": "age", "kind": "integer", "min": 0, "max": 120},
        {"name": "color", "kind": "categorical", "categories": ["red", "green", "other"]},
        {"name": "score", "kind": "float", "min": 0.0, "max": 1.0, "nullable": True},
        {"name": "label", "kind": "boolean", "role": "target"},
    ],
}

# Every feature the schema model has, to prove dump_schema loses nothing.
FULL = {
    "name": "full",
    "version": "3",
    "description": "all the features",
    "source": "https://example.org/full",
    "license": "CC0",
    "missing_values": ["?", "", "n/a"],
    "csv": {"header": False, "delimiter": ";", "comment": "#"},
    "columns": [
        {"name": "id", "kind": "integer", "min": 1, "max": 10_000_000, "transform": "log",
         "bins": 40, "description": "a count"},
        {"name": "ratio", "kind": "float", "min": -1.5, "max": 2.25, "nullable": True},
        {"name": "city", "kind": "categorical", "categories": ["Oslo", "Lima", "yes", "1", "Other"],
         "catch_all": "Other", "aliases": {"oslo": "Oslo", "LIMA": "Lima"}},
        {"name": "flag", "kind": "boolean", "nullable": True},
        {"name": "day", "kind": "date", "min": "2000-01-01", "max": "2024-12-31"},
        {"name": "at", "kind": "datetime", "min": "2024-01-01T00:00:00",
         "max": "2024-06-30T12:30:45", "nullable": True},
        {"name": "outcome", "kind": "categorical", "categories": ["no", "yes"], "role": "target"},
    ],
}


def write(tmp_path, raw, name="schema.yaml"):
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


def schema_error(tmp_path, raw) -> str:
    """Loads ``raw`` from a file, expecting a SchemaError that names that file; its message."""
    path = write(tmp_path, raw)
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def toy_with(index: int | None = None, **changes) -> dict:
    """TOY with column ``index`` updated by ``changes`` (a value of None deletes the key)."""
    raw = copy.deepcopy(TOY)
    if index is not None:
        for key, value in changes.items():
            if value is None:
                raw["columns"][index].pop(key, None)
            else:
                raw["columns"][index][key] = value
    return raw


def same(a: Schema, b: Schema) -> bool:
    return dataclasses.replace(a, path=None) == dataclasses.replace(b, path=None)


# --- the shipped schemas ---------------------------------------------------------------------

def test_adult_schema_loads():
    schema = load_schema(ADULT)
    assert schema.name == "adult"
    assert schema.path == str(ADULT)
    assert len(schema.columns) == 15
    assert schema.names[0] == "age" and schema.names[-1] == "income"
    assert schema.target == "income"
    assert schema.csv == CsvFormat(header=False, delimiter=",", comment="|")
    assert set(schema.missing_values) == {"?", ""}
    assert {c.name for c in schema.columns if c.nullable} == {
        "workclass", "occupation", "native-country"}
    kinds = [c.kind for c in schema.columns]
    assert kinds.count("integer") == 6 and kinds.count("categorical") == 9
    age = schema.column("age")
    assert (age.minimum, age.maximum) == (17, 90)
    income = schema.column("income")
    assert income.categories == ("<=50K", ">50K")
    assert income.alias_map == {"<=50K.": "<=50K", ">50K.": ">50K"}
    assert schema.column("fnlwgt").transform == "log"
    with pytest.raises(KeyError):
        schema.column("nope")


def test_flchain_schema_loads():
    schema = load_schema(FLCHAIN)
    assert schema.name == "flchain"
    assert len(schema.columns) == 11
    assert schema.target == "death"
    assert schema.csv == CsvFormat()  # header line, comma separated
    assert "?" in schema.missing_values
    assert schema.column("mgus").kind == "boolean"
    assert schema.column("chapter").nullable and schema.column("creatinine").nullable
    assert (schema.column("futime").minimum, schema.column("futime").maximum) == (0, 6000)


@pytest.mark.parametrize("path", [ADULT, FLCHAIN], ids=["adult", "flchain"])
def test_every_column_has_what_its_kind_needs(path):
    for col in load_schema(path).columns:
        if col.is_ranged:
            assert col.minimum is not None and col.maximum is not None
            assert col.minimum <= col.maximum
        else:
            assert col.minimum is None and col.maximum is None
        if col.kind == "categorical":
            assert col.categories and len(set(col.categories)) == len(col.categories)


@pytest.mark.parametrize("path", [ADULT, FLCHAIN], ids=["adult", "flchain"])
def test_pandas_dtype_per_kind(path):
    for col in load_schema(path).columns:
        dtype = pandas_dtype(col)
        if col.kind == "integer":
            assert dtype == pd.Int64Dtype()
        elif col.kind == "float":
            assert dtype == np.dtype("float64")
        elif col.kind == "categorical":
            assert list(dtype.categories) == list(col.categories)
        elif col.kind == "boolean":
            assert dtype == pd.BooleanDtype()
    dated = schema_from_dict(FULL)
    assert pandas_dtype(dated.column("day")) == "datetime64[ns]"
    assert pandas_dtype(dated.column("at")) == "datetime64[ns]"


# --- dump_schema round trip -------------------------------------------------------------------

@pytest.mark.parametrize("path", [ADULT, FLCHAIN], ids=["adult", "flchain"])
def test_dump_of_shipped_schema_reloads_equal(path, tmp_path):
    schema = load_schema(path)
    text = dump_schema(schema)
    again = load_schema(write(tmp_path, text))
    assert again.fingerprint() == schema.fingerprint()
    assert same(again, schema)
    assert dump_schema(again) == text


def test_dump_of_every_feature_reloads_equal(tmp_path):
    schema = schema_from_dict(FULL)
    again = load_schema(write(tmp_path, dump_schema(schema)))
    assert again.fingerprint() == schema.fingerprint()
    assert same(again, schema)
    assert again.csv == CsvFormat(header=False, delimiter=";", comment="#")
    assert again.column("day").minimum == dt.date(2000, 1, 1)
    assert again.column("at").maximum == dt.datetime(2024, 6, 30, 12, 30, 45)
    assert again.column("city").categories == ("Oslo", "Lima", "yes", "1", "Other")
    assert again.column("city").catch_all == "Other"
    assert again.column("id").bins == 40


def test_fingerprint_names_the_content():
    a = schema_from_dict(TOY)
    moved = schema_from_dict(copy.deepcopy(TOY), path="elsewhere.yaml")
    assert a.fingerprint() == moved.fingerprint()
    wider = schema_from_dict(toy_with(0, max=121))
    assert wider.fingerprint() != a.fingerprint()


# --- contradictions: each one named, with the file ---------------------------------------------

def test_valid_toy_loads(tmp_path):
    schema = load_schema(write(tmp_path, TOY))
    assert schema.names == ["age", "color", "score", "label"]


def test_min_above_max(tmp_path):
    message = schema_error(tmp_path, toy_with(0, min=130))
    assert "column 'age'" in message and "min 130 is above max 120" in message


def test_duplicate_column_names(tmp_path):
    raw = copy.deepcopy(TOY)
    raw["columns"].append({"name": "age", "kind": "integer", "min": 0, "max": 9})
    assert "duplicate column name 'age'" in schema_error(tmp_path, raw)


def test_unknown_kind(tmp_path):
    message = schema_error(tmp_path, toy_with(1, kind="text"))
    assert "column 'color'" in message and "kind 'text'" in message
    assert "integer" in message  # lists the kinds it knows


@pytest.mark.parametrize("categories", [None, []], ids=["absent", "empty"])
def test_categorical_without_categories(tmp_path, categories):
    raw = toy_with(1, categories=None)
    if categories is not None:
        raw["columns"][1]["categories"] = categories
    message = schema_error(tmp_path, raw)
    assert "column 'color'" in message and "non-empty 'categories'" in message


def test_duplicate_categories(tmp_path):
    message = schema_error(tmp_path, toy_with(1, categories=["red", "green", "red"]))
    assert "column 'color'" in message and "duplicate categories ['red']" in message


def test_catch_all_not_among_categories(tmp_path):
    message = schema_error(tmp_path, toy_with(1, catch_all="misc"))
    assert "column 'color'" in message and "catch_all 'misc'" in message


def test_catch_all_among_categories_is_fine():
    assert schema_from_dict(toy_with(1, catch_all="other")).column("color").catch_all == "other"


@pytest.mark.parametrize("drop", [("min",), ("max",), ("min", "max")])
def test_numeric_column_without_bounds(tmp_path, drop):
    message = schema_error(tmp_path, toy_with(2, **{k: None for k in drop}))
    assert "column 'score'" in message and "'min' and 'max'" in message


def test_temporal_column_without_bounds(tmp_path):
    raw = copy.deepcopy(TOY)
    raw["columns"].append({"name": "when", "kind": "date"})
    assert "column 'when'" in schema_error(tmp_path, raw)


def test_yaml_that_does_not_parse_gives_the_line(tmp_path):
    text = ("name: toy\n"
            "columns:\n"
            "  - name: age\n"
            "    kind: integer\n"
            "    min: [0, 1\n"
            "    max: 120\n")
    message = schema_error(tmp_path, text)
    assert "does not parse as YAML" in message
    assert "at line 6" in message


def test_yaml_bad_indentation_gives_the_line(tmp_path):
    text = "name: toy\ncolumns:\n  - name: age\n   kind: integer\n"
    message = schema_error(tmp_path, text)
    assert "does not parse as YAML at line 4" in message


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert str(path) in str(info.value)
    assert "cannot read schema" in str(info.value)


def test_unknown_column_key(tmp_path):
    message = schema_error(tmp_path, toy_with(0, maximum=5))
    assert "column 'age': unknown key 'maximum'" in message


def test_unknown_top_level_key(tmp_path):
    raw = copy.deepcopy(TOY)
    raw["missing_value"] = ["?"]  # typo for missing_values: would silently use the defaults
    message = schema_error(tmp_path, raw)
    assert "missing_value" in message


def test_two_targets(tmp_path):
    raw = toy_with(1, role="target")
    assert "more than one column has role 'target'" in schema_error(tmp_path, raw)


@pytest.mark.parametrize("change, expected", [
    ({"min": "abc"}, "min 'abc' is not a valid integer bound"),
    ({"min": 0.5}, "min 0.5 is not a whole number"),
    ({"min": True}, "is not a valid integer bound"),
    ({"transform": "sqrt"}, "transform 'sqrt'"),
    ({"min": -1, "transform": "log"}, "transform 'log' needs a numeric column with min >= 0"),
    ({"bins": 0}, "bins must be a positive integer"),
    ({"role": "label"}, "role 'label'"),
    ({"nullable": "yes"}, "nullable must be true or false"),
])
def test_other_column_contradictions(tmp_path, change, expected):
    message = schema_error(tmp_path, toy_with(0, **change))
    assert "column 'age'" in message and expected in message


def test_bounds_and_categories_only_where_they_apply(tmp_path):
    raw = toy_with(1, min=0)
    raw["columns"][3]["categories"] = ["a"]
    message = schema_error(tmp_path, raw)
    assert "column 'color': 'min'/'max' only apply" in message
    assert "column 'label': 'categories' only apply" in message


def test_alias_outside_categories(tmp_path):
    message = schema_error(tmp_path, toy_with(1, aliases={"r": "crimson"}))
    assert "alias 'r' -> 'crimson' points outside its categories" in message


def test_schema_level_problems(tmp_path):
    message = schema_error(tmp_path, {"version": 1, "columns": [], "missing_values": "?",
                                      "csv": {"header": False, "quote": "'"}})
    assert "'name' is missing" in message
    assert "'columns' must be a non-empty list" in message
    assert "'missing_values' must be a list" in message
    assert "'csv' may only set" in message


def test_not_a_mapping(tmp_path):
    assert "must be a mapping" in schema_error(tmp_path, "- just\n- a list\n")
    assert "must be a mapping" in schema_error(tmp_path, "")


def test_several_problems_reported_at_once(tmp_path):
    raw = copy.deepcopy(TOY)
    raw["columns"][0]["min"] = 200                       # min > max
    raw["columns"][1]["categories"] = ["red", "red"]     # duplicate categories
    raw["columns"][1]["catch_all"] = "blue"              # catch_all outside
    raw["columns"][2].pop("max")                         # numeric without bound
    raw["columns"][3]["colour"] = "x"                    # unknown key
    raw["columns"].append({"name": "w", "kind": "boolean"})
    raw["columns"].append({"name": "w", "kind": "boolean"})                        # duplicate
    raw["columns"].append({"name": "z", "kind": "string"})                        # unknown kind
    raw["columns"].append({"name": "c", "kind": "categorical", "role": "target",
                           "categories": ["a"]})                                  # two targets
    message = schema_error(tmp_path, raw)
    for expected in ("min 200 is above max 120", "duplicate categories ['red']",
                     "catch_all 'blue'", "column 'score': a float column needs",
                     "unknown key 'colour'", "duplicate column name 'w'", "kind 'string'",
                     "more than one column has role 'target'"):
        assert expected in message, expected
    assert message.count("; ") >= 7


def test_duplicate_of_a_broken_column_is_reported_too(tmp_path):
    raw = toy_with(0, min=200)
    raw["columns"].append({"name": "age", "kind": "integer", "min": 0, "max": 9})
    message = schema_error(tmp_path, raw)
    assert "min 200 is above max 120" in message
    assert "duplicate column name 'age'" in message


def test_schema_from_dict_without_path_says_schema():
    with pytest.raises(SchemaError, match=r"^schema: .*min 130 is above max 120"):
        schema_from_dict(toy_with(0, min=130))
    with pytest.raises(SchemaError, match=r"^given\.yaml: "):
        schema_from_dict(toy_with(0, min=130), path="given.yaml")


def test_temporal_bounds(tmp_path):
    raw = {"name": "t", "columns": [
        {"name": "d", "kind": "date", "min": "2024-05-01", "max": "2024-01-01"},
        {"name": "t", "kind": "datetime", "min": "yesterday", "max": "2024-01-01T00:00:00"},
        {"name": "e", "kind": "date", "min": "2024-01-01T10:00:00", "max": "2024-02-01"},
    ]}
    message = schema_error(tmp_path, raw)
    assert "column 'd': min 2024-05-01 is above max 2024-01-01" in message
    assert "column 't': min 'yesterday' is not a valid datetime bound" in message
    assert "column 'e'" in message
    # Unquoted YAML dates and datetimes are read as bounds of the right type.
    text = ("name: t\ncolumns:\n"
            "  - {name: d, kind: date, min: 2020-01-01, max: 2020-12-31}\n"
            "  - {name: t, kind: datetime, min: 2020-01-01, max: 2020-12-31 23:59:59}\n")
    schema = load_schema(write(tmp_path, text, "ok.yaml"))
    assert schema.column("d").maximum == dt.date(2020, 12, 31)
    assert schema.column("t").minimum == dt.datetime(2020, 1, 1)
    assert schema.column("t").maximum == dt.datetime(2020, 12, 31, 23, 59, 59)


def test_timezone_aware_bounds_are_read_as_naive_utc(tmp_path):
    import datetime as dt

    path = tmp_path / "t.yaml"
    path.write_text("name: t\ncolumns:\n  - {name: t, kind: datetime, "
                    "min: 2020-01-01T01:00:00+01:00, max: 2020-12-31 00:00:00}\n")
    column = load_schema(path).column("t")
    assert column.minimum == dt.datetime(2020, 1, 1) and column.minimum.tzinfo is None


# --- the mark of a drafted schema ----------------------------------------------------------

def _drafted(draft) -> dict:
    return {"name": "t", "draft": draft,
            "columns": [{"name": "a", "kind": "integer", "min": 0, "max": 9}]}


def test_a_draft_mark_round_trips_and_a_plain_draft_is_refused(tmp_path):
    from schemas import Draft, refuse_unreviewed_draft

    path = write(tmp_path, _drafted({"dp": False}))
    schema = load_schema(path)
    assert schema.draft == Draft(dp=False)
    assert load_schema(write(tmp_path, dump_schema(schema), "again.yaml")).draft == schema.draft
    with pytest.raises(SchemaError) as info:
        refuse_unreviewed_draft(schema)
    message = str(info.value)
    assert message.startswith(f"{path} is an unreviewed draft") and "\n" not in message
    assert "delete its `draft:` line" in message
    reviewed = {k: v for k, v in _drafted(None).items() if k != "draft"}
    refuse_unreviewed_draft(load_schema(write(tmp_path, reviewed, "reviewed.yaml")))


def test_a_dp_draft_passes_with_a_warning(tmp_path, caplog):
    from schemas import Draft, refuse_unreviewed_draft

    schema = load_schema(write(tmp_path, _drafted({"dp": True, "epsilon": 1, "delta": 1e-9})))
    assert schema.draft == Draft(dp=True, epsilon=1.0, delta=1e-9)
    with caplog.at_level("WARNING"):
        refuse_unreviewed_draft(schema)
    assert "DP draft" in caplog.text and "review" in caplog.text


@pytest.mark.parametrize("draft", [{"dp": "no"}, {"dp": True}, {"dp": False, "epsilon": 1},
                                   {"dp": True, "epsilon": -1, "delta": 0}, "yes", None])
def test_a_malformed_draft_mark(tmp_path, draft):
    assert "'draft' must be {dp: false} or {dp: true" in schema_error(tmp_path, _drafted(draft))


def test_age90_on_a_float_age_keeps_fractions(tmp_path):
    schema = load_schema(write(tmp_path, {"name": "t", "columns": [
        {"name": "age", "kind": "float", "role": "quasi_identifier", "min": 0, "max": 120,
         "generalize": "age90"}]}))
    age = schema.column("age")
    assert (age.kind, age.minimum, age.maximum) == ("float", 0.0, 90.0)
    assert schema_from_dict(yaml.safe_load(dump_schema(schema))).column("age") == age
