"""One run at a time per release location.

Two runs racing to one ``--out`` would both pass the "is it free" check, both spend their
budget, and the loser's internal report and run key would replace the winner's. A run
therefore holds an exclusive lock on ``.<name>.lock`` beside its release folder from before
that check until it has published (or failed); a second run waits for it, then sees the
release (a no-op for an identical run, "already exists" for another) before reserving
anything. The lock is ``flock`` on a file this tool creates, which the holder deletes when it
is done; a waiter that wakes on a deleted file tries again. A kill releases it with the
process; the empty file left behind is this tool's and the next run reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


_HELD: set[Path] = set()  # the lock files this process holds (flock would wait on itself)


class HeldHere(RuntimeError):
    """This process already holds the lock: waiting for it would wait forever."""


def lock_path(out: Path) -> Path:
    """The lock file of the release folder ``out``."""
    return out.with_name(f".{out.name}.lock")


class OutLock:
    """The exclusive lock of one release location (``acquire``, then ``release``)."""

    def __init__(self, out: Path):
        self.path = lock_path(Path(out).absolute())
        self._fd: int | None = None
        self._made: list[Path] = []  # folders created to hold the lock file

    def acquire(self) -> OutLock:
        """Blocks until this process holds the lock (logging once that it waits).

        Raises:
            OSError: the lock file cannot be created (the caller reports it).
            HeldHere: a plan of this process holds it and was never released.
        """
        if self.path in _HELD:
            raise HeldHere(f"{self.path} is held by another run of this process")
        self._made = _make_parents(self.path.parent)
        waited = False
        while True:
            try:
                # readable by all: another user's run on the same --out opens it read-only
                # (flock needs no write access) when a killed run of this one left it
                fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644)
            except FileNotFoundError:  # a holder that created the folder removed it
                self._made = _make_parents(self.path.parent)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    log.info("another run is writing %s: waiting for it to finish",
                             self.path.parent / self.path.name[1:-len(".lock")])
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # the holder before us may have deleted the file: lock the one in place
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                _HELD.add(self.path)
                return self
            os.close(fd)

    def release(self) -> None:
        """Deletes the lock file and lets the next run in; then removes the folders that
        ``acquire`` created, if they are still empty. Safe to call twice."""
        if self._fd is None:
            return
        try:
            if os.fstat(self._fd).st_size == 0:  # this tool's lock files are empty
                self.path.unlink(missing_ok=True)
        except OSError:  # another user's lock file in a folder not ours: left, still correct
            pass
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
            _HELD.discard(self.path)
        for folder in self._made:
            try:
                folder.rmdir()  # only if empty: a release published there stays
            except OSError:
                break


    def __del__(self) -> None:  # a plan dropped without ``done()``: never hold on forever
        with contextlib.suppress(Exception):  # at interpreter exit the modules may be gone
            self.release()


def _make_parents(folder: Path) -> list[Path]:
    """Creates ``folder`` and its missing parents; returns those created, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
    return missing


def process_alive(pid: int) -> bool:
    """Whether a process of this host runs under ``pid`` (to tell leftovers of dead writers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
