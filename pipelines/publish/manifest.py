"""The manifest: the commit record of a folder this tool wrote (a release, an internal report,
a checkpoint folder).

``manifest.json`` lists every other file of its folder with its size and sha256 as written,
under this tool's ``format`` line. It is the last file staged, so a folder that has one whose
every entry matches is complete (``verify_release``, ``synth verify``), and it is the proof
that a folder is this tool's to replace (``check_replaceable``). A folder whose files change
one at a time (a run's checkpoints) keeps its manifest current with ``list_in_manifest`` and
``remove_listed``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.publish.atomic import atomic_write
from pipelines.publish.names import (
    DATA_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    PublishError,
)

MAX_MANIFEST = 16 * 2**20  # bytes: a manifest of this tool is a few hundred


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_bytes(folder: Path, names: tuple[str, ...]) -> bytes:
    """The manifest of the files ``names`` as they are on disk in ``folder``."""
    files = {n: {"bytes": (folder / n).stat().st_size, "sha256": _sha256(folder / n)}
             for n in names}
    return json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=2).encode()


def verify_release(path: Path) -> list[str]:
    """What is wrong with the release at ``path``: [] when its manifest is there and every
    file matches it (size and sha256), no file is missing or extra, and each Parquet file
    (``data.parquet``, or a multi-table release's ``<table>.parquet``) has its footer."""
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
    tables = [n for n in listed if n.endswith(".parquet")] or [DATA_FILE]
    for name in tables if not problems else ():
        try:
            pq.read_metadata(path / name)
        except Exception as exc:  # noqa: BLE001  any reader error is the finding
            problems.append(f"{path / name}: unreadable Parquet ({exc})")
    return problems


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
