"""Tests for schemas.model and schemas.parse: the shipped schemas, the YAML round trip, and
every contradiction a schema file can hold, each reported as a SchemaError naming the file and
the problem."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import time
from pathlib import Path

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
    is_image_schema,
    load_image_schema,
    load_schema,
    pandas_dtype,
    schema_from_dict,
)
from schemas.safe_yaml import read_yaml

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


# --- hostile schema files: each refused at once, in one bounded line --------------------------
# Each builder writes one file (or sets a limit's variable) and returns (path, a fragment of
# the expected refusal). Text builders start from TOY_TEXT, a valid schema in block style.

TOY_TEXT = yaml.safe_dump(TOY, sort_keys=False)
END = TOY_TEXT.count("\n") + 1  # the line a builder appends to TOY_TEXT


def _laughs(levels: int = 12) -> str:
    """A flow list whose anchors expand to 9**levels items ("billion laughs")."""
    nodes = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    nodes += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(nodes) + "]"


def _text(tmp_path, text: str | bytes, name: str = "hostile.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _limited(monkeypatch, limit: str, value: str, path: Path, expected: str):
    """(path, expected) with the variable SYNTH_MAX_<limit> set to ``value``."""
    monkeypatch.setenv(f"SYNTH_MAX_{limit}", value)
    return path, expected


def _fifo(path: Path) -> Path:
    """A named pipe that nobody writes to: reading it would wait for ever."""
    os.mkfifo(path)
    return path


def _column(extra: str) -> str:
    """A schema of one column given in flow style (``extra`` completes its mapping)."""
    return f"name: hostile\ncolumns:\n  - {{name: v, {extra}}}\n"


HOSTILE = {
    "deep flow nesting (100,000)": lambda tmp, mp: (_text(
        tmp, "name: x\ncolumns: " + "[" * 100_000 + "]" * 100_000), "nesting depth"),
    "deep block nesting (100,000)": lambda tmp, mp: (_text(
        tmp, "name: x\ncolumns:\n" + "- " * 100_000 + "x\n"), "nesting depth: 65 exceeds"),
    "deep mapping nesting": lambda tmp, mp: (_text(
        tmp, "".join(" " * i + "k:\n" for i in range(200))), "nesting depth: 65 exceeds"),
    "billion laughs in min": lambda tmp, mp: (_text(
        tmp, _column(f"kind: integer, min: {_laughs()}, max: 10")), "anchor &l0 refused"),
    "billion laughs in categories": lambda tmp, mp: (_text(
        tmp, _column(f"kind: categorical, categories: {_laughs()}")), "anchor &l0 refused"),
    "an alias": lambda tmp, mp: (_text(tmp, TOY_TEXT + "description: *d\n"), "alias *d"),
    "an anchor": lambda tmp, mp: (_text(tmp, TOY_TEXT + "description: &d text\n"),
                                  "anchor &d refused"),
    "a merge key": lambda tmp, mp: (_text(
        tmp, _column("kind: integer, min: 0, max: 9, <<: {max: 99}")), "merge key"),
    "duplicate top-level key": lambda tmp, mp: (
        _text(tmp, TOY_TEXT + "name: other\n"),
        f"line {END}: duplicate key 'name' (first at line 1)"),
    "duplicate key in a column": lambda tmp, mp: (_text(
        tmp, "name: x\ncolumns:\n  - name: age\n    kind: integer\n    min: 0\n    max: 90\n"
             "    max: 1000000000\n"), "line 7: duplicate key 'max' (first at line 6)"),
    "+/-1e308 bounds": lambda tmp, mp: (_text(
        tmp, _column("kind: float, min: -1.0e+308, max: 1.0e+308")), "within +/-2^53"),
    "infinite bounds": lambda tmp, mp: (_text(tmp, _column("kind: float, min: -.inf, max: .inf")),
                                        "min -inf is not a finite number"),
    "a NaN bound": lambda tmp, mp: (_text(tmp, _column("kind: float, min: .nan, max: 1")),
                                    "min nan is not a finite number"),
    "2^63 integer bound": lambda tmp, mp: (_text(
        tmp, _column("kind: integer, min: 0, max: 9223372036854775808")), "within +/-2^53"),
    "2^53 + 1 integer bound": lambda tmp, mp: (_text(
        tmp, _column("kind: integer, min: 0, max: 9007199254740993")), "within +/-2^53"),
    "an integer of 5,000 digits": lambda tmp, mp: (_text(
        tmp, _column(f"kind: integer, min: 0, max: {'9' * 5000}")), "cannot be read"),
    "a date in year 1": lambda tmp, mp: (_text(
        tmp, _column("kind: date, min: 0001-01-01, max: 2000-01-01")), "years 1678-2261"),
    "a datetime in year 9999": lambda tmp, mp: (_text(
        tmp, _column("kind: datetime, min: '2000-01-01T00:00:00', max: '9999-12-31T23:59:59'")),
        "years 1678-2261"),
    "an offset of 10^30 days": lambda tmp, mp: (_text(
        tmp, "name: x\ncolumns:\n  - {name: d, kind: date, min: 2000-01-01, max: 2001-01-01}\n"
             "  - {name: e, kind: date, min: 2000-01-01, max: 2001-01-01, role: "
             "quasi_identifier, generalize: {offset_from: d, min: 0, max: " + "1" + "0" * 30
             + "}}\n"), "within +/-2^53"),
    "a billion bins": lambda tmp, mp: (_text(
        tmp, _column("kind: float, min: 0, max: 1, bins: 1000000000")), "bins: 1,000,000,000"),
    "a category that is a mapping": lambda tmp, mp: (_text(
        tmp, _column("kind: categorical, categories: [a, {b: c}]")), "plain value"),
    "a key that is a list": lambda tmp, mp: (_text(tmp, TOY_TEXT + "? [a, b]\n: 1\n"),
                                             "key must be a plain value"),
    "a csv delimiter that is a number": lambda tmp, mp: (_text(
        tmp, TOY_TEXT + "csv: {delimiter: 5}\n"), "csv: delimiter must be text"),
    "a budget of epsilon 1e300": lambda tmp, mp: (_text(
        tmp, TOY_TEXT + "budget: {epsilon: 1.0e+300, delta: 1.0e-6}\n"), "'budget' must be"),
    "a budget of delta 0": lambda tmp, mp: (_text(
        tmp, TOY_TEXT + "budget: {epsilon: 1, delta: 0}\n"), "'budget' must be"),
    "a draft of epsilon .inf": lambda tmp, mp: (_text(
        tmp, TOY_TEXT + "draft: {dp: true, epsilon: .inf, delta: 1.0e-9}\n"), "'draft' must be"),
    "a python tag": lambda tmp, mp: (_text(
        tmp, TOY_TEXT + "description: !!python/object/apply:os.system [echo hi]\n"),
        "tag '!!python/object/apply:os.system' refused"),
    "a set tag": lambda tmp, mp: (_text(tmp, TOY_TEXT + "source: !!set {a, b}\n"),
                                  "tag '!!set' refused"),
    "two documents": lambda tmp, mp: (_text(tmp, TOY_TEXT + "---\n" + TOY_TEXT),
                                      "a second YAML document"),
    "a NUL character": lambda tmp, mp: (_text(tmp, TOY_TEXT + "description: a\x00b\n"),
                                        "character U+0000 is not allowed"),
    "invalid UTF-8": lambda tmp, mp: (_text(tmp, TOY_TEXT.encode() + b"description: caf\xe9\n"),
                                      f"line {END}: schema is not UTF-8 text (byte 0xe9"),
    "a truncated file": lambda tmp, mp: (_text(
        tmp, yaml.safe_dump(TOY, default_flow_style=True)[:-40]), "does not parse as YAML"),
    "an empty file": lambda tmp, mp: (_text(tmp, ""), "must be a mapping"),
    "a YAML list": lambda tmp, mp: (_text(tmp, "- name\n- columns\n"), "must be a mapping"),
    "a directory": lambda tmp, mp: (tmp, "it is a directory"),
    "a missing file": lambda tmp, mp: (tmp / "absent.yaml", "cannot read schema"),
    "larger than SYNTH_MAX_SCHEMA_BYTES": lambda tmp, mp: _limited(
        mp, "SCHEMA_BYTES", "100", _text(tmp, TOY_TEXT),
        "exceeds the limit of 100 (raise it with SYNTH_MAX_SCHEMA_BYTES"),
    "a device without end": lambda tmp, mp: (Path("/dev/zero"), "not a regular file"),
    "a named pipe": lambda tmp, mp: (_fifo(tmp / "pipe.yaml"), "not a regular file"),
    "more columns than SYNTH_MAX_COLUMNS": lambda tmp, mp: _limited(
        mp, "COLUMNS", "3", _text(tmp, TOY_TEXT),
        "columns: 4 exceeds the limit of 3 (raise it with SYNTH_MAX_COLUMNS"),
    "more categories than SYNTH_MAX_CATEGORIES": lambda tmp, mp: _limited(
        mp, "CATEGORIES", "2", _text(tmp, TOY_TEXT),
        "column 'color': categories: 3 exceeds the limit of 2"),
    "a limit's variable that is not a number": lambda tmp, mp: _limited(
        mp, "SCHEMA_DEPTH", "deep", _text(tmp, TOY_TEXT),
        "SYNTH_MAX_SCHEMA_DEPTH='deep' is not a positive integer"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_schema_is_refused_at_once_in_one_line(case, tmp_path, monkeypatch):
    path, expected = HOSTILE[case](tmp_path, monkeypatch)
    start = time.perf_counter()
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    took = time.perf_counter() - start
    message = str(info.value)
    assert took < 1.0, f"{case}: {took:.2f} s"
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "\r" not in message
    assert len(message) <= 400, len(message)
    assert expected in message, message


@pytest.mark.parametrize("case", list(HOSTILE))
def test_schema_check_refuses_a_hostile_schema_in_one_line(case, tmp_path, monkeypatch,
                                                           capsys):
    from pipelines.cli import main

    path, _ = HOSTILE[case](tmp_path, monkeypatch)
    assert main(["schema", "check", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err[:1000]
    assert lines[0].startswith(f"error: {path}: ")
    assert len(lines[0]) <= 400 + len("error: ")
    assert "ok" not in captured.out


def test_an_image_schema_is_read_as_safely(tmp_path):
    path = _text(tmp_path, f"kind: image\nname: x\nlabels: {_laughs()}\n")
    assert not is_image_schema(path)
    with pytest.raises(SchemaError, match=r"anchor &l0 refused"):
        load_image_schema(path)
    path = _text(tmp_path, "kind: image\nname: x\nname: y\n")
    with pytest.raises(SchemaError, match=r"line 3: duplicate key 'name'"):
        load_image_schema(path)
    path = _text(tmp_path, "kind: image\nname: x\nheight: 2\nwidth: 2\nchannels: 1\n"
                           "value_range: [0, 1.0e+308]\nlabels: [a]\n")
    with pytest.raises(SchemaError, match=r"'value_range' must be"):
        load_image_schema(path)


def test_plain_yaml_reads_as_safe_load_reads_it(tmp_path):
    text = ("a: 1\nb: [1, 2.5, yes, no, null, ~, 2020-01-01, 2020-01-01T10:00:00, '3', 0x1F]\n"
            "c: {d: e, 1: f}\n'=': x\ne: !!str 12\nf: !!binary aGk=\n")
    assert read_yaml(_text(tmp_path, text)) == yaml.safe_load(text)
    assert read_yaml(_text(tmp_path, "\ufeffa: 1\n")) == {"a": 1}  # a byte order mark
    assert read_yaml(_text(tmp_path, "# only a comment\n")) is None


def test_a_long_list_of_problems_is_cut_to_twenty(tmp_path):
    raw = {"name": "many", "columns": [{"name": f"c{i}", "kind": "integer", "min": 1, "max": 0}
                                       for i in range(500)]}
    message = schema_error(tmp_path, raw)
    assert message.count("is above max") == 20
    assert message.endswith("; and 480 more problems")


def test_hostile_values_are_quoted_short(tmp_path):
    huge = "x" * 100_000
    message = schema_error(tmp_path, toy_with(0, kind=huge, min=None, max=None))
    assert len(message) < 400 and "xxx..." in message
    message = schema_error(tmp_path, toy_with(1, categories=["a", huge, huge]))
    assert len(message) < 400 and "duplicate categories" in message


def test_bounds_at_the_edges_load(tmp_path):
    raw = {"name": "edges", "columns": [
        {"name": "i", "kind": "integer", "min": -2**53, "max": 2**53},
        {"name": "f", "kind": "float", "min": -9.0e15, "max": 9.0e15},
        {"name": "d", "kind": "date", "min": "1678-01-01", "max": "2261-12-31"},
        {"name": "t", "kind": "datetime", "min": "1678-01-01T00:00:00",
         "max": "2261-12-31T23:59:59"}]}
    schema = load_schema(write(tmp_path, raw))
    assert schema.column("i").maximum == 2.0**53
    assert schema.column("d").minimum == dt.date(1678, 1, 1)
