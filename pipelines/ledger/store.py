"""What the two databases of a ledger share: the table ``entries``, the few ways their SQL
differs, a connection that takes ``?`` placeholders, the wait for a locked ledger, and the
errors that refuse a ledger in one line naming its location.

``Store`` is the base of the two places a ledger lives, ``pipelines.ledger.sqlite`` and
``pipelines.ledger.postgres``: each connects (creating or completing the table first),
says whether its database is there, and refuses what it cannot use before any reservation,
with nothing written.
"""

from __future__ import annotations

import math
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from schemas.limits import bounded
from synth.privacy import BudgetError

TIMEOUT_ENV = "SYNTH_LEDGER_TIMEOUT"  # seconds to wait for a ledger another process holds
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 86_400.0

TABLE = """
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


class LedgerError(BudgetError):
    """The ledger cannot be used as it is (not a ledger, not writable, locked, unreachable)
    or was asked to hold an absurd amount: one line naming its location. Raised before any
    reservation, with nothing written, so the command line prints it and exits 2."""


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be reached, so no budget can be checked or reserved."""


@dataclass(frozen=True)
class Dialect:
    """All that differs between the two databases: the queries are shared, written with ``?``."""

    table: str  # CREATE TABLE
    lock: tuple[str, ...]  # opens reserve's transaction holding the write lock
    placeholder: str


def ledger_columns(columns: frozenset[str]) -> bool:
    """Whether ``columns`` are a ledger's: all of ``COLUMNS``, or an older ledger's (some of
    the ``ADDED`` ones missing)."""
    return COLUMNS - set(ADDED) <= columns <= COLUMNS


def lock_timeout(given: float | None) -> float:
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


class Db:
    """A connection of either kind, taking ``?`` placeholders; rows are read by name."""

    def __init__(self, connection, dialect: Dialect):
        self.connection, self.dialect = connection, dialect

    def execute(self, sql: str, params: tuple = ()):
        return self.connection.execute(sql.replace("?", self.dialect.placeholder), params)


class Store:
    """Where a ledger's entries live: a SQLite file (``path``) or a PostgreSQL database
    (``url``), waited for ``timeout`` seconds when another process holds its lock."""

    path: Path | None = None
    url: str | None = None

    def __init__(self, timeout: float):
        self.timeout = timeout

    @property
    def location(self) -> str:
        """Where the ledger lives, fit to print (no password)."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether the database is there; a LedgerError if something unusable is."""
        raise NotImplementedError

    def connect(self) -> AbstractContextManager[Db]:
        """A connection to the ledger, its table made sure of; a LedgerError if unusable."""
        raise NotImplementedError

    def refuse(self, problem: str) -> LedgerError:
        """The error for ``problem``, one line starting with the ledger's location."""
        return LedgerError(bounded(f"the ledger {self.location} {problem}"))

    def locked(self) -> LedgerError:
        return self.refuse(f"is locked by another process (waited {self.timeout:g} s; "
                           f"{TIMEOUT_ENV} sets how long)")
