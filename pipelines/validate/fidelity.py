"""The fidelity suite: is the synthetic release close enough to the real data to be used?

Built from the schema (which columns, which kind, which target) and the run's thresholds,
never from the rows. It runs on the real and synthetic rows stacked in one batch, with a
result format that returns no raw values, and its numbers go to the internal report only:
they are statistics of the real data.
"""

from __future__ import annotations

import logging

import pandas as pd

from pipelines.config import FidelityThresholds
from pipelines.validate import ValidationOutcome, run_suite
from schemas import Schema

logger = logging.getLogger(__name__)

# Aggregates only, and no partial lists of values even if an expectation had some.
NO_VALUES = {"result_format": "BASIC", "partial_unexpected_count": 0,
             "include_unexpected_rows": False, "return_unexpected_index_query": False}


def fidelity_expectations(schema: Schema, thresholds: FidelityThresholds) -> list:
    """The fidelity expectations for ``schema``: a distance per column (KS for numeric and
    temporal columns, total variation for categorical and boolean ones), the association
    matrix difference, the propensity score and, where the schema names a target, the
    train-on-synthetic, test-on-real score."""
    from pipelines.validate import expectations as fx

    out: list = []
    for c in schema.columns:
        if c.is_numeric or c.is_temporal:
            out.append(fx.ExpectColumnKsDistanceToBeAtMost(column=c.name,
                                                           threshold=thresholds.ks_max))
        else:
            out.append(fx.ExpectColumnTvDistanceToBeAtMost(column=c.name,
                                                           threshold=thresholds.tv_max))
    if len(schema.columns) > 1:
        out.append(fx.ExpectTableAssociationDifferenceToBeAtMost(
            table_schema=schema.to_dict(), threshold=thresholds.association_max))
    out.append(fx.ExpectTablePropensityMseToBeAtMost(threshold=thresholds.pmse_max))
    if schema.target is not None:
        out.append(fx.ExpectTableTstrScoreToBeAtLeast(target=schema.target,
                                                      threshold=thresholds.tstr_min))
    return out


def stacked(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """One batch of both tables, with the marker column the fidelity metrics split on."""
    from pipelines.validate.expectations import SIDE

    both = pd.concat([real.assign(**{SIDE: "real"}), synthetic.assign(**{SIDE: "synthetic"})],
                     ignore_index=True)
    # concat of two categoricals with the same categories keeps the dtype; make sure.
    return both.astype({c: real[c].dtype for c in real.columns})


def validate_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema,
                      thresholds: FidelityThresholds) -> ValidationOutcome:
    """Runs the fidelity suite.

    Args:
        real: the real rows to compare with (private: the outcome is internal).
        synthetic: the synthetic rows, same columns and dtypes.
        schema: the schema both follow.
        thresholds: the bounds of each check.

    Returns:
        The outcome; each failed line names the expectation and its threshold, not the value.
    """
    outcome = run_suite(stacked(real, synthetic), f"{schema.name}-fidelity",
                        fidelity_expectations(schema, thresholds), NO_VALUES, describe=_describe)
    logger.info("fidelity of %s: %d of %d expectations failed", schema.name,
                len(outcome.failed), outcome.evaluated)
    return outcome


def _describe(result: dict) -> str:
    """One line naming a failed fidelity expectation and its bound, without the value (the
    value is a statistic of the real rows)."""
    config = result["expectation_config"]
    kwargs = config["kwargs"]
    subject = kwargs.get("column") or kwargs.get("target")
    name = f"{config['type']}({subject})" if subject else config["type"]
    info = result.get("exception_info") or {}
    records = [info] if "raised_exception" in info else list(info.values())
    if any(isinstance(r, dict) and r.get("raised_exception") for r in records):
        return f"{name}: could not run"
    bound = "at least" if config["type"].endswith("_at_least") else "at most"
    return f"{name}: not {bound} {kwargs['threshold']}"


def observed(outcome: ValidationOutcome) -> list[dict]:
    """(expectation, subject, threshold, observed value, success) per result: the table of
    the internal report."""
    rows = []
    for r in outcome.result["results"]:
        kwargs = r["expectation_config"]["kwargs"]
        rows.append({"expectation": r["expectation_config"]["type"],
                     "subject": kwargs.get("column") or kwargs.get("target") or "table",
                     "threshold": kwargs.get("threshold"),
                     "observed": (r.get("result") or {}).get("observed_value"),
                     "success": bool(r["success"])})
    return rows
