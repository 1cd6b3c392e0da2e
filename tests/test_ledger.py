"""The privacy budget ledger: reservations before reading, failures still count, concurrent
runs cannot overspend, and a killed run stays charged."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.ledger import BudgetExceeded, Ledger
from tests.conftest import ROOT

LIMIT = (3.0, 1e-6)


def reserve(ledger: Ledger, epsilon: float = 1.0, limit=LIMIT) -> int:
    return ledger.reserve("fp", "adult", "in.csv", "out", "dp-marginals", epsilon, 1e-9, limit)


def test_reservations_add_up_to_the_declared_total(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    first = reserve(ledger, 2.0)
    with pytest.raises(BudgetExceeded, match=r"total budget of epsilon=3.*spent epsilon=2.*"
                                             r"leaving epsilon=1.*asks for epsilon=1.5"):
        reserve(ledger, 1.5)
    assert ledger.cancel(first)  # failed before any DP step: freed
    second = reserve(ledger, 1.5)
    ledger.start(second)
    assert not ledger.cancel(second)  # DP steps ran: it can no longer be freed
    ledger.commit(second, 1.4999, 1e-9)
    assert ledger.spent("fp").epsilon == pytest.approx(1.4999)
    assert ledger.spent("other").epsilon == 0  # budgets are per data set
    with pytest.raises(RuntimeError, match="exceeds the reservation"):
        third = reserve(ledger, 1.0)
        ledger.start(third)
        ledger.commit(third, 1.2, 1e-9)
    assert [e["state"] for e in ledger.history()] == ["cancelled", "committed", "spending"]


def test_without_a_declared_total_runs_are_recorded_not_limited(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    for _ in range(3):
        reserve(ledger, 5.0, limit=None)
    assert ledger.spent("fp").epsilon == 15.0


def _race(path, results):
    try:
        reserve(Ledger(path), 1.0)
        results.put("ok")
    except BudgetExceeded:
        results.put("refused")


def test_concurrent_runs_cannot_overspend(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).spent("fp")  # create the database
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_race, args=(path, results)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes.count("ok") == 3 and outcomes.count("refused") == 5
    assert Ledger(path).spent("fp").epsilon == 3.0


@pytest.fixture
def budgeted_schema(tmp_path):
    path = tmp_path / "adult-budget.yaml"
    path.write_text((ROOT / "schemas" / "adult.yaml").read_text()
                    + "budget: {epsilon: 1.5, delta: 1.0e-6}\n")
    return str(path)


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


FAST = ["--synthesizer", "dp-vae", "--epochs", "1", "--batch-size", "200", "--rows", "200", "--no-fidelity",
        "-q"]


def test_cli_refuses_a_run_past_the_budget_before_reading(adult_sample, budgeted_schema,
                                                          tmp_path, capsys):
    db = str(tmp_path / "ledger.db")
    base = ["run", "--input", str(adult_sample), "--schema", budgeted_schema, "--ledger", db]
    code, _, _ = run([*base, "--epsilon", "1", "--out", str(tmp_path / "a"), *FAST], capsys)
    assert code == 0
    code, _, err = run([*base, "--epsilon", "1", "--out", str(tmp_path / "b"), *FAST], capsys)
    assert code == EXIT_BAD_INPUT and "total budget of epsilon=1.5" in err
    assert err.count("\n") == 1 and not (tmp_path / "b").exists()
    # bad input fails before any DP step: its reservation is freed
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,valid,adult,row\n")
    code, _, _ = run(["run", "--input", str(bad), "--schema", budgeted_schema, "--ledger", db,
                      "--epsilon", "0.5", "--out", str(tmp_path / "c"), *FAST], capsys)
    assert code == EXIT_BAD_INPUT
    code, _, _ = run([*base, "--epsilon", "0.4", "--out", str(tmp_path / "d"), *FAST], capsys)
    assert code == 0
    code, out, _ = run(["budget", "--ledger", db], capsys)
    assert code == 0 and "committed" in out and "cancelled" in out
    spent = [line for line in out.splitlines() if line.startswith("  adult")]
    # one data set (the schema's name), whatever the file; the cancelled run costs nothing
    assert len(spent) == 1 and "over 2 run(s)" in spent[0]
    states = [e["state"] for e in Ledger(db).history()]
    assert states == ["committed", "cancelled", "committed"]


def test_an_edited_or_recompressed_file_spends_from_the_same_total(adult_sample,
                                                                   budgeted_schema, tmp_path,
                                                                   capsys):
    """The budget belongs to the data set's declared identity (the schema's name), not to the
    file's bytes: a weekly run on updated data stays limited, and the ledger holds no hash of
    the private file."""
    import gzip
    import hashlib

    db = str(tmp_path / "ledger.db")
    edited = tmp_path / "edited.csv.gz"
    lines = adult_sample.read_bytes().splitlines(keepends=True)
    edited.write_bytes(gzip.compress(b"".join(lines[:-1])))  # one record less, recompressed
    common = ["--schema", budgeted_schema, "--ledger", db, "--epsilon", "1", *FAST]
    code, _, _ = run(["run", "--input", str(adult_sample), "--out", str(tmp_path / "a"),
                      *common], capsys)
    assert code == 0
    code, _, err = run(["run", "--input", str(edited), "--out", str(tmp_path / "b"),
                        *common], capsys)
    assert code == EXIT_BAD_INPUT and "total budget of epsilon=1.5" in err
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (adult_sample, edited)}
    for entry in Ledger(db).history():
        assert entry["data_set"] == "adult"
        assert not any(d[:12] in str(v) for d in digests for v in entry.values())


def test_a_failure_during_training_still_counts(adult_sample, budgeted_schema, tmp_path,
                                                monkeypatch, capsys):
    import pipelines.run as steps

    def broken(*args, **kwargs):
        raise RuntimeError("training crashed")

    monkeypatch.setattr(steps, "train", broken)
    db = tmp_path / "ledger.db"
    with pytest.raises(RuntimeError, match="training crashed"):
        main(["run", "--input", str(adult_sample), "--schema", budgeted_schema, "--ledger",
              str(db), "--epsilon", "1", "--out", str(tmp_path / "a"), *FAST])
    [entry] = Ledger(db).history()
    assert entry["state"] == "spending" and entry["epsilon"] == 1.0


def test_a_killed_run_stays_charged(adult_sample, budgeted_schema, tmp_path):
    """kill -9 during training: the entry is left 'spending' and counts in full."""
    db = tmp_path / "ledger.db"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "--input", str(adult_sample), "--schema",
         budgeted_schema, "--ledger", str(db), "--epsilon", "1", "--out", str(tmp_path / "a"),
         "--synthesizer", "dp-vae", "--epochs", "200", "--batch-size", "200", "-q"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if db.exists() and [e["state"] for e in Ledger(db).history()] == ["spending"]:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ledger = Ledger(db)
    [entry] = ledger.history()
    assert entry["state"] == "spending"
    assert ledger.spent(entry["data_set"]).epsilon == 1.0  # the killed run's epsilon counts
    with pytest.raises(BudgetExceeded):
        ledger.reserve(entry["data_set"], "adult", "in", "out", "dp-vae", 1.0, 1e-9, (1.5, 1e-6))
    assert not (tmp_path / "a").exists()


def test_a_run_refuses_a_ledger_url_with_its_password():
    """A run's settings are stored by Prefect and shown in its UI: no password in them."""
    from pydantic import ValidationError

    from pipelines.config import RunConfig

    base = {"input": "a.csv", "schema_file": "s.yaml", "out": "o", "epsilon": 1}
    for url in ("postgresql://synth:secret@db/ledger", "postgresql://db/l?password=secret"):
        with pytest.raises(ValidationError, match="PGPASSWORD"):
            RunConfig(**base, ledger=url)
    assert RunConfig(**base, ledger="postgresql://synth@db/ledger").ledger
