"""A two-table release of the PBC trial (data/pbc) end to end: the draft, `synth run`, the
Prefect flow and a deployment file, read back with DuckDB (a join on the synthetic keys)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from pipelines.ledger import Ledger
from tests.conftest import ROOT

PBC = ROOT / "data" / "pbc"
INPUTS = [f"patients={PBC / 'pbc.csv.gz'}", f"visits={PBC / 'pbcseq.csv.gz'}"]
# a few columns of schemas/pbc.yaml: the same links, a fit of seconds
SMALL = """
kind: multi-table
name: pbc-small
person: patients
tables:
  - name: patients
    key: id
    survival: {time: time, event: status, event_value: "2", follow_up: 5000}
    columns:
      - {name: time, kind: integer, min: 0, max: 5000}
      - {name: status, kind: categorical, categories: ["0", "1", "2"]}
      - {name: sex, kind: categorical, categories: [m, f]}
      - {name: bili, kind: float, min: 0.1, max: 60, transform: log, decimals: 1}
  - name: visits
    parent: {table: patients, key: id}
    max_rows_per_person: 16
    sequence: {column: day, start: 0, within: futime}
    per_person: [futime, status]
    same_as: {sex: sex}
    columns:
      - {name: futime, kind: integer, min: 0, max: 6000}
      - {name: status, kind: categorical, categories: ["0", "1", "2"]}
      - {name: sex, kind: categorical, categories: [m, f]}
      - {name: day, kind: integer, min: 0, max: 6000}
      - {name: bili, kind: float, min: 0.1, max: 60, transform: log, decimals: 1}
      - {name: albumin, kind: float, min: 0.5, max: 10, decimals: 2}
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "pbc_small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def released(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("releases") / "pbc"
    ledger = out.parent / "ledger.db"
    code = main(["run", "--input", INPUTS[0], "--input", INPUTS[1], "--schema", str(small),
                 "--epsilon", "10", "--rows", "300", "--out", str(out), "--noise-seed", "4",
                 "--ledger", str(ledger)])
    assert code == 0
    return out, ledger


def test_synth_run_publishes_linked_tables_that_duckdb_joins(released):
    out, _ = released
    files = {p.name for p in out.iterdir()}
    assert {"patients.parquet", "visits.parquet", "privacy_report.json", "validation.json",
            "report.html", "manifest.json"} <= files and "data.parquet" not in files
    patients, visits = out / "patients.parquet", out / "visits.parquet"
    persons, orphans = duckdb.sql(
        f"select count(distinct p.id), count(*) filter (where p.id is null) from "
        f"'{visits}' v left join '{patients}' p on v.id = p.id").fetchall()[0]
    assert orphans == 0 and persons > 0
    assert duckdb.sql(f"select count(*) from '{patients}'").fetchall()[0][0] == 300
    # a person may have no row in a child table: 106 of the 418 real patients have no visit
    alone = 300 - persons
    assert 0.1 * 300 <= alone <= 0.45 * 300, alone
    kinds = dict(duckdb.sql(f"select column_name, column_type from (describe select * from "
                            f"'{visits}')").fetchall())
    assert kinds["id"] == "VARCHAR" and kinds["day"] == "BIGINT"
    # the sequence: each patient's first visit on day 0, then increasing, within futime
    frame = pd.read_parquet(visits)
    assert (frame.groupby("id")["day"].first() == 0).all()
    assert (frame.groupby("id")["day"].diff().dropna() > 0).all()
    assert (frame["day"] <= frame["futime"]).all()
    # decimals as declared
    assert (frame["bili"].dropna() * 10).round(6).mod(1).eq(0).all()
    kv = {k.decode(): v.decode() for k, v in duckdb.sql(
        f"select key, value from parquet_kv_metadata('{visits}')").fetchall()}
    assert kv["synth.table"] == "visits" and kv["synth.data_set"] == "pbc-small"


def test_the_privacy_unit_is_the_person_and_no_real_key_is_released(released):
    out, ledger = released
    report = json.loads((out / "privacy_report.json").read_text())
    assert "every person" in report["guarantee"] and report["epsilon"] <= 10
    assert report["privacy_unit"] == {"table": "patients", "rows_per_person": {"visits": 16}}
    child = [m for m in report["measurements"] if m["table"] == "visits" and "sigma" in m]
    assert child and all(m["sensitivity"] == 16 for m in child)
    real = set(pd.read_csv(PBC / "pbc.csv.gz", dtype=str)["id"])
    for table in ("patients", "visits"):
        keys = set(pd.read_parquet(out / f"{table}.parquet")["id"])
        assert not keys & real
    [entry] = Ledger(str(ledger)).history()
    assert entry["data_set"] == "pbc-small" and entry["state"] == "committed"
    assert main(["verify", str(out)]) == 0


def test_a_rerun_is_a_no_op_and_a_missing_table_is_refused_before_anything(released, small,
                                                                           capsys):
    out, ledger = released
    written = (out / "visits.parquet").stat().st_mtime_ns
    args = ["run", "--schema", str(small), "--epsilon", "10", "--rows", "300", "--out",
            str(out), "--noise-seed", "4", "--ledger", str(ledger)]
    assert main([*args[:1], "--input", INPUTS[0], "--input", INPUTS[1], *args[1:]]) == 0
    assert (out / "visits.parquet").stat().st_mtime_ns == written
    assert len(Ledger(str(ledger)).history()) == 1
    capsys.readouterr()
    assert main([*args[:1], "--input", INPUTS[0], *args[1:-4], "--out",
                 str(out.parent / "other"), "--ledger", str(ledger)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no input for table visits" in err[0]
    assert main([*args[:1], "--input", str(PBC / "pbc.csv.gz"), *args[1:-4], "--out",
                 str(out.parent / "other"), "--ledger", str(ledger)]) == 2
    assert "--input patients=FILE --input visits=FILE" in capsys.readouterr().err
    assert len(Ledger(str(ledger)).history()) == 1 and not (out.parent / "other").exists()


def test_a_repeated_person_key_names_the_file_column_and_row(small, tmp_path, capsys):
    patients = pd.read_csv(PBC / "pbc.csv.gz", dtype=str)
    patients.loc[5, "id"] = patients.loc[2, "id"]
    bad = tmp_path / "patients.csv"
    patients.to_csv(bad, index=False)
    code = main(["run", "--input", f"patients={bad}", "--input", INPUTS[1], "--schema",
                 str(small), "--epsilon", "1", "--out", str(tmp_path / "out"), "--ledger",
                 str(tmp_path / "ledger.db")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{bad}: column 'id'" in err[0] and "row 6" in err[0]
    # what Prefect may store names no row (a row number is read from the private rows)
    from pipelines.config import RunConfig
    from pipelines.errors import DataError
    from pipelines.recipe import run_release

    config = RunConfig(input={"patients": str(bad), "visits": INPUTS[1].split("=", 1)[1]},
                       schema_file=str(small), out=str(tmp_path / "out"), epsilon=1,
                       ledger=str(tmp_path / "ledger.db"))
    with pytest.raises(DataError) as caught:
        run_release(config)
    assert "row" not in caught.value.public.replace("one row in this table", "")
    assert not (tmp_path / "out").exists()
    assert [e["state"] for e in Ledger(str(tmp_path / "ledger.db")).history()] == [
        "cancelled", "cancelled"]


def test_the_draft_proposes_keys_caps_and_the_sequence_and_run_refuses_it_unreviewed(
        tmp_path, capsys):
    assert main(["schema", "draft", "--input", INPUTS[0], "--input", INPUTS[1], "--name",
                 "pbc"]) == 0
    text = capsys.readouterr().out
    drafted = yaml.safe_load(text)
    assert drafted["kind"] == "multi-table" and drafted["person"] == "patients"
    assert drafted["draft"] == {"dp": False}
    patients, visits = drafted["tables"]
    assert patients["key"] == "id" and visits["parent"] == {"table": "patients", "key": "id"}
    assert visits["sequence"] == {"column": "day", "start": 0, "within": "futime"}
    assert set(visits["per_person"]) == {"futime", "status", "trt"}
    assert visits["same_as"] == {"age": "age", "sex": "sex"}
    # the cap: the 10th largest count of visits of a patient, so no one patient sets it
    counts = pd.read_csv(PBC / "pbcseq.csv.gz").groupby("id").size().sort_values()
    assert visits["max_rows_per_person"] == counts.iloc[-10] < counts.iloc[-1]
    assert "max_rows_per_person" in text.split("kind:")[0]  # a REVIEW line says why
    schema = tmp_path / "drafted.yaml"
    schema.write_text(text)
    code = main(["run", "--input", INPUTS[0], "--input", INPUTS[1], "--schema", str(schema),
                 "--epsilon", "1", "--out", str(tmp_path / "out"), "--ledger",
                 str(tmp_path / "ledger.db")])
    assert code == 2 and "delete its 'draft:' entry" in capsys.readouterr().err
    assert not (tmp_path / "ledger.db").exists() or not Ledger(
        str(tmp_path / "ledger.db")).history()


def test_the_flow_and_a_deployment_file_publish_a_two_table_release(prefect_home, small,
                                                                    tmp_path):
    from flows.parameters import parameters
    from flows.release import release
    from flows.serve import load_spec
    from pipelines.config import RunConfig

    start = datetime.now(UTC)  # the test server is shared: this test's artifacts are newer
    spec = load_spec(ROOT / "flows" / "deployments" / "pbc-demo.yaml")
    config = RunConfig.model_validate({
        **spec.config.model_dump(), "schema_file": str(small), "out": str(tmp_path / "pbc"),
        "noise_seed": 2, "rows": 200, "ledger": str(tmp_path / "ledger.db")})
    assert config.input == {"patients": str(PBC / "pbc.csv.gz"),
                            "visits": str(PBC / "pbcseq.csv.gz")}
    result = release(**parameters(config))
    assert result["release"] == str(tmp_path / "pbc")
    assert result["privacy_report"]["rows_released"]["patients"] == 200
    joined = duckdb.sql(f"select count(*) from '{tmp_path / 'pbc' / 'visits.parquet'}' v "
                        f"join '{tmp_path / 'pbc' / 'patients.parquet'}' p using (id)"
                        ).fetchall()[0][0]
    assert joined == result["privacy_report"]["rows_released"]["visits"]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts() if a.created >= start}
    assert "Published" in artifacts["release"].data


def test_a_table_without_its_key_column_is_refused_naming_file_and_column(small, tmp_path,
                                                                          capsys):
    visits = pd.read_csv(PBC / "pbcseq.csv.gz", dtype=str).drop(columns=["id"])
    bad = tmp_path / "visits.csv"
    visits.to_csv(bad, index=False)
    code = main(["run", "--input", INPUTS[0], "--input", f"visits={bad}", "--schema",
                 str(small), "--epsilon", "1", "--out", str(tmp_path / "out"), "--ledger",
                 str(tmp_path / "ledger.db")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{bad}: no column 'id'" in err[0] and not (tmp_path / "out").exists()
