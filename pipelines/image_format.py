"""The format of an image release's table: its columns, and each image as PNG bytes.

What the writer (``pipelines.image_publish``) writes and the checks
(``pipelines.validate.images``) read back; it imports neither.
"""

from __future__ import annotations

import io

import numpy as np

COLUMNS = ("image", "width", "height", "mode", "label")


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 (H, W, C) image, C = 1 (mode L) or 3 (RGB)."""
    from PIL import Image

    pixels = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def decode_png(blob: bytes) -> np.ndarray:
    """The uint8 (H, W, C) pixels of PNG bytes (the inverse of ``encode_png``)."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        array = np.asarray(im)
    return array[..., None] if array.ndim == 2 else array
