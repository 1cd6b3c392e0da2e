"""Crash safety: ``kill -9`` at many points of ``synth run`` (ingest, training, the ledger's
start and commit, sampling, the Parquet write, the staging dir, the renames, the run key).

After each kill: the process died by SIGKILL; no reader sees a partial release (``<out>`` is
absent or complete, readable by pyarrow and DuckDB with its footer, never a half-written
quarantine); the ledger holds exactly one entry for the run, in the state the point implies;
and rerunning the same command completes and sweeps what the dead writer left.

The product has no fault hooks: tests/fault_child.py wraps one function of it per point so that
the process sends itself SIGKILL there. One child process imports everything once and forks a
process per point (a fresh interpreter each would cost seconds of imports per point); the
reruns run in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.ledger import Ledger
from pipelines.publish import read_release_metadata, verify_release
from tests.conftest import ROOT

FAST = ["--synthesizer", "dp-vae", "--epochs", "1", "--batch-size", "200", "--rows", "300",
        "--accountant", "rdp",  # quicker to calibrate than prv; the kill points do not depend on it
        "--no-fidelity", "-q", "--epsilon", "1"]
RELEASE_FILES = ["data.parquet", "manifest.json", "privacy_report.json", "report.html",
                 "validation.json"]

# point -> (the ledger state it leaves, whether <out> holds the (new) release after the kill)
POINTS = {
    "ingest": ("reserved", False),  # the rows are read, no DP step ran
    "ledger-start": ("spending", False),  # 'spending' recorded, no step yet
    "training": ("spending", False),  # after two DP steps
    "before-commit": ("spending", False),  # trained; the accountant's spend not recorded
    "sampling": ("committed", False),
    "parquet": ("committed", False),  # half of data.parquet in the staging dir
    "extra-file": ("committed", False),  # half of validation.json in the staging dir
    "manifest": ("committed", False),  # half of manifest.json, the last file staged
    "swap-in": ("committed", False),  # the staging dir complete, not renamed
    "between-internal-and-release": ("committed", False),
    "after-release-rename": ("committed", True),  # the release renamed in: the rerun is a no-op
}
# killed after training, before publishing: the rerun resumes from the checkpoint saved after
# the last step and publishes without training or charging again
TRAINED = ("before-commit", "sampling", "parquet", "extra-file", "manifest", "swap-in",
           "between-internal-and-release")
OVERWRITE_POINTS = ("swap-in", "mid-swap")  # a second run replacing a release (--overwrite)
# killed in training with checkpoints every 3 steps: after the first one is saved (the rerun
# resumes from it, on the same ledger entry), and half-way through writing it (nothing to
# resume: the rerun starts afresh)
CHECKPOINT_POINTS = ("checkpoint", "checkpoint-write")


def command(case, root, *extra: str) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)  # the ledger's folder (never created for --ledger)
    return ["run", "--input", str(case["input"]), "--schema", str(case["schema"]), "--ledger",
            str(root / "ledger.db"), "--out", str(root / "out" / "rel"), *FAST, *extra]


@pytest.fixture(scope="module")
def killed(tmp_path_factory, adult_sample):
    """Every point's run, killed there; per case its root, command and exit status."""
    base = tmp_path_factory.mktemp("faults")
    budgeted = base / "adult-budget.yaml"
    budgeted.write_text((ROOT / "schemas" / "adult.yaml").read_text()
                        + "budget: {epsilon: 1.5, delta: 1.0e-6}\n")
    plain = {"input": adult_sample, "schema": ROOT / "schemas" / "adult.yaml"}
    cases = {}
    for point in POINTS:
        cases[point] = {"point": point, "root": base / point, **plain}
        cases[point]["args"] = command(cases[point], base / point)
    for point in CHECKPOINT_POINTS:
        cases[point] = {"point": point, "root": base / point, **plain}
        cases[point]["args"] = command(cases[point], base / point, "--checkpoint-every", "3")
    # a data set with a total budget of 1.5: a run of epsilon 1 killed before training
    cases["ingest-budgeted"] = {"point": "ingest", "root": base / "ingest-budgeted",
                                "input": adult_sample, "schema": budgeted}
    cases["ingest-budgeted"]["args"] = command(cases["ingest-budgeted"],
                                               base / "ingest-budgeted")
    # a first release (seed 1), then a second run (seed 2, --overwrite) killed while
    # replacing it; the first run also warms this process's imports for the reruns
    first = base / "overwrite-first"
    assert main(command(plain, first, "--seed", "1")) == 0
    for point in OVERWRITE_POINTS:
        name = f"overwrite-{point}"
        shutil.copytree(first, base / name)
        cases[name] = {"point": point, "root": base / name, **plain}
        cases[name]["args"] = command(cases[name], base / name, "--seed", "2", "--overwrite")
    jobs = [{"point": c["point"], "args": c["args"], "log": str(base / f"{name}.log")}
            for name, c in cases.items()]
    (base / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "tests.fault_child", "--zygote",
                    str(base / "jobs.json"), str(base / "results.json")],
                   cwd=ROOT, env=env, check=True, timeout=300)
    for case, code in zip(cases.values(), json.loads((base / "results.json").read_text())):
        case["code"] = code
    cases["first-key"] = (first / "out" / "rel.internal" / "run_key").read_text()
    cases["first-epsilon"] = json.loads(
        (first / "out" / "rel" / "privacy_report.json").read_text())["epsilon"]
    return cases


def release_at(out) -> dict[str, str] | None:
    """The footer of the complete release at ``out``, None if there is none; fails on a
    partial one."""
    if not out.exists():
        return None
    assert sorted(os.listdir(out)) == RELEASE_FILES, f"{out} is partial"
    assert verify_release(out) == []
    data = out / "data.parquet"
    table = pq.read_table(data)
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{data}')").fetchall()[0][0] == 300
    assert table.num_rows == 300
    json.loads((out / "privacy_report.json").read_text())
    json.loads((out / "validation.json").read_text())
    footer = read_release_metadata(data)
    assert footer["rows"] == "300" and "epsilon" in footer
    return footer


def seed(footer) -> int:
    return json.loads(footer["synthesizer_params"])["seed"]


def hidden(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if n.startswith(".")) if parent.exists() else []


def log_of(case) -> str:
    log = case["root"].parent / f"{case['root'].name}.log"
    return log.read_text() if log.exists() else ""


def check_killed(case):
    assert case["code"] == -signal.SIGKILL, (
        f"{case['point']}: exit {case['code']}, not SIGKILL\n{log_of(case)}")
    out = case["root"] / "out" / "rel"
    assert not (out.parent / "rel.quarantine").exists()
    # a killed run's lock file stays (empty: the next run takes and removes it)
    assert all(n.startswith((".rel.staging-", ".rel.internal.staging-", ".rel.old-"))
               or n == ".rel.lock" for n in hidden(out.parent)), hidden(out.parent)
    return out


@pytest.mark.parametrize("point", POINTS)
def test_kill_then_rerun(killed, point, capsys):
    case = killed[point]
    state, published = POINTS[point]
    out = check_killed(case)
    assert (release_at(out) is not None) == published
    staged = [out.parent / n for n in hidden(out.parent) if n.startswith(".rel.staging-")]
    if point in ("parquet", "extra-file", "manifest", "swap-in"):  # the release half staged
        [staging] = staged
        if point == "parquet":  # the footer-less file a plain write leaves, hidden
            with pytest.raises(Exception, match="(?i)parquet"):
                pq.read_table(staging / "data.parquet")
    ledger = Ledger(case["root"] / "ledger.db")
    [entry] = ledger.history()
    assert entry["state"] == state
    # every state but cancelled counts: so does the killed run's, whatever the point
    assert ledger.spent(entry["data_set"]).epsilon == pytest.approx(entry["epsilon"])

    assert main(case["args"]) == 0, capsys.readouterr().err
    assert release_at(out) is not None
    assert sorted(os.listdir(out.parent)) == ["rel", "rel.internal"]  # leftovers swept
    entries = ledger.history()
    if published:  # the release and its run key are in place: the rerun is a no-op
        assert [e["state"] for e in entries] == ["committed"]
    elif point in TRAINED:  # the final checkpoint: resumed with nothing to train, no new
        # charge (the killed run's entry is taken over, not a second one reserved)
        assert [e["state"] for e in entries] == ["committed"]
        assert not (out.parent / "rel.internal" / "checkpoint.pt").exists()
    else:
        assert entries[-1]["state"] == "committed" and len(entries) == 2
        assert entries[0]["state"] == ("cancelled" if state == "reserved" else state)


@pytest.mark.parametrize("point", CHECKPOINT_POINTS)
def test_a_run_killed_in_training_resumes_from_its_checkpoint(killed, point, capsys, caplog):
    """Killed after its first checkpoint, the rerun resumes there and charges the killed
    run's ledger entry (one entry, committed) with the epsilon of an uninterrupted run.
    Killed while writing it, the old state (none) is intact and the rerun starts afresh."""
    import torch

    case = killed[point]
    out = check_killed(case)
    internal = out.parent / "rel.internal"
    if point == "checkpoint":
        state = torch.load(internal / "checkpoint.pt", weights_only=True)
        assert state["state"]["step"] == 3 and len(state["run_key"]) == 64
    else:
        assert not (internal / "checkpoint.pt").exists()
        assert [n for n in os.listdir(internal) if n.startswith(".checkpoint.pt.staging-")]
    ledger = Ledger(case["root"] / "ledger.db")
    assert [e["state"] for e in ledger.history()] == ["spending"]

    with caplog.at_level("INFO", logger="pipelines.plan"):
        assert main(case["args"]) == 0, capsys.readouterr().err
    assert release_at(out) is not None
    assert sorted(os.listdir(out.parent)) == ["rel", "rel.internal"]
    assert "checkpoint.pt" not in os.listdir(internal)  # gone with the internal report
    resumed = "resuming training from" in caplog.text
    states = [e["state"] for e in ledger.history()]
    assert (resumed, states) == ((True, ["committed"]) if point == "checkpoint"
                                 else (False, ["spending", "committed"]))
    report = json.loads((out / "privacy_report.json").read_text())
    # the sampling rate comes from a noisy record count (fresh noise per run, reused on
    # resume), so another run's epsilon differs a little: same settings, same budget
    assert report["epsilon"] == pytest.approx(killed["first-epsilon"], rel=0.02)
    assert report["epsilon"] <= 1.0


def test_a_reservation_killed_before_training_is_freed(killed, capsys):
    """The killed run reserved epsilon 1 of the data set's 1.5 and died before any DP step:
    its process is gone, so the next run frees the reservation, as a run that fails before
    training would have, instead of being refused for a budget nobody spent."""
    case = killed["ingest-budgeted"]
    check_killed(case)
    ledger = Ledger(case["root"] / "ledger.db")
    assert [e["state"] for e in ledger.history()] == ["reserved"]
    assert main(case["args"]) == 0, capsys.readouterr().err
    assert [e["state"] for e in ledger.history()] == ["cancelled", "committed"]


@pytest.mark.parametrize("point", OVERWRITE_POINTS)
def test_kill_while_overwriting_shows_the_old_release_or_the_new(killed, point, capsys):
    case = killed[f"overwrite-{point}"]
    out = check_killed(case)
    footer = release_at(out)
    assert footer is not None, f"{point}: no release at {out} after the kill"
    assert seed(footer) in (1, 2)  # the old release (seed 1) or the new one, whole
    ledger = Ledger(case["root"] / "ledger.db")
    assert [e["state"] for e in ledger.history()] == ["committed", "committed"]
    assert main(case["args"]) == 0, capsys.readouterr().err
    new = release_at(out)
    assert sorted(os.listdir(out.parent)) == ["rel", "rel.internal"]
    assert seed(new) == 2
    assert (out.parent / "rel.internal" / "run_key").read_text() != killed["first-key"]


def test_only_reservations_of_dead_processes_on_this_host_are_freed(tmp_path):
    import sqlite3

    ledger = Ledger(tmp_path / "ledger.db")
    live = ledger.reserve("fp", "adult", "in.csv", "out", "dp-vae", 1.0, 1e-9, None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    others = [ledger.reserve("fp", "adult", "in.csv", "out", "dp-vae", 1.0, 1e-9, None)
              for _ in range(3)]
    with sqlite3.connect(ledger.path) as db:  # as if reserved elsewhere, or by an old version
        for entry, owner in zip(others, [f"{socket.gethostname()}:{dead.pid}",
                                         f"elsewhere:{dead.pid}", None]):
            db.execute("UPDATE entries SET owner = ? WHERE id = ?", (owner, entry))
    assert ledger.release_stale() == [others[0]]
    assert [e["state"] for e in ledger.history()] == ["reserved", "cancelled", "reserved",
                                                      "reserved"]
    assert ledger.history()[0]["id"] == live
