"""The folder-per-class form: ``ROOT/<label>/*.png|*.jpg|*.jpeg``, the folder name the label
(a ``/`` in a label is written ``_`` in the folder name, e.g. ``T-shirt_top``).

The tree is walked without following anything (no links, no special files, within the
limits), and each file's header is checked (format, mode, channels, size, pixel limit, PNG
chunks) before its pixels are decoded; only PNG and JPEG decoders are ever tried.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipelines.images.checks import check_range, rescale
from pipelines.images.files import METADATA, check_stored, not_regular, open_regular, symlink
from pipelines.images.problems import Problems, refuse, too_big, too_many
from schemas.image import ImageSchema
from schemas.limits import Limits, variable

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Chunks of a PNG besides its pixel data: real files have a handful, PIL parses each in
# Python (a 1 MB file of 100,000 empty chunks takes 2 seconds to open).
_PNG_CHUNKS = 1000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def folder_name(label: str) -> str:
    """The folder a label's images live in: the label, with ``/`` written as ``_``."""
    return label.replace("/", "_")


@dataclass(frozen=True)
class Tree:
    """What a walk of a folder-per-class input found (hidden entries are left out).

    Attributes:
        files: every PNG/JPEG file, sorted (the top level's included, for the fingerprint).
        folders: the top level's folders, sorted.
        skipped: files that are not PNG/JPEG.
    """

    files: list[Path]
    folders: list[Path]
    skipped: int


def walk(root: Path, lim: Limits) -> Tree:
    """Lists the input tree without following anything: refuses a symbolic link or special
    file anywhere in it, more PNG/JPEG files than ``lim.images`` (it stops listing there)
    and more stored bytes than the images may decode to; nothing is opened."""
    files: list[Path] = []
    folders: list[Path] = []
    skipped = stored = 0
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    path = Path(entry.path)
                    if entry.is_symlink():
                        symlink(path)
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(path)
                        if folder == root:
                            folders.append(path)
                    elif not entry.is_file(follow_symlinks=False):
                        not_regular(path, entry.stat(follow_symlinks=False))
                    elif path.suffix.lower() in IMAGE_SUFFIXES:
                        files.append(path)
                        if len(files) > lim.images:
                            too_many(root, lim)
                        stored += entry.stat(follow_symlinks=False).st_size
                        check_stored(root, stored, lim)
                    else:
                        skipped += 1
        except OSError as exc:
            refuse(f"{folder}: cannot read input: {exc.strerror or exc}")
    return Tree(files=sorted(files), folders=sorted(folders), skipped=skipped)


def read_folder(root: Path, schema: ImageSchema, lim: Limits):
    """Images of a folder per label: the tree is walked (no links, no special files, within
    the limits) and each file's header checked before its pixels are decoded."""
    by_folder = {folder_name(label): i for i, label in enumerate(schema.labels)}
    by_folder.update({label: i for i, label in enumerate(schema.labels) if "/" not in label})
    tree = walk(root, lim)
    problems = Problems(schema, root)
    skipped = tree.skipped
    wanted: list[tuple[Path, int]] = []
    for f in tree.files:
        parts = f.relative_to(root).parts
        if len(parts) == 1:
            skipped += 1  # an image beside the label folders
        elif parts[0] in by_folder:
            wanted.append((f, by_folder[parts[0]]))
    filled = {f.relative_to(root).parts[0] for f, _ in wanted}
    for sub in tree.folders:
        if sub.name not in by_folder:
            known = ", ".join(folder_name(v) for v in schema.labels)
            problems.add("folder", f"folder '{sub.name}' is not one of the labels ({known})",
                         "rename or remove the folder, or add the label to the schema")
        elif sub.name not in filled:
            problems.add("empty", f"label folder '{sub.name}' holds no PNG/JPEG files",
                         "put its images in, or remove the folder")
    declared = len(wanted) * math.prod(schema.shape)
    if declared > lim.image_bytes:
        too_big(root, declared, lim)
    images, labels, files = [], [], []
    for f, label in wanted:
        array = _decode(f, schema, lim, problems)
        if array is not None:
            images.append(array)
            labels.append(label)
            files.append(f)
    if skipped:
        log.warning("skipped %d entries of %s that are not PNG/JPEG files in a label folder",
                    skipped, root)
    if images:
        check_range(np.stack(images), root, schema, problems,
                     names=[problems.name(f) for f in files])
    problems.raise_any()
    stacked = np.stack(images) if images else np.zeros((0, *schema.shape), np.uint8)
    return rescale(stacked, schema), np.asarray(labels, np.int64), tuple(files)


def _decode(path: Path, schema: ImageSchema, lim: Limits,
            problems: Problems) -> np.ndarray | None:
    """(H, W, C) uint8 of one PNG/JPEG file, or None after recording why it does not fit.
    Only the header is read until it declares the schema's size, channels and an 8-bit
    mode, within the pixel limit; only PNG and JPEG decoders are ever tried."""
    from PIL import Image

    name = problems.name(path)
    fh, size = open_regular(path)
    with fh:
        if size > 2 * math.prod(schema.shape) + METADATA:
            problems.add("stored", f"{name}: the file holds far more bytes than a "
                         f"{schema.height}x{schema.width} image takes", "replace or remove it")
            return None
        if _png_chunks(fh, size) > _PNG_CHUNKS:
            problems.add("chunks", f"{name}: holds more than {_PNG_CHUNKS:,} PNG chunks "
                         "besides its pixels", "save the image again without its metadata")
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(fh, formats=["PNG", "JPEG"])
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                problems.add("bomb", f"{name}: its header declares an image far larger than "
                             f"{schema.height}x{schema.width} (a decompression bomb?), nothing "
                             "was decoded", "replace or remove the file")
                return None
            except Exception as exc:  # noqa: BLE001  hostile bytes may fail any way
                _undecodable(name, exc, problems)
                return None
        with im:
            if not _header_fits(im, name, schema, lim, problems):
                return None
            try:
                im.load()
                if im.mode == "1":
                    im = im.convert("L")
                elif im.mode == "P":
                    im = im.convert("RGB")
                return np.asarray(im, np.uint8).reshape(schema.shape)
            except Exception as exc:  # noqa: BLE001  a truncated or corrupt body
                _undecodable(name, exc, problems)
                return None


def _png_chunks(fh: BinaryIO, size: int) -> int:
    """How many chunks besides pixel data (IDAT, fdAT) a PNG file holds, counted from their
    8-byte headers alone and no further than ``_PNG_CHUNKS + 1``; 0 for any other file.
    Leaves the file at its start."""
    count, at = 0, len(_PNG_SIGNATURE)
    if fh.read(at) == _PNG_SIGNATURE:
        while count <= _PNG_CHUNKS and at + 8 <= size:
            fh.seek(at)
            head = fh.read(8)
            if len(head) < 8 or head[4:] == b"IEND":
                break
            length, kind = struct.unpack(">I4s", head)
            count += int(kind not in (b"IDAT", b"fdAT"))
            at += 12 + length
    fh.seek(0)
    return count


def _undecodable(name: str, exc: BaseException, problems: Problems) -> None:
    from PIL import UnidentifiedImageError

    # PIL's own words name the file object; what failed is said without them
    why = "" if isinstance(exc, UnidentifiedImageError) else f" ({str(exc)[:40]})"
    problems.add("decode", f"{name}: cannot be decoded as PNG/JPEG{why}",
                 "replace or remove the file", f"{name}: cannot be decoded as PNG/JPEG")


def _header_fits(im, name: str, schema: ImageSchema, lim: Limits,
                 problems: Problems) -> bool:
    """Whether an opened (not decoded) image declares what the schema wants: the format its
    suffix names, an 8-bit mode of the schema's channels, the schema's size within the
    pixel limit. Records why not."""
    want = "PNG" if name.lower().endswith(".png") else "JPEG"
    found = "JPEG" if im.format == "MPO" else im.format
    if found != want:
        problems.add("format", f"{name}: is a {found} file, not {want} as its name says",
                     "rename or convert it")
        return False
    transparent = im.mode == "P" and "transparency" in im.info
    mode = {"1": "L", "L": "L", "P": "RGB", "RGB": "RGB"}.get(im.mode)
    if mode is None or transparent:
        what = "P with transparency" if transparent else im.mode
        problems.add(f"mode {what}", f"{name}: PIL mode {what} (alpha, 16-bit, float or CMYK "
                     "pixels) is not 8-bit L or RGB",
                     "convert the images to 8-bit greyscale or RGB")
        return False
    channels = 1 if mode == "L" else 3
    if channels != schema.channels:
        problems.add("channels", f"{name}: image has {channels} channel(s) (mode {im.mode}), "
                     f"not {schema.channels}",
                     "convert the images or fix 'channels'")
        return False
    if im.height * im.width > lim.image_pixels:
        problems.add("pixels", f"{name}: its header declares {im.height}x{im.width} pixels, "
                     f"more than the limit of {lim.image_pixels:,}, nothing was decoded",
                     f"raise {variable('image_pixels')} if this is meant")
        return False
    if (im.height, im.width) != (schema.height, schema.width):
        problems.add("size", f"{name}: image is {im.height}x{im.width} (height x width), not "
                     f"{schema.height}x{schema.width}",
                     "resize the images or fix 'height' and 'width'")
        return False
    return True
