"""Nothing the tool did not write is ever touched: ``--overwrite`` trusts a folder's manifest,
checked file by file, never file names; a release cannot go inside another; two runs on one
``--out`` take turns (the location's lock), so only one spends and the winner's internal
report stays the winner's. (The double charge of a run killed after training is covered by
tests/test_faults.py: the ``TRAINED`` kill points.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.ledger import COUNTED, Ledger
from pipelines.plan import published_key
from pipelines.publish import verify_release
from tests.conftest import ROOT

SCHEMA = """\
name: tiny
version: "1"
columns:
  - {name: age, kind: integer, min: 0, max: 120}
  - {name: colour, kind: categorical, categories: [red, green, blue]}
"""


@pytest.fixture
def tiny(tmp_path):
    """A 300-row table, its schema and a ledger, in ``tmp_path``."""
    schema = tmp_path / "tiny.yaml"
    schema.write_text(SCHEMA)
    data = tmp_path / "tiny.csv"
    colours = ("red", "green", "blue")
    data.write_text("age,colour\n" + "".join(f"{20 + i % 50},{colours[i % 3]}\n"
                                             for i in range(300)))
    return {"schema": schema, "data": data, "ledger": tmp_path / "ledger.db"}


def command(tiny, out, *extra: str) -> list[str]:
    return ["run", "--input", str(tiny["data"]), "--schema", str(tiny["schema"]), "--epsilon",
            "1", "--rows", "100", "--synthesizer", "dp-independent", "--ledger",
            str(tiny["ledger"]), "--out", str(out), "-q", *extra]


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def counted(ledger) -> list[dict]:
    if not ledger.exists():
        return []
    return [e for e in Ledger(ledger).history() if e["state"] in COUNTED]


def publish_one(tiny, out, capsys) -> None:
    assert main(command(tiny, out)) == 0, capsys.readouterr().err
    capsys.readouterr()


@pytest.mark.parametrize("planted", [
    {"report.html": b"<p>my own notes</p>"},  # a name this tool writes, in a folder of theirs
    {"data.parquet": b"PAR1 not ours PAR1"},
    {"manifest.json": b'{"format": "something else", "files": {}}'},
    {"manifest.json": b'{"format": "dp-synth release 1", "files": {}}', "notes.txt": b"x"},
])
def test_overwrite_never_replaces_a_folder_this_tool_did_not_write(tiny, tmp_path, planted,
                                                                   capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    for name, blob in planted.items():
        (out / name).write_bytes(blob)
    before = snapshot(tmp_path)
    assert main(command(tiny, out, "--overwrite")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to replace" in err
    assert snapshot(tmp_path) == before  # nothing written, the ledger not even created


@pytest.mark.parametrize("change", ["edit", "add"])
def test_overwrite_refuses_a_release_changed_since_it_was_written(tiny, tmp_path, change,
                                                                  capsys):
    out = tmp_path / "release"
    publish_one(tiny, out, capsys)
    if change == "edit":  # the user annotated the report: replacing it would lose that
        (out / "report.html").write_text("<p>annotated by hand</p>")
    else:
        (out / "notes.txt").write_text("mine")
    before, spent = snapshot(tmp_path), counted(tiny["ledger"])
    assert main(command(tiny, out, "--overwrite", "--seed", "1")) == EXIT_BAD_INPUT
    assert "does not match the folder's manifest" in capsys.readouterr().err
    assert snapshot(tmp_path) == before and counted(tiny["ledger"]) == spent


def test_overwrite_replaces_the_tools_own_release(tiny, tmp_path, capsys):
    out = tmp_path / "release"
    publish_one(tiny, out, capsys)
    assert main(command(tiny, out, "--overwrite", "--seed", "1")) == 0
    assert verify_release(out) == []
    assert json.loads((out / "privacy_report.json").read_text())["synthesizer_params"][
        "seed"] == 1


def test_a_release_cannot_go_inside_another(tiny, tmp_path, capsys):
    out = tmp_path / "release"
    publish_one(tiny, out, capsys)
    before, spent = snapshot(tmp_path), counted(tiny["ledger"])
    for inner in (out / "inner", out / "a" / "b", tmp_path / "release.internal" / "x"):
        assert main(command(tiny, inner)) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "inside" in err, err
    assert snapshot(tmp_path) == before and counted(tiny["ledger"]) == spent
    assert verify_release(out) == []


def test_an_out_whose_parent_is_a_file_is_refused_before_anything_is_spent(tiny, tmp_path,
                                                                          capsys):
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    assert main(command(tiny, tmp_path / "afile" / "release")) == EXIT_BAD_INPUT
    assert "is a file" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("same", [True, False], ids=["same-run", "other-seed"])
def test_two_runs_racing_to_one_out_spend_once(tiny, tmp_path, same):
    """Two processes started together on one ``--out``: the lock makes them take turns. The
    second finds the release: a no-op for the same run, "already exists" for another; either
    way one ledger entry counts and the internal report and run key are the winner's."""
    out = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    procs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli",
                               *command(tiny, out, *([] if same else ["--seed", str(i)]))],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == ([0, 0] if same else [0, EXIT_BAD_INPUT]), results
    assert len(counted(tiny["ledger"])) == 1
    assert verify_release(out) == [] and published_key(out) is not None
    assert sorted(os.listdir(tmp_path)) == ["ledger.db", "release", "release.internal",
                                           "tiny.csv", "tiny.yaml"]  # the lock file gone
