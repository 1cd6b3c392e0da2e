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
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import math
import os
import re
import stat
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn, Self

import numpy as np

from pipelines.ingest import DataError
from schemas.image import ImageSchema
from schemas.limits import LimitError, Limits, bounded, limits, variable

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NPZ_IMAGES, NPZ_LABELS = "images", "labels"
_IDX_UBYTE = 0x08
# A member or file that decodes to at most this many bytes is not held to the compression
# limit: it decodes in milliseconds, and small arrays (sorted labels) compress a thousandfold.
_SMALL = 16 * 2**20
# Room for metadata (ICC profiles, EXIF, text chunks, headers) in the stored size of a file
# beyond what its pixels can take; a larger file is refused before it is decoded.
_METADATA = 16 * 2**20
_LISTED = 10  # member names quoted in a message
# Chunks of a PNG besides its pixel data: real files have a handful, PIL parses each in
# Python (a 1 MB file of 100,000 empty chunks takes 2 seconds to open).
_PNG_CHUNKS = 1000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Members of an NPZ (numpy.savez writes one per array): more are refused from the zip's end
# record, before zipfile builds an object for each entry of its central directory.
_MEMBERS = 1000
# What zipfile, zlib, gzip and numpy's header parser raise on hostile bytes (DataError, a
# ValueError, is re-raised before these are caught).
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, RuntimeError, NotImplementedError, OverflowError,
    struct.error, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile)
try:
    import lzma

    _READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


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
    """Violations grouped by kind: the first occurrence, with its values, and a count.

    The error line names the source and the schema once; each problem names its file
    relative to the source, and drops its remedy where the line has no room for it (the last
    problem keeps its remedy longest): every problem fits in the one bounded line.
    """

    def __init__(self, schema: ImageSchema, source: Path):
        self.schema, self.source, self.kinds = schema, source, {}

    def name(self, path: Path) -> str:
        """How a problem names ``path``: relative to the source (or the folder holding it)."""
        if path == self.source:
            return path.name
        for base in (self.source, self.source.parent):
            if path.is_relative_to(base):
                return str(path.relative_to(base))
        return str(path)

    def add(self, kind: str, what: str, fix: str, public: str | None = None) -> None:
        """Records a violation: ``what`` may quote the data; ``public`` (default ``what``)
        may not (no value, index or count read from the private images)."""
        first = self.kinds.setdefault(kind, [what, what if public is None else public, fix, 0])
        first[3] += 1

    def raise_any(self) -> None:
        if not self.kinds:
            return
        schema = Path(self.schema.path).name if self.schema.path else self.schema.where
        head = f"{self.source} does not fit {schema}: "
        full = [(what, fix, f" ({count:,} in all)" if count > 1 else "")
                for what, _, fix, count in self.kinds.values()]
        public = [(redacted, fix, "")  # no count: it is computed from the private images
                  for _, redacted, fix, _ in self.kinds.values()]
        raise DataError(_fitted(head, full), _fitted(head, public))


def _fitted(head: str, parts: list[tuple[str, str, str]]) -> str:
    """``head`` and the (what, fix, more) parts as one line: with every fix if it fits the
    line limit, else with the last one's only, else with none (``DataError`` bounds it)."""
    try:
        chars = limits().error_chars
    except LimitError:
        chars = Limits.error_chars
    for keep in (len(parts), 1, 0):
        line = head + "; ".join(
            f"{what}: {fix}{more}" if i >= len(parts) - keep else f"{what}{more}"
            for i, (what, fix, more) in enumerate(parts))
        if len(line) <= chars:
            break
    return line


# ------------------------------------------------------------ refusals, before decoding

def _refuse(message: str, public: str | None = None) -> NoReturn:
    """Raises the one-line DataError of an input refused outright; ``public`` is the message
    without anything computed from the private images (counts, sizes), default ``message``."""
    raise DataError(bounded(message), bounded(message if public is None else public))


def _limits() -> Limits:
    """The limits in force; a limit variable that is not a positive integer is a DataError."""
    try:
        return limits()
    except LimitError as exc:
        _refuse(str(exc))


def _too_many(source: Path, lim: Limits) -> NoReturn:
    _refuse(f"{source}: holds more than {lim.images:,} images, the limit: give a smaller set, "
            f"or raise {variable('images')} if this is meant")


def _too_big(source: Path, declared: int, lim: Limits, what: str = "decode to") -> NoReturn:
    tail = (f"more than the limit of {lim.image_bytes:,} bytes: give a smaller set, or raise "
            f"{variable('image_bytes')} if this is meant")
    _refuse(f"{source}: its images {what} {declared:,} bytes, {tail}",
            f"{source}: its images {what} {tail}")


def _expands(source: Path, member: str, ratio: float, lim: Limits) -> NoReturn:
    fix = (f"a zip or gzip bomb? Store the data uncompressed, or raise "
           f"{variable('compression')} if this is meant")
    _refuse(f"{source}: {member} expands {ratio:,.0f}-fold when decompressed, more than the "
            f"limit of {lim.compression:,}: {fix}",
            f"{source}: {member} expands more than {lim.compression:,}-fold when "
            f"decompressed: {fix}")


def _symlink(path: Path) -> NoReturn:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    fix = ("an image set must hold its files itself: copy the files in, or give the link's "
           "target as --input")
    _refuse(f"{path}: is a symbolic link (to {target}): {fix}",
            f"{path}: is a symbolic link: {fix}")


def _not_regular(path: Path, st: os.stat_result) -> NoReturn:
    if stat.S_ISDIR(st.st_mode):
        _refuse(f"{path}: is a folder where a file is expected: remove or rename it")
    _refuse(f"{path}: is not a regular file (a FIFO, socket or device): remove it from the "
            "image set")


def _check_file(path: Path) -> None:
    """Refuses an input file that is a symbolic link or not a regular file (never opens it)."""
    try:
        st = path.lstat()
    except OSError as exc:
        _refuse(f"{path}: cannot read input: {exc.strerror or exc}")
    if stat.S_ISLNK(st.st_mode):
        _symlink(path)
    if not stat.S_ISREG(st.st_mode):
        _not_regular(path, st)


def _open_regular(path: Path, follow: bool = False) -> tuple[BinaryIO, int]:
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
            _symlink(path)
        _refuse(f"{path}: cannot read input: {exc.strerror or exc}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        _not_regular(path, st)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st.st_size


def _check_stored(source: Path, stored: int, lim: Limits) -> None:
    """Refuses files that hold more bytes than the images they may decode to (plus room for
    headers and metadata), before they are hashed or read."""
    if stored > lim.image_bytes + _METADATA:
        _too_big(source, stored, lim, "are stored in")


# ------------------------------------------------------------------------- entry points

def ingest_images(path: str | Path, schema: ImageSchema) -> ImageSet:
    """Reads an image set in any of the three forms (see the module docstring).

    Raises:
        DataError: one line listing every violation, naming files and fixes; or refusing
            a hostile input (a bomb, a link, a special file, past a limit) before decoding.
    """
    lim = _limits()
    form = image_form(path)
    reader = {"idx": _read_idx, "folder": _read_folder, "npz": _read_npz}[form]
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
            return "idx" if any(_IDX_IMAGES.match(f.name) for f in p.iterdir()) else "folder"
        except OSError as exc:
            _refuse(f"{p}: cannot read input: {exc.strerror or exc}")
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
    lim = _limits()
    form = image_form(p)
    if form == "folder":
        return _walk(p, lim).files
    files = [p] if form == "npz" else list(_idx_pair(p))
    _check_stored(p, sum(f.stat().st_size for f in files), lim)
    return files


def image_set_fingerprint(path: str | Path) -> str:
    """sha256 over the relative names and bytes of an image set's files: the data set's
    identity in the budget ledger (a copied set is the same data set, an edited one new)."""
    p = Path(path)
    root = p if p.is_dir() else p.parent
    digest = hashlib.sha256()
    for f in input_files(p):
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        fh, _ = _open_regular(f, follow=f == p)
        with fh:
            while block := fh.read(1 << 20):
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
        _check_file(path)  # inside the input folder: no link, no FIFO
    elif not _IDX_IMAGES.match(path.name):
        raise DataError(f"{path}: not named like an IDX images file (<prefix>-images-idx3-"
                        "ubyte[.gz]): give the images file or the directory holding the pair")
    name = path.name.replace("images", "labels").replace("idx3", "idx1")
    candidates = [path.with_name(name), path.with_name(name.removesuffix(".gz")),
                  path.with_name(name if name.endswith(".gz") else name + ".gz")]
    labels = next((c for c in candidates if os.path.lexists(c)), None)
    if labels is None:
        raise DataError(f"{path}: no labels file beside it (looked for {candidates[0].name}): "
                        "put the IDX labels file next to the images file")
    _check_file(labels)
    return path, labels


class _IdxFile:
    """An IDX file of unsigned bytes, open with its header read and its body not yet: the
    declared dimensions are checked before a byte of the body is decompressed."""

    def __init__(self, path: Path, follow: bool = False):
        self.path = path
        self.gz = path.name.endswith(".gz")
        self._raw, self.stored = _open_regular(path, follow)
        self._stream: BinaryIO = self._raw
        try:
            if self.gz:
                self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
            head = self._stream.read(4)
            if (len(head) < 4 or head[:2] != b"\0\0" or head[2] != _IDX_UBYTE
                    or not 1 <= head[3] <= 4):
                _refuse(f"{path}: not an IDX file of unsigned bytes (magic {head[:4].hex()}, "
                        "expected 0000080n): check the file is an IDX images/labels file")
            raw_dims = self._stream.read(4 * head[3])
        except DataError:
            self.close()
            raise
        except _READ_ERRORS as exc:
            self.close()
            self._unreadable(exc)
        if len(raw_dims) < 4 * head[3]:
            self.close()
            self._broken("it ends inside its header")
        self.dims: tuple[int, ...] = struct.unpack(f">{head[3]}I", raw_dims)
        self.header = 4 + 4 * head[3]
        self.nbytes = math.prod(self.dims)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        self._raw.close()

    def _unreadable(self, exc: BaseException) -> NoReturn:
        _refuse(f"{self.path}: cannot read ({exc}): replace the file with an intact copy",
                f"{self.path}: cannot read: replace the file with an intact copy")

    def _broken(self, detail: str) -> NoReturn:
        _refuse(f"{self.path}: truncated or padded IDX file ({detail}): replace it with an "
                "intact copy", f"{self.path}: truncated or padded IDX file (its size does not "
                "match its header): replace it with an intact copy")

    def check(self, lim: Limits) -> None:
        """Refuses, from the header alone, more images or bytes than the limits allow, a
        plain file whose size is not what its header declares, and a gzip bomb."""
        if self.dims[0] > lim.images:
            _too_many(self.path, lim)
        if self.nbytes > lim.image_bytes:
            _too_big(self.path, self.nbytes, lim)
        if not self.gz and self.stored != self.header + self.nbytes:
            self._broken(f"{self.stored - self.header:,} data bytes, its header declares "
                         f"{self.nbytes:,}")
        if self.gz and self.nbytes > _SMALL and self.nbytes > lim.compression * self.stored:
            _expands(self.path, "its gzip stream", self.nbytes / max(self.stored, 1), lim)

    def body(self) -> np.ndarray:
        """The body as an array of the declared shape (writable, for torch); never
        decompresses more than one byte past what the header declares."""
        buffer = np.empty(self.nbytes + 1, np.uint8)
        view, got = memoryview(buffer), 0
        try:
            while got < len(buffer):
                n = self._stream.readinto(view[got:])
                if not n:
                    break
                got += n
        except _READ_ERRORS as exc:
            self._unreadable(exc)
        finally:
            view.release()
        if got < self.nbytes:
            self._broken(f"{got:,} data bytes, its header declares {self.nbytes:,}")
        if got > self.nbytes:
            self._broken(f"more data bytes than the {self.nbytes:,} its header declares")
        return buffer[:self.nbytes].reshape(self.dims)


def read_idx_array(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes as an array of its declared shape.

    Raises:
        DataError: not IDX, not unsigned bytes, truncated, or past a limit (checked from the
            header, before the body is read).
    """
    lim = _limits()
    with _IdxFile(Path(path), follow=True) as idx:
        idx.check(lim)
        return idx.body()


def _read_idx(path: Path, schema: ImageSchema, lim: Limits):
    """Images and labels of an IDX pair: both headers are checked (limits, sizes, the
    schema's shape, one label per image) before either body is read."""
    images_file, labels_file = _idx_pair(path)
    problems = _Problems(schema, images_file)
    with _IdxFile(images_file, follow=images_file == path) as images, \
            _IdxFile(labels_file) as labels:
        images.check(lim)
        labels.check(lim)
        if images.nbytes + labels.nbytes > lim.image_bytes:
            _too_big(images_file, images.nbytes + labels.nbytes, lim)
        if len(labels.dims) != 1 or labels.dims[0] != images.dims[0]:
            labels_name = problems.name(labels_file)
            problems.add("count", f"{labels_name} holds {labels.dims} labels for "
                         f"{images.dims[0]:,} images", "use the matching labels file",
                         f"{labels_name}: label count does not match the images")
            problems.raise_any()
        shape = images.dims + (1,) if len(images.dims) == 3 else images.dims
        _check_shape(shape, images_file, schema, problems)
        problems.raise_any()  # before the body of a wrong shape is read
        pixels, indices = images.body().reshape(shape), labels.body()
    _check_label_indices(indices, labels_file, schema, problems)
    _check_range(pixels, images_file, schema, problems)
    problems.raise_any()
    return _rescale(pixels, schema), indices.astype(np.int64), (images_file, labels_file)


# ------------------------------------------------------------------- shared checks

def _check_shape(shape: tuple[int, ...], source: Path, schema: ImageSchema,
                 problems: _Problems) -> None:
    """``shape`` is (N, H, W, C) as declared or read."""
    if len(shape) != 4 or tuple(shape[1:]) != schema.shape:
        got = "x".join(map(str, shape[1:])) or f"{len(shape)}-d"
        want = "x".join(map(str, schema.shape))
        problems.add("shape", f"{problems.name(source)}: images are {got} (height x width x "
                     f"channels), the schema declares {want}", "resize/convert the images or "
                     "fix height, width and channels in the schema")


def _check_label_indices(labels: np.ndarray, source: Path, schema: ImageSchema,
                         problems: _Problems) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= len(schema.labels)))
    for i in bad:
        name = problems.name(source)
        problems.add("label", f"{name}: label {int(labels[i])} of image {i:,} is outside "
                     f"0..{len(schema.labels) - 1} ({len(schema.labels)} labels)",
                     "fix the labels or declare more labels",
                     f"{name}: a label is outside the schema's labels")


def _check_range(images: np.ndarray, source: Path, schema: ImageSchema,
                 problems: _Problems, names: list[str] | None = None) -> None:
    if len(images) == 0 or images.size == 0:
        return
    lo, hi = schema.value_range
    flat = images.reshape(len(images), -1)
    finite = np.isfinite(flat).all(axis=1) if flat.dtype.kind == "f" else np.ones(len(flat), bool)
    with warnings.catch_warnings():  # an all-NaN image is reported below, not warned about
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(flat, axis=1), np.nanmax(flat, axis=1)
    bad = np.flatnonzero(~finite | (low < lo) | (high > hi))
    for i in bad:
        name = problems.name(source)
        where = names[i] if names else f"{name}: image {i:,}"
        value = flat[i][~np.isfinite(flat[i])][0] if not finite[i] else (
            flat[i].min() if flat[i].min() < lo else flat[i].max())
        problems.add("range", f"{where} has pixel value {value:g} outside the schema's "
                     f"value_range [{lo:g}, {hi:g}]", "fix the data or the value_range",
                     f"{name}: an image has a pixel value outside the schema's value_range")


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


@dataclass(frozen=True)
class _Tree:
    """What a walk of a folder-per-class input found (hidden entries are left out).

    Attributes:
        files: every PNG/JPEG file, sorted (the top level's included, for the fingerprint).
        folders: the top level's folders, sorted.
        skipped: files that are not PNG/JPEG.
    """

    files: list[Path]
    folders: list[Path]
    skipped: int


def _walk(root: Path, lim: Limits) -> _Tree:
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
                        _symlink(path)
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(path)
                        if folder == root:
                            folders.append(path)
                    elif not entry.is_file(follow_symlinks=False):
                        _not_regular(path, entry.stat(follow_symlinks=False))
                    elif path.suffix.lower() in IMAGE_SUFFIXES:
                        files.append(path)
                        if len(files) > lim.images:
                            _too_many(root, lim)
                        stored += entry.stat(follow_symlinks=False).st_size
                        _check_stored(root, stored, lim)
                    else:
                        skipped += 1
        except OSError as exc:
            _refuse(f"{folder}: cannot read input: {exc.strerror or exc}")
    return _Tree(files=sorted(files), folders=sorted(folders), skipped=skipped)


def _read_folder(root: Path, schema: ImageSchema, lim: Limits):
    """Images of a folder per label: the tree is walked (no links, no special files, within
    the limits) and each file's header checked before its pixels are decoded."""
    by_folder = {folder_name(label): i for i, label in enumerate(schema.labels)}
    by_folder.update({label: i for i, label in enumerate(schema.labels) if "/" not in label})
    tree = _walk(root, lim)
    problems = _Problems(schema, root)
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
        _too_big(root, declared, lim)
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
        _check_range(np.stack(images), root, schema, problems,
                     names=[problems.name(f) for f in files])
    problems.raise_any()
    stacked = np.stack(images) if images else np.zeros((0, *schema.shape), np.uint8)
    return _rescale(stacked, schema), np.asarray(labels, np.int64), tuple(files)


def _decode(path: Path, schema: ImageSchema, lim: Limits,
            problems: _Problems) -> np.ndarray | None:
    """(H, W, C) uint8 of one PNG/JPEG file, or None after recording why it does not fit.
    Only the header is read until it declares the schema's size, channels and an 8-bit
    mode, within the pixel limit; only PNG and JPEG decoders are ever tried."""
    from PIL import Image

    name = problems.name(path)
    fh, size = _open_regular(path)
    with fh:
        if size > 2 * math.prod(schema.shape) + _METADATA:
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


def _undecodable(name: str, exc: BaseException, problems: _Problems) -> None:
    from PIL import UnidentifiedImageError

    # PIL's own words name the file object; what failed is said without them
    why = "" if isinstance(exc, UnidentifiedImageError) else f" ({str(exc)[:40]})"
    problems.add("decode", f"{name}: cannot be decoded as PNG/JPEG{why}",
                 "replace or remove the file", f"{name}: cannot be decoded as PNG/JPEG")


def _header_fits(im, name: str, schema: ImageSchema, lim: Limits,
                 problems: _Problems) -> bool:
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


# ------------------------------------------------------------------------------- NPZ

@dataclass(frozen=True)
class _Member:
    """A ``.npy`` member of an NPZ, as its zip entry and its header declare it."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # bytes of the .npy header

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _npy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path,
                lim: Limits) -> _Member:
    """Reads one member's ``.npy`` header (a few hundred bytes decompressed), after its zip
    entry's compression ratio is checked; refuses an encrypted member and object arrays."""
    fmt = np.lib.format
    if info.flag_bits & 0x1:
        _refuse(f"{path}: array '{key}' is encrypted: save the arrays with numpy.savez")
    if info.file_size > _SMALL and info.file_size > lim.compression * info.compress_size:
        _expands(path, f"array '{key}'", info.file_size / max(info.compress_size, 1), lim)
    with zf.open(info) as member:
        version = fmt.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            _refuse(f"{path}: array '{key}' is in .npy format version {version}: save it with "
                    "numpy.savez (format 1.0 or 2.0)")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(member)
        offset = member.tell()
    if dtype.hasobject:
        _refuse(f"{path}: array '{key}' holds Python objects (a pickle, which is never "
                "loaded): save plain numeric or string arrays with numpy.savez")
    return _Member(info=info, shape=tuple(shape), dtype=dtype, offset=offset)


def _read_npz(path: Path, schema: ImageSchema, lim: Limits):
    """Images and labels of an NPZ: the zip's entries and both members' ``.npy`` headers
    are checked before either array is decompressed (``allow_pickle`` stays False)."""
    fh, size = _open_regular(path, follow=True)
    with fh:
        _check_stored(path, size, lim)
        try:
            if (_zip_entries(fh) or 0) > _MEMBERS:
                _refuse(f"{path}: holds more than {_MEMBERS:,} members, not the arrays of "
                        f"numpy.savez: save it with numpy.savez(path, {NPZ_IMAGES}=..., "
                        f"{NPZ_LABELS}=...)")
            with zipfile.ZipFile(fh) as zf:
                members = {}
                for info in zf.infolist():
                    members.setdefault(info.filename.removesuffix(".npy"), info)
                missing = [k for k in (NPZ_IMAGES, NPZ_LABELS) if k not in members]
                if missing:
                    held = list(members)[:_LISTED] + (["..."] if len(members) > _LISTED else [])
                    _refuse(f"{path}: lacks array(s) {missing} (it holds {held}): save it with "
                            f"numpy.savez(path, {NPZ_IMAGES}=..., {NPZ_LABELS}=...)")
                images_m, labels_m = (_npy_member(zf, members[k], k, path, lim)
                                      for k in (NPZ_IMAGES, NPZ_LABELS))
                _check_npz_members(path, images_m, labels_m, schema, lim)
                with zf.open(images_m.info) as member:
                    images = np.lib.format.read_array(member, allow_pickle=False)
                with zf.open(labels_m.info) as member:
                    labels = np.lib.format.read_array(member, allow_pickle=False)
        except DataError:
            raise
        except _READ_ERRORS as exc:
            _refuse(f"{path}: cannot read as NPZ ({type(exc).__name__}: {exc}): save it with "
                    "numpy.savez (object arrays are refused)", f"{path}: cannot read as NPZ: "
                    "save it with numpy.savez (object arrays are refused)")
    if images.ndim == 3:
        images = images[..., None]
    problems = _Problems(schema, path)
    if labels.dtype.kind in "US":
        index = {label: i for i, label in enumerate(schema.labels)}
        names = labels.astype(str)
        for i in (i for i, v in enumerate(names) if v not in index):
            problems.add("label", f"{path.name}: label '{names[i][:60]}' of image {i:,} is not "
                         "one of the labels", "fix the labels or add it to the schema",
                         f"{path.name}: a label is not a schema label")
        labels = np.array([index.get(v, -1) for v in names], np.int64)
    else:
        _check_label_indices(labels.astype(np.int64), path, schema, problems)
    _check_range(images, path, schema, problems)
    problems.raise_any()
    return _rescale(images, schema), labels.astype(np.int64), (path,)


def _zip_entries(fh: BinaryIO) -> int | None:
    """The number of entries a zip's end record declares (None if there is none: zipfile
    then says why), read from the end of the file alone."""
    end_record = getattr(zipfile, "_EndRecData", None)  # stable, but not public
    record = end_record(fh) if end_record is not None else None
    fh.seek(0)
    return record[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)] if record else None


def _check_npz_members(path: Path, images: _Member, labels: _Member, schema: ImageSchema,
                       lim: Limits) -> None:
    """Refuses, from the members' headers alone, what cannot be read or does not fit: past a
    limit, a member whose size is not what its header declares, the wrong shape or dtype."""
    count = images.shape[0] if images.shape else 0
    if count > lim.images:
        _too_many(path, lim)
    if images.nbytes + labels.nbytes > lim.image_bytes:
        _too_big(path, images.nbytes + labels.nbytes, lim)
    for key, m in ((NPZ_IMAGES, images), (NPZ_LABELS, labels)):
        if m.info.file_size != m.offset + m.nbytes:
            _refuse(f"{path}: array '{key}' holds {m.info.file_size - m.offset:,} data bytes, "
                    f"its header declares {m.nbytes:,}: save it again with numpy.savez",
                    f"{path}: array '{key}' is truncated or padded (its size does not match "
                    "its header): save it again with numpy.savez")
    problems = _Problems(schema, path)
    if (images.dtype.kind not in "uif" or images.dtype.fields is not None
            or images.dtype.itemsize == 0):
        problems.add("dtype", f"{path.name}: array '{NPZ_IMAGES}' has dtype "
                     f"{str(images.dtype)[:60]}, not integer or float pixels", "convert it")
    shape = images.shape + (1,) if len(images.shape) == 3 else images.shape
    _check_shape(shape, path, schema, problems)
    if labels.shape != (count,):
        problems.add("count", f"{path.name}: '{NPZ_LABELS}' has shape {labels.shape}, "
                     f"expected ({count},), one label per image", "fix the arrays",
                     f"{path.name}: label count does not match the images")
    if (labels.dtype.kind not in "iuUS" or labels.dtype.fields is not None
            or labels.dtype.itemsize == 0):
        problems.add("ltype", f"{path.name}: '{NPZ_LABELS}' has dtype "
                     f"{str(labels.dtype)[:60]}", "give integer indices into the schema's "
                     "labels or label names")
    problems.raise_any()  # before a byte of the arrays is decompressed
