"""`synth` end to end on real data, and every bad input: one-line error, non-zero exit,
nothing written."""

import json
import textwrap

import duckdb
import pandas as pd
import pytest

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.publish import read_release_metadata
from synth.privacy import epsilon_of_history
from tests.conftest import ROOT

ADULT_SCHEMA = str(ROOT / "schemas" / "adult.yaml")
# the DP-SGD path at its smallest (the default synthesizer is tested in test_flow.py)
FAST = ["--synthesizer", "dp-vae", "--epochs", "1", "--batch-size", "200", "--rows", "500",
        "--no-fidelity"]  # a 1-epoch model is not faithful; the fidelity suite has its own tests

TINY_SCHEMA = """\
name: tiny
version: "2"
columns:
  - {name: age, kind: integer, min: 0, max: 120}
  - {name: colour, kind: categorical, categories: [red, green, other], catch_all: other}
  - {name: score, kind: float, min: 0, max: 1, nullable: true}
"""


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_synth_run_publishes_a_validated_release(adult_sample, tmp_path, capsys):
    out = tmp_path / "releases" / "adult"
    code, stdout, _ = run(["run", "--input", str(adult_sample), "--schema", ADULT_SCHEMA,
                           "--epsilon", "1", "--out", str(out), "-q", *FAST], capsys)
    assert code == 0
    assert str(out / "data.parquet") in stdout and "privacy_report.json" in stdout
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["epsilon"] <= 1.0 and report["delta"] == 1e-9
    # the accountant composes the noisy record count with the DP-SGD steps
    history = [(m["noise_multiplier"], 1.0, 1) for m in report["measurements"]]
    history.append((report["noise_multiplier"], report["sampling_rate"], report["steps"]))
    assert report["epsilon"] == pytest.approx(epsilon_of_history(history, 1e-9, "prv"))
    assert json.loads((out / "validation.json").read_text())["success"] is True
    assert report["synthesizer_params"]["noise_seed"] is None and "afresh" in report["noise"]
    frame = pd.read_parquet(out / "data.parquet")
    assert len(frame) == 500 and list(frame.columns)[0] == "age"
    meta = read_release_metadata(out / "data.parquet")
    assert meta["data_set"] == "adult" and float(meta["epsilon"]) == report["epsilon"]
    assert duckdb.sql(f"select count(*) from '{out / 'data.parquet'}'").fetchall()[0][0] == 500
    # another run to the same place refuses, unless told to overwrite
    code, _, err = run(["run", "--input", str(adult_sample), "--schema", ADULT_SCHEMA,
                        "--epsilon", "0.5", "--out", str(out), "-q", *FAST], capsys)
    assert code == EXIT_BAD_INPUT and "--overwrite" in err


@pytest.mark.parametrize("setting,synthesizer", [(["--epochs", "3"], "dp-marginals"),
                                                 (["--components", "8"], "dp-vae")])
def test_a_setting_the_synthesizer_lacks_is_refused_before_reading(tmp_path, capsys, setting,
                                                                   synthesizer):
    code, _, err = run(["run", "--input", str(tmp_path / "missing.csv"), "--schema",
                        ADULT_SCHEMA, "--epsilon", "1", "--out", str(tmp_path / "o"),
                        "--synthesizer", synthesizer, *setting], capsys)
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert f"{setting[0]} does not apply to synthesizer {synthesizer}" in err
    assert not (tmp_path / "o").exists()


def test_schema_draft_and_check(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("age,colour\n" + "".join(f"{20 + i % 50},{'red' if i % 3 else 'blue'}\n"
                                               for i in range(200)))
    code, stdout, err = run(["schema", "draft", str(data)], capsys)
    assert code == 0 and "DRAFT" in stdout and "review" in err
    schema = tmp_path / "d.yaml"
    schema.write_text(stdout)
    code, stdout, _ = run(["schema", "check", str(schema)], capsys)
    assert code == 0 and "ok" in stdout


@pytest.fixture
def tiny(tmp_path):
    schema = tmp_path / "tiny.yaml"
    schema.write_text(TINY_SCHEMA)

    def csv(body: str):
        path = tmp_path / "in.csv"
        path.write_text(textwrap.dedent(body))
        return path

    return schema, csv


GOOD = "age,colour,score\n" + "30,red,0.5\n" * 20


@pytest.mark.parametrize("body,extra,expected", [
    (None, [], "no such file"),
    ("", [], "is empty"),
    ("age,colour,score\n", [], "no data rows"),
    ("age,score\n30,0.5\n", [], "column 'colour' required by"),
    (GOOD + "130,red,0.5\n", [], "column 'age' value 130 is above the schema's maximum "
                                  "120 in row 21 (line 22)"),
    (GOOD + "30,blue,0.5\n", [], "column 'colour' value 'blue' is not a declared category "
                                  "in row 21 (line 22)"),
    ("age,colour,score\n" + "30,red,\n" * 5, [],
     "column 'score' has no value in any of its 5 rows"),
    (GOOD + ",red,0.5\n", [], "column 'age' is missing a value in row 21"),
    (GOOD, ["--epsilon", "0"], "epsilon: must be a number from 1e-06 to 1000"),
    (GOOD, ["--epsilon", "-1"], "epsilon: must be a number from 1e-06 to 1000"),
    (GOOD, ["--delta", "1"], "delta: must be a number from 1e-30 to 1 (exclusive)"),
    (GOOD, ["--delta", "0"], "delta: must be a number from 1e-30 to 1 (exclusive)"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tiny, tmp_path, capsys, body, extra,
                                                         expected):
    schema, csv = tiny
    data = csv(body) if body is not None else tmp_path / "missing.csv"
    out = tmp_path / "release"
    argv = ["run", "--input", str(data), "--schema", str(schema), "--out", str(out), "-q",
            "--epsilon", "1", *FAST, *extra]
    code, _, err = run(argv, capsys)
    assert code == EXIT_BAD_INPUT
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1]
    assert "Traceback" not in err
    if "epsilon" not in expected and "delta" not in expected:
        assert str(data) in lines[-1] or "missing.csv" in lines[-1]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()
                                 if p.name.startswith(".")] == []


@pytest.mark.parametrize("schema_text,expected", [
    ("name: x\ncolumns:\n  - {name: a, kind: integer, min: 5, max: 1}\n", "min 5 is above max 1"),
    ("name: x\ncolumns:\n  - {name: a, kind: boolean}\n  - {name: a, kind: boolean}\n",
     "duplicate column name 'a'"),
    ("name: x\ncolumns: [\n", "does not parse as YAML"),
])
def test_bad_schema_is_refused(tmp_path, capsys, schema_text, expected):
    schema = tmp_path / "bad.yaml"
    schema.write_text(schema_text)
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    code, _, err = run(["run", "--input", str(data), "--schema", str(schema), "--epsilon", "1",
                        "--out", str(tmp_path / "out")], capsys)
    assert code == EXIT_BAD_INPUT
    assert f"{schema}" in err and expected in err
    assert not (tmp_path / "out").exists()


def test_clip_and_map_unknown_repair_instead_of_rejecting(tiny, tmp_path, capsys, caplog):
    schema, csv = tiny
    data = csv(GOOD + "30,red,0.5\n" * 200 + "130,blue,0.5\n")
    out = tmp_path / "release"
    code, _, err = run(["run", "--input", str(data), "--schema", str(schema), "--out", str(out),
                        "-q", "--epsilon", "1", "--clip", "--map-unknown", *FAST], capsys)
    assert code == 0, err
    assert "clipped 1 value(s) of column 'age'" in caplog.text
    assert "mapped 1 undeclared value(s) of column 'colour'" in caplog.text
    assert (out / "data.parquet").exists()


def test_flchain_release_with_its_declared_schema(tmp_path, capsys):
    from tests.conftest import shared

    data = shared("flchain/flchain.csv")
    out = tmp_path / "flchain"
    code, _, err = run(["run", "--input", str(data), "--schema",
                        str(ROOT / "schemas" / "flchain.yaml"), "--epsilon", "1",
                        "--out", str(out), "-q", *FAST], capsys)
    assert code == 0, err
    frame = pd.read_parquet(out / "data.parquet")
    assert frame["mgus"].dtype == "bool" and frame["chapter"].isna().any()
    assert json.loads((out / "validation.json").read_text())["success"] is True


def test_validation_failure_publishes_nothing(tiny, tmp_path, capsys, monkeypatch):
    """Synthetic rows that break the schema (forced here) stop publication: exit 3, the rows
    and the GX result go to <out>.quarantine/, nothing to <out>."""
    import pipelines.run as steps

    real_generate = steps.generate

    def broken(plan, model):
        frame = real_generate(plan, model)
        frame.loc[0, "age"] = 999
        return frame

    monkeypatch.setattr(steps, "generate", broken)
    schema, csv = tiny
    data = csv(GOOD * 1)
    out = tmp_path / "release"
    code, _, err = run(["run", "--input", str(data), "--schema", str(schema), "--out", str(out),
                        "-q", "--epsilon", "1", *FAST], capsys)
    assert code == 3
    assert "expect_column_values_to_be_between(age" in err and "nothing was published" in err
    assert "quarantined in" in err
    assert not out.exists()
    saved = json.loads((tmp_path / "release.quarantine" / "validation.json").read_text())
    assert saved["success"] is False and saved["failed"]
    assert (tmp_path / "release.quarantine" / "data.parquet").exists()
    assert (tmp_path / "release.internal" / "report.html").exists()


def test_rerunning_a_published_run_spends_and_publishes_nothing(adult_sample, tmp_path, capsys):
    from pipelines.ledger import Ledger

    out, db = tmp_path / "adult", tmp_path / "ledger.db"
    argv = ["run", "--input", str(adult_sample), "--schema", ADULT_SCHEMA, "--epsilon", "1",
            "--out", str(out), "--ledger", str(db), "-q", *FAST]
    assert run(argv, capsys)[0] == 0
    written = (out / "data.parquet").stat().st_mtime_ns
    key = (tmp_path / "adult.internal" / "run_key").read_text()
    assert "run_key" not in read_release_metadata(out / "data.parquet")  # it hashes the input

    code, stdout, _ = run([*argv, "--overwrite"], capsys)  # the same run again
    assert code == 0 and str(out / "data.parquet") in stdout
    assert (out / "data.parquet").stat().st_mtime_ns == written
    assert len(Ledger(db).history()) == 1  # nothing reserved or spent

    # another setting is another run: it needs --overwrite, and then spends again
    code, _, err = run([*argv, "--seed", "1"], capsys)
    assert code == EXIT_BAD_INPUT and "already exists" in err
    assert run([*argv, "--seed", "1", "--overwrite"], capsys)[0] == 0
    assert (tmp_path / "adult.internal" / "run_key").read_text() != key
    assert len(Ledger(db).history()) == 2


# Usage: what was probably meant, and help where a command was not given


@pytest.mark.parametrize("argv, expect", [
    (["run", "--input", "a.csv", "--schema", "s.yaml", "--out", "o", "--epsilom", "1"],
     "synth run: unrecognized argument --epsilom (did you mean --epsilon?)"),
    (["run", "--input", "a.csv", "--schema", "s.yaml", "--out", "o", "--epsilon", "1",
      "--quite"], "unrecognized argument --quite (did you mean --quiet"),
    (["run", "--input", "a.csv", "--schema", "s.yaml", "--out", "o", "--epsilon", "1",
      "--synthesizer", "dp-ctgn"], "invalid choice: 'dp-ctgn'"),
    (["rnu"], ("invalid choice: 'rnu' (choose from 'run', 'schema', 'budget', 'verify') "
               "(did you mean run?)")),
    (["schema", "chekc", "s.yaml"], "(did you mean check?)"),
    (["budget", "--ledgr", "x.db"], ("synth budget: unrecognized argument --ledgr (did you "
                                     "mean --ledger?)")),
    (["--verison"], "unrecognized argument --verison (did you mean --version?)"),
])
def test_a_mistyped_option_or_command_says_what_was_meant(argv, expect, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == EXIT_BAD_INPUT and expect in err and err.count("\n") == 1
    assert err.startswith("error: ")


@pytest.mark.parametrize("argv, expect", [([], "{run,schema,budget,verify}"),
                                          (["schema"], "{draft,check,from-sdv,to-sdv}")])
def test_a_command_without_its_subcommand_prints_its_help(argv, expect, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert exited.value.code == EXIT_BAD_INPUT  # nothing ran: a script notices
    assert expect in out and "usage: synth" in out and err == ""
