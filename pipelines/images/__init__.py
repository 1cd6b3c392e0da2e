"""Ingest of labelled image sets: the only reader of private images.

Three forms, each checked against an ImageSchema (shape, channels, value range, label set):

- **IDX** (the MNIST / Fashion-MNIST format, gzipped or not): a directory holding
  ``<prefix>-images-idx3-ubyte[.gz]`` and ``<prefix>-labels-idx1-ubyte[.gz]`` (``train-``
  is taken when several prefixes are present), or the images file itself, with the labels
  file found beside it by the standard naming (``images`` -> ``labels``, ``idx3`` -> ``idx1``).
  Label ``i`` means the schema's ``labels[i]``.
- **A folder per class**: ``ROOT/<label>/*.png|*.jpg|*.jpeg``; the folder name is the label
  (a ``/`` in a label is written ``_`` in the folder name, e.g. ``T-shirt_top``).
- **NPZ**: ``numpy.savez`` arrays ``images`` (N, H, W) or (N, H, W, C), integer or float
  pixel values, and ``labels`` (N,) as integers (indices into the schema's labels) or
  strings (label names).

Every violation is collected and reported at once, in one ``DataError`` naming the file (and
the image index or file name) and what to do. The result is uint8 (N, H, W, C) images,
rescaled from the schema's value range to 0..255, and int64 (N,) label indices.

Hostile input costs nothing: what the files *declare* is checked before anything is decoded
or allocated, against the schema and ``schemas.limits`` (SYNTH_MAX_IMAGES, _IMAGE_PIXELS,
_IMAGE_BYTES, _COMPRESSION): a PNG/JPEG header's size and mode, a ``.npy`` member's header
(shape, dtype; object arrays are never unpickled) and its zip compression ratio, an IDX
header's dimensions against the file's size, and the number and stored bytes of the files. A
gzip stream is never decompressed past the bytes its header declares. The input tree may not
hold symbolic links (the input path itself may be one) or anything but regular files and
folders (a FIFO would block the read). Such an input is refused outright, in one line.

The parts (this package re-exports the names other code uses):

    problems   violations collected into one line; refusals of a hostile input
    files      the set's files opened safely: no links, no special files, bounded size
    checks     decoded arrays against the schema (shape, labels, range); rescaling
    idx        the IDX form
    folder     the folder-per-class form (PNG/JPEG headers checked before decoding)
    npz        the NPZ form
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import DataError
from pipelines.images.files import check_stored, open_regular
from pipelines.images.folder import IMAGE_SUFFIXES, folder_name, read_folder, walk
from pipelines.images.idx import IDX_IMAGES, idx_pair, read_idx, read_idx_array
from pipelines.images.npz import NPZ_IMAGES, NPZ_LABELS, read_npz
from pipelines.images.problems import image_limits, refuse
from schemas.image import ImageSchema

__all__ = ["IMAGE_SUFFIXES", "NPZ_IMAGES", "NPZ_LABELS", "ImageSet", "folder_name",
           "image_form", "image_set_fingerprint", "ingest_images", "input_files",
           "read_idx_array"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    """Ingested private images.

    Attributes:
        images: (N, H, W, C) uint8, pixel values rescaled to 0..255.
        labels: (N,) int64 indices into the schema's labels.
        files: the files read (for the ledger's fingerprint and messages).
        form: "idx", "folder" or "npz".
    """

    images: np.ndarray
    labels: np.ndarray
    files: tuple[Path, ...]
    form: str


def ingest_images(path: str | Path, schema: ImageSchema) -> ImageSet:
    """Reads an image set in any of the three forms (see the module docstring).

    Raises:
        DataError: one line listing every violation, naming files and fixes; or refusing
            a hostile input (a bomb, a link, a special file, past a limit) before decoding.
    """
    lim = image_limits()
    form = image_form(path)
    reader = {"idx": read_idx, "folder": read_folder, "npz": read_npz}[form]
    images, labels, files = reader(Path(path), schema, lim)
    if len(images) == 0:
        raise DataError(f"{path}: holds no images: point --input at a non-empty image set")
    log.info("read %d images from %s (%s)", len(images), path, form)
    return ImageSet(images=images, labels=labels, files=files, form=form)


def image_form(path: str | Path) -> str:
    """"idx", "folder" or "npz", from the path alone (nothing is read)."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".npz":
        return "npz"
    if p.is_file() and "idx" in p.name:
        return "idx"
    if p.is_dir():
        try:
            return "idx" if any(IDX_IMAGES.match(f.name) for f in p.iterdir()) else "folder"
        except OSError as exc:
            refuse(f"{p}: cannot read input: {exc.strerror or exc}")
    if not p.exists():
        raise DataError(f"{p}: cannot read input: no such file or directory")
    raise DataError(f"{p}: not an image set: give an IDX images file or a directory of IDX "
                    "files, a folder with one sub-folder of PNG/JPEG files per label, or an "
                    ".npz with arrays 'images' and 'labels'")


def input_files(path: str | Path) -> list[Path]:
    """The files an image set is read from (for the ledger's fingerprint). Refuses, before
    anything is read, what ``ingest_images`` would refuse from the tree alone: links,
    special files, more files or stored bytes than the limits allow."""
    p = Path(path)
    lim = image_limits()
    form = image_form(p)
    if form == "folder":
        return walk(p, lim).files
    files = [p] if form == "npz" else list(idx_pair(p))
    check_stored(p, sum(f.stat().st_size for f in files), lim)
    return files


def image_set_fingerprint(path: str | Path) -> str:
    """sha256 over the relative names and bytes of an image set's files: the data set's
    identity in the budget ledger (a copied set is the same data set, an edited one new)."""
    p = Path(path)
    root = p if p.is_dir() else p.parent
    digest = hashlib.sha256()
    for f in input_files(p):
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        fh, _ = open_regular(f, follow=f == p)
        with fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
