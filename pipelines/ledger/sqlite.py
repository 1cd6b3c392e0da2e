"""A ledger in a SQLite file: created whole on first use, checked before every use, and never
a file this tool did not make.

What it refuses (``LedgerError``, one line naming the location, before any reservation and
without writing a byte): a directory, a device or other non-file; an empty file or one that
is not a SQLite database; a SQLite database that is not a ledger (no ``entries`` table, or one
with other columns: the tool never creates its table inside someone else's database); a
folder that does not exist (but the default one, created on first use) or is not writable; a
read-only ledger. A ledger locked by another process is waited for ``$SYNTH_LEDGER_TIMEOUT``
seconds (default 30), then refused. A new ledger is written whole to a temporary file beside
it and linked into place, so the tool never leaves an empty or half-made file at the ledger's
path. A ledger from before the ``ADDED`` columns gains them when it is next opened.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

from pipelines.ledger.store import (
    ADDED,
    TABLE,
    Db,
    Dialect,
    LedgerError,
    Store,
    ledger_columns,
)

HOME_ENV = "SYNTH_HOME"
SQLITE = Dialect(TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL"),
                 ("BEGIN IMMEDIATE",), "?")
_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def default_path() -> Path:
    """``$SYNTH_HOME/ledger.db``, by default ``~/.dp-synth/ledger.db``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".dp-synth") / "ledger.db"


class SqliteStore(Store):
    """The SQLite file at ``path``; with ``default`` (the default location) its folder is
    created on first use."""

    path: Path

    def __init__(self, path: Path, timeout: float, default: bool):
        super().__init__(timeout)
        self.path = path
        self._default = default

    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        """Whether the file is there (not created by asking).

        Raises:
            LedgerError: something is at the path that is not a usable ledger, or a run could
                not create one there.
        """
        if not os.path.lexists(self.path):
            if not self._default or self.path.parent.exists():
                self._check_folder()  # a run could not create it there either
            return False
        self._check_file()
        return True

    @contextmanager
    def connect(self) -> Iterator[Db]:
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
                yield Db(db, SQLITE)
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: sqlite3.Error) -> LedgerError:
        """One line for an error of SQLite's (locked, read-only, damaged, ...)."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return self.locked()
        if code == _SQLITE_READONLY:
            return self.refuse(f"is read-only ({exc}): a run must write its reservation there")
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return self.refuse(f"is not a readable SQLite database ({exc}): refusing to use "
                               "it")
        return self.refuse(f"cannot be used: {exc}")

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
            raise self.refuse(f"cannot be created: {exc.strerror or exc}") from None
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
            raise self.refuse(f"cannot be created: {getattr(exc, 'strerror', None) or exc}"
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
            raise self.refuse(f"cannot be created: its folder {parent} "
                              f"{'is not a folder' if parent.exists() else 'does not exist'}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise self.refuse(f"cannot be created: its folder {parent} is not writable by "
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
                raise self.refuse(f"is a symbolic link to {os.readlink(path)}, which does "
                                  "not exist: refusing to create a file through it") from None
            raise self.refuse("does not exist") from None
        except (OSError, ValueError) as exc:
            raise self.refuse(f"cannot be read: {getattr(exc, 'strerror', None) or exc}"
                              ) from None
        if stat.S_ISDIR(info.st_mode):
            raise self.refuse(f"is a directory, not a ledger file: give a file's path, "
                              f"e.g. {path / 'ledger.db'}")
        if not stat.S_ISREG(info.st_mode):
            raise self.refuse("is not a regular file (a device, pipe or socket): give the "
                              "path of a ledger file")
        if info.st_size == 0:
            raise self.refuse("is an empty file, which this tool did not write (it writes a "
                              "new ledger whole): refusing to use it; remove it or give "
                              "another path")
        try:
            with open(path, "rb") as f:
                header = f.read(100)
        except OSError as exc:
            raise self.refuse(f"cannot be read: {exc.strerror or exc}") from None
        if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
            raise self.refuse("is not a SQLite database (it lacks SQLite's header): refusing "
                              "to write into a file this tool did not create")
        columns = self._columns(wal=header[18] == 2)
        if not columns:
            raise self.refuse("is a SQLite database without the ledger's table 'entries': "
                              "not a budget ledger, so nothing is written into it")
        if not ledger_columns(columns):
            raise self.refuse(f"has a table 'entries' whose columns ({', '.join(sorted(columns))})"
                              " are not a budget ledger's: refusing to write into it")
        if not os.access(path, os.R_OK | os.W_OK):
            raise self.refuse("is read-only for this user: a run must write its reservation "
                              "there")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise self.refuse(f"cannot be written: its folder {path.parent} is not writable by "
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
            raise self._failure(exc) from None
