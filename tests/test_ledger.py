"""The privacy budget ledger: reservations before reading, failures still count, concurrent
runs cannot overspend, and a killed run stays charged; a ledger that is not one (a directory,
garbage, someone else's database, locked, read-only, unreachable) is refused in one line with
nothing written, and an absurd epsilon or delta is never reserved."""

import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.ledger import SQLITE, TIMEOUT_ENV, BudgetExceeded, Ledger, LedgerError
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


FAST = ["--synthesizer", "dp-vae", "--epochs", "1", "--batch-size", "200", "--rows", "200",
        "--no-fidelity", "-q"]


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
    monkeypatch.setenv("SYNTH_DEBUG", "1")  # an unforeseen error propagates, not one line
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


# Hostile ledgers: every one is refused with one line naming it, before any reservation, and
# nothing at or beside it is written.

NOBODY = 65534


def _garbage(folder: Path) -> Path:
    path = folder / "garbage.db"
    path.write_bytes(random.Random(7).randbytes(10_000))
    return path


def _directory(folder: Path) -> Path:
    (folder / "ledger.d").mkdir()
    return folder / "ledger.d"


def _empty(folder: Path) -> Path:
    (folder / "empty.db").touch()
    return folder / "empty.db"


def _sqlite_header_then_garbage(folder: Path) -> Path:
    path = folder / "damaged.db"
    path.write_bytes(b"SQLite format 3\x00" + random.Random(8).randbytes(8_000))
    return path


def _someone_elses(sql: str, wal: bool = False):
    def build(folder: Path) -> Path:
        path = folder / "theirs.db"
        with closing(sqlite3.connect(path)) as db:
            if wal:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(sql)
            db.execute("INSERT INTO entries VALUES (1, 2)" if "entries" in sql else
                       "INSERT INTO patients VALUES ('a', 'b')")
            db.commit()
        return path
    return build


def _missing_folder(folder: Path) -> Path:
    return folder / "no-such-folder" / "ledger.db"


def _folder_is_a_file(folder: Path) -> Path:
    (folder / "notes.txt").write_text("not a folder\n")
    return folder / "notes.txt" / "ledger.db"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.db")  # opening it would block: it must not even be opened
    return folder / "pipe.db"


def _dangling_link(folder: Path) -> Path:
    (folder / "link.db").symlink_to(folder / "elsewhere.db")
    return folder / "link.db"


HOSTILE = {
    "random bytes": _garbage,
    "a directory": _directory,
    "an empty file": _empty,
    "SQLite's header, then garbage": _sqlite_header_then_garbage,
    "a SQLite database without the table": _someone_elses(
        "CREATE TABLE patients (name TEXT, diagnosis TEXT)"),
    "a WAL database without the table": _someone_elses(
        "CREATE TABLE patients (name TEXT, diagnosis TEXT)", wal=True),
    "a table 'entries' of other columns": _someone_elses("CREATE TABLE entries (a, b)"),
    "a folder that does not exist": _missing_folder,
    "a folder that is a file": _folder_is_a_file,
    "a named pipe": _fifo,
    "a link to nowhere": _dangling_link,
}


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: a file's bytes, a link's target, a folder or other kind."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = ("dir" if path.is_dir() else "other", path.stat().st_mode)
    return found


def assert_one_line(message: str, location: object) -> None:
    assert "\n" not in message and len(message) <= 400, message
    assert str(location) in message, message


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_ledger_is_refused_in_one_line_and_left_untouched(build, tmp_path):
    folder = tmp_path / "where"
    folder.mkdir()
    path = build(folder)
    before = snapshot(folder)
    for attempt in (lambda: reserve(Ledger(path, timeout=0.2)),
                    lambda: Ledger(path, timeout=0.2).history(),
                    lambda: Ledger(path, timeout=0.2).exists() or Ledger(path).history()):
        with pytest.raises(LedgerError) as refused:
            attempt()
        assert_one_line(str(refused.value), path)
    assert snapshot(folder) == before  # nothing written into it, nothing created beside it


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_synth_budget_refuses_a_hostile_ledger_in_one_line(build, tmp_path, capsys):
    folder = tmp_path / "where"
    folder.mkdir()
    path = build(folder)
    before = snapshot(folder)
    code, out, err = run(["budget", "--ledger", str(path)], capsys)
    assert code == EXIT_BAD_INPUT and not out and err.count("\n") == 1, err
    assert err.startswith("error: the ledger ") and "Traceback" not in err
    assert_one_line(err.removeprefix("error: ").rstrip("\n"), path)
    assert snapshot(folder) == before


def _rollback_ledger_locked(path: Path) -> sqlite3.Connection:
    """A ledger another process holds: its journal set back to a rollback journal (where an
    exclusive lock keeps readers out too) and a BEGIN EXCLUSIVE transaction open."""
    reserve(Ledger(path), 1.0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_ledger_is_waited_for_a_bounded_time_then_refused(tmp_path, monkeypatch,
                                                                   capsys):
    path = tmp_path / "ledger.db"
    with closing(_rollback_ledger_locked(path)):
        before = path.read_bytes()
        started = time.monotonic()
        with pytest.raises(LedgerError, match="is locked by another process") as refused:
            reserve(Ledger(path, timeout=0.3))
        assert 0.25 <= time.monotonic() - started < 10
        assert_one_line(str(refused.value), path)
        monkeypatch.setenv(TIMEOUT_ENV, "0.2")
        code, _, err = run(["budget", "--ledger", str(path)], capsys)
        assert code == EXIT_BAD_INPUT and err.count("\n") == 1 and "is locked by" in err
        assert path.read_bytes() == before
    assert [e["state"] for e in Ledger(path).history()] == ["reserved"]  # free again


def test_a_wal_ledger_held_by_a_writer_refuses_a_reservation_not_a_reading(tmp_path):
    """Another process in a write transaction (BEGIN EXCLUSIVE) on a ledger in WAL mode: it
    can still be read (``synth budget``), but a reservation waits, then is refused."""
    path = tmp_path / "ledger.db"
    first = reserve(Ledger(path), 1.0)
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        ledger = Ledger(path, timeout=0.2)
        assert [e["id"] for e in ledger.history()] == [first]
        with pytest.raises(LedgerError, match="is locked by another process"):
            reserve(ledger, 1.0)
        with pytest.raises(LedgerError, match="is locked by another process"):
            ledger.start(first)
        holder.execute("ROLLBACK")
    assert [e["state"] for e in Ledger(path).history()] == ["reserved"]


def test_the_wait_for_a_lock_is_a_number_of_seconds(monkeypatch, tmp_path):
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(LedgerError, match=f"{TIMEOUT_ENV}='soon' is not a number of seconds"):
        Ledger(tmp_path / "l.db")
    for wrong in (-1, math.nan, math.inf, 1e300):
        with pytest.raises(LedgerError, match="not a number of seconds"):
            Ledger(tmp_path / "l.db", timeout=wrong)
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert Ledger(tmp_path / "l.db").timeout == 2.5
    assert Ledger(tmp_path / "l.db", timeout=0).timeout == 0


def _as_nobody(call) -> str:
    """``call()`` where file modes bind: here if this process is not root's, else in a child
    running as nobody (root writes through any mode). What it raised, or 'ok'."""
    def outcome() -> str:
        try:
            call()
        except LedgerError as exc:
            return f"LedgerError: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            return f"{type(exc).__name__}: {exc}"
        return "ok"

    if os.geteuid() != 0:
        return outcome()
    main(["budget", "--ledger", os.devnull])  # the command line's modules load as root
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result travels through the pipe
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, outcome().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        result = pipe.read().decode()
    os.waitpid(child, 0)
    return result


@pytest.fixture
def open_folder(tmp_path):
    """A folder every user can reach (as root, pytest's base folder is root's alone): the
    permission cases run as nobody there."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="ledger-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


def _make_ledger(path: Path) -> Path:
    reserve(Ledger(path), 1.0)
    os.chmod(path, 0o666)  # writable by all: only what the case changes binds
    return path


PERMISSIONS = {
    "a read-only ledger": (lambda f: _make_ledger(f / "l.db"), "l.db", 0o444, None,
                           "is read-only for this user"),
    "an unreadable ledger": (lambda f: _make_ledger(f / "l.db"), "l.db", 0o000, None,
                             "cannot be read"),
    "a ledger in a read-only folder": (lambda f: _make_ledger(f / "ro" / "l.db"), "ro/l.db",
                                       None, 0o555, "its folder .* is not writable"),
    "a new ledger in a read-only folder": (lambda f: f / "ro" / "l.db", "ro/l.db", None, 0o555,
                                           "cannot be created: its folder .* is not writable"),
}


@pytest.mark.parametrize("case", PERMISSIONS.values(), ids=PERMISSIONS.keys())
def test_a_ledger_this_user_cannot_write_is_refused_in_one_line(case, open_folder):
    build, name, file_mode, folder_mode, expected = case
    (open_folder / "ro").mkdir()
    build(open_folder)
    path = open_folder / name
    if file_mode is not None:
        path.chmod(file_mode)
    if folder_mode is not None:
        path.parent.chmod(folder_mode)
    before = snapshot(open_folder) if file_mode != 0o000 else None
    outcome = _as_nobody(lambda: reserve(Ledger(path, timeout=0.2)))
    assert outcome.startswith("LedgerError: ") and re.search(expected, outcome), outcome
    assert_one_line(outcome.removeprefix("LedgerError: "), path)
    if before is not None:
        assert snapshot(open_folder) == before

    def budget_refuses() -> None:
        assert main(["budget", "--ledger", str(path)]) == EXIT_BAD_INPUT

    assert _as_nobody(budget_refuses) == "ok"


def test_an_unreachable_postgresql_ledger_is_one_line_without_its_password(capsys):
    url = "postgresql://synth:hunter2-secret@127.0.0.1:1/ledger"
    with pytest.raises(LedgerError) as refused:
        reserve(Ledger(url, timeout=0.2))
    message = str(refused.value)
    assert_one_line(message, "postgresql://synth:***@127.0.0.1:1/ledger")
    assert "hunter2" not in message
    code, _, err = run(["budget", "--ledger", url + "?password=other-secret"], capsys)
    assert code == EXIT_BAD_INPUT and err.count("\n") == 1 and "127.0.0.1:1" in err
    assert "secret" not in err


# A new ledger, and an old one


def _reserve_unlimited(path) -> None:
    reserve(Ledger(path), 1.0, limit=None)


def test_runs_that_create_a_ledger_at_once_all_use_the_one_made_whole(tmp_path):
    """The ledger is written whole beside its path and linked into place: a run never finds
    it empty or half made (which it would refuse), and no temporary file is left."""
    path = tmp_path / "l.db"
    procs = [multiprocessing.Process(target=_reserve_unlimited, args=(path,)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    assert len(Ledger(path).history()) == 8
    assert sorted(os.listdir(tmp_path)) == ["l.db"]


def test_the_default_ledger_folder_is_created_but_no_other(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_HOME", str(tmp_path / "home" / "synth"))
    monkeypatch.delenv("SYNTH_LEDGER_URL", raising=False)
    assert not Ledger().exists()
    reserve(Ledger(), 1.0)
    assert (tmp_path / "home" / "synth" / "ledger.db").is_file()
    with pytest.raises(LedgerError, match="its folder .* does not exist"):
        reserve(Ledger(tmp_path / "elsewhere" / "ledger.db"))
    assert not (tmp_path / "elsewhere").exists()


def test_a_ledger_from_before_owners_were_recorded_is_still_used(tmp_path):
    path = tmp_path / "old.db"
    table = SQLITE.table.replace(",\n    owner TEXT", "").replace(
        "               -- host:pid of the process that reserved it", "")
    with closing(sqlite3.connect(path)) as db:
        db.execute(table)
        db.commit()
    assert "owner" not in table
    reserve(Ledger(path), 1.0)
    assert Ledger(path).history()[0]["owner"]


# Absurd amounts are never reserved


@pytest.mark.parametrize("epsilon, delta", [
    (1e300, 1e-9), (1e-300, 1e-9), (math.inf, 1e-9), (math.nan, 1e-9), (-1.0, 1e-9),
    (0.0, 1e-9), (1.0, 1e-300), (1.0, math.nan), (1.0, math.inf), (1.0, 1.0), (1.0, 0.0),
    (1.0, -1e-9), ("1", 1e-9), (True, 1e-9), (None, 1e-9)])
def test_an_absurd_epsilon_or_delta_is_never_reserved(epsilon, delta, tmp_path):
    path = tmp_path / "l.db"
    ledger = Ledger(path)
    with pytest.raises(LedgerError, match="refuses to reserve (epsilon|delta)=") as refused:
        ledger.reserve("fp", "adult", "in.csv", "out", "dp-vae", epsilon, delta, LIMIT)
    assert_one_line(str(refused.value), path)
    assert not path.exists()  # refused before the ledger is even opened: it costs nothing


@pytest.mark.parametrize("limit", [(math.nan, 1e-6), (math.inf, 1e-6), (3.0, math.nan),
                                   (-3.0, 1e-6), (3.0, 0.0)])
def test_an_absurd_declared_total_is_refused_not_taken_as_no_limit(limit, tmp_path):
    with pytest.raises(LedgerError, match="not a finite positive"):
        reserve(Ledger(tmp_path / "l.db"), 1.0, limit=limit)
    assert not (tmp_path / "l.db").exists()


def test_an_absurd_amount_spent_is_not_committed(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    entry = reserve(ledger, 1.0)
    ledger.start(entry)
    for epsilon, delta in ((math.nan, 1e-9), (0.5, math.nan), (-1.0, 1e-9), (math.inf, 0.0)):
        with pytest.raises(RuntimeError, match="not a finite"):
            ledger.commit(entry, epsilon, delta)
    [row] = ledger.history()
    assert row["state"] == "spending" and row["epsilon"] == 1.0  # charged in full
    assert ledger.spent("fp").epsilon == 1.0


# What `synth budget` shows: the declared total, quarantined runs


def test_an_entry_records_the_declared_total_and_can_be_marked_quarantined(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    first = reserve(ledger, 1.0)
    reserve(ledger, 1.0, limit=None)
    assert not ledger.quarantine(first)  # only an entry that counts (it spent) is marked
    ledger.start(first)
    ledger.commit(first, 1.0, 1e-9)
    assert ledger.quarantine(first)
    rows = ledger.history()
    assert (rows[0]["state"], rows[0]["outcome"]) == ("committed", "quarantined")
    assert (rows[0]["total_epsilon"], rows[0]["total_delta"]) == LIMIT
    assert rows[1]["total_epsilon"] is None and rows[1]["outcome"] is None
    assert ledger.spent("fp").epsilon == 2.0  # a quarantined release's budget was spent


def _old_ledger(path: Path, drop: tuple[str, ...]) -> None:
    """A ledger as an older version of the tool made it: without the columns ``drop``."""
    table = SQLITE.table
    for column in drop:
        table = re.sub(rf"\n    {column} [A-Z]+,?[^\n]*", "", table)
    table = re.sub(r",(\s*(--[^\n]*\n\s*)*)\)$", r"\1)", table.rstrip())  # no trailing comma
    with closing(sqlite3.connect(path)) as db:
        db.execute(table)
        db.execute("INSERT INTO entries (data_set, name, source, release, synthesizer, "
                   "epsilon, delta, state, created, updated) VALUES ('adult', 'adult', 'a.csv'"
                   ", 'out', 'dp-marginals', 0.5, 1e-9, 'committed', 'then', 'then')")
        db.commit()


@pytest.mark.parametrize("drop", [("owner", "outcome", "total_epsilon", "total_delta"),
                                  ("outcome", "total_epsilon", "total_delta")])
def test_a_ledger_from_before_totals_and_outcomes_opens_and_shows_them(drop, tmp_path,
                                                                          capsys):
    path = tmp_path / "old.db"
    _old_ledger(path, drop)
    with closing(sqlite3.connect(path)) as db:
        assert not {"outcome", "total_epsilon"} & {r[1] for r in
                                                  db.execute("PRAGMA table_info(entries)")}
    assert main(["budget", "--ledger", str(path)]) == 0
    out = capsys.readouterr().out
    assert "adult" in out and "no total declared" in out
    ledger = Ledger(path)
    entry = ledger.reserve("adult", "adult", "a.csv", "out2", "dp-marginals", 1.0, 1e-9, LIMIT)
    ledger.start(entry)
    ledger.commit(entry, 1.0, 1e-9)
    assert ledger.quarantine(entry)
    assert main(["budget", "--ledger", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"  adult: epsilon 1\.5, delta 2e-09 over 2 run\(s\) \(1 committed "
                     r"release\(s\), 1 quarantined\); declared total epsilon 3, delta 1e-06; "
                     r"remaining epsilon 1\.5, delta 9\.98e-07", out), out
    assert re.search(r"quarantined .* out2", out)
