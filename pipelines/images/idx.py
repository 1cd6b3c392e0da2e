"""The IDX form (MNIST, Fashion-MNIST), gzipped or not: an images file and its labels file.

A directory holding ``<prefix>-images-idx3-ubyte[.gz]`` and ``<prefix>-labels-idx1-ubyte[.gz]``
(``train-`` is taken when several prefixes are present), or the images file itself, with the
labels file found beside it by the standard naming. Both headers are checked (limits, sizes,
the schema's shape, one label per image) before either body is read, and a gzip stream is
never decompressed past the bytes its header declares.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import struct
from pathlib import Path
from typing import NoReturn, Self

import numpy as np

from pipelines.errors import DataError
from pipelines.images.checks import check_label_indices, check_range, check_shape, rescale
from pipelines.images.files import check_file, open_regular
from pipelines.images.problems import (
    READ_ERRORS,
    SMALL,
    Problems,
    expands,
    image_limits,
    refuse,
    too_big,
    too_many,
)
from schemas.image import ImageSchema
from schemas.limits import Limits

_IDX_UBYTE = 0x08
IDX_IMAGES = re.compile(r"^(.*)images[-.]idx3[-.]ubyte(\.gz)?$")


def idx_pair(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        found = sorted(f for f in path.iterdir() if IDX_IMAGES.match(f.name))
        train = [f for f in found if f.name.startswith("train")]
        if len(found) > 1 and len(train) != 1:
            raise DataError(f"{path}: holds several IDX image files "
                            f"({', '.join(f.name for f in found)}): give one of them as --input")
        path = train[0] if len(found) > 1 else found[0]
        check_file(path)  # inside the input folder: no link, no FIFO
    elif not IDX_IMAGES.match(path.name):
        raise DataError(f"{path}: not named like an IDX images file (<prefix>-images-idx3-"
                        "ubyte[.gz]): give the images file or the directory holding the pair")
    name = path.name.replace("images", "labels").replace("idx3", "idx1")
    candidates = [path.with_name(name), path.with_name(name.removesuffix(".gz")),
                  path.with_name(name if name.endswith(".gz") else name + ".gz")]
    labels = next((c for c in candidates if os.path.lexists(c)), None)
    if labels is None:
        raise DataError(f"{path}: no labels file beside it (looked for {candidates[0].name}): "
                        "put the IDX labels file next to the images file")
    check_file(labels)
    return path, labels


class IdxFile:
    """An IDX file of unsigned bytes, open with its header read and its body not yet: the
    declared dimensions are checked before a byte of the body is decompressed."""

    def __init__(self, path: Path, follow: bool = False):
        self.path = path
        self.gz = path.name.endswith(".gz")
        self._raw, self.stored = open_regular(path, follow)
        self._stream: io.BufferedIOBase = self._raw
        try:
            if self.gz:
                self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
            head = self._stream.read(4)
            if (len(head) < 4 or head[:2] != b"\0\0" or head[2] != _IDX_UBYTE
                    or not 1 <= head[3] <= 4):
                refuse(f"{path}: not an IDX file of unsigned bytes (magic {head[:4].hex()}, "
                        "expected 0000080n): check the file is an IDX images/labels file")
            raw_dims = self._stream.read(4 * head[3])
        except DataError:
            self.close()
            raise
        except READ_ERRORS as exc:
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
        refuse(f"{self.path}: cannot read ({exc}): replace the file with an intact copy",
                f"{self.path}: cannot read: replace the file with an intact copy")

    def _broken(self, detail: str) -> NoReturn:
        refuse(f"{self.path}: truncated or padded IDX file ({detail}): replace it with an "
                "intact copy", f"{self.path}: truncated or padded IDX file (its size does not "
                "match its header): replace it with an intact copy")

    def check(self, lim: Limits) -> None:
        """Refuses, from the header alone, more images or bytes than the limits allow, a
        plain file whose size is not what its header declares, and a gzip bomb."""
        if self.dims[0] > lim.images:
            too_many(self.path, lim)
        if self.nbytes > lim.image_bytes:
            too_big(self.path, self.nbytes, lim)
        if not self.gz and self.stored != self.header + self.nbytes:
            self._broken(f"{self.stored - self.header:,} data bytes, its header declares "
                         f"{self.nbytes:,}")
        if self.gz and self.nbytes > SMALL and self.nbytes > lim.compression * self.stored:
            expands(self.path, "its gzip stream", self.nbytes / max(self.stored, 1), lim)

    def body(self) -> np.ndarray:
        """The body as an array of the declared shape (writable, for torch); never
        decompresses more than one byte past what the header declares."""
        buffer: np.ndarray = np.empty(self.nbytes + 1, np.uint8)
        # numpy declares ndarray.__buffer__ for Python 3.12+ only (mypy targets 3.11)
        view, got = memoryview(buffer), 0  # type: ignore[arg-type]
        try:
            while got < len(buffer):
                n = self._stream.readinto(view[got:])
                if not n:
                    break
                got += n
        except READ_ERRORS as exc:
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
    lim = image_limits()
    with IdxFile(Path(path), follow=True) as idx:
        idx.check(lim)
        return idx.body()


def read_idx(path: Path, schema: ImageSchema, lim: Limits):
    """Images and labels of an IDX pair: both headers are checked (limits, sizes, the
    schema's shape, one label per image) before either body is read."""
    images_file, labels_file = idx_pair(path)
    problems = Problems(schema, images_file)
    with IdxFile(images_file, follow=images_file == path) as images, \
            IdxFile(labels_file) as labels:
        images.check(lim)
        labels.check(lim)
        if images.nbytes + labels.nbytes > lim.image_bytes:
            too_big(images_file, images.nbytes + labels.nbytes, lim)
        if len(labels.dims) != 1 or labels.dims[0] != images.dims[0]:
            labels_name = problems.name(labels_file)
            problems.add("count", f"{labels_name} holds {labels.dims} labels for "
                         f"{images.dims[0]:,} images", "use the matching labels file",
                         f"{labels_name}: label count does not match the images")
            problems.raise_any()
        shape = images.dims + (1,) if len(images.dims) == 3 else images.dims
        check_shape(shape, images_file, schema, problems)
        problems.raise_any()  # before the body of a wrong shape is read
        pixels, indices = images.body().reshape(shape), labels.body()
    check_label_indices(indices, labels_file, schema, problems)
    check_range(pixels, images_file, schema, problems)
    problems.raise_any()
    return rescale(pixels, schema), indices.astype(np.int64), (images_file, labels_file)
