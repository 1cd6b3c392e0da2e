"""Checks of decoded (or declared) image arrays against the image schema: shape, label
indices, pixel value range; and the rescaling of pixel values to 0..255."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from pipelines.images.problems import Problems
from schemas.image import ImageSchema


def check_shape(shape: tuple[int, ...], source: Path, schema: ImageSchema,
                 problems: Problems) -> None:
    """``shape`` is (N, H, W, C) as declared or read."""
    if len(shape) != 4 or tuple(shape[1:]) != schema.shape:
        got = "x".join(map(str, shape[1:])) or f"{len(shape)}-d"
        want = "x".join(map(str, schema.shape))
        problems.add("shape", f"{problems.name(source)}: images are {got} (height x width x "
                     f"channels), the schema declares {want}", "resize/convert the images or "
                     "fix height, width and channels in the schema")


def check_label_indices(labels: np.ndarray, source: Path, schema: ImageSchema,
                         problems: Problems) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= len(schema.labels)))
    for i in bad:
        name = problems.name(source)
        problems.add("label", f"{name}: label {int(labels[i])} of image {i:,} is outside "
                     f"0..{len(schema.labels) - 1} ({len(schema.labels)} labels)",
                     "fix the labels or declare more labels",
                     f"{name}: a label is outside the schema's labels")


def check_range(images: np.ndarray, source: Path, schema: ImageSchema,
                 problems: Problems, names: list[str] | None = None) -> None:
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


def rescale(images: np.ndarray, schema: ImageSchema) -> np.ndarray:
    lo, hi = schema.value_range
    if images.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        return np.ascontiguousarray(images)
    scaled = (images.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
