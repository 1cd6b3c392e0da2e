"""The image release: a Parquet table of PNG-encoded images, a contact sheet, and checks.

One row per image, readable by pandas, DuckDB, Spark and Hugging Face-style loaders:

    image   binary                     the image as PNG bytes (8-bit, mode L or RGB)
    width   int32                      pixels
    height  int32                      pixels
    mode    dictionary<int32, string>  "L" (greyscale) or "RGB"
    label   dictionary<int32, string>  the label name, dictionary = the schema's labels in order

The release directory is written by ``pipelines.publish.publish_table`` (atomic, fsynced),
with ``contact_sheet.png`` (a grid of images per label) beside ``data.parquet``. The table's
columns and PNG encoding are ``pipelines.image_format``; its checks, before publishing, are
``pipelines.validate.images``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from pipelines.image_format import COLUMNS, encode_png
from pipelines.publish import footer_metadata
from schemas.image import ImageSchema

CONTACT_SHEET = "contact_sheet.png"


def _dictionary(codes: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                          pa.array(names, pa.string()))


def image_table(images: np.ndarray, labels: np.ndarray, schema: ImageSchema,
                metadata: Mapping[str, str]) -> pa.Table:
    """The Arrow table of an image release.

    Args:
        images: uint8 (N, H, W, C) synthetic images of the schema's shape.
        labels: int (N,) indices into ``schema.labels``.
        schema: the image schema (its labels become the label column's dictionary).
        metadata: string key-values for the footer, as for ``pipelines.publish.to_arrow``.

    Raises:
        ValueError: images or labels that do not fit the schema (a bug upstream: the
            synthesizer's output is checked here, not the user's data).
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != schema.shape:
        raise ValueError(f"images must be uint8 (N, {', '.join(map(str, schema.shape))}), "
                         f"got {images.dtype} {images.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or (len(labels) and (
            labels.min() < 0 or labels.max() >= len(schema.labels))):
        raise ValueError(f"labels must be {len(images)} integers in [0, {len(schema.labels)})")
    n = len(images)
    arrays = [pa.array([encode_png(im) for im in images], pa.binary()),
              pa.array(np.full(n, schema.width, np.int32)),
              pa.array(np.full(n, schema.height, np.int32)),
              _dictionary(np.zeros(n, np.int32), [schema.mode]),
              _dictionary(labels, list(schema.labels))]
    fields = [pa.field(name, a.type, nullable=False) for name, a in zip(COLUMNS, arrays)]
    meta = footer_metadata(metadata, schema)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def contact_sheet(images: np.ndarray, labels: np.ndarray, schema: ImageSchema,
                  per_class: int = 16, columns: int = 8, scale: int = 2) -> bytes:
    """PNG bytes of a contact sheet: for each label in schema order, its name and a grid of
    up to ``per_class`` of its images (``columns`` wide), each enlarged ``scale`` times."""
    from PIL import Image, ImageDraw

    h, w = schema.height * scale, schema.width * scale
    pad, caption = 2, 14
    rows_per_class = -(-per_class // columns)
    block_h = caption + rows_per_class * (h + pad) + pad
    sheet = Image.new("RGB", (columns * (w + pad) + pad, block_h * len(schema.labels)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(schema.labels):
        top = k * block_h
        chosen = np.flatnonzero(labels == k)[:per_class]
        draw.text((pad, top + 1), f"{name} ({len(chosen)} shown)" if len(chosen) else
                  f"{name} (none sampled)", fill=(0, 0, 0))
        for j, i in enumerate(chosen):
            tile = images[i][..., 0] if schema.channels == 1 else images[i]
            pic = Image.fromarray(np.ascontiguousarray(tile)).convert("RGB")
            pic = pic.resize((w, h), Image.NEAREST)
            sheet.paste(pic, (pad + (j % columns) * (w + pad),
                              top + caption + (j // columns) * (h + pad)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
