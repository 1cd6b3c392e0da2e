"""The Python API (pipelines/api.py): the example of docs/python-api.md runs as written, a
fit is charged to the ledger once and a refused one reads nothing, open_release refuses
what is not a release, and release() publishes what `synth run` publishes."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import pipelines.ingest
import pipelines.large
from pipelines import api
from pipelines.cli import main
from pipelines.errors import DataError
from pipelines.ledger import BudgetExceeded, Ledger
from pipelines.plan import KEY_FILE, internal_dir
from pipelines.publish import PublishError
from tests.conftest import ROOT

DOC = ROOT / "docs" / "python-api.md"
SCHEMA = ROOT / "schemas" / "adult.yaml"


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"),
                      flags=re.MULTILINE | re.DOTALL)


def adult_frame(path: Path, rows: int | None = None) -> pd.DataFrame:
    schema = api.load_schema(SCHEMA)
    return pd.read_csv(path, header=None, names=schema.input_names, skipinitialspace=True,
                       na_values=list(schema.missing_values), nrows=rows)


def checks(validation: dict) -> tuple:
    """A validation.json's outcome and each check's kind, arguments and result, without the
    ids and times Great Expectations draws per run."""
    return (validation["success"], validation["evaluated"], validation["failed"],
            [(r["expectation_config"]["type"],
              {k: v for k, v in r["expectation_config"]["kwargs"].items() if k != "batch_id"},
              r["success"], r["result"]) for r in validation["result"]["results"]])


def test_the_docs_example_runs(tmp_path, monkeypatch):
    """Every python block of docs/python-api.md, in order, from a folder that looks like the
    repository root (its data and schemas), with a ledger of its own."""
    blocks = python_blocks(DOC)
    code = "\n".join(blocks)
    for name in ("load_schema", "fit", "sample", "release", "open_release"):
        assert f"api.{name}(" in code, f"the example does not call api.{name}"
    for folder in ("data", "schemas"):
        (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNTH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SYNTH_LEDGER_URL", raising=False)
    monkeypatch.delenv("SYNTH_OUTPUT_ROOT", raising=False)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102  our own documentation

    opened = namespace["opened"]
    assert len(opened.rows) == 1_000 and opened.verify() == []
    assert (tmp_path / "releases" / "adult-api" / "data.parquet").is_file()
    fitted, released = Ledger().history()  # the fit and the release, nothing else
    assert (fitted["source"], fitted["state"]) == ("<DataFrame>", "committed")
    assert fitted["epsilon"] == namespace["model"].privacy_.epsilon
    assert (released["state"], released["epsilon"]) == ("committed",
                                                        opened.report["epsilon"])


def test_fit_charges_the_ledger_once(adult_sample, tmp_path):
    ledger = tmp_path / "ledger.db"
    model = api.fit(adult_sample, SCHEMA, 0.3, synthesizer="dp-independent", ledger=ledger,
                    noise_seed=1)
    (entry,) = Ledger(ledger).history()
    assert entry["state"] == "committed" and entry["data_set"] == "adult"
    assert (entry["epsilon"], entry["delta"]) == (model.privacy_.epsilon,
                                                  model.privacy_.delta)
    assert 0 < model.privacy_.epsilon <= 0.3 and entry["source"] == str(adult_sample)
    rows = api.sample(model, 200, seed=4)
    assert len(rows) == 200 and list(rows.columns) == api.load_schema(SCHEMA).names
    pd.testing.assert_frame_equal(rows, api.sample(model, 200, seed=4))
    assert len(Ledger(ledger).history()) == 1  # sampling spends nothing


def test_a_fit_that_fails_on_its_rows_frees_its_reservation(adult_sample, tmp_path):
    ledger = tmp_path / "ledger.db"
    frame = adult_frame(adult_sample, rows=50).drop(columns=["age"])
    with pytest.raises(DataError, match="column 'age' required by .* is missing"):
        api.fit(frame, SCHEMA, 0.3, synthesizer="dp-independent", ledger=ledger)
    assert [e["state"] for e in Ledger(ledger).history()] == ["cancelled"]


def test_a_refused_fit_reads_nothing_and_reserves_nothing(adult_sample, tmp_path,
                                                          monkeypatch):
    text = SCHEMA.read_text(encoding="utf-8").replace("name: adult\n", "name: adult-capped\n")
    schema = tmp_path / "capped.yaml"
    schema.write_text(text + "budget: {epsilon: 1, delta: 1.0e-6}\n", encoding="utf-8")
    ledger = Ledger(tmp_path / "ledger.db")
    earlier = ledger.reserve("adult-capped", "adult-capped", "earlier", "releases/x",
                             "dp-marginals", 0.8, 1e-9, (1, 1e-6))
    ledger.start(earlier)
    ledger.commit(earlier, 0.8, 1e-9)
    before = ledger.history()
    frame = adult_frame(adult_sample, rows=50)

    def read(*args, **kwargs):
        raise AssertionError("private rows were read")

    for module, name in ((pipelines.ingest, "read_raw"), (pipelines.ingest, "coerce"),
                         (pipelines.large, "load_large"), (api, "coerce"),
                         (api, "drop_identifiers"), (api, "generalize")):
        monkeypatch.setattr(module, name, read)
    for data in (adult_sample, frame):
        with pytest.raises(BudgetExceeded, match="leaving epsilon=0.2"):
            api.fit(data, schema, 0.5, synthesizer="dp-independent", ledger=ledger.path)
    # refused before the ledger is even opened: settings, paths
    with pytest.raises(DataError, match="fit\\(\\) takes no setting 'rows'"):
        api.fit(adult_sample, schema, 0.1, ledger=tmp_path / "other.db", rows=10)
    with pytest.raises(DataError, match="no such file"):
        api.fit(tmp_path / "missing.csv", schema, 0.1, ledger=tmp_path / "other.db")
    assert ledger.history() == before and not (tmp_path / "other.db").exists()


def test_open_release_refuses_what_is_not_a_release(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "data.parquet").write_bytes(b"PAR1")
    for folder in (tmp_path / "notes", tmp_path / "missing", tmp_path / "x.quarantine"):
        with pytest.raises(PublishError) as refused:
            api.open_release(folder)
        message = str(refused.value)
        assert "\n" not in message and message.startswith(str(folder))


def test_release_publishes_what_synth_run_does(adult_sample, tmp_path):
    """The same settings through release() and `synth run`: the same run key (input,
    schema, every setting, code), the same files, rows, validation and privacy report."""
    settings = {"synthesizer": "dp-independent", "rows": 300, "seed": 3, "noise_seed": 7,
                "holdout": 0, "ledger": str(tmp_path / "ledger.db")}
    done = api.release(adult_sample, SCHEMA, tmp_path / "api", epsilon=0.4,
                       fidelity={"enabled": False}, **settings)
    assert done.release == tmp_path / "api" and done.verdict.success
    code = main(["run", "--input", str(adult_sample), "--schema", str(SCHEMA), "--out",
                 str(tmp_path / "cli"), "--epsilon", "0.4", "--synthesizer",
                 "dp-independent", "--rows", "300", "--seed", "3", "--noise-seed", "7",
                 "--holdout", "0", "--ledger", settings["ledger"], "--no-fidelity", "-q"])
    assert code == 0
    ours, theirs = api.open_release(done.release), api.open_release(tmp_path / "cli")
    key = [(internal_dir(p) / KEY_FILE).read_text().split()[0] for p in (ours.path,
                                                                         theirs.path)]
    assert key[0] == key[1]
    assert sorted(p.name for p in ours.path.iterdir()) == sorted(
        p.name for p in theirs.path.iterdir())
    pd.testing.assert_frame_equal(ours.rows, theirs.rows)
    assert checks(ours.validation) == checks(theirs.validation)
    assert ({**ours.report, "created": None} == {**theirs.report, "created": None})
    assert done.report == ours.report
    assert len(Ledger(settings["ledger"]).history()) == 2

    # a copy with one byte changed is no longer a release; nor is the internal report
    copy = tmp_path / "copy"
    shutil.copytree(ours.path, copy)
    report = json.loads((copy / "privacy_report.json").read_text())
    (copy / "privacy_report.json").write_text(json.dumps({**report, "epsilon": 0.01}))
    assert api.open_release(tmp_path / "api").verify() == []
    for folder in (copy, internal_dir(ours.path)):
        with pytest.raises(PublishError, match="not a verified release"):
            api.open_release(folder)
