"""The files of an image set, opened safely: no symbolic link inside the set (the input path
itself may be one), nothing but regular files (a FIFO would block the read), and no more
stored bytes than the images may decode to.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import NoReturn

from pipelines.images.problems import refuse, too_big
from schemas.limits import Limits

# Room for metadata (ICC profiles, EXIF, text chunks, headers) in the stored size of a file
# beyond what its pixels can take; a larger file is refused before it is decoded.
METADATA = 16 * 2**20


def symlink(path: Path) -> NoReturn:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    fix = ("an image set must hold its files itself: copy the files in, or give the link's "
           "target as --input")
    refuse(f"{path}: is a symbolic link (to {target}): {fix}",
            f"{path}: is a symbolic link: {fix}")


def not_regular(path: Path, st: os.stat_result) -> NoReturn:
    if stat.S_ISDIR(st.st_mode):
        refuse(f"{path}: is a folder where a file is expected: remove or rename it")
    refuse(f"{path}: is not a regular file (a FIFO, socket or device): remove it from the "
            "image set")


def check_file(path: Path) -> None:
    """Refuses an input file that is a symbolic link or not a regular file (never opens it)."""
    try:
        st = path.lstat()
    except OSError as exc:
        refuse(f"{path}: cannot read input: {exc.strerror or exc}")
    if stat.S_ISLNK(st.st_mode):
        symlink(path)
    if not stat.S_ISREG(st.st_mode):
        not_regular(path, st)


def open_regular(path: Path, follow: bool = False) -> tuple[io.BufferedReader, int]:
    """Opens an input file for reading, and its size. Refuses a symbolic link (unless
    ``follow``: the input path itself may be one) and anything but a regular file; the open
    does not block, so a FIFO swapped in after the walk cannot hang the read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow and (exc.errno == errno.ELOOP or path.is_symlink()):
            symlink(path)
        refuse(f"{path}: cannot read input: {exc.strerror or exc}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        not_regular(path, st)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st.st_size


def check_stored(source: Path, stored: int, lim: Limits) -> None:
    """Refuses files that hold more bytes than the images they may decode to (plus room for
    headers and metadata), before they are hashed or read."""
    if stored > lim.image_bytes + METADATA:
        too_big(source, stored, lim, "are stored in")
