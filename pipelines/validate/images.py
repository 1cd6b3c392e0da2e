"""The structural checks of a synthetic image release, as a Great Expectations suite.

The suite runs on one row per released image: its width, height, mode and label columns,
plus what decoding its PNG gives (height, width, channels). It reads synthetic images only,
and it is built from the image schema alone: the declared shape, mode and label set.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from pipelines.validate import ValidationOutcome, run_suite
from schemas.image import ImageSchema

# what each expectation is called in the release's validation.json and its report
NAMES = ("row count", "label in declared set", "width", "height", "mode",
         "PNG decodes to the declared height", "PNG decodes to the declared width",
         "PNG decodes to the declared channels")


def image_frame(table: pa.Table) -> pd.DataFrame:
    """One row per image of a release table: its columns but the PNG bytes, and the
    decoded PNG's height, width and channels."""
    from pipelines.image_publish import decode_png

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
