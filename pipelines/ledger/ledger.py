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
``~/.dp-synth/ledger.db``. A file path is SQLite (``pipelines.ledger.sqlite``: what it
refuses); ``postgresql://user@host:5432/db`` (or ``postgres://``) is PostgreSQL
(``pipelines.ledger.postgres``). Either is refused (``LedgerError``, one line naming the
location) before any reservation, without writing a byte, when it cannot be used. A
reservation's epsilon and delta must lie in ``EPSILON_RANGE`` and ``DELTA_RANGE``: an absurd
one (1e300, nan, inf) never enters the totals.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pipelines.ledger.postgres import SCHEMES, PostgresStore
from pipelines.ledger.sqlite import SqliteStore, default_path
from pipelines.ledger.store import Db, Store, lock_timeout
from pipelines.lock import process_alive
from synth.privacy import BudgetError

URL_ENV = "SYNTH_LEDGER_URL"
COUNTED = ("reserved", "spending", "committed")
# What one reservation may hold (bounds included, but delta < 1): wider than any meaningful
# release, narrow enough that no sum of entries overflows or vanishes.
EPSILON_RANGE = (1e-6, 1e4)
DELTA_RANGE = (1e-50, 1.0)


class BudgetExceeded(BudgetError):
    """A run would take a data set past its declared total budget."""


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


def _number(value: object) -> bool:
    """Whether ``value`` is a real number (an int or float, numpy's included; not a bool)."""
    if isinstance(value, bool):
        return False
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))


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
        self.store: Store
        if location is not None and scheme.partition("+")[0].lower() in SCHEMES:
            self.store = PostgresStore(f"postgresql://{rest}", lock_timeout(timeout))
        else:
            path = Path(location) if location is not None else default_path()
            self.store = SqliteStore(path, lock_timeout(timeout), default=location is None)

    def __repr__(self) -> str:
        return f"Ledger({self.location!r})"

    @property
    def url(self) -> str | None:
        """The PostgreSQL URL (None: a SQLite ledger)."""
        return self.store.url

    @property
    def path(self) -> Path | None:
        """The SQLite file (None: a PostgreSQL ledger)."""
        return self.store.path

    @property
    def timeout(self) -> float:
        """Seconds to wait for a ledger locked by another process."""
        return self.store.timeout

    @property
    def location(self) -> str:
        """Where the ledger lives, fit to print: a PostgreSQL URL's password is masked."""
        return self.store.location

    def exists(self) -> bool:
        """Whether the ledger's database is there: a SQLite file (not created by asking), a
        PostgreSQL server that answers (its table is created on connecting).

        Raises:
            LedgerError: something is at the path that is not a usable ledger, or the
                PostgreSQL server cannot be reached.
        """
        return self.store.exists()

    def spent(self, data_set: str) -> Spent:
        with self.store.connect() as db:
            return self._spent(db, data_set)

    @staticmethod
    def _spent(db: Db, data_set: str) -> Spent:
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
            raise self.store.refuse(f"cannot check data set '{name}' against its declared total "
                               f"budget {limit!r}: not a finite positive (epsilon, delta)")
        with self.store.connect() as db:
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
            raise self.store.refuse(f"refuses to reserve {what}={value!r}: a reservation's {what} "
                               f"must be a number from {low:g} {upper}")
        return number

    def _move(self, entry: int, to: str, from_: tuple[str, ...], **values: float) -> bool:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.store.connect() as db:
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
        with self.store.connect() as db:
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
        with self.store.connect() as db:
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
        with self.store.connect() as db:
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
        with self.store.connect() as db:
            rows = db.execute("SELECT id, owner FROM entries WHERE state = 'reserved' AND "
                              "owner LIKE ?", (host.replace("%", "") + ":%",)).fetchall()
        dead = [r["id"] for r in rows if r["owner"].rpartition(":")[0] == host
                and r["owner"].rpartition(":")[2].isdigit()
                and not process_alive(int(r["owner"].rpartition(":")[2]))]
        return [entry for entry in dead if self.cancel(entry)]

    def history(self) -> list[dict]:
        with self.store.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM entries ORDER BY id")]
