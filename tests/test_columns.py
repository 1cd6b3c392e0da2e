"""Columns that say what they hold (docs/columns.md): a generalised column is released under
a name for what it holds, read by its input name; floats are rounded to their declared
decimals; every column of a release's Parquet file carries its description, unit, rule and
that it is synthetic, readable with pyarrow and with DuckDB."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.columns import finish
from pipelines.config import RunConfig
from pipelines.draft import decimals, draft_schema
from pipelines.errors import DataError
from pipelines.ingest import ingest
from pipelines.publish import read_column_metadata, read_release_metadata
from pipelines.recipe import run_release
from schemas import SCHEMA_DIR, SchemaError, load_schema, schema_from_dict
from schemas.roles import Generalization, released_name, stem
from tests.conftest import ROOT

DEMO = ROOT / "data" / "medical" / "patients.csv.gz"
DEMO_SCHEMA = SCHEMA_DIR / "medical_demo.yaml"
RENAMED = {"date_of_birth": "age_at_admission", "admission_date": "admission_year",
           "discharge_date": "days_from_admission_to_discharge"}


def _config(source, schema, out, rows=500) -> RunConfig:
    extra = {"fidelity": {"enabled": False}} if "fidelity" in RunConfig.model_fields else {}
    return RunConfig(input=str(source), schema_file=str(schema), out=str(out), epsilon=1.0,
                     rows=rows, synthesizer="dp-independent", noise_seed=3, **extra)


def _demo_raw() -> dict:
    return yaml.safe_load(DEMO_SCHEMA.read_text())


def _col(raw: dict, name: str) -> dict:
    return next(c for c in raw["columns"] if c["name"] == name)


# --- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("admission_date", "admission"), ("date_admitted", "admitted"), ("seen_at", "seen"),
    ("AdmissionDate", "Admission"), ("visit.dt", "visit"), ("update", "update"),
    ("date", "date"), ("start", "start")])
def test_stem_drops_the_date_word(name, expected):
    assert stem(name) == expected


@pytest.mark.parametrize("name, rule, reference, expected", [
    ("date_of_birth", "age_at", "admission_date", "age_at_admission"),
    ("admission_date", "year", None, "admission_year"),
    ("discharge_date", "offset_from", "admission_date", "days_from_admission_to_discharge"),
    ("age", "age90", None, "age"),
    ("zip_code", "zip3", None, "zip_code"),
])
def test_a_rule_that_changes_the_measure_names_it(name, rule, reference, expected):
    assert released_name(name, Generalization(rule, reference)) == expected


def test_the_demo_release_names_and_input_names():
    schema = load_schema(DEMO_SCHEMA)
    assert [schema.column(out).input_name for out in RENAMED.values()] == list(RENAMED)
    assert not set(RENAMED) & set(schema.names)
    assert set(RENAMED) <= set(schema.input_names)  # the input file keeps its names
    # the schema's YAML form is its input form: it reads back to the same schema
    again = schema_from_dict(yaml.safe_load(yaml.safe_dump(schema.to_dict())))
    assert again == schema.__class__(**{**schema.__dict__, "path": None})


def test_output_name_overrides_the_rule_and_round_trips():
    raw = _demo_raw()
    _col(raw, "discharge_date")["output_name"] = "length_of_stay"
    _col(raw, "sex")["output_name"] = "sex_at_admission"
    schema = schema_from_dict(raw)
    assert "length_of_stay" in schema.names and "sex_at_admission" in schema.names
    assert schema.column("length_of_stay").input_name == "discharge_date"
    assert schema.to_dict()["columns"][schema.input_names.index("discharge_date")][
        "output_name"] == "length_of_stay"
    again = schema_from_dict(yaml.safe_load(yaml.safe_dump(schema.to_dict())))
    assert again == schema
    assert schema.fingerprint() != load_schema(DEMO_SCHEMA).fingerprint()
    # keeping the input's name is a choice too: output_name equal to the input name
    raw = _demo_raw()
    _col(raw, "admission_date")["output_name"] = "admission_date"
    kept = schema_from_dict(raw)
    assert "admission_date" in kept.names
    assert schema_from_dict(yaml.safe_load(yaml.safe_dump(kept.to_dict()))) == kept


@pytest.mark.parametrize("mutate, message", [
    (lambda r: _col(r, "sex").update(output_name="admission_year"),
     "release name 'admission_year' is also the name of column 'admission_date'"),
    (lambda r: _col(r, "sex").update(output_name="mrn"), "also the name of an identifier"),
    (lambda r: _col(r, "sex").update(output_name=" sex"), "output_name must be"),
    (lambda r: _col(r, "sex").update(output_name=3), "output_name must be"),
    (lambda r: _col(r, "systolic_bp").update(decimals=1), "decimals only apply to float"),
    (lambda r: _col(r, "systolic_bp").update(unit=["mmHg"]), "unit must be text"),
])
def test_names_and_keys_that_contradict_are_refused(mutate, message):
    raw = _demo_raw()
    mutate(raw)
    with pytest.raises(SchemaError, match="^x.yaml: ") as info:
        schema_from_dict(raw, path="x.yaml")
    assert message in str(info.value)


@pytest.mark.parametrize("places, low, high, message", [
    (-1, 0, 1, "from 0 to 15"), (16, 0, 1, "from 0 to 15"), (True, 0, 1, "from 0 to 15"),
    (1.5, 0, 1, "from 0 to 15"), (1, 0.01, 0.04, "no value with 1 decimals")])
def test_decimals_must_fit(places, low, high, message):
    raw = {"name": "t", "columns": [{"name": "x", "kind": "float", "min": low, "max": high,
                                     "decimals": places}]}
    with pytest.raises(SchemaError, match=message):
        schema_from_dict(raw)


def test_survival_may_name_a_renamed_column_by_its_input_name():
    raw = _demo_raw()
    raw["survival"] = {"time": "discharge_date", "event": "died", "follow_up": 90}
    schema = schema_from_dict(raw)
    assert schema.survival.time == "days_from_admission_to_discharge"


# --- input errors name the input's columns --------------------------------------------------

def test_input_errors_name_the_input_column(tmp_path):
    frame = pd.read_csv(DEMO, dtype=str, nrows=40)
    frame.loc[3, "discharge_date"] = "2010-01-01"  # before its admission: a negative stay
    frame.loc[5, "admission_date"] = "2017-13-40"
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    schema = load_schema(DEMO_SCHEMA)
    with pytest.raises(DataError) as info:
        ingest(path, schema)
    assert "column 'admission_date' value '2017-13-40'" in str(info.value)
    frame.loc[5, "admission_date"] = frame.loc[4, "admission_date"]
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        ingest(path, schema)
    said = str(info.value)
    assert "column 'discharge_date' value" in said and "below the schema's minimum 0" in said
    assert "days_from" not in said and "column 'discharge_date'" in info.value.public
    frame.drop(columns="date_of_birth").to_csv(path, index=False)
    with pytest.raises(DataError, match="column 'date_of_birth' required by"):
        ingest(path, schema)


def test_ingest_reads_input_names_and_gives_released_names():
    frame = ingest(DEMO, load_schema(DEMO_SCHEMA)).frame
    assert list(frame.columns) == load_schema(DEMO_SCHEMA).names
    assert frame["admission_year"].between(2015, 2019).all()
    assert frame["age_at_admission"].between(18, 90).all()


# --- decimals -------------------------------------------------------------------------------

def test_finish_rounds_floats_within_their_bounds():
    schema = schema_from_dict({"name": "t", "columns": [
        {"name": "bmi", "kind": "float", "min": 10.04, "max": 60, "decimals": 1,
         "nullable": True},
        {"name": "raw", "kind": "float", "min": 0, "max": 1},
        {"name": "n", "kind": "integer", "min": 0, "max": 9}]})
    frame = pd.DataFrame({"bmi": [27.986579, 10.041, 59.99, np.nan],
                          "raw": [0.123456, 0.5, 0.25, 1.0],
                          "n": pd.array([1, 2, 3, 4], dtype="Int64")})
    out = finish(frame, schema)
    assert out["bmi"].tolist()[:3] == [28.0, 10.1, 60.0] and np.isnan(out["bmi"].iloc[3])
    pd.testing.assert_series_equal(out["raw"], frame["raw"])
    pd.testing.assert_series_equal(out["n"], frame["n"])
    assert frame["bmi"].iloc[0] == 27.986579  # the input frame is left as it was


def test_plain_draft_proposes_decimals_held_by_enough_rows(tmp_path):
    assert decimals(pd.Series(["27.9"] * 30 + ["27.98657"])) == 1  # one record does not show
    assert decimals(pd.Series(["5.70", "1e-05"] * 10)) == 5
    assert decimals(pd.Series(["1.25"] * 3 + ["2"] * 30)) is None
    assert decimals(pd.Series([0.1 + 0.2] * 20)) == 6  # capped
    path = tmp_path / "t.csv"
    path.write_text("bmi,n\n" + "".join(f"{20 + i / 10:.1f},{i}\n" for i in range(50)))
    drafted = schema_from_dict(yaml.safe_load(draft_schema(path)))
    assert drafted.column("bmi").decimals == 1 and drafted.column("n").decimals is None


# --- a release's columns --------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("columns") / "demo"
    return run_release(_config(DEMO, DEMO_SCHEMA, out)).release / "data.parquet"


@pytest.fixture(scope="module")
def bmi_release(tmp_path_factory):
    """A release of a small table with a one-decimal float, drawn by a real run."""
    root = tmp_path_factory.mktemp("bmi")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"bmi": rng.normal(27, 4, 400).clip(15, 45).round(1),
                          "smoker": rng.choice(["yes", "no"], 400)})
    frame.to_csv(root / "bmi.csv", index=False)
    (root / "bmi.yaml").write_text(yaml.safe_dump({"name": "bmi", "columns": [
        {"name": "bmi", "kind": "float", "min": 15, "max": 45, "decimals": 1, "unit": "kg/m2",
         "description": "body mass index at admission"},
        {"name": "smoker", "kind": "boolean", "description": "smokes"}]}))
    done = run_release(_config(root / "bmi.csv", root / "bmi.yaml", root / "out"))
    return done.release / "data.parquet"


def test_a_release_rounds_to_the_declared_decimals(bmi_release):
    bmi = pd.read_parquet(bmi_release)["bmi"].to_numpy()
    assert np.allclose(bmi * 10, np.round(bmi * 10), atol=1e-9) and len(np.unique(bmi)) > 10
    assert read_column_metadata(bmi_release)["bmi"]["decimals"] == "1"
    assert read_column_metadata(bmi_release)["bmi"]["unit"] == "kg/m2"


def test_the_release_carries_the_released_names(demo_release):
    names = pq.read_schema(demo_release).names
    assert set(RENAMED.values()) <= set(names) and not set(RENAMED) & set(names)
    assert names[0] == "mrn"  # the surrogate, first


def test_pyarrow_reads_what_each_column_holds(demo_release):
    schema = load_schema(DEMO_SCHEMA)
    fields = {f.name: {k.decode(): v.decode() for k, v in f.metadata.items()}
              for f in pq.read_schema(demo_release)}
    assert fields == read_column_metadata(demo_release)
    for col in schema.columns:
        meta = fields[col.name]
        assert meta["description"] == col.description and meta["synthetic"] == "true"
        assert "differentially private" in meta["note"]
    stay = fields["days_from_admission_to_discharge"]
    assert stay["unit"] == "days" and stay["input_column"] == "discharge_date"
    assert "Safe Harbor" in stay["generalization"] and "'admission_date'" in stay[
        "generalization"]
    assert fields["age_at_admission"]["unit"] == "years"
    assert fields["systolic_bp"]["unit"] == "mmHg" and "input_column" not in fields[
        "systolic_bp"]
    assert "90 or older" in fields["age"]["generalization"]
    assert fields["mrn"]["synthetic"] == "true" and "SYN-" in fields["mrn"]["surrogate"]
    # the footer's own key-values are as they were: the notes are apart from them
    assert "columns" not in read_release_metadata(demo_release)


def test_duckdb_reads_each_column_description(demo_release):
    schema = load_schema(DEMO_SCHEMA)
    # DuckDB reads no Arrow field metadata (parquet_schema has no column for it): the file's
    # key-values carry the same notes under synth.columns, as JSON
    rows = duckdb.sql(
        "select c.name, json_extract_string(decode(kv.value), '$.\"' || c.name || "
        "'\".description') from parquet_kv_metadata(?) kv, "
        "(select name from parquet_schema(?) where name != 'schema'  -- the root element\n"
        ") c where kv.key = 'synth.columns'", params=[str(demo_release)] * 2).fetchall()
    described = dict(rows)
    assert set(described) == {"mrn", *schema.names}
    for col in schema.columns:
        assert described[col.name] == col.description
    blob = duckdb.sql("select decode(value) from parquet_kv_metadata(?) where key = "
                      "'synth.columns'", params=[str(demo_release)]).fetchall()[0][0]
    assert json.loads(blob) == read_column_metadata(demo_release)
