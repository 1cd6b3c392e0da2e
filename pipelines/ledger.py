"""The privacy budget ledger: what the releases of each data set have spent, in SQLite.

A data set is identified by the sha256 of its source file's bytes, so a renamed or copied file
is the same data set and an edited one is a new one. Its releases compose by basic
composition: their epsilons add up, and so do their deltas. The total a data set may spend is
declared in its schema (``budget: {epsilon: 3, delta: 1e-6}``); without one, runs are
recorded but not limited.

Each run moves one entry through these states:

    reserved   the budget was checked and the run's (epsilon, delta) set aside, in one
               transaction, before any private row is read
    spending   DP steps have started: from here on the entry counts in full, whatever happens
    committed  finished; the entry holds what the accountant reported (at most the reserved)
    cancelled  failed before any DP step (bad input, say): the reservation is freed

Every entry but a cancelled one counts against the total, so a crashed or killed run is
charged its whole reservation: the ledger may overstate what was spent, never understate it.
One exception: an entry still 'reserved' records the host and pid of its run, and once that
process is gone (killed before training) ``release_stale`` frees it, as the next run does.
Reservations take SQLite's write lock (``BEGIN IMMEDIATE``), so concurrent runs cannot
overspend.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path


from pipelines.publish import process_alive
from synth.privacy import BudgetError

HOME_ENV = "SYNTH_HOME"
COUNTED = ("reserved", "spending", "committed")

_TABLE = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data_set TEXT NOT NULL,        -- sha256 of the source file
    name TEXT NOT NULL,            -- the schema's data set name
    source TEXT NOT NULL,          -- the path the run read
    release TEXT NOT NULL,         -- the release directory it writes
    synthesizer TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'spending', 'committed', 'cancelled')),
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    owner TEXT                     -- host:pid of the process that reserved it
)"""


class BudgetExceeded(BudgetError):
    """A run would take a data set past its declared total budget."""


def default_path() -> Path:
    """``$SYNTH_HOME/ledger.db``, by default ``~/.dp-synth/ledger.db``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".dp-synth") / "ledger.db"


def source_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks (the contents are not otherwise used)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Spent:
    epsilon: float
    delta: float


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """One ledger database (created on first use)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_TABLE)
            if "owner" not in {r[1] for r in db.execute("PRAGMA table_info(entries)")}:
                try:  # a ledger from before owners were recorded
                    db.execute("ALTER TABLE entries ADD COLUMN owner TEXT")
                except sqlite3.OperationalError:  # another process added it first
                    pass
            yield db

    def spent(self, data_set: str) -> Spent:
        with self._connect() as db:
            return self._spent(db, data_set)

    @staticmethod
    def _spent(db: sqlite3.Connection, data_set: str) -> Spent:
        row = db.execute(f"SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM "
                         f"entries WHERE data_set = ? AND state IN {COUNTED}",
                         (data_set,)).fetchone()
        return Spent(float(row[0]), float(row[1]))

    def reserve(self, data_set: str, name: str, source: str, release: str, synthesizer: str,
                epsilon: float, delta: float, limit: tuple[float, float] | None) -> int:
        """Sets (epsilon, delta) aside for a run, or refuses if the total would pass ``limit``.

        Raises:
            BudgetExceeded: naming the data set, its total, what is spent and what is left.
        """
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock: reservations happen one at a time
            try:
                spent = self._spent(db, data_set)
                if limit is not None and (spent.epsilon + epsilon > limit[0] * (1 + 1e-12)
                                          or spent.delta + delta > limit[1] * (1 + 1e-12)):
                    left = (max(0.0, limit[0] - spent.epsilon), max(0.0, limit[1] - spent.delta))
                    raise BudgetExceeded(
                        f"data set '{name}' ({source}) has a total budget of epsilon="
                        f"{limit[0]:g}, delta={limit[1]:g}; its releases have spent epsilon="
                        f"{spent.epsilon:.4g}, delta={spent.delta:.3g}, leaving epsilon="
                        f"{left[0]:.4g}, delta={left[1]:.3g}: this run asks for epsilon="
                        f"{epsilon:g}, delta={delta:g} (see `synth budget`)")
                now = _now()
                cursor = db.execute(
                    "INSERT INTO entries (data_set, name, source, release, synthesizer, epsilon,"
                    " delta, state, created, updated, owner) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "'reserved', ?, ?, ?)", (data_set, name, str(source), str(release),
                                             synthesizer, epsilon, delta, now, now, _owner()))
                db.execute("COMMIT")
                return int(cursor.lastrowid)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _move(self, entry: int, to: str, from_: tuple[str, ...], **values: float) -> bool:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE entries SET state = ?, updated = ?{', ' + sets if sets else ''} "
                f"WHERE id = ? AND state IN ({', '.join('?' * len(from_))})",
                (to, _now(), *values.values(), entry, *from_))
            return cursor.rowcount == 1

    def start(self, entry: int) -> None:
        """DP steps begin: the entry counts in full from now on."""
        if not self._move(entry, "spending", ("reserved",)):
            raise RuntimeError(f"ledger entry {entry} is not reserved")

    def commit(self, entry: int, epsilon: float, delta: float) -> None:
        """Records what the run spent (never more than it reserved)."""
        with self._connect() as db:
            row = db.execute("SELECT epsilon, delta FROM entries WHERE id = ?",
                             (entry,)).fetchone()
        if row is None or epsilon > row["epsilon"] * (1 + 1e-9) or delta > row["delta"]:
            raise RuntimeError(f"ledger entry {entry}: spent ({epsilon}, {delta}) exceeds the "
                               f"reservation")
        if not self._move(entry, "committed", ("spending",), epsilon=epsilon, delta=delta):
            raise RuntimeError(f"ledger entry {entry} was not spending")

    def cancel(self, entry: int) -> bool:
        """Frees a reservation whose run failed before any DP step; False if it had started."""
        return self._move(entry, "cancelled", ("reserved",))

    def release_stale(self) -> list[int]:
        """Frees the reservations whose run was killed before training: entries still
        'reserved' whose process (recorded at reservation) no longer runs on this host. A
        killed process cannot cancel its own reservation, and no DP step of it ran, so it is
        freed as a failure before training is. Entries of other hosts, of live processes or
        of ledgers from before owners were recorded are left alone. Returns the freed ids."""
        host = socket.gethostname()
        with self._connect() as db:
            rows = db.execute("SELECT id, owner FROM entries WHERE state = 'reserved' AND "
                              "owner LIKE ?", (host.replace("%", "") + ":%",)).fetchall()
        dead = [r["id"] for r in rows if r["owner"].rpartition(":")[0] == host
                and r["owner"].rpartition(":")[2].isdigit()
                and not process_alive(int(r["owner"].rpartition(":")[2]))]
        return [entry for entry in dead if self.cancel(entry)]

    def history(self) -> list[dict]:
        with self._connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM entries ORDER BY id")]
