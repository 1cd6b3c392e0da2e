"""Integrity of a multi-table release, checked by Great Expectations before publishing.

Every child row references an existing person, keys are unique, no person has more rows
than the declared cap, and a child's sequence starts at the declared start, increases and
stays within the person's follow-up; ``per_person`` and ``same_as`` columns hold one value
per person. Each rule is a derived column of the synthetic tables (computed here, from
synthetic rows only) and a GX expectation on it, so the result lists them by name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.validate import ValidationOutcome, run_suite
from schemas.relational import MultiTableSchema


def integrity_frames(tables: dict[str, pd.DataFrame], schema: MultiTableSchema
                     ) -> dict[str, pd.DataFrame]:
    """Per table, the derived columns its expectations check (synthetic rows only)."""
    person = tables[schema.person]
    keys = person[schema.key]
    out = {schema.person: pd.DataFrame({"key": keys.astype("string")})}
    indexed = person.set_index(schema.key)
    for table, child in schema.children.items():
        rows = tables[table]
        owner = rows[child.key]
        frame = pd.DataFrame({"linked": owner.isin(keys).to_numpy()}, index=rows.index)
        frame["rows_of_person"] = owner.map(owner.value_counts()).to_numpy()
        consistent: np.ndarray = np.ones(len(rows), dtype=bool)
        for name in child.per_person:
            consistent &= (rows.groupby(child.key)[name].transform("nunique", dropna=False)
                           <= 1).to_numpy()
        for name, parent in child.same_as:
            theirs = owner.map(indexed[parent]) if len(indexed) else owner
            same = (rows[name].astype("string") == theirs.astype("string")).fillna(
                rows[name].isna() & theirs.isna())
            consistent &= same.to_numpy(dtype=bool)
        frame["one_value_per_person"] = consistent
        seq = child.sequence
        if seq is not None:
            value = rows[seq.column].astype("float64")
            previous = value.groupby(owner.to_numpy()).shift(1)
            first = previous.isna() & value.notna()
            frame["value"] = value.to_numpy()
            frame["previous"] = previous.to_numpy()
            frame["first_at_start"] = (~first | (value == seq.start)).to_numpy() \
                if seq.start is not None else True
            if seq.within is not None:
                within = rows[seq.within] if seq.within in child.per_person else \
                    owner.map(indexed[seq.within])
                frame["within"] = within.astype("float64").to_numpy()
        out[table] = frame.reset_index(drop=True)
    return out


def validate_integrity(tables: dict[str, pd.DataFrame], schema: MultiTableSchema
                       ) -> ValidationOutcome:
    """Runs the integrity suite on the synthetic tables; does not raise."""
    import great_expectations.expectations as gxe

    frames = integrity_frames(tables, schema)
    outcomes = [run_suite(frames[schema.person], f"{schema.name}-{schema.person}-keys",
                          [gxe.ExpectColumnValuesToBeUnique(column="key"),
                           gxe.ExpectColumnValuesToNotBeNull(column="key")],
                          "SUMMARY", describe=_describer(schema.person))]
    for table, child in schema.children.items():
        rules = [gxe.ExpectColumnValuesToBeInSet(column="linked", value_set=[True]),
                 gxe.ExpectColumnValuesToBeBetween(column="rows_of_person", min_value=1,
                                                   max_value=child.cap),
                 gxe.ExpectColumnValuesToBeInSet(column="one_value_per_person",
                                                 value_set=[True])]
        seq = child.sequence
        if seq is not None:
            rules += [gxe.ExpectColumnValuesToBeInSet(column="first_at_start", value_set=[True]),
                      gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                          column_A="value", column_B="previous", or_equal=False,
                          ignore_row_if="either_value_is_missing")]
            if seq.within is not None:
                rules.append(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="within", column_B="value", or_equal=True,
                    ignore_row_if="either_value_is_missing"))
        outcomes.append(run_suite(frames[table], f"{schema.name}-{table}-integrity", rules,
                                  "SUMMARY", describe=_describer(table)))
    return ValidationOutcome(
        success=all(o.success for o in outcomes),
        evaluated=sum(o.evaluated for o in outcomes),
        failed=tuple(f for o in outcomes for f in o.failed),
        result={"suites": [o.result for o in outcomes]})


RULES = {"key": "person keys are unique and present", "linked": "every row references a person",
         "rows_of_person": "rows per person within the declared cap",
         "one_value_per_person": "per-person and same_as columns hold the person's value",
         "first_at_start": "the first row of each person is at the sequence's start",
         "value": "the sequence increases within each person",
         "within": "the sequence stays within the person's follow-up"}


def _describer(table: str) -> Callable[[dict], str]:
    return lambda result: _describe(table, result)


def _describe(table: str, result: dict) -> str:
    kwargs = result["expectation_config"]["kwargs"]
    column = kwargs.get("column") or kwargs.get("column_A")
    found = result.get("result", {})
    return (f"{table}: {RULES.get(column, column)}: "
            f"{found.get('unexpected_count', '?')} rows fail")
