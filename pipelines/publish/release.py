"""A release: a directory holding ``data.parquet``, the files that go with it and its manifest,
put in place whole or not at all.

This module composes the other three: the table typed by ``parquet``, the folder staged and
swapped in by ``atomic``, with ``manifest.json`` (written by ``manifest``) the last file
staged. An internal report is published the same way, without a table (``publish_folder``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import pyarrow as pa

from pipelines.publish import atomic
from pipelines.publish.manifest import check_replaceable, manifest_bytes
from pipelines.publish.names import DATA_FILE, MANIFEST_FILE, PublishError
from pipelines.publish.parquet import to_arrow, write_parquet
from schemas.model import Schema


@dataclass(frozen=True)
class Release:
    """A published release directory.

    Attributes:
        path: the release directory.
        data: ``path / "data.parquet"``.
        files: the names of every file in the release, ``data.parquet`` first.
    """

    path: Path
    data: Path
    files: tuple[str, ...]


def publish(frame: pd.DataFrame, schema: Schema, metadata: Mapping[str, str], out_dir: Path, *,
            extra_files: Mapping[str, bytes] = MappingProxyType({}),
            overwrite: bool = False) -> Release:
    """Writes a release directory atomically: complete, or absent.

    Everything is written into ``.<name>.staging-<host>-<pid>-<uuid>`` beside ``out_dir``,
    each file and the directory are fsynced, the directory is renamed to ``out_dir`` and the
    parent is fsynced. Any failure removes the staging directory; a crash (SIGKILL, power
    loss) can leave only that hidden directory behind, never a partial ``out_dir``, and the
    next publish to the same place sweeps it (``sweep_leftovers``). With ``overwrite`` the new
    release and the old one swap places in one atomic step (Linux ``renameat2``), and the old
    one, now under the staging name, is deleted: a reader sees the old release or the new one.
    Where that is not available the old release is renamed aside
    (``.<name>.old-<host>-<pid>-<uuid>``), the new one renamed in, then the old one deleted:
    between the two renames ``out_dir`` is briefly absent, never partial.

    Args:
        frame: the synthetic rows (never real ones).
        schema: the declared columns, see ``to_arrow``.
        metadata: string key-values for the Parquet footer, see ``to_arrow``.
        out_dir: the release directory; missing parents are created.
        extra_files: file name -> bytes, e.g. ``{"privacy_report.json": b"..."}``.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        The Release that now exists at ``out_dir``.

    Raises:
        PublishError: the data does not fit the schema, a file name is unusable, or
            ``out_dir`` exists and ``overwrite`` is False.
    """
    table = to_arrow(frame, schema, metadata)  # fail on bad data before touching the disk
    return publish_table(table, out_dir, extra_files=extra_files, overwrite=overwrite)


def publish_table(table: pa.Table, out_dir: Path, *,
                  extra_files: Mapping[str, bytes] = MappingProxyType({}),
                  overwrite: bool = False) -> Release:
    """Writes an Arrow table that is already typed and carries its footer metadata (an image
    release, say) as a release directory, atomically, exactly as ``publish`` does."""
    out_dir = Path(out_dir).absolute()
    for name, blob in extra_files.items():
        if (not isinstance(name, str) or name in ("", ".", "..", DATA_FILE, MANIFEST_FILE)
                or "/" in name
                or os.sep in name or name.startswith(".") or not isinstance(blob, bytes)):
            raise PublishError(f"{out_dir}: extra file {name!r} needs a plain file name other "
                               f"than {DATA_FILE!r} and a bytes value (encode text first)")
    if atomic.occupied(out_dir) and not overwrite:
        raise PublishError(f"{out_dir} already holds a release: choose another directory or "
                           "pass overwrite=True to replace it")
    _publish_dir(out_dir, extra_files, overwrite, {DATA_FILE: table})
    return Release(path=out_dir, data=out_dir / DATA_FILE,
                   files=(DATA_FILE, *extra_files, MANIFEST_FILE))


def publish_tables(tables: Mapping[str, pa.Table], out_dir: Path, *,
                   extra_files: Mapping[str, bytes] = MappingProxyType({}),
                   overwrite: bool = False) -> Release:
    """Writes a multi-table release, ``<table>.parquet`` per table (typed Arrow tables with
    their footer metadata) plus ``extra_files``, atomically, exactly as ``publish`` does."""
    out_dir = Path(out_dir).absolute()
    names = [f"{t}.parquet" for t in tables]
    for name in [*names, *extra_files]:
        if (name in (DATA_FILE, MANIFEST_FILE) or "/" in name or os.sep in name
                or name.startswith(".") or names.count(name) > 1 or name in extra_files
                and name in names):
            raise PublishError(f"{out_dir}: file {name!r} needs a plain, unique file name "
                               f"other than {DATA_FILE!r} and {MANIFEST_FILE!r}")
    if atomic.occupied(out_dir) and not overwrite:
        raise PublishError(f"{out_dir} already holds a release: choose another directory or "
                           "pass overwrite=True to replace it")
    _publish_dir(out_dir, extra_files, overwrite, dict(zip(names, tables.values())))
    return Release(path=out_dir, data=out_dir / names[0],
                   files=(*names, *extra_files, MANIFEST_FILE))


def publish_folder(files: Mapping[str, bytes], out_dir: Path) -> Path:
    """Writes a folder of files (an internal report, say) atomically, replacing what was there:
    staged beside ``out_dir`` with its manifest, fsynced, renamed into place, as a release
    is."""
    out_dir = Path(out_dir).absolute()
    _publish_dir(out_dir, files, overwrite=True)
    return out_dir


def _publish_dir(out_dir: Path, files: Mapping[str, bytes], overwrite: bool,
                 tables: Mapping[str, pa.Table] = MappingProxyType({})) -> None:
    """The one way a folder is published: staged in a hidden folder beside ``out_dir``
    (the Parquet files first, by file name, then ``files``, the manifest last), each file and
    the folder fsynced, then swapped in; on any failure the staging goes."""
    check_replaceable(out_dir)
    names = (*tables, *files)

    def fill(staging: Path) -> None:
        # atomic.write_file looked up at each call: the one place tests arm a failure
        for name, table in tables.items():
            write_parquet(table, staging / name)
        for name, blob in files.items():
            atomic.write_file(staging / name, blob)
        atomic.write_file(staging / MANIFEST_FILE, manifest_bytes(staging, names))

    atomic.stage_folder(out_dir, fill, overwrite)
