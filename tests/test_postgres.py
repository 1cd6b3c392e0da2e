"""The budget ledger and Prefect's server on a real PostgreSQL server, started for this module
(Debian's ``postgresql`` package, installed by ``make test``; skipped where it is absent):
the ledger keeps its contract, concurrent runs cannot overspend, ``synth budget`` never shows
the password, and a flow runs on a Prefect server whose database is PostgreSQL."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flows.serve import start_server, stop_server, wait_healthy
from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.ledger import URL_ENV, BudgetExceeded, Ledger
from tests.conftest import ROOT, server_env

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

USER, PASSWORD = "synth", "pg-secret-7f3a"
LIMIT = (3.0, 1e-6)


@dataclass
class Server:
    port: int

    def url(self, database: str, password: str = PASSWORD, scheme: str = "postgresql") -> str:
        return f"{scheme}://{USER}:{password}@127.0.0.1:{self.port}/{database}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin (Debian), else where pg_ctl is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


@pytest.fixture(scope="module")
def server():
    """A throwaway server on a free loopback port: password (scram) auth over TCP, fsync off
    (test speed only). PostgreSQL refuses to run as root, so as root it runs as the
    ``postgres`` user that Debian's package creates, in a directory that user owns."""
    bin_ = bin_dir()
    if bin_ is None or not (bin_ / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    as_user = {}
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' system user to run PostgreSQL")
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="synth-pg-", dir="/tmp"))
    root.chmod(0o755)  # the postgres user must reach it (pytest's tmp_path is root's only)
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    (root / "pwfile").write_text(PASSWORD + "\n")
    if as_user:
        os.chown(root / "pwfile", as_user["user"], as_user["group"])
    port = free_port()
    process = None
    try:
        subprocess.run([bin_ / "initdb", "-D", root / "data", "-U", USER, "--pwfile",
                        root / "pwfile", "--auth-host=scram-sha-256", "--auth-local=trust",
                        "-E", "UTF8", "--no-locale", "--no-sync"], cwd=root, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **as_user)
        with open(root / "postgres.log", "wb") as log:
            process = subprocess.Popen(
                [bin_ / "postgres", "-D", root / "data", "-p", str(port), "-k", root,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
                cwd=root, stdout=log, stderr=subprocess.STDOUT, **as_user)
        admin = Server(port).url("postgres")
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (root / "postgres.log").read_text()[-2000:]
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as db:
                    db.execute("CREATE DATABASE prefect")
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not start within 30 s"
                time.sleep(0.2)
        yield Server(port)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ledger_url(server, request) -> str:
    """A fresh database per test: what one test reserves never counts in another."""
    name = "ledger_" + request.node.name.removeprefix("test_")[:40].lower()
    with psycopg.connect(server.url("postgres"), autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


def contract(ledger: Ledger) -> tuple[str, list]:
    """tests/test_ledger.py's first test; returns the refusal and the entries' states."""
    def reserve(epsilon: float, limit=LIMIT) -> int:
        return ledger.reserve("fp", "adult", "in.csv", "out", "dp-marginals", epsilon, 1e-9,
                              limit)

    first = reserve(2.0)
    with pytest.raises(BudgetExceeded, match=r"total budget of epsilon=3.*spent epsilon=2.*"
                                             r"leaving epsilon=1.*asks for epsilon=1.5") as no:
        reserve(1.5)
    assert ledger.cancel(first)  # failed before any DP step: freed
    second = reserve(1.5)
    ledger.start(second)
    assert not ledger.cancel(second)  # DP steps ran: it can no longer be freed
    ledger.commit(second, 1.4999, 1e-9)
    assert ledger.spent("fp").epsilon == pytest.approx(1.4999)
    assert ledger.spent("other").epsilon == 0  # budgets are per data set
    third = reserve(1.0)
    ledger.start(third)
    with pytest.raises(RuntimeError, match="exceeds the reservation"):
        ledger.commit(third, 1.2, 1e-9)
    with pytest.raises(RuntimeError, match="is not reserved"):
        ledger.start(third)
    reserve(9.0, limit=None)  # without a declared total: recorded, not limited
    assert ledger.spent("fp").epsilon == pytest.approx(1.4999 + 1.0 + 9.0)
    assert ledger.release_stale() == []  # this process is alive
    return str(no.value), [(e["id"], e["state"], e["epsilon"]) for e in ledger.history()]


def test_the_ledger_keeps_its_contract_on_postgresql(ledger_url, tmp_path, monkeypatch):
    ledger = Ledger(ledger_url)
    assert ledger.path is None and PASSWORD not in ledger.location
    assert ledger.location == ledger_url.replace(PASSWORD, "***")
    on_postgres = contract(ledger)
    # the same refusal, word for word, and the same entries as SQLite's
    assert on_postgres == contract(Ledger(tmp_path / "ledger.db"))
    assert [state for _, state, _ in on_postgres[1]] == ["cancelled", "committed", "spending",
                                                         "reserved"]
    [entry] = [e for e in ledger.history() if e["state"] == "committed"]
    assert entry["epsilon"] == 1.4999 and entry["delta"] == 1e-9  # double precision
    assert set(entry) == set(Ledger(tmp_path / "ledger.db").history()[0])
    # $SYNTH_LEDGER_URL, postgres:// and SQLAlchemy's postgresql+psycopg:// reach it too
    monkeypatch.setenv(URL_ENV, ledger_url.replace("postgresql://", "postgres://"))
    assert len(Ledger().history()) == 4
    assert len(Ledger(ledger_url.replace("postgresql", "postgresql+psycopg")).history()) == 4


RACE = """
import sys, time
from pathlib import Path
from pipelines.ledger import BudgetExceeded, Ledger
ledger = Ledger(sys.argv[1])
ledger.spent("warm-up")  # connected and imported before the race starts
Path(sys.argv[3]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
try:
    ledger.reserve("fp", "adult", "in.csv", "out", "dp-marginals", 1.0, 1e-9, (3.0, 1e-6))
    print("ok")
except BudgetExceeded:
    print("refused")
"""


def test_concurrent_runs_cannot_overspend_on_postgresql(ledger_url, tmp_path):
    Ledger(ledger_url).spent("fp")  # create the table
    go = tmp_path / "go"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    procs = [subprocess.Popen([sys.executable, "-c", RACE, ledger_url, str(go),
                               str(tmp_path / f"ready{i}")], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True) for i in range(8)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready*"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all reserve at once
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes.count("ok") == 3 and outcomes.count("refused") == 5, outcomes
    assert Ledger(ledger_url).spent("fp").epsilon == 3.0


def test_synth_budget_reads_postgresql_and_never_prints_the_password(ledger_url, server,
                                                                     capsys):
    ledger = Ledger(ledger_url)
    entry = ledger.reserve("adult", "adult", "in.csv", "rel", "dp-vae", 1.0, 1e-9, LIMIT)
    ledger.start(entry)
    ledger.commit(entry, 0.9, 1e-9)
    assert main(["budget", "--ledger", ledger_url]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert f"ledger: {ledger_url.replace(PASSWORD, '***')}" in out
    assert "committed" in out and "adult: epsilon 0.9" in out
    # a wrong password: one error line, naming the server, with the password masked
    wrong = server.url(ledger_url.rpartition("/")[2], password="not-it-91c2")
    assert main(["budget", "--ledger", wrong]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert "not-it-91c2" not in out + err and PASSWORD not in out + err
    assert err.startswith(f"error: cannot reach the budget ledger at "
                          f"postgresql://{USER}:***@127.0.0.1:{server.port}/")


FLOW = """
from prefect import flow

@flow(name="pg-smoke")
def smoke(x: int) -> int:
    return x + 1

assert smoke(41) == 42
"""


def test_prefects_server_runs_on_postgresql(server, tmp_path):
    home = tmp_path / "prefect-home"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = server_env(home, PREFECT_API_DATABASE_CONNECTION_URL=server.url(
        "prefect", scheme="postgresql+asyncpg"),
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false")
    process = start_server("127.0.0.1", port, env)
    try:
        wait_healthy(api, 120, process)
        client_env = {k: v for k, v in env.items() if "DATABASE" not in k}
        done = subprocess.run([sys.executable, "-c", FLOW], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=False,
                              env={**client_env, "PREFECT_API_URL": api})
        assert done.returncode == 0, done.stderr[-3000:]
        runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).json()
        assert [(r["name"] != "", r["state_type"]) for r in runs] == [(True, "COMPLETED")]
        flow = httpx.get(f"{api}/flows/{runs[0]['flow_id']}", timeout=30).json()
        assert flow["name"] == "pg-smoke"
    finally:
        stop_server(process)
    # the runs live in PostgreSQL, not in a SQLite file under PREFECT_HOME
    with psycopg.connect(server.url("prefect")) as db:
        [(count,)] = db.execute("SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")
    assert count == 1
    assert not list(home.glob("**/*.db"))
