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
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.ingest import DataError
from schemas.image import ImageSchema

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NPZ_IMAGES, NPZ_LABELS = "images", "labels"
_IDX_UBYTE = 0x08


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


class _Problems:
    """Violations grouped by kind: the first occurrence, with its values, and a count."""

    def __init__(self, schema: ImageSchema):
        self.schema, self.kinds = schema, {}

    def add(self, kind: str, message: str, public: str) -> None:
        first = self.kinds.setdefault(kind, [message, public, 0])
        first[2] += 1

    def raise_any(self, source: Path) -> None:
        if not self.kinds:
            return
        full, public = [], []
        for message, redacted, count in self.kinds.values():
            more = f" ({count:,} in all)" if count > 1 else ""
            full.append(message + more)
            public.append(redacted)  # no count: it is computed from the private images
        head = f"{source} does not fit {self.schema.where}: "
        raise DataError(head + "; ".join(full), head + "; ".join(public))


def ingest_images(path: str | Path, schema: ImageSchema) -> ImageSet:
    """Reads an image set in any of the three forms (see the module docstring).

    Raises:
        DataError: one line listing every violation, naming files and fixes.
    """
    form = image_form(path)
    reader = {"idx": _read_idx, "folder": _read_folder, "npz": _read_npz}[form]
    images, labels, files = reader(Path(path), schema)
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
        return "idx" if any(_IDX_IMAGES.match(f.name) for f in p.iterdir()) else "folder"
    if not p.exists():
        raise DataError(f"{p}: cannot read input: no such file or directory")
    raise DataError(f"{p}: not an image set: give an IDX images file or a directory of IDX "
                    "files, a folder with one sub-folder of PNG/JPEG files per label, or an "
                    ".npz with arrays 'images' and 'labels'")


def input_files(path: str | Path) -> list[Path]:
    """The files an image set is read from (for the ledger's fingerprint)."""
    p = Path(path)
    form = image_form(p)
    if form == "npz":
        return [p]
    if form == "idx":
        return list(_idx_pair(p))
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def image_set_fingerprint(path: str | Path) -> str:
    """sha256 over the relative names and bytes of an image set's files: the data set's
    identity in the budget ledger (a copied set is the same data set, an edited one new)."""
    p = Path(path)
    root = p if p.is_dir() else p.parent
    digest = hashlib.sha256()
    for f in input_files(p):
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- IDX

_IDX_IMAGES = re.compile(r"^(.*)images[-.]idx3[-.]ubyte(\.gz)?$")


def _idx_pair(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        found = sorted(f for f in path.iterdir() if _IDX_IMAGES.match(f.name))
        train = [f for f in found if f.name.startswith("train")]
        if len(found) > 1 and len(train) != 1:
            raise DataError(f"{path}: holds several IDX image files "
                            f"({', '.join(f.name for f in found)}): give one of them as --input")
        path = train[0] if len(found) > 1 else found[0]
    elif not _IDX_IMAGES.match(path.name):
        raise DataError(f"{path}: not named like an IDX images file (<prefix>-images-idx3-"
                        "ubyte[.gz]): give the images file or the directory holding the pair")
    name = path.name.replace("images", "labels").replace("idx3", "idx1")
    candidates = [path.with_name(name), path.with_name(name.removesuffix(".gz")),
                  path.with_name(name if name.endswith(".gz") else name + ".gz")]
    labels = next((c for c in candidates if c.is_file()), None)
    if labels is None:
        raise DataError(f"{path}: no labels file beside it (looked for {candidates[0].name}): "
                        "put the IDX labels file next to the images file")
    return path, labels


def read_idx_array(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes as an array of its declared shape.

    Raises:
        DataError: not IDX, not unsigned bytes, or truncated.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc}): replace the file with an intact "
                        "copy") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE or not 1 <= raw[3] <= 4:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()}, "
                        "expected 0000080n): check the file is an IDX images/labels file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path}: truncated or padded IDX file ({len(body):,} data bytes, its "
                        f"header declares {int(np.prod(dims)):,}): replace it with an intact "
                        "copy")
    return np.frombuffer(bytearray(body), np.uint8).reshape(dims)  # writable, for torch


def _read_idx(path: Path, schema: ImageSchema):
    images_file, labels_file = _idx_pair(path)
    images, labels = read_idx_array(images_file), read_idx_array(labels_file)
    if images.ndim == 3:
        images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    problems = _Problems(schema)
    if labels.ndim != 1 or len(labels) != len(images):
        problems.add("count", f"{labels_file} holds {labels.shape} labels for {len(images):,} "
                     f"images in {images_file.name}: use the matching labels file",
                     f"{labels_file}: label count does not match {images_file.name}")
        problems.raise_any(images_file)
    _check_shape(images, images_file, schema, problems)
    _check_label_indices(labels, labels_file, schema, problems)
    if images.shape[1:] == schema.shape:
        _check_range(images, images_file, schema, problems)
    problems.raise_any(images_file)
    return _rescale(images, schema), labels.astype(np.int64), (images_file, labels_file)


# ------------------------------------------------------------------- shared checks

def _check_shape(images: np.ndarray, source: Path, schema: ImageSchema,
                 problems: _Problems) -> None:
    if images.ndim != 4 or images.shape[1:] != schema.shape:
        got = "x".join(map(str, images.shape[1:]))
        want = "x".join(map(str, schema.shape))
        msg = (f"{source}: images are {got} (height x width x channels), {schema.where} "
               f"declares {want}: resize/convert the images or fix height, width and channels "
               "in the schema")
        problems.add("shape", msg, msg)


def _check_label_indices(labels: np.ndarray, source: Path, schema: ImageSchema,
                         problems: _Problems) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= len(schema.labels)))
    for i in bad:
        problems.add("label", f"{source}: label {int(labels[i])} of image {i:,} is outside "
                     f"0..{len(schema.labels) - 1} ({len(schema.labels)} labels in "
                     f"{schema.where}): fix the labels or declare more labels",
                     f"{source}: a label is outside the schema's labels")


def _check_range(images: np.ndarray, source: Path, schema: ImageSchema,
                 problems: _Problems, names: list[str] | None = None) -> None:
    lo, hi = schema.value_range
    flat = images.reshape(len(images), -1)
    finite = np.isfinite(flat).all(axis=1) if flat.dtype.kind == "f" else np.ones(len(flat), bool)
    bad = np.flatnonzero(~finite | (np.nanmin(flat, axis=1) < lo) | (np.nanmax(flat, axis=1) > hi))
    for i in bad:
        where = names[i] if names else f"image {i:,}"
        value = flat[i][~np.isfinite(flat[i])][0] if not finite[i] else (
            flat[i].min() if flat[i].min() < lo else flat[i].max())
        problems.add("range", f"{source}: {where} has pixel value {value:g} outside the "
                     f"schema's value_range [{lo:g}, {hi:g}]: fix the data or the value_range "
                     f"in {schema.where}",
                     f"{source}: an image has a pixel value outside the schema's value_range")


def _rescale(images: np.ndarray, schema: ImageSchema) -> np.ndarray:
    lo, hi = schema.value_range
    if images.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        return np.ascontiguousarray(images)
    scaled = (images.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ folder per class

def folder_name(label: str) -> str:
    """The folder a label's images live in: the label, with ``/`` written as ``_``."""
    return label.replace("/", "_")


def _read_folder(root: Path, schema: ImageSchema):
    from PIL import Image, UnidentifiedImageError

    by_folder = {folder_name(label): i for i, label in enumerate(schema.labels)}
    by_folder.update({label: i for i, label in enumerate(schema.labels) if "/" not in label})
    problems = _Problems(schema)
    images, labels, files = [], [], []
    skipped = 0
    for sub in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not sub.is_dir():
            skipped += 1
            continue
        if sub.name not in by_folder:
            known = ", ".join(folder_name(v) for v in schema.labels)
            problems.add("folder", f"{sub}: folder '{sub.name}' is not one of the labels of "
                         f"{schema.where} ({known}): rename or remove the folder, or add the "
                         "label to the schema",
                         f"{sub}: a folder is not one of the schema's labels")
            continue
        for f in sorted(sub.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            try:
                with Image.open(f) as im:
                    im.load()
                    array = _pixels(im, f, schema, problems)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                problems.add("decode", f"{f}: cannot be decoded as PNG/JPEG ({exc}): replace "
                             "or remove the file", f"{f}: cannot be decoded as PNG/JPEG")
                continue
            if array is not None:
                images.append(array)
                labels.append(by_folder[sub.name])
                files.append(f)
    if skipped:
        log.warning("skipped %d entries of %s that are not PNG/JPEG files in a label folder",
                    skipped, root)
    if images:
        _check_range(np.stack(images), root, schema, problems,
                     names=[str(f.relative_to(root)) for f in files])
    problems.raise_any(root)
    stacked = np.stack(images) if images else np.zeros((0, *schema.shape), np.uint8)
    return _rescale(stacked, schema), np.asarray(labels, np.int64), tuple(files)


def _pixels(im, path: Path, schema: ImageSchema, problems: _Problems) -> np.ndarray | None:
    """(H, W, C) uint8 of one decoded file, or None after recording why it does not fit."""
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode not in ("L", "RGB"):
        problems.add(f"mode {im.mode}", f"{path}: PIL mode {im.mode} (alpha, 16-bit or float "
                     "pixels) is not 8-bit L or RGB: convert the images to 8-bit greyscale or "
                     "RGB", f"{path}: PIL mode {im.mode} is not 8-bit L or RGB")
        return None
    channels = 1 if im.mode == "L" else 3
    if channels != schema.channels:
        msg = (f"{path}: image has {channels} channel(s) (mode {im.mode}), {schema.where} "
               f"declares {schema.channels}: convert the images or fix 'channels'")
        problems.add("channels", msg, msg)
        return None
    if (im.height, im.width) != (schema.height, schema.width):
        msg = (f"{path}: image is {im.height}x{im.width} (height x width), {schema.where} "
               f"declares {schema.height}x{schema.width}: resize the images or fix 'height' "
               "and 'width'")
        problems.add("size", msg, msg)
        return None
    return np.asarray(im, np.uint8).reshape(schema.shape)


# ------------------------------------------------------------------------------- NPZ

def _read_npz(path: Path, schema: ImageSchema):
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (NPZ_IMAGES, NPZ_LABELS) if k not in npz.files]
            if missing:
                raise DataError(f"{path}: lacks array(s) {missing} (it holds {npz.files}): save "
                                f"it with numpy.savez(path, {NPZ_IMAGES}=..., {NPZ_LABELS}=...)")
            images, labels = npz[NPZ_IMAGES], npz[NPZ_LABELS]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read as NPZ ({exc}): save it with numpy.savez "
                        "(object arrays are refused)") from None
    problems = _Problems(schema)
    if images.dtype.kind not in "uif":
        problems.add("dtype", f"{path}: array '{NPZ_IMAGES}' has dtype {images.dtype}, not "
                     "integer or float pixels: convert it", f"{path}: bad images dtype")
    if images.ndim == 3:
        images = images[..., None]
    _check_shape(images, path, schema, problems)
    if labels.ndim != 1 or len(labels) != len(images):
        problems.add("count", f"{path}: '{NPZ_LABELS}' has shape {labels.shape}, expected "
                     f"({len(images)},), one label per image: fix the arrays",
                     f"{path}: label count does not match the images")
        problems.raise_any(path)
    if labels.dtype.kind in "US":
        index = {label: i for i, label in enumerate(schema.labels)}
        names = labels.astype(str)
        for i in (i for i, v in enumerate(names) if v not in index):
            problems.add("label", f"{path}: label '{names[i]}' of image {i:,} is not one of "
                         f"the labels of {schema.where}: fix the labels or add it to the schema",
                         f"{path}: a label is not a schema label")
        labels = np.array([index.get(v, -1) for v in names], np.int64)
    elif labels.dtype.kind in "iu":
        _check_label_indices(labels.astype(np.int64), path, schema, problems)
    else:
        problems.add("ltype", f"{path}: '{NPZ_LABELS}' has dtype {labels.dtype}: give integer "
                     "indices into the schema's labels or label names",
                     f"{path}: bad labels dtype")
    if "dtype" not in problems.kinds and "shape" not in problems.kinds:
        _check_range(images, path, schema, problems)
    problems.raise_any(path)
    return _rescale(images, schema), labels.astype(np.int64), (path,)
