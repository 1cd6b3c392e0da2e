"""The NPZ form: ``numpy.savez`` arrays ``images`` (N, H, W) or (N, H, W, C), integer or
float pixel values, and ``labels`` (N,) as integers (indices into the schema's labels) or
strings (label names).

The zip's entries and both members' ``.npy`` headers (shape, dtype, compression ratio) are
checked before either array is decompressed; object arrays are never unpickled.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipelines.errors import DataError
from pipelines.images.checks import check_label_indices, check_range, check_shape, rescale
from pipelines.images.files import check_stored, open_regular
from pipelines.images.problems import (
    READ_ERRORS,
    SMALL,
    Problems,
    expands,
    refuse,
    too_big,
    too_many,
)
from schemas.image import ImageSchema
from schemas.limits import Limits

NPZ_IMAGES, NPZ_LABELS = "images", "labels"
_LISTED = 10  # member names quoted in a message
# Members of an NPZ (numpy.savez writes one per array): more are refused from the zip's end
# record, before zipfile builds an object for each entry of its central directory.
_MEMBERS = 1000


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
        refuse(f"{path}: array '{key}' is encrypted: save the arrays with numpy.savez")
    if info.file_size > SMALL and info.file_size > lim.compression * info.compress_size:
        expands(path, f"array '{key}'", info.file_size / max(info.compress_size, 1), lim)
    with zf.open(info) as member:
        version = fmt.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            refuse(f"{path}: array '{key}' is in .npy format version {version}: save it with "
                    "numpy.savez (format 1.0 or 2.0)")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(member)
        offset = member.tell()
    if dtype.hasobject:
        refuse(f"{path}: array '{key}' holds Python objects (a pickle, which is never "
                "loaded): save plain numeric or string arrays with numpy.savez")
    return _Member(info=info, shape=tuple(shape), dtype=dtype, offset=offset)


def read_npz(path: Path, schema: ImageSchema, lim: Limits):
    """Images and labels of an NPZ: the zip's entries and both members' ``.npy`` headers
    are checked before either array is decompressed (``allow_pickle`` stays False)."""
    fh, size = open_regular(path, follow=True)
    with fh:
        check_stored(path, size, lim)
        try:
            if (_zip_entries(fh) or 0) > _MEMBERS:
                refuse(f"{path}: holds more than {_MEMBERS:,} members, not the arrays of "
                        f"numpy.savez: save it with numpy.savez(path, {NPZ_IMAGES}=..., "
                        f"{NPZ_LABELS}=...)")
            with zipfile.ZipFile(fh) as zf:
                members: dict[str, zipfile.ZipInfo] = {}
                for info in zf.infolist():
                    members.setdefault(info.filename.removesuffix(".npy"), info)
                missing = [k for k in (NPZ_IMAGES, NPZ_LABELS) if k not in members]
                if missing:
                    held = list(members)[:_LISTED] + (["..."] if len(members) > _LISTED else [])
                    refuse(f"{path}: lacks array(s) {missing} (it holds {held}): save it with "
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
        except READ_ERRORS as exc:
            refuse(f"{path}: cannot read as NPZ ({type(exc).__name__}: {exc}): save it with "
                    "numpy.savez (object arrays are refused)", f"{path}: cannot read as NPZ: "
                    "save it with numpy.savez (object arrays are refused)")
    if images.ndim == 3:
        images = images[..., None]
    problems = Problems(schema, path)
    if labels.dtype.kind in "US":
        index = {label: i for i, label in enumerate(schema.labels)}
        names: np.ndarray = labels.astype(str)
        for i in (i for i, v in enumerate(names) if v not in index):
            problems.add("label", f"{path.name}: label '{names[i][:60]}' of image {i:,} is not "
                         "one of the labels", "fix the labels or add it to the schema",
                         f"{path.name}: a label is not a schema label")
        labels = np.array([index.get(v, -1) for v in names], np.int64)
    else:
        check_label_indices(labels.astype(np.int64), path, schema, problems)
    check_range(images, path, schema, problems)
    problems.raise_any()
    return rescale(images, schema), labels.astype(np.int64), (path,)


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
        too_many(path, lim)
    if images.nbytes + labels.nbytes > lim.image_bytes:
        too_big(path, images.nbytes + labels.nbytes, lim)
    for key, m in ((NPZ_IMAGES, images), (NPZ_LABELS, labels)):
        if m.info.file_size != m.offset + m.nbytes:
            refuse(f"{path}: array '{key}' holds {m.info.file_size - m.offset:,} data bytes, "
                    f"its header declares {m.nbytes:,}: save it again with numpy.savez",
                    f"{path}: array '{key}' is truncated or padded (its size does not match "
                    "its header): save it again with numpy.savez")
    problems = Problems(schema, path)
    if (images.dtype.kind not in "uif" or images.dtype.fields is not None
            or images.dtype.itemsize == 0):
        problems.add("dtype", f"{path.name}: array '{NPZ_IMAGES}' has dtype "
                     f"{str(images.dtype)[:60]}, not integer or float pixels", "convert it")
    shape = images.shape + (1,) if len(images.shape) == 3 else images.shape
    check_shape(shape, path, schema, problems)
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
