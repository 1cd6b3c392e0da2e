"""The neighbouring-data harness (tests/test_neighbours.py) on linked tables: the neighbour of
a data set adds or removes one PERSON with all their rows in every table. With the paid
mechanisms coupled (each returns on a neighbour what it returned on D), every channel that
leaves the boundary must be identical: the release's files and bytes, the privacy report,
the Parquet footers and Arrow schemas, the ledger. A broken variant (rows counted without
the cap) shows the harness catches a person whose extra rows leak."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import multitable_run
from pipelines.cli import main
from tests.conftest import ROOT
from tests.test_multitable_run import SMALL
from tests.test_neighbours import (
    Tape,
    arrow_schema,
    compare,
    couple,
    digest,
    footer,
    ledger_rows,
    report_fields,
)

PBC = ROOT / "data" / "pbc"
PERSONS = 60  # patients of D (with their visits)


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, pd.DataFrame]]:
    """D, D+ (one patient added with all their visits), D- (one removed, with theirs): the
    busiest patients are the ones added and removed."""
    patients = pd.read_csv(PBC / "pbc.csv.gz", dtype=str, keep_default_na=False)
    visits = pd.read_csv(PBC / "pbcseq.csv.gz", dtype=str, keep_default_na=False)
    counts = visits["id"].value_counts()
    busy = list(counts.index[:2])  # 16 visits each
    rest = [i for i in patients["id"] if i not in busy][:PERSONS - 1]
    sets = {"D": [busy[0], *rest], "D+": [busy[0], *rest, busy[1]], "D-": rest}
    return {name: {"patients": patients[patients["id"].isin(ids)],
                   "visits": visits[visits["id"].isin(ids)]} for name, ids in sets.items()}


def channels(work, frames, schema, capsys) -> dict:
    inputs = []
    for table, frame in frames.items():
        path = work / f"{table}.csv"
        frame.to_csv(path, index=False)
        inputs += ["--input", f"{table}={path}"]
    out, db = work / "release", work / "ledger.db"
    before = len(ledger_rows(db)) if db.exists() else 0
    code = main(["run", *inputs, "--schema", str(schema), "--out", str(out), "--ledger",
                 str(db), "--noise-seed", "11", "--overwrite", "-q", "--epsilon", "5",
                 "--rows", "50"])
    capsys.readouterr()  # the operator's terminal: inside the boundary
    where = out if out.exists() else out.with_name("release.quarantine")
    got: dict = {"exit": code, "release files": sorted(p.name for p in where.iterdir())}
    got["privacy report"] = report_fields(where / "privacy_report.json")
    for table in frames:
        got[f"{table} footer"] = footer(where / f"{table}.parquet")
        got[f"{table} Arrow schema"] = arrow_schema(where / f"{table}.parquet")
    got["ledger"] = ledger_rows(db)[before:]
    got["release bytes"] = {p.name: digest(p) for p in sorted(where.iterdir())}
    return got


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "pbc_small.yaml"
    path.write_text(SMALL)
    return path


def neighbouring_runs(tmp_path, monkeypatch, capsys, tables, schema) -> dict:
    tape = Tape()
    couple(monkeypatch, tape)
    monkeypatch.setattr(multitable_run, "now", lambda: "2026-01-01T00:00:00+00:00")
    runs = {}
    for name, frames in tables.items():
        runs[name] = channels(tmp_path, frames, schema, capsys)
        tape.rewind()
    return runs


def test_neighbouring_persons_change_nothing_but_the_mechanisms_outputs(
        tmp_path, monkeypatch, capsys, tables, small):
    runs = neighbouring_runs(tmp_path, monkeypatch, capsys, tables, small)
    assert runs["D"]["exit"] == 0, runs["D"]
    assert not (diff := compare(runs)), "\n".join(diff)


def test_broken_dropped_rows_in_the_report_are_caught(tmp_path, monkeypatch, capsys, tables,
                                                      small):
    """A report that tells how many rows the cap dropped (a count of private rows, fit for
    the operator's terminal only): the added patient's visits beyond the cap change it."""
    real = multitable_run.check

    def telling(plan, model, synthetic, data):
        checked = real(plan, model, synthetic, data)
        checked.report["dropped_at_the_cap"] = model.dropped_
        return checked

    monkeypatch.setattr(multitable_run, "check", telling)
    small.write_text(small.read_text().replace("max_rows_per_person: 16",
                                               "max_rows_per_person: 4"))
    runs = neighbouring_runs(tmp_path, monkeypatch, capsys, tables, small)
    assert runs["D"]["exit"] == 0
    assert any("dropped_at_the_cap" in line for line in compare(runs))
