"""The privacy budget ledger: what the releases of each data set have spent, kept in a real
database: SQLite by default, PostgreSQL when configured.

A data set is identified by its declared identity, the ``name`` of its schema: every version
of the file (edited, appended to, recompressed, moved) spends from one total, so a scheduled
run on updated data stays limited, and the ledger (which may be shared) holds no hash of the
private bytes. Its releases compose by basic composition: their epsilons add up, and so do
their deltas. The total a data set may spend is declared in its schema
(``budget: {epsilon: 3, delta: 1e-6}``); without one, runs are recorded but not limited.

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
Reservations hold the database's write lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
``LOCK TABLE entries IN EXCLUSIVE MODE``) from the check to the insert, so concurrent runs
cannot overspend.

Where it lives: ``--ledger``, else ``$SYNTH_LEDGER_URL``, else ``$SYNTH_HOME/ledger.db``, else
``~/.dp-synth/ledger.db``. A file path is SQLite; ``postgresql://user@host:5432/db`` (or
``postgres://``) is PostgreSQL through psycopg 3 (``pip install 'dp-synth[postgres]'``), its
table ``entries`` created on first use. Prefer ``PGPASSWORD`` or ``~/.pgpass`` to a password in
the URL; messages show the URL with its password masked.
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
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipelines.publish import process_alive
from synth.privacy import BudgetError

HOME_ENV = "SYNTH_HOME"
URL_ENV = "SYNTH_LEDGER_URL"
COUNTED = ("reserved", "spending", "committed")
SCHEMES = ("postgresql", "postgres")

_TABLE = """
CREATE TABLE IF NOT EXISTS entries (
    id {id},
    data_set TEXT NOT NULL,        -- the data set's declared identity (the schema's name)
    name TEXT NOT NULL,            -- the schema's data set name
    source TEXT NOT NULL,          -- the path the run read
    release TEXT NOT NULL,         -- the release directory it writes
    synthesizer TEXT NOT NULL,
    epsilon {real} NOT NULL,
    delta {real} NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'spending', 'committed', 'cancelled')),
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    owner TEXT                     -- host:pid of the process that reserved it
)"""


@dataclass(frozen=True)
class _Dialect:
    """All that differs between the two databases: the queries are shared, written with ``?``."""

    table: str  # CREATE TABLE
    lock: tuple[str, ...]  # opens reserve's transaction holding the write lock
    placeholder: str


SQLITE = _Dialect(_TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL"),
                  ("BEGIN IMMEDIATE",), "?")
POSTGRES = _Dialect(_TABLE.format(id="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION"),
                    ("BEGIN", "LOCK TABLE entries IN EXCLUSIVE MODE"), "%s")
_SETUP_LOCK = 0x5D9_1ED6E2  # pg_advisory_xact_lock key: one process creates the table


class BudgetExceeded(BudgetError):
    """A run would take a data set past its declared total budget."""


class LedgerUnavailable(BudgetError):
    """The ledger's database cannot be reached, so no budget can be checked or reserved."""


def default_path() -> Path:
    """``$SYNTH_HOME/ledger.db``, by default ``~/.dp-synth/ledger.db``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".dp-synth") / "ledger.db"


def masked(url: str) -> str:
    """The URL with any password (in the user part or a ``password=`` parameter) as ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=f"{parts.username or ''}:***@"
                                      f"{parts.netloc.rpartition('@')[2]}")
    if "password=" in parts.query:
        parts = parts._replace(query=urlencode([(k, "***" if k == "password" else v) for k, v
                                                in parse_qsl(parts.query)], safe="*"))
    return urlunsplit(parts)


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
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise LedgerUnavailable("a PostgreSQL ledger needs the psycopg package: pip install "
                                "'psycopg[binary]' (or 'dp-synth[postgres]')") from None
    return psycopg


class _Db:
    """A connection of either kind, taking ``?`` placeholders; rows are read by name."""

    def __init__(self, connection, dialect: _Dialect):
        self.connection, self.dialect = connection, dialect

    def execute(self, sql: str, params: tuple = ()):
        return self.connection.execute(sql.replace("?", self.dialect.placeholder), params)


class Ledger:
    """One ledger database (created on first use): a SQLite file or a PostgreSQL URL."""

    def __init__(self, location: str | Path | None = None):
        location = location if location is not None else os.environ.get(URL_ENV) or None
        scheme, _, rest = str(location).partition("://")  # also SQLAlchemy's postgresql+driver
        self.url = (f"postgresql://{rest}" if location is not None
                    and scheme.partition("+")[0].lower() in SCHEMES else None)
        self.path = (None if self.url is not None else
                     Path(location) if location is not None else default_path())
        self._ready = False  # PostgreSQL: the table was made sure of

    def __repr__(self) -> str:
        return f"Ledger({self.location!r})"

    @property
    def location(self) -> str:
        """Where the ledger lives, fit to print: a PostgreSQL URL's password is masked."""
        return masked(self.url) if self.url is not None else str(self.path)

    def exists(self) -> bool:
        """Whether the ledger's database is there: a SQLite file (not created by asking), a
        PostgreSQL server that answers (its table is created on connecting)."""
        if self.url is None:
            return self.path.exists()
        with self._connect():
            return True

    @contextmanager
    def _connect(self) -> Iterator[_Db]:
        if self.url is not None:
            with self._connect_postgres() as db:
                yield db
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(SQLITE.table)
            if "owner" not in {r[1] for r in db.execute("PRAGMA table_info(entries)")}:
                try:  # a ledger from before owners were recorded
                    db.execute("ALTER TABLE entries ADD COLUMN owner TEXT")
                except sqlite3.OperationalError:  # another process added it first
                    pass
            yield _Db(db, SQLITE)

    @contextmanager
    def _connect_postgres(self) -> Iterator[_Db]:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        try:
            connection = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                         connect_timeout=30)
        except psycopg.OperationalError as exc:
            password = urlsplit(self.url).password
            reason = " ".join(str(exc).replace(password or "\0", "***").split())
            raise LedgerUnavailable(f"cannot reach the budget ledger at {self.location}: "
                                    f"{reason}") from None
        with closing(connection):
            if not self._ready:
                with connection.transaction():  # concurrent CREATEs of one table would clash
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                    connection.execute(POSTGRES.table)
                self._ready = True
            yield _Db(connection, POSTGRES)

    def spent(self, data_set: str) -> Spent:
        with self._connect() as db:
            return self._spent(db, data_set)

    @staticmethod
    def _spent(db: _Db, data_set: str) -> Spent:
        row = db.execute(f"SELECT COALESCE(SUM(epsilon), 0) AS epsilon, COALESCE(SUM(delta), 0)"
                         f" AS delta FROM entries WHERE data_set = ? AND state IN {COUNTED}",
                         (data_set,)).fetchone()
        return Spent(float(row["epsilon"]), float(row["delta"]))

    def reserve(self, data_set: str, name: str, source: str, release: str, synthesizer: str,
                epsilon: float, delta: float, limit: tuple[float, float] | None) -> int:
        """Sets (epsilon, delta) aside for a run, or refuses if the total would pass ``limit``.

        Raises:
            BudgetExceeded: naming the data set, its total, what is spent and what is left.
        """
        with self._connect() as db:
            for statement in db.dialect.lock:  # reservations happen one at a time
                db.execute(statement)
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
                entry = db.execute(
                    "INSERT INTO entries (data_set, name, source, release, synthesizer, epsilon,"
                    " delta, state, created, updated, owner) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "'reserved', ?, ?, ?) RETURNING id",
                    (data_set, name, str(source), str(release), synthesizer, epsilon, delta,
                     now, now, _owner())).fetchall()[0]["id"]  # all: SQLite's statement ends
                db.execute("COMMIT")
                return int(entry)
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

    def adopt(self, entry: int, data_set: str, release: str, synthesizer: str,
              epsilon: float, delta: float) -> bool:
        """Takes over the 'spending' entry of a killed run of ``data_set`` that this run
        resumes (from its training checkpoint): the entry, charged in full since the killed
        run's first DP step, becomes this process's, and no new reservation is made. Refused
        (False) unless its owner is a process of this host that no longer runs: a live run,
        or one on another host, keeps its entry. The update is conditional on the owner read,
        so of two runs resuming at once only one takes it. The entry must be the one the
        checkpoint's run reserved (same data set, release, synthesizer, epsilon and delta),
        not an entry that happens to have its number in another ledger."""
        with self._connect() as db:
            row = db.execute("SELECT owner FROM entries WHERE id = ? AND data_set = ? AND "
                             "release = ? AND synthesizer = ? AND epsilon = ? AND delta = ? "
                             "AND state = 'spending'",
                             (entry, data_set, release, synthesizer, epsilon, delta)).fetchone()
            if row is None or row["owner"] is None:
                return False
            host, _, pid = row["owner"].rpartition(":")
            if host != socket.gethostname() or not pid.isdigit() or process_alive(int(pid)):
                return False
            cursor = db.execute("UPDATE entries SET owner = ?, updated = ? WHERE id = ? AND "
                                "state = 'spending' AND owner = ?",
                                (_owner(), _now(), entry, row["owner"]))
            return cursor.rowcount == 1

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
