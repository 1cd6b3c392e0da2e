"""The structural checks of a synthetic image release, as a Great Expectations suite.

The suite runs on one row per released image: its width, height, mode and label columns,
plus what decoding its PNG gives (height, width, channels). It reads synthetic images only,
and it is built from the image schema alone: the declared shape, mode and label set.
``check_image_table`` checks the table's columns first and gives an ``ImageCheck``; a run
raises ``ImageCheckFailed`` where it fails, and publishes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipelines.image_format import COLUMNS, decode_png
from pipelines.validate import ValidationOutcome, run_suite
from schemas.image import ImageSchema

# what each expectation is called in the release's validation.json and its report
NAMES = ("row count", "label in declared set", "width", "height", "mode",
         "PNG decodes to the declared height", "PNG decodes to the declared width",
         "PNG decodes to the declared channels")


def image_frame(table: pa.Table) -> pd.DataFrame:
    """One row per image of a release table: its columns but the PNG bytes, and the
    decoded PNG's height, width and channels."""
    shapes = [decode_png(blob).shape for blob in table.column("image").to_pylist()]
    frame = table.drop_columns(["image"]).to_pandas()
    frame["label"] = frame["label"].astype("string")
    for i, name in enumerate(("decoded_height", "decoded_width", "decoded_channels")):
        frame[name] = [s[i] for s in shapes]
    return frame


def image_expectations(schema: ImageSchema, rows: int) -> list:
    """The expectations, in the order of ``NAMES``."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToEqual(value=rows),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(schema.labels)),
        gxe.ExpectColumnValuesToBeInSet(column="width", value_set=[schema.width]),
        gxe.ExpectColumnValuesToBeInSet(column="height", value_set=[schema.height]),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=[schema.mode]),
        gxe.ExpectColumnValuesToBeInSet(column="decoded_height", value_set=[schema.height]),
        gxe.ExpectColumnValuesToBeInSet(column="decoded_width", value_set=[schema.width]),
        gxe.ExpectColumnValuesToBeInSet(column="decoded_channels",
                                        value_set=[schema.channels]),
    ]


def validate_images(table: pa.Table, schema: ImageSchema, rows: int
                    ) -> list[tuple[str, bool, str]]:
    """(check name, passed, detail) per expectation, in the order of ``NAMES``."""
    frame = image_frame(table)
    outcome: ValidationOutcome = run_suite(
        frame, f"{schema.name}-images", image_expectations(schema, rows), "SUMMARY",
        describe=lambda r: "")
    checks = []
    for name, result in zip(NAMES, outcome.result["results"]):
        found = result.get("result", {})
        if name == "row count":
            detail = f"{found.get('observed_value')} rows, expected {rows}"
        else:
            column = result["expectation_config"]["kwargs"]["column"]
            detail = (f"{column}: all in {result['expectation_config']['kwargs']['value_set']}"
                      if result["success"] else
                      f"{column}: {found.get('unexpected_count')} values outside "
                      f"{result['expectation_config']['kwargs']['value_set'][:5]}, e.g. "
                      f"{[str(v) for v in found.get('partial_unexpected_list', [])[:3]]}")
        checks.append((name, bool(result["success"]), detail))
    return checks


@dataclass(frozen=True)
class ImageCheck:
    """Structural checks of a synthetic image table (synthetic rows only: public).

    Attributes:
        checks: (name, passed, detail) per check, in order.
    """

    checks: tuple[tuple[str, bool, str], ...]

    @property
    def success(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    @property
    def verdict(self) -> str:
        passed = sum(ok for _, ok, _ in self.checks)
        return f"passed {passed} of {len(self.checks)} checks"

    def to_dict(self) -> dict:
        return {"success": self.success, "verdict": self.verdict,
                "checks": [{"check": n, "success": ok, "detail": d} for n, ok, d in self.checks]}

    @classmethod
    def from_dict(cls, saved: dict) -> ImageCheck:
        """The outcome ``to_dict`` wrote (a release's validation.json)."""
        return cls(tuple((c["check"], bool(c["success"]), c["detail"])
                         for c in saved["checks"]))


class ImageCheckFailed(Exception):
    """The synthetic images failed a check; nothing was published at the release location
    (``quarantine``: where they were put instead, or None)."""

    def __init__(self, outcome: ImageCheck, quarantine: Path | None = None):
        failed = [f"{n} ({d})" for n, ok, d in outcome.checks if not ok]
        where = f"; the images are quarantined in {quarantine}" if quarantine else ""
        super().__init__(f"synthetic images failed {len(failed)} check(s): {'; '.join(failed)}"
                         + where)
        self.outcome = outcome
        self.quarantine = quarantine


def check_image_table(table: pa.Table, schema: ImageSchema, rows: int) -> ImageCheck:
    """The release table's columns, then the Great Expectations suite (``validate_images``):
    row count, label in the declared set, width, height and mode, and every PNG decoding to
    the declared shape."""
    columns = ("columns", tuple(table.column_names) == COLUMNS,
               f"columns {table.column_names}, expected {list(COLUMNS)}")
    if not columns[1]:
        return ImageCheck((columns,))
    return ImageCheck((columns, *validate_images(table, schema, rows)))
