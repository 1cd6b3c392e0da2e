"""A ledger in PostgreSQL, through psycopg 3 (``pip install 'dp-synth[postgres]'``): the table
``entries`` created on first use, and completed (the ``ADDED`` columns) for a ledger from
before them.

``postgresql://user@host:5432/db`` (or ``postgres://``, or SQLAlchemy's
``postgresql+driver://``) names one. Prefer ``PGPASSWORD`` or ``~/.pgpass`` to a password in
the URL; messages show the URL with its password masked. Refused (``LedgerError``): a server
that cannot be reached (``LedgerUnavailable``), a table ``entries`` with other columns
(someone else's), a lock held past the timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipelines.ledger.store import (
    ADDED,
    TABLE,
    Db,
    Dialect,
    LedgerUnavailable,
    Store,
    ledger_columns,
)
from schemas.limits import bounded

SCHEMES = ("postgresql", "postgres")
POSTGRES = Dialect(TABLE.format(id="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION"),
                   ("BEGIN", "LOCK TABLE entries IN EXCLUSIVE MODE"), "%s")
_SETUP_LOCK = 0x5D9_1ED6E2  # pg_advisory_xact_lock key: one process creates the table


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


def _psycopg(location: str):
    try:
        import psycopg
    except ImportError:
        raise LedgerUnavailable(f"the ledger {location} is on PostgreSQL, which needs the "
                                "psycopg package: pip install 'psycopg[binary]' (or "
                                "'dp-synth[postgres]')") from None
    return psycopg


class PostgresStore(Store):
    """The PostgreSQL database at ``url`` (``postgresql://...``)."""

    url: str

    def __init__(self, url: str, timeout: float):
        super().__init__(timeout)
        self.url = url
        self._ready = False  # the table was made sure of

    @property
    def location(self) -> str:
        """The URL, its password masked."""
        return masked(self.url)

    def exists(self) -> bool:
        """Whether the server answers (the table is created on connecting).

        Raises:
            LedgerError: the server cannot be reached, or its ``entries`` is not a ledger's.
        """
        with self.connect():
            return True

    @contextmanager
    def connect(self) -> Iterator[Db]:
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
                    self._setup(connection)
                yield Db(connection, POSTGRES)
        except psycopg.errors.LockNotAvailable:
            raise self.locked() from None
        except psycopg.Error as exc:
            raise self.refuse(f"cannot be used: {self._reason(exc)}") from None

    def _setup(self, connection) -> None:
        """Creates the table ``entries`` if there is none; refuses a table of that name with
        other columns (someone else's), adds the ``ADDED`` columns a ledger from before them
        lacks."""
        with connection.transaction():  # concurrent CREATEs of one table would clash
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            connection.execute(POSTGRES.table)
            columns = frozenset(r["attname"] for r in connection.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('entries') "
                "AND attnum > 0 AND NOT attisdropped"))
            if not ledger_columns(columns):
                raise self.refuse(f"has a table 'entries' whose columns "
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
