"""Names and places: what a data set, run or release may be called, and where it may go.

A service takes its ``out`` parameters from a form anyone with access can fill in, so under
an output root (``$SYNTH_OUTPUT_ROOT``, which ``flows.serve`` sets) a release directory, and
the ``.internal`` and ``.quarantine`` folders beside it, must lie strictly inside that root:
no absolute path elsewhere, no ``..``, no symbolic link out of it, not inside another
release's folders. A name that becomes one
path component (a data set's name in a grid of releases, say) is a plain word of letters,
digits, ``.``, ``_`` and ``-``. Without a root, ``out`` is whatever the person at the command
line chose, and only names are checked.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from pipelines.errors import DataError

ROOT_ENV = "SYNTH_OUTPUT_ROOT"
BESIDE = (".internal", ".quarantine")
MAX_COMPONENT = 150  # bytes; file systems allow 255, and ".<name>.staging-<host>-..." is longer
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)


class UnsafePath(DataError):
    """A name or an output location that could land outside where releases go."""


def safe_name(name: object, what: str = "name") -> str:
    """``name`` if it is usable as one path component on any file system, else refused:
    1 to 100 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit, no ``..``, no
    trailing dot, no Windows device name.

    Raises:
        UnsafePath: naming what was refused and why.
    """
    text = name if isinstance(name, str) else ""
    if (not NAME.fullmatch(text) or ".." in text or text.endswith(".")
            or RESERVED.fullmatch(text)):
        raise UnsafePath(f"{what} {name!r} cannot name a folder: use 1 to 100 letters, "
                         "digits, '.', '_' or '-', starting with a letter or digit")
    return text


def output_root() -> Path | None:
    """The output root from ``$SYNTH_OUTPUT_ROOT``, None when unset."""
    value = os.environ.get(ROOT_ENV)
    return Path(value) if value else None


def release_dir(out: object, root: Path | None = None) -> Path:
    """Where the release ``out`` goes. With an output root (``root``, else
    ``$SYNTH_OUTPUT_ROOT``) ``out`` (relative to the working directory, as any path) must
    resolve strictly inside it, symbolic links followed, and not inside another release's
    folders; without one, ``out`` as given. Either way its name is not one the tool gives
    the folders beside a release (``.internal``, ``.quarantine``) or its hidden staging.

    Raises:
        UnsafePath: an empty location, a NUL or control character, a reserved name, or one
            outside the root.
    """
    text = out if isinstance(out, str) else str(out) if isinstance(out, Path) else ""
    if not text.strip() or any(unicodedata.category(ch) == "Cc" for ch in text):
        raise UnsafePath(f"output location {out!r} is empty or holds control characters")
    if any(len(os.fsencode(part)) > MAX_COMPONENT for part in Path(text).parts):
        raise UnsafePath(f"output location {text[:60]!r}...: a folder name is longer than "
                         f"{MAX_COMPONENT} bytes (the staging folder beside it needs room)")
    name = Path(text).name
    if name.startswith(".") or name.endswith(BESIDE):
        raise UnsafePath(f"output location {out!r}: a release folder's name cannot start "
                         f"with '.' or end with {' or '.join(BESIDE)} (the tool's own "
                         "folders beside a release are named so)")
    root = root if root is not None else output_root()
    if root is None:  # the operator's own choice: only what can never be a release folder
        where = Path(text).absolute()
        if where.parent == where:
            raise UnsafePath(f"output location {out!r} is the file system's root: give a "
                             "folder of its own")
        inside = _release_above(where.resolve(), None)
        if inside is not None:
            raise UnsafePath(f"output location {out!r} is inside {inside}, a release "
                             "folder of this tool: give a folder of its own")
        return Path(text)
    base = Path(root).resolve()
    target = Path(text).resolve()  # relative to the working directory; links followed
    if not target.is_relative_to(base) or target == base or ".." in Path(text).parts:
        raise UnsafePath(f"output location {out!r} is outside the output root {base}: "
                         f"give a folder inside it, without '..'")
    inside = _release_above(target, base)  # not planted inside another release's folders
    if inside is not None:
        raise UnsafePath(f"output location {out!r} is inside {inside}, a release "
                         "folder: give a folder of its own")
    for sibling in BESIDE:  # written beside the release
        beside = target.with_name(target.name + sibling)
        if beside.is_symlink() and not beside.resolve().is_relative_to(base):
            raise UnsafePath(f"{beside} links outside the output root {base}")
    return target


def _release_above(target: Path, stop: Path | None) -> Path | None:
    """The first folder above ``target`` (up to the output root ``stop``) that is a release,
    internal or quarantine folder: named so, or holding a manifest.json (under a root, which
    only the service writes, any; elsewhere, one in this tool's format, as a project folder
    may hold a manifest.json of its own)."""
    from pipelines.publish import MANIFEST_FILE, is_release

    for parent in target.parents:
        if parent == stop:
            return None
        manifest = (parent / MANIFEST_FILE).is_file() if stop else is_release(parent)
        if parent.name.endswith(BESIDE) or manifest:
            return parent
    return None
