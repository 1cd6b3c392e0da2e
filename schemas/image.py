"""The image schema: what a labelled image data set is, as declared by its owner.

Like the tabular schema, it is the only knowledge about a data set that is free of privacy
cost: the image shape, the number of channels, the range the stored pixel values lie in and
the ordered list of label names all come from here, never from the images.

A schema file says ``kind: image``::

    kind: image
    name: fashion-mnist
    version: "1"
    height: 28
    width: 28
    channels: 1                # 1 (grey, PIL mode "L") or 3 (RGB)
    value_range: [0, 255]      # the stored pixel values; rescaled to 0..255 on ingest
    labels: [T-shirt/top, Trouser, ...]   # label i of an IDX/NPZ file is labels[i]
    budget: {epsilon: 20, delta: 1.0e-5}  # optional: all releases of the data set together
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from schemas.limits import LimitError, bounded, limits
from schemas.model import (
    MAX_EPSILON,
    MIN_DELTA,
    MIN_EPSILON,
    SchemaError,
    budget_in_range,
    range_problem,
    show,
)
from schemas.safe_yaml import read_yaml

KIND = "image"
CHANNELS = (1, 3)
_KNOWN = ("kind", "name", "version", "description", "source", "license", "height", "width",
          "channels", "value_range", "labels", "budget")
_MAX_SIDE = 4096


@dataclass(frozen=True)
class ImageSchema:
    """A labelled image data set's declared shape, pixel range and label set.

    Attributes:
        name: the data set's name (used in the ledger and the release metadata).
        version: the schema's version string.
        height, width: pixels; every image must have exactly this size.
        channels: 1 (greyscale) or 3 (RGB).
        value_range: (low, high) of the stored pixel values; ingest rejects values outside
            it and rescales the range linearly to 0..255.
        labels: the label names, in order: integer label ``i`` means ``labels[i]``.
        budget: total (epsilon, delta) over all releases of the data set, or None.
        path: where the schema was loaded from, for error messages.
    """

    name: str
    version: str
    height: int
    width: int
    channels: int
    value_range: tuple[float, float]
    labels: tuple[str, ...]
    description: str = ""
    source: str = ""
    license: str = ""
    budget: tuple[float, float] | None = None
    path: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image, as ingest returns it."""
        return self.height, self.width, self.channels

    @property
    def mode(self) -> str:
        """The PIL image mode of the released PNGs: "L" or "RGB"."""
        return "L" if self.channels == 1 else "RGB"

    @property
    def where(self) -> str:
        """How error messages name this schema."""
        return self.path or f"schema '{self.name}'"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": KIND, "name": self.name, "version": self.version}
        for key in ("description", "source", "license"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out.update(height=self.height, width=self.width, channels=self.channels,
                   value_range=list(self.value_range), labels=list(self.labels))
        if self.budget is not None:
            out["budget"] = {"epsilon": self.budget[0], "delta": self.budget[1]}
        return out

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: names the exact public knowledge a run used."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


def _number(raw: Any) -> bool:
    """A number (not a boolean) that is finite and within +/-2**53, as every bound."""
    return (isinstance(raw, (int, float)) and not isinstance(raw, bool)
            and range_problem(raw, "float") is None)


def _side(raw: dict, key: str, problems: list[str]) -> int:
    value = raw.get(key)
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_SIDE):
        problems.append(f"'{key}' must be a whole number of pixels from 1 to {_MAX_SIDE}, "
                        f"got {show(value)}")
        return 0
    return value


def image_schema_from_dict(raw: Any, path: str | None = None) -> ImageSchema:
    """Builds an ImageSchema from its YAML/JSON form, reporting every problem at once.

    Raises:
        SchemaError: naming the file and each field that is wrong.
    """
    where = path or "image schema"
    try:
        lim = limits()
    except LimitError as exc:
        raise SchemaError(bounded(f"{where}: {exc}")) from None
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: an image schema must be a mapping with 'kind: image', "
                          "'name', 'height', 'width', 'channels', 'value_range' and 'labels'")
    problems: list[str] = []
    if raw.get("kind") != KIND:
        problems.append(f"'kind' must be '{KIND}', got {show(raw.get('kind'))}")
    for key in sorted(set(map(str, raw)) - set(_KNOWN)):
        problems.append(f"unknown key {show(key)} (known: {', '.join(sorted(_KNOWN))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append("'name' is missing")
    height, width = _side(raw, "height", problems), _side(raw, "width", problems)
    channels = raw.get("channels")
    if channels not in CHANNELS or isinstance(channels, bool):
        problems.append(f"'channels' must be 1 (greyscale) or 3 (RGB), got {show(channels)}")
    value_range = raw.get("value_range")
    if not (isinstance(value_range, list) and len(value_range) == 2
            and all(_number(v) for v in value_range) and value_range[0] < value_range[1]):
        problems.append(f"'value_range' must be [low, high] with low < high, each finite and "
                        f"within +/-2^53 (e.g. [0, 255]), got {show(value_range)}")
        value_range = [0, 255]
    labels = raw.get("labels")
    if not isinstance(labels, list) or not labels:
        problems.append("'labels' must be a non-empty list of label names (label i of the "
                        "data is the i-th name)")
        labels = []
    try:
        lim.check("categories", len(labels), "'labels'")
    except LimitError as exc:  # a label is a category of the image's class
        problems.append(str(exc))
        labels = []
    if any(isinstance(v, (list, dict)) for v in labels):
        problems.append("'labels' must be plain names, not lists or mappings")
        labels = []
    labels = [str(v) for v in labels]
    dupes = sorted(v for v, n in Counter(labels).items() if n > 1)
    if dupes:
        problems.append(f"'labels' has duplicates {show(dupes)}")
    if any(not v.strip() for v in labels):
        problems.append("'labels' has an empty name")
    budget = _budget(raw.get("budget"), problems)
    if problems:
        raise SchemaError(f"{where}: " + "; ".join(problems))
    assert isinstance(name, str)  # else 'name' is missing was a problem
    return ImageSchema(name=name, version=str(raw.get("version", "1")), height=height,
                       width=width, channels=cast(int, channels),  # in CHANNELS, checked above
                       value_range=(float(value_range[0]), float(value_range[1])),
                       labels=tuple(labels), description=str(raw.get("description", "")),
                       source=str(raw.get("source", "")), license=str(raw.get("license", "")),
                       budget=budget, path=path)


def _budget(raw: Any, problems: list[str]) -> tuple[float, float] | None:
    """The data set's total budget, within the range a run's budget may take."""
    if raw is None:
        return None
    if not (isinstance(raw, dict) and set(raw) == {"epsilon", "delta"}
            and budget_in_range(raw["epsilon"], raw["delta"])):
        problems.append(f"'budget' must be {{epsilon: a number from {MIN_EPSILON:g} to "
                        f"{MAX_EPSILON:g}, delta: a number from {MIN_DELTA:g} to below 1}}")
        return None
    return float(raw["epsilon"]), float(raw["delta"])


def _read_yaml(path: Path) -> Any:
    """The file's YAML, read safely (``schemas.safe_yaml``)."""
    return read_yaml(path, "schema")


def load_image_schema(path: str | Path) -> ImageSchema:
    """Reads and checks an image schema file (YAML or JSON, ``kind: image``).

    Raises:
        SchemaError: the file is missing, does not parse, or a field is wrong.
    """
    return image_schema_from_dict(_read_yaml(Path(path)), str(path))


def is_image_schema(path: str | Path) -> bool:
    """Whether a schema file declares ``kind: image`` (so the CLI and the flow can dispatch).

    A file that cannot be read or parsed is not an image schema: the tabular loader then
    reports what is wrong with it.
    """
    try:
        raw = _read_yaml(Path(path))
    except SchemaError:
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND
