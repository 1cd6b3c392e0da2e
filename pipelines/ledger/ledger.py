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

A committed entry whose release failed its gate is marked ``outcome = 'quarantined'``
(``quarantine``): it stays committed and counted. Each entry also records the total its data
set declared when it was reserved, which ``synth budget`` shows. A ledger from before these
columns (or ``owner``) gains them, empty in its old entries, when it is next opened.

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

What it refuses (``LedgerError``, one line naming the location, before any reservation and
without writing a byte): a directory, a device or other non-file; an empty file or one that
is not a SQLite database; a SQLite database that is not a ledger (no ``entries`` table, or one
with other columns: the tool never creates its table inside someone else's database); a
folder that does not exist (but the default one, created on first use) or is not writable; a
read-only ledger; a PostgreSQL server that cannot be reached. A ledger locked by another
process is waited for ``$SYNTH_LEDGER_TIMEOUT`` seconds (default 30), then refused. A new
SQLite ledger is written whole to a temporary file beside it and linked into place, so the
tool never leaves an empty or half-made file at the ledger's path. A reservation's epsilon
and delta must lie in ``EPSILON_RANGE`` and ``DELTA_RANGE``: an absurd one (1e300, nan, inf)
never enters the totals.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import math
import os
import secrets
import shutil
import socket
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipelines.publish import process_alive
from schemas.limits import bounded
from synth.privacy import BudgetError

HOME_ENV = "SYNTH_HOME"
URL_ENV = "SYNTH_LEDGER_URL"
TIMEOUT_ENV = "SYNTH_LEDGER_TIMEOUT"  # seconds to wait for a ledger another process holds
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 86_400.0
COUNTED = ("reserved", "spending", "committed")
SCHEMES = ("postgresql", "postgres")
# What one reservation may hold (bounds included, but delta < 1): wider than any meaningful
# release, narrow enough that no sum of entries overflows or vanishes.
EPSILON_RANGE = (1e-6, 1e4)
DELTA_RANGE = (1e-50, 1.0)

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
    -- outcome 'quarantined': its release failed the gate (it still counts); total_*: the
    -- data set's declared total when it was reserved (NULL: none declared)
    outcome TEXT,
    total_epsilon {real},
    total_delta {real},
    owner TEXT                     -- host:pid of the process that reserved it
)"""
COLUMNS = frozenset({"id", "data_set", "name", "source", "release", "synthesizer", "epsilon",
                     "delta", "state", "created", "updated", "outcome", "total_epsilon",
                     "total_delta", "owner"})
# Columns added since the first ledgers: an older ledger lacks some, and gains them (NULL in
# its old entries) when it is next opened.
ADDED = {"owner": "TEXT", "outcome": "TEXT", "total_epsilon": "{real}", "total_delta": "{real}"}
_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


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


class LedgerError(BudgetError):
    """The ledger cannot be used as it is (not a ledger, not writable, locked, unreachable)
    or was asked to hold an absurd amount: one line naming its location. Raised before any
    reservation, with nothing written, so the command line prints it and exits 2."""


class LedgerUnavailable(LedgerError):
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


def _passwords(url: str) -> list[str]:
    """The passwords a URL holds (user part, ``password=`` parameters): to mask in messages."""
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if k == "password"]
    return [p for p in (parts.password, *found) if p]


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


def _psycopg(location: str):
    try:
        import psycopg
    except ImportError:
        raise LedgerUnavailable(f"the ledger {location} is on PostgreSQL, which needs the "
                                "psycopg package: pip install 'psycopg[binary]' (or "
                                "'dp-synth[postgres]')") from None
    return psycopg


def _ledger_columns(columns: frozenset[str]) -> bool:
    """Whether ``columns`` are a ledger's: all of ``COLUMNS``, or an older ledger's (some of
    the ``ADDED`` ones missing)."""
    return COLUMNS - set(ADDED) <= columns <= COLUMNS


def _number(value: object) -> bool:
    """Whether ``value`` is a real number (an int or float, numpy's included; not a bool)."""
    if isinstance(value, bool):
        return False
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))


def _timeout(given: float | None) -> float:
    """The seconds to wait for a locked ledger: ``given``, else ``$SYNTH_LEDGER_TIMEOUT``, else
    30. A number from 0 to a day; anything else is refused rather than waited on forever."""
    text = os.environ.get(TIMEOUT_ENV) if given is None else None
    try:
        value = (DEFAULT_TIMEOUT if given is None and not text else
                 float(given if given is not None else text))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not 0 <= value <= MAX_TIMEOUT:
        what = f"{TIMEOUT_ENV}={str(text)[:40]!r}" if given is None else f"timeout={given!r}"
        raise LedgerError(bounded(f"{what} is not a number of seconds from 0 to "
                                  f"{MAX_TIMEOUT:g} (how long to wait for a locked ledger)"))
    return value


class _Db:
    """A connection of either kind, taking ``?`` placeholders; rows are read by name."""

    def __init__(self, connection, dialect: _Dialect):
        self.connection, self.dialect = connection, dialect

    def execute(self, sql: str, params: tuple = ()):
        return self.connection.execute(sql.replace("?", self.dialect.placeholder), params)


class Ledger:
    """One ledger database (created on first use): a SQLite file or a PostgreSQL URL.

    Args:
        location: a SQLite file's path or a PostgreSQL URL (default: ``$SYNTH_LEDGER_URL``,
            else ``default_path()``).
        timeout: seconds to wait for a ledger locked by another process before refusing it
            (default: ``$SYNTH_LEDGER_TIMEOUT``, else 30).

    Raises:
        LedgerError: a timeout that is not a number of seconds from 0 to a day.
    """

    def __init__(self, location: str | Path | None = None, timeout: float | None = None):
        location = location if location is not None else os.environ.get(URL_ENV) or None
        scheme, _, rest = str(location).partition("://")  # also SQLAlchemy's postgresql+driver
        self.url = (f"postgresql://{rest}" if location is not None
                    and scheme.partition("+")[0].lower() in SCHEMES else None)
        self.path = (None if self.url is not None else
                     Path(location) if location is not None else default_path())
        self._default = location is None  # its folder is created on first use
        self.timeout = _timeout(timeout)
        self._ready = False  # PostgreSQL: the table was made sure of

    def __repr__(self) -> str:
        return f"Ledger({self.location!r})"

    @property
    def location(self) -> str:
        """Where the ledger lives, fit to print: a PostgreSQL URL's password is masked."""
        return masked(self.url) if self.url is not None else str(self.path)

    def exists(self) -> bool:
        """Whether the ledger's database is there: a SQLite file (not created by asking), a
        PostgreSQL server that answers (its table is created on connecting).

        Raises:
            LedgerError: something is at the path that is not a usable ledger, or the
                PostgreSQL server cannot be reached.
        """
        if self.url is None:
            if not os.path.lexists(self.path):
                if not self._default or self.path.parent.exists():
                    self._check_folder()  # a run could not create it there either
                return False
            self._check_file()
            return True
        with self._connect():
            return True

    def _refuse(self, problem: str) -> LedgerError:
        """The error for ``problem``, one line starting with the ledger's location."""
        return LedgerError(bounded(f"the ledger {self.location} {problem}"))

    def _locked(self) -> LedgerError:
        return self._refuse(f"is locked by another process (waited {self.timeout:g} s; "
                            f"{TIMEOUT_ENV} sets how long)")

    @contextmanager
    def _connect(self) -> Iterator[_Db]:
        if self.url is not None:
            with self._connect_postgres() as db:
                yield db
            return
        if not os.path.lexists(self.path):
            self._create()
        self._check_file()
        try:
            with closing(sqlite3.connect(self.path, timeout=self.timeout,
                                         isolation_level=None)) as db:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                have = {r[1] for r in db.execute("PRAGMA table_info(entries)")}
                for column in (c for c in ADDED if c not in have):
                    try:  # a ledger from before the column was recorded
                        db.execute(f"ALTER TABLE entries ADD COLUMN {column} "
                                   f"{ADDED[column].format(real='REAL')}")
                    except sqlite3.OperationalError as exc:  # another process added it first
                        if (exc.sqlite_errorcode or 0) & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
                            raise
                yield _Db(db, SQLITE)
        except sqlite3.Error as exc:
            raise self._sqlite_failure(exc) from None

    def _sqlite_failure(self, exc: sqlite3.Error) -> LedgerError:
        """One line for an error of SQLite's (locked, read-only, damaged, ...)."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return self._locked()
        if code == _SQLITE_READONLY:
            return self._refuse(f"is read-only ({exc}): a run must write its reservation there")
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return self._refuse(f"is not a readable SQLite database ({exc}): refusing to use "
                                "it")
        return self._refuse(f"cannot be used: {exc}")

    def _create(self) -> None:
        """A new, empty ledger at the path: written whole to a temporary file in its folder,
        then hard-linked into place (which never replaces a file that appeared meanwhile: a
        concurrent run's ledger is then used). Only the default location's folder is made.

        Raises:
            LedgerError: the folder does not exist, is not a folder or is not writable.
        """
        parent = self.path.parent
        try:
            if self._default:
                parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._refuse(f"cannot be created: {exc.strerror or exc}") from None
        self._check_folder()
        new = parent / f".ledger-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            with closing(sqlite3.connect(new, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(SQLITE.table)
            try:
                os.link(new, self.path)
            except FileExistsError:
                pass  # another run made it first (or something else is there): checked next
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                self._copy_into_place(new)  # a file system without hard links
        except (OSError, sqlite3.Error) as exc:
            raise self._refuse(f"cannot be created: {getattr(exc, 'strerror', None) or exc}"
                               ) from None
        finally:
            for leftover in ("", "-journal", "-wal", "-shm"):
                with suppress(OSError):
                    os.unlink(f"{new}{leftover}")

    def _check_folder(self) -> None:
        """That a new ledger could be created at the path: its folder exists, is a folder and
        is writable by this user.

        Raises:
            LedgerError: naming the location and the folder.
        """
        parent = self.path.parent
        try:
            is_dir = parent.is_dir()
        except (OSError, ValueError):
            is_dir = False
        if not is_dir:
            raise self._refuse(f"cannot be created: its folder {parent} "
                               f"{'is not a folder' if parent.exists() else 'does not exist'}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise self._refuse(f"cannot be created: its folder {parent} is not writable by "
                               "this user")

    def _copy_into_place(self, new: Path) -> None:
        """Where hard links are not supported: the new ledger copied to a file created
        exclusively (a run that starts during the copy may find it incomplete and refuse)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as out, open(new, "rb") as source:
            shutil.copyfileobj(source, out)
            out.flush()
            os.fsync(out.fileno())

    def _check_file(self) -> None:
        """That the file at the path is a ledger this tool wrote, and writable, reading it
        without writing a byte or taking a lock: a regular file holding a SQLite database
        with exactly the ledger's ``entries`` table.

        Raises:
            LedgerError: naming the location and what is wrong.
        """
        path = self.path
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                raise self._refuse(f"is a symbolic link to {os.readlink(path)}, which does "
                                   "not exist: refusing to create a file through it") from None
            raise self._refuse("does not exist") from None
        except (OSError, ValueError) as exc:
            raise self._refuse(f"cannot be read: {getattr(exc, 'strerror', None) or exc}"
                               ) from None
        if stat.S_ISDIR(info.st_mode):
            raise self._refuse(f"is a directory, not a ledger file: give a file's path, "
                               f"e.g. {path / 'ledger.db'}")
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse("is not a regular file (a device, pipe or socket): give the "
                               "path of a ledger file")
        if info.st_size == 0:
            raise self._refuse("is an empty file, which this tool did not write (it writes a "
                               "new ledger whole): refusing to use it; remove it or give "
                               "another path")
        try:
            with open(path, "rb") as f:
                header = f.read(100)
        except OSError as exc:
            raise self._refuse(f"cannot be read: {exc.strerror or exc}") from None
        if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
            raise self._refuse("is not a SQLite database (it lacks SQLite's header): refusing "
                               "to write into a file this tool did not create")
        columns = self._columns(wal=header[18] == 2)
        if not columns:
            raise self._refuse("is a SQLite database without the ledger's table 'entries': "
                               "not a budget ledger, so nothing is written into it")
        if not _ledger_columns(columns):
            raise self._refuse(f"has a table 'entries' whose columns ({', '.join(sorted(columns))})"
                               " are not a budget ledger's: refusing to write into it")
        if not os.access(path, os.R_OK | os.W_OK):
            raise self._refuse("is read-only for this user: a run must write its reservation "
                               "there")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise self._refuse(f"cannot be written: its folder {path.parent} is not writable by "
                               "this user (SQLite keeps its journal beside the file)")

    def _columns(self, wal: bool) -> frozenset[str]:
        """The columns of the database's table ``entries`` (empty: there is none), read as an
        immutable file (no lock, no journal, nothing written). A WAL database with a journal
        beside it may hold tables only in that journal, or be mid-checkpoint: a negative or
        failed answer is then asked again through an ordinary read-only connection."""
        uri = self.path.absolute().as_uri()
        query = ("SELECT p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
                 "WHERE m.type = 'table' AND m.name = 'entries'")
        journal = wal and os.path.exists(f"{self.path}-wal")
        try:
            try:
                with closing(sqlite3.connect(f"{uri}?immutable=1", uri=True)) as db:
                    columns = frozenset(r[0] for r in db.execute(query))
                if columns or not journal:
                    return columns
            except sqlite3.DatabaseError:
                if not journal:
                    raise
            with closing(sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.timeout)) as db:
                return frozenset(r[0] for r in db.execute(query))
        except sqlite3.Error as exc:
            raise self._sqlite_failure(exc) from None

    @contextmanager
    def _connect_postgres(self) -> Iterator[_Db]:
        psycopg = _psycopg(self.location)
        from psycopg.rows import dict_row

        try:
            connection = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                         connect_timeout=30)
        except (psycopg.Error, ValueError) as exc:
            raise LedgerUnavailable(bounded(f"cannot reach the budget ledger at "
                                            f"{self.location}: {self._reason(exc)}")) from None
        try:
            with closing(connection):
                # a wait for a lock (LOCK TABLE, the setup's advisory lock) ends at the timeout
                connection.execute("SELECT set_config('lock_timeout', %s, false)",
                                   (f"{max(1, round(self.timeout * 1000))}ms",))
                if not self._ready:
                    self._setup_postgres(connection)
                yield _Db(connection, POSTGRES)
        except psycopg.errors.LockNotAvailable:
            raise self._locked() from None
        except psycopg.Error as exc:
            raise self._refuse(f"cannot be used: {self._reason(exc)}") from None

    def _setup_postgres(self, connection) -> None:
        """Creates the table ``entries`` if there is none; refuses a table of that name with
        other columns (someone else's), adds the ``ADDED`` columns a ledger from before them
        lacks."""
        with connection.transaction():  # concurrent CREATEs of one table would clash
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            connection.execute(POSTGRES.table)
            columns = frozenset(r["attname"] for r in connection.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('entries') "
                "AND attnum > 0 AND NOT attisdropped"))
            if not _ledger_columns(columns):
                raise self._refuse(f"has a table 'entries' whose columns "
                                   f"({', '.join(sorted(columns))}) are not a budget ledger's: "
                                   "refusing to write into it")
            for column in (c for c in ADDED if c not in columns):
                connection.execute(f"ALTER TABLE entries ADD COLUMN IF NOT EXISTS {column} "
                                   f"{ADDED[column].format(real='DOUBLE PRECISION')}")
        self._ready = True

    def _reason(self, exc: BaseException) -> str:
        """A database error's message on one line, any password of the URL masked."""
        reason = str(exc)
        for password in _passwords(self.url or ""):
            reason = reason.replace(password, "***")
        return " ".join(reason.split())

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
            LedgerError: an epsilon or delta outside ``EPSILON_RANGE`` / ``DELTA_RANGE`` (or
                not a finite number), a ``limit`` that is not a finite positive (epsilon,
                delta), or a ledger that cannot be used; nothing is reserved.
        """
        epsilon = self._amount("epsilon", epsilon, EPSILON_RANGE)
        delta = self._amount("delta", delta, DELTA_RANGE)
        if limit is not None and not (
                len(limit) == 2 and all(_number(v) and math.isfinite(v) for v in limit)
                and limit[0] > 0 and 0 < limit[1] <= 1):
            raise self._refuse(f"cannot check data set '{name}' against its declared total "
                               f"budget {limit!r}: not a finite positive (epsilon, delta)")
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
                total = (None, None) if limit is None else (float(limit[0]), float(limit[1]))
                entry = db.execute(
                    "INSERT INTO entries (data_set, name, source, release, synthesizer, epsilon,"
                    " delta, state, created, updated, owner, total_epsilon, total_delta) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?) RETURNING id",
                    (data_set, name, str(source), str(release), synthesizer, epsilon, delta,
                     now, now, _owner(), *total)).fetchall()[0]["id"]  # all: the statement ends
                db.execute("COMMIT")
                return int(entry)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _amount(self, what: str, value: float, bounds: tuple[float, float]) -> float:
        """``value`` as a float within ``bounds`` (a delta below the upper bound); otherwise
        a LedgerError, so that no absurd amount (1e300, 1e-300, inf, nan) is ever reserved and
        added up."""
        number = float(value) if _number(value) else math.nan
        low, high = bounds
        if not (low <= number <= high) or (what == "delta" and number == high):
            upper = f"below {high:g}" if what == "delta" else f"up to {high:g}"
            raise self._refuse(f"refuses to reserve {what}={value!r}: a reservation's {what} "
                               f"must be a number from {low:g} {upper}")
        return number

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
        """Records what the run spent (never more than it reserved, never a non-finite or
        negative amount: the entry then stays 'spending', charged its whole reservation)."""
        if not (_number(epsilon) and _number(delta) and 0 <= epsilon < math.inf
                and 0 <= delta <= 1):
            raise RuntimeError(f"ledger entry {entry}: spent ({epsilon!r}, {delta!r}) is not a "
                               f"finite (epsilon, delta)")
        with self._connect() as db:
            row = db.execute("SELECT epsilon, delta FROM entries WHERE id = ?",
                             (entry,)).fetchone()
        if row is None or epsilon > row["epsilon"] * (1 + 1e-9) or delta > row["delta"]:
            raise RuntimeError(f"ledger entry {entry}: spent ({epsilon}, {delta}) exceeds the "
                               f"reservation")
        if not self._move(entry, "committed", ("spending",), epsilon=epsilon, delta=delta):
            raise RuntimeError(f"ledger entry {entry} was not spending")

    def quarantine(self, entry: int) -> bool:
        """Marks the entry of a run whose release failed its gate (quarantined, not
        published). It stays 'committed' (or 'spending') and counts in full: the budget was
        spent. False if the entry is not one that counts."""
        with self._connect() as db:
            cursor = db.execute("UPDATE entries SET outcome = 'quarantined', updated = ? WHERE "
                                "id = ? AND state IN ('spending', 'committed')", (_now(), entry))
            return cursor.rowcount == 1

    def cancel(self, entry: int) -> bool:
        """Frees a reservation whose run failed before any DP step; False if it had started."""
        return self._move(entry, "cancelled", ("reserved",))

    def adopt(self, entry: int, data_set: str, release: str, synthesizer: str,
              epsilon: float, delta: float) -> bool:
        """Takes over the 'spending' or 'committed' entry of a killed run of ``data_set``
        that this run resumes (from its training checkpoint): the entry, charged in full
        since the killed run's first DP step, becomes this process's, 'spending' again until
        this run commits, and no new reservation is made (a run killed after training, before
        it published, resumes with nothing left to train and is charged once). Refused
        (False) unless its owner is a process of this host that no longer runs: a live run,
        or one on another host, keeps its entry. The update is conditional on the owner read,
        so of two runs resuming at once only one takes it. The entry must be the one the
        checkpoint's run reserved (same data set, release, synthesizer, epsilon and delta),
        not an entry that happens to have its number in another ledger."""
        with self._connect() as db:
            # a committed entry holds what the run spent, at most what it reserved; so does
            # a spending one that an earlier resume took over after its commit
            row = db.execute("SELECT owner FROM entries WHERE id = ? AND data_set = ? AND "
                             "release = ? AND synthesizer = ? AND state IN ('spending', "
                             "'committed') AND epsilon <= ? AND delta <= ?",
                             (entry, data_set, release, synthesizer, epsilon * (1 + 1e-9),
                              delta)).fetchone()
            if row is None or row["owner"] is None:
                return False
            host, _, pid = row["owner"].rpartition(":")
            if host != socket.gethostname() or not pid.isdigit() or process_alive(int(pid)):
                return False
            cursor = db.execute("UPDATE entries SET owner = ?, updated = ?, state = 'spending' "
                                "WHERE id = ? AND state IN ('spending', 'committed') AND "
                                "owner = ?",
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
