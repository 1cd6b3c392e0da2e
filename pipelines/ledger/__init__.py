"""The privacy budget ledger: what the releases of each data set have spent (``Ledger``).

The parts, each below the next (this package re-exports their public names):

    store     what both databases share: the table, its dialects, the errors, the lock wait
    sqlite    a ledger in a SQLite file: created whole, checked before every use
    postgres  a ledger in PostgreSQL: the table created or completed on first use
    ledger    the Ledger: reserve, start, commit, cancel, adopt, quarantine, history
"""

from pipelines.ledger.ledger import (
    COUNTED,
    DELTA_RANGE,
    EPSILON_RANGE,
    URL_ENV,
    BudgetExceeded,
    Ledger,
    Spent,
    source_fingerprint,
)
from pipelines.ledger.postgres import POSTGRES, SCHEMES, masked
from pipelines.ledger.sqlite import HOME_ENV, SQLITE, default_path
from pipelines.ledger.store import (
    ADDED,
    COLUMNS,
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    TIMEOUT_ENV,
    LedgerError,
    LedgerUnavailable,
)

# the names of the module this package replaced
__all__ = [
    "ADDED", "COLUMNS", "COUNTED", "DEFAULT_TIMEOUT", "DELTA_RANGE", "EPSILON_RANGE",
    "HOME_ENV", "MAX_TIMEOUT", "POSTGRES", "SCHEMES", "SQLITE", "TIMEOUT_ENV", "URL_ENV",
    "BudgetExceeded", "Ledger", "LedgerError", "LedgerUnavailable", "Spent", "default_path",
    "masked", "source_fingerprint",
]
