"""One release, step by step: the recipe ``synth run`` follows and the Prefect flow mirrors.

prepare (public checks only) -> ingest (private) -> train (DP) -> sample -> validate -> publish
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import RunConfig
from pipelines.ingest import DataError, Ingested, ingest
from pipelines.publish import Release, publish
from pipelines.report import now, privacy_report, release_metadata
from pipelines.train import sample, train
from pipelines.validate import ValidationFailed, ValidationOutcome, save_outcome, \
    validate_synthetic
from schemas import Schema, load_schema
from synth.base import Synthesizer
from synth.privacy import PrivacyBudget

log = logging.getLogger(__name__)

REPORT_FILE = "privacy_report.json"
VALIDATION_FILE = "validation.json"


@dataclass(frozen=True)
class Plan:
    """The public half of a run, checked before any private byte is read."""

    config: RunConfig
    schema: Schema
    budget: PrivacyBudget
    out: Path


@dataclass(frozen=True)
class ReleaseResult:
    release: Path
    report: dict[str, Any]
    validation: ValidationOutcome


def prepare(config: RunConfig) -> Plan:
    """Parses the schema, checks the budget and the output location.

    Raises:
        SchemaError, BudgetError, DataError: with a one-line message.
    """
    schema = load_schema(config.schema_file)
    budget = PrivacyBudget(config.epsilon, config.delta)
    try:
        config.synthesizer_params()
    except ValueError as exc:
        raise DataError(str(exc)) from None
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not config.overwrite:
        raise DataError(f"{out} already exists: choose another --out or pass --overwrite")
    return Plan(config=config, schema=schema, budget=budget, out=out)


def load(plan: Plan) -> Ingested:
    """Reads and coerces the private input (the only read of private data)."""
    cfg = plan.config
    data = ingest(cfg.input, plan.schema, clip=cfg.clip, map_unknown=cfg.map_unknown)
    for column, count in data.report.clipped.items():
        log.warning("clipped %d value(s) of column '%s' to its declared bounds", count, column)
    for column, count in data.report.mapped_to_catch_all.items():
        log.warning("mapped %d undeclared value(s) of column '%s' to its catch_all", count,
                    column)
    return data


def fit(plan: Plan, data: pd.DataFrame,
        progress: Callable[[int, int], None] | None = None) -> Synthesizer:
    return train(data, plan.schema, plan.budget, plan.config.synthesizer,
                 plan.config.synthesizer_params(), progress=progress)


def generate(plan: Plan, model: Synthesizer) -> pd.DataFrame:
    return sample(model, plan.config.rows, seed=plan.config.seed)


def check(plan: Plan, synthetic: pd.DataFrame) -> ValidationOutcome:
    """Validates the synthetic rows; on failure saves the result beside ``out`` in
    ``<out>.rejected/`` and raises ValidationFailed. Nothing is published then."""
    outcome = validate_synthetic(synthetic, plan.schema)
    if not outcome.success:
        rejected = plan.out.with_name(plan.out.name + ".rejected")
        rejected.mkdir(parents=True, exist_ok=True)
        tmp = rejected / f".{VALIDATION_FILE}.{uuid.uuid4().hex}"
        save_outcome(outcome, tmp)
        os.replace(tmp, rejected / VALIDATION_FILE)
        log.error("validation failed; result saved in %s", rejected / VALIDATION_FILE)
        raise ValidationFailed(outcome)
    return outcome


def release(plan: Plan, model: Synthesizer, synthetic: pd.DataFrame,
            outcome: ValidationOutcome) -> tuple[Release, dict[str, Any]]:
    """Publishes the validated rows, the privacy report and the validation result."""
    report = privacy_report(plan.schema, plan.config.synthesizer, model, len(synthetic), now())
    verdict = f"passed {outcome.evaluated} of {outcome.evaluated} expectations"
    report["validation"] = verdict
    files = {REPORT_FILE: json.dumps(report, indent=2).encode(),
             VALIDATION_FILE: outcome.to_json().encode()}
    published = publish(synthetic, plan.schema, release_metadata(report, verdict), plan.out,
                        extra_files=files, overwrite=plan.config.overwrite)
    return published, report


def run_release(config: RunConfig,
                progress: Callable[[int, int], None] | None = None) -> ReleaseResult:
    """The whole job, in process: what ``synth run`` does."""
    plan = prepare(config)
    data = load(plan)
    model = fit(plan, data.frame, progress)
    del data  # private rows are not needed past training
    synthetic = generate(plan, model)
    outcome = check(plan, synthetic)
    published, report = release(plan, model, synthetic, outcome)
    return ReleaseResult(release=published.path, report=report, validation=outcome)
