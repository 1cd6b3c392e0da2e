"""Publish: the only writer of releases, a directory that appears whole or not at all.

A release is a directory holding ``data.parquet`` (typed by the Schema, not inferred from the
frame) and extra files such as ``privacy_report.json``. Parquet writes are not atomic
(PRIVACY-RELIABILITY-NOTES §8: ``kill -9`` mid-write leaves footer-less files), so every file is
written into a hidden staging directory beside the target, fsynced, and the directory is then
renamed into place: a reader sees no release or a complete one, never a partial one. The last
file staged is ``manifest.json``, every other file's size and sha256 as written: the commit
record a reader checks a release against (``verify_release``, ``synth verify``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.columns import column_notes, field_metadata, surrogate_metadata
from schemas.model import Column, Schema, pandas_dtype

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "dp-synth release 1"
PREFIX = "synth."
_ARROW_TYPES = {"integer": pa.int64(), "float": pa.float64(), "boolean": pa.bool_(),
                "date": pa.date32(), "datetime": pa.timestamp("us")}


class PublishError(Exception):
    """A release that cannot be written or read; the message names the path and the fix."""


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


def to_arrow(frame: pd.DataFrame, schema: Schema, metadata: Mapping[str, str]) -> pa.Table:
    """Builds the Arrow table of a release with types taken from the schema, not inferred.

    Columns follow the schema's order; the frame's index is dropped. Missing values (NaN
    included) become nulls. Datetimes are floored to microseconds and dates to days.

    Args:
        frame: rows with (at least castable to) the dtypes of ``schemas.pandas_dtype``.
        schema: the declared columns; categoricals become ``dictionary<int32, string>`` over
            the declared categories, in their declared order.
        metadata: string key-values stored on the Arrow schema as ``synth.<key>``, plus the
            whole mapping as JSON under ``synth.metadata``; ``synth.schema_fingerprint`` is
            added from ``schema.fingerprint()``. Each field carries what its column holds
            (``pipelines.columns.field_metadata``: description, unit, rule, ``synthetic``),
            and ``synth.columns`` holds the same per column as JSON, for readers of the
            file's key-values alone.

    Raises:
        PublishError: listing every problem at once (missing or unexpected columns, values
            outside the declared categories, nulls in non-nullable columns, bad metadata).
    """
    problems: list[str] = []
    # identifiers the schema asks to carry as fake surrogates come first, as strings
    fakes = [i.name for i in schema.identifiers if i.surrogate and i.name in frame.columns]
    missing = [n for n in schema.names if n not in frame.columns]
    extra = [str(n) for n in frame.columns if n not in schema.names and n not in fakes]
    twice = sorted({str(n) for n in frame.columns[frame.columns.duplicated()]})
    if missing:
        problems.append(f"columns {missing} are declared but absent from the frame")
    if extra:
        problems.append(f"columns {extra} are not in the schema (drop them before publishing)")
    if twice:
        problems.append(f"columns {twice} appear more than once in the frame")
    surrogates = [pa.array(frame[n].astype("string"), pa.string(), from_pandas=True)
                  for n in fakes if n not in twice]
    if any(a.null_count for a in surrogates):
        problems.append(f"surrogate columns {fakes} have missing values")
    arrays = [_to_array(frame[c.name], c, problems) for c in schema.columns
              if c.name not in missing and c.name not in twice]
    meta = _metadata(metadata, schema, problems)
    if problems:
        raise PublishError(f"cannot publish against {schema.where}: " + "; ".join(problems))
    idents = {i.name: i for i in schema.identifiers}
    fields = [pa.field(n, pa.string(), nullable=False, metadata=surrogate_metadata(idents[n]))
              for n in fakes] + [
        pa.field(c.name, a.type, nullable=c.nullable, metadata=field_metadata(c))
        for c, a in zip(schema.columns, arrays)]
    meta[PREFIX + "columns"] = json.dumps(column_notes(schema, fakes), sort_keys=True)
    return pa.Table.from_arrays(surrogates + arrays, schema=pa.schema(fields, metadata=meta))


def _to_array(series: pd.Series, column: Column, problems: list[str]) -> pa.Array:
    label = f"column '{column.name}'"
    if column.kind == "categorical":
        cat = pd.Categorical(series, categories=list(column.categories))
        unknown = sorted({str(v) for v in series[series.notna() & (cat.codes == -1)]})
        if unknown:
            problems.append(f"{label} has values {unknown[:5]} outside its declared categories")
        codes = cat.codes.astype("int32")  # (rows,), -1 for missing
        array = pa.DictionaryArray.from_arrays(
            pa.array(codes, mask=codes == -1), pa.array(column.categories, pa.string()))
    else:
        try:
            values = series.astype(pandas_dtype(column))
        except (TypeError, ValueError) as exc:
            problems.append(f"{label} does not cast to {pandas_dtype(column)} ({exc})")
            return pa.nulls(len(series), _ARROW_TYPES[column.kind])
        if column.is_temporal:
            values = values.dt.floor("D" if column.kind == "date" else "us")
            array = pa.array(values, pa.timestamp("ns"), from_pandas=True)
            array = array.cast(_ARROW_TYPES[column.kind])
        else:
            array = pa.array(values, _ARROW_TYPES[column.kind], from_pandas=True)
    if array.null_count and not column.nullable:
        problems.append(f"{label} has {array.null_count} missing values but is not nullable")
    return array


def _metadata(metadata: Mapping[str, str], schema: Schema, problems: list[str]) -> dict[str, str]:
    merged = {"schema_fingerprint": schema.fingerprint(), **metadata}
    bad = [k for k, v in merged.items() if not (isinstance(k, str) and k and isinstance(v, str))]
    reserved = [k for k in ("metadata", "columns") if k in merged]
    if bad or reserved:
        problems.append(f"metadata keys {bad or reserved} need non-empty string keys other "
                        "than 'metadata' and 'columns' and string values (json.dumps anything "
                        "structured)")
        return {}
    if merged["schema_fingerprint"] != schema.fingerprint():
        problems.append("metadata 'schema_fingerprint' is not this schema's fingerprint")
    meta = {PREFIX + k: v for k, v in merged.items()}
    meta[PREFIX + "metadata"] = json.dumps(merged, sort_keys=True)
    return meta


def footer_metadata(metadata: Mapping[str, str], schema) -> dict[str, str]:
    """The ``synth.`` footer key-values ``to_arrow`` stores, for any schema with ``where``
    and ``fingerprint()`` (tabular or image).

    Raises:
        PublishError: bad keys or values, or a fingerprint that is not the schema's.
    """
    problems: list[str] = []
    meta = _metadata(metadata, schema, problems)
    if problems:
        raise PublishError(f"cannot publish against {schema.where}: " + "; ".join(problems))
    return meta


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
    if _occupied(out_dir) and not overwrite:
        raise PublishError(f"{out_dir} already holds a release: choose another directory or "
                           "pass overwrite=True to replace it")
    _publish_dir(out_dir, extra_files, overwrite, table)
    return Release(path=out_dir, data=out_dir / DATA_FILE,
                   files=(DATA_FILE, *extra_files, MANIFEST_FILE))


def _publish_dir(out_dir: Path, files: Mapping[str, bytes], overwrite: bool,
                 table: pa.Table | None = None) -> None:
    """The one way a folder is published: staged in a hidden folder beside ``out_dir``
    (``data.parquet`` first when there is a table, then ``files``, the manifest last), each
    file and the folder fsynced, then swapped in; on any failure the staging goes."""
    check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{_owner()}-{uuid.uuid4().hex}")
    names = (DATA_FILE, *files) if table is not None else tuple(files)
    try:
        staging.mkdir()
        if table is not None:
            with open(staging / DATA_FILE, "wb") as f:
                pq.write_table(table, f)
                f.flush()
                os.fsync(f.fileno())
        for name, blob in files.items():
            _write_file(staging / name, blob)
        _write_file(staging / MANIFEST_FILE, _manifest(staging, names))
        _fsync_dir(staging)
        _swap_in(staging, out_dir, overwrite)
    except BaseException:  # KeyboardInterrupt too: leave nothing half-written behind
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path, names: tuple[str, ...]) -> bytes:
    """The manifest of the files ``names`` as they are on disk in ``folder``."""
    files = {n: {"bytes": (folder / n).stat().st_size, "sha256": _sha256(folder / n)}
             for n in names}
    return json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=2).encode()


def verify_release(path: Path) -> list[str]:
    """What is wrong with the release at ``path``: [] when its manifest is there and every
    file matches it (size and sha256), no file is missing or extra, and ``data.parquet``
    has its footer."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        listed = manifest["files"]
        assert manifest["format"] == MANIFEST_FORMAT and isinstance(listed, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return [f"{path / MANIFEST_FILE}: missing or unreadable: not a complete release"]
    present = {p.name for p in path.iterdir()} - {MANIFEST_FILE} if path.is_dir() else set()
    problems = [f"{path / n}: not in the manifest" for n in sorted(present - set(listed))]
    for name, entry in listed.items():
        file = path / name
        if name not in present:
            problems.append(f"{file}: listed in the manifest but missing")
        elif file.stat().st_size != entry["bytes"] or _sha256(file) != entry["sha256"]:
            problems.append(f"{file}: size or sha256 differs from the manifest")
    if not problems:
        try:
            pq.read_metadata(path / DATA_FILE)
        except Exception as exc:  # noqa: BLE001  any reader error is the finding
            problems.append(f"{path / DATA_FILE}: unreadable Parquet ({exc})")
    return problems


def publish_folder(files: Mapping[str, bytes], out_dir: Path) -> Path:
    """Writes a folder of files (an internal report, say) atomically, replacing what was there:
    staged beside ``out_dir`` with its manifest, fsynced, renamed into place, as a release
    is."""
    out_dir = Path(out_dir).absolute()
    _publish_dir(out_dir, files, overwrite=True)
    return out_dir


def atomic_write(path: Path, blob: bytes) -> None:
    """Replaces the file at ``path`` by ``blob`` in one step: staged beside it, fsynced,
    renamed over it, the folder fsynced. A reader, or a process killed at any point, sees
    the old file or the new one, never a part of one."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.staging-{_owner()}-{uuid.uuid4().hex}")
    try:
        _write_file(staging, blob)
        os.replace(staging, path)
        _fsync_dir(path.parent)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _owner() -> str:
    """Who writes a hidden staging or old directory: host and process id."""
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def process_alive(pid: int) -> bool:
    """Whether a process of this host runs under ``pid`` (to tell leftovers of dead writers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


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


def _occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


MAX_MANIFEST = 16 * 2**20  # bytes: a manifest of this tool is a few hundred


def read_manifest(folder: Path) -> dict[str, dict] | None:
    """The files listed by ``folder``'s manifest, if it is one this tool wrote (its
    ``format`` line), else None."""
    path = Path(folder) / MANIFEST_FILE
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_MANIFEST:
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest["format"] != MANIFEST_FORMAT or not isinstance(files, dict) or not all(
                isinstance(e, dict) for e in files.values()):
            return None
        return files
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_release(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest this tool wrote (a release, an internal report or
    a quarantined release)."""
    return read_manifest(folder) is not None


def _matches(path: Path, entry: dict) -> bool:
    """Whether the file at ``path`` is the one ``entry`` lists (size and sha256), or the
    ``previous`` version it lists (a checkpoint being replaced)."""
    if not path.is_file() or path.is_symlink():
        return False
    size = path.stat().st_size
    versions = [entry, *([entry["previous"]] if isinstance(entry.get("previous"), dict)
                         else [])]
    candidates = [v for v in versions if v.get("bytes") == size]
    return bool(candidates) and _sha256(path) in {v.get("sha256") for v in candidates}


def _ours_staging(entry: Path) -> bool:
    """A hidden staging file of ``atomic_write`` (a checkpoint's or a manifest's)."""
    return entry.name.startswith(".") and ".staging-" in entry.name and entry.is_file() \
        and not entry.is_symlink()


def check_replaceable(path: Path) -> None:
    """Overwriting replaces, hence deletes, what is at ``path``: only ever an empty folder or
    one this tool wrote. Proof is the folder's manifest, checked: this tool's format, and
    every file in the folder listed there with its size and sha256 (a file added or changed
    since, even under a name this tool uses, makes the folder someone else's). Never a link,
    a file, or a folder that ``out`` named by mistake.

    Raises:
        PublishError: naming the path.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise PublishError(f"{path} is a file or a link, not a release folder: refusing to "
                           "replace it")
    entries = [e for e in path.iterdir() if e.name != MANIFEST_FILE and not _ours_staging(e)]
    if not entries and not (path / MANIFEST_FILE).exists():
        return  # an empty folder (or only this tool's staging leftovers)
    listed = read_manifest(path)
    if listed is None:
        raise PublishError(f"{path} is not a folder this tool wrote (no manifest of its own): "
                           "refusing to replace it; choose another location")
    for entry in entries:
        if entry.name not in listed or not _matches(entry, listed[entry.name]):
            raise PublishError(f"{entry} was not written by this tool, or changed since (it "
                               "does not match the folder's manifest): refusing to replace "
                               f"{path}; move it away or choose another location")


def remove_listed(folder: Path, name: str) -> None:
    """Deletes the file ``name`` of ``folder`` that its manifest lists, then its entry (a
    kill in between leaves an entry whose file is missing: still a folder of this tool)."""
    (Path(folder) / name).unlink(missing_ok=True)
    files = read_manifest(folder)
    if files is not None and files.pop(name, None) is not None:
        atomic_write(Path(folder) / MANIFEST_FILE, json.dumps(
            {"format": MANIFEST_FORMAT, "files": files}, indent=2).encode())


def list_in_manifest(folder: Path, name: str, blob: bytes, previous: Path | None = None
                     ) -> None:
    """Lists the file ``name`` (about to hold ``blob``) in ``folder``'s manifest, keeping
    the files it lists already; with ``previous``, the version now at that path is listed
    too, so that a kill between this and the file's replacement leaves a folder whose every
    file its manifest vouches for. Written atomically."""
    files = read_manifest(folder) or {}
    entry: dict = {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    if previous is not None and previous.is_file():
        entry["previous"] = {"bytes": previous.stat().st_size, "sha256": _sha256(previous)}
    files[name] = entry
    atomic_write(Path(folder) / MANIFEST_FILE, json.dumps(
        {"format": MANIFEST_FORMAT, "files": files}, indent=2).encode())


def _write_file(path: Path, blob: bytes) -> None:
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


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False, with nothing changed, where the C library, kernel or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(staging: Path, out_dir: Path, overwrite: bool) -> None:
    if overwrite and _occupied(out_dir) and _exchange(staging, out_dir):
        # the new release is in place and the old one sits under the staging name: a crash
        # from here on leaves readers the new release and a leftover the next publish sweeps
        _fsync_dir(out_dir.parent)
        shutil.rmtree(staging, ignore_errors=True)
        return
    # without an atomic exchange: rename the old release aside, then the new one in (a
    # crash between the two leaves ``out_dir`` absent until the next publish)
    old = None
    if overwrite and _occupied(out_dir):
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


def read_release_metadata(parquet_path: Path) -> dict[str, str]:
    """Reads the ``synth.`` key-values of a release's Parquet footer, prefix stripped.

    ``synth.metadata`` (the same mapping as JSON) and ``synth.columns`` (the columns' notes,
    see ``read_column_metadata``) are left out.

    Raises:
        PublishError: the file is missing or not Parquet.
    """
    try:
        raw = pq.read_metadata(parquet_path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise PublishError(f"{parquet_path}: cannot read Parquet metadata ({exc}); "
                           "check the path points at a release's data.parquet") from exc
    out = {k.decode()[len(PREFIX):]: v.decode() for k, v in raw.items()
           if k.decode().startswith(PREFIX)}
    out.pop("metadata", None)
    out.pop("columns", None)
    return out


def read_column_metadata(parquet_path: Path) -> dict[str, dict[str, str]]:
    """What each column of a release says it holds: its Arrow field metadata (description,
    unit, rule, ``synthetic``...; see ``pipelines.columns.field_metadata``), by column name,
    in the file's column order.

    Raises:
        PublishError: the file is missing or not Parquet.
    """
    try:
        schema = pq.read_schema(parquet_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise PublishError(f"{parquet_path}: cannot read Parquet schema ({exc}); "
                           "check the path points at a release's data.parquet") from exc
    return {f.name: {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            for f in schema}
