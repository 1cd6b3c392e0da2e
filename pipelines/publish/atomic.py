"""Writes that appear whole or not at all: a file replaced in one rename, a folder staged
hidden beside its place and swapped in, and the sweep of what a killed writer left behind.

Parquet writes are not atomic (PRIVACY-RELIABILITY-NOTES §8: ``kill -9`` mid-write leaves
footer-less files), so every file is written into a hidden staging directory beside the
target, fsynced, and the directory is then renamed into place: a reader sees nothing or the
whole folder, never a part of it. Staging and old names carry the writer's host and pid
(``.<name>.staging-<host>-<pid>-<uuid>``), which tells the leftovers of a dead writer from
those of a live one. What goes into a folder (the manifest, the Parquet file) is the
caller's business: this module knows files and folders only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from pipelines.lock import process_alive
from pipelines.publish.names import PublishError


def write_file(path: Path, blob: bytes) -> None:
    """Writes ``blob`` to ``path`` and fsyncs it (every file staged goes through here)."""
    with open(path, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, blob: bytes) -> None:
    """Replaces the file at ``path`` by ``blob`` in one step: staged beside it, fsynced,
    renamed over it, the folder fsynced. A reader, or a process killed at any point, sees
    the old file or the new one, never a part of one."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.staging-{_owner()}-{uuid.uuid4().hex}")
    try:
        write_file(staging, blob)
        os.replace(staging, path)
        _fsync_dir(path.parent)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def stage_folder(out_dir: Path, fill: Callable[[Path], None], overwrite: bool) -> None:
    """Puts a folder at ``out_dir`` whole: ``fill`` writes its files into a hidden staging
    folder beside it (``.<name>.staging-<host>-<pid>-<uuid>``), the folder is fsynced and
    swapped in (``_swap_in``); on any failure the staging folder goes. Missing parents are
    created, and leftovers of killed writers at the same place swept first."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{_owner()}-{uuid.uuid4().hex}")
    try:
        staging.mkdir()
        fill(staging)
        _fsync_dir(staging)
        _swap_in(staging, out_dir, overwrite)
    except BaseException:  # KeyboardInterrupt too: leave nothing half-written behind
        shutil.rmtree(staging, ignore_errors=True)
        raise


def occupied(path: Path) -> bool:
    """Whether something is at ``path`` other than an empty folder."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _owner() -> str:
    """Who writes a hidden staging or old directory: host and process id."""
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def sweep_leftovers(out_dir: Path) -> list[Path]:
    """Removes the hidden staging and old directories of ``out_dir`` that a killed writer
    left behind: those written on this host by a process that no longer runs. A live
    writer's, or another host's, are left alone. Returns what was removed."""
    host = socket.gethostname().replace("-", "_")
    removed = []
    for kind in ("staging", "old"):
        for path in out_dir.parent.glob(f".{out_dir.name}.{kind}-*"):
            parts = path.name[len(f".{out_dir.name}.{kind}-"):].split("-")
            if (len(parts) == 3 and parts[0] == host and parts[1].isdigit()
                    and not process_alive(int(parts[1]))):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:  # a file of atomic_write
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False, with nothing changed, where the C library, kernel or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(staging: Path, out_dir: Path, overwrite: bool) -> None:
    """Moves the complete ``staging`` folder to ``out_dir``. With ``overwrite`` the new folder
    and the old one swap places in one atomic step (``_exchange``), and the old one, now
    under the staging name, is deleted: a reader sees the old folder or the new one. Where
    that is not available the old folder is renamed aside (``.<name>.old-<host>-<pid>-<uuid>``),
    the new one renamed in, then the old one deleted: between the two renames ``out_dir`` is
    briefly absent, never partial.

    Raises:
        PublishError: ``out_dir`` could not be taken (another writer got there first).
    """
    if overwrite and occupied(out_dir) and _exchange(staging, out_dir):
        # the new release is in place and the old one sits under the staging name: a crash
        # from here on leaves readers the new release and a leftover the next publish sweeps
        _fsync_dir(out_dir.parent)
        shutil.rmtree(staging, ignore_errors=True)
        return
    # without an atomic exchange: rename the old release aside, then the new one in (a
    # crash between the two leaves ``out_dir`` absent until the next publish)
    old = None
    if overwrite and occupied(out_dir):
        old = out_dir.with_name(f".{out_dir.name}.old-{_owner()}-{uuid.uuid4().hex}")
        os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)  # atomic; replaces an empty out_dir, fails on a full one
    except OSError as exc:
        if old is not None:
            os.rename(old, out_dir)
        raise PublishError(f"{out_dir}: cannot move the release into place ({exc.strerror}); "
                           "another writer may have published there: retry or pick another "
                           "directory") from exc
    _fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
