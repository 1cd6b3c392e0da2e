"""One release, step by step: the recipe ``synth run`` follows and the Prefect flow mirrors.

prepare (public checks; budget reserved in the ledger) -> ingest (private) -> train (DP)
  -> sample -> validate -> publish
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
from pipelines.ledger import Ledger, source_fingerprint
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
    ledger: Ledger
    entry: int  # this run's reservation in the ledger


@dataclass(frozen=True)
class ReleaseResult:
    release: Path
    report: dict[str, Any]
    validation: ValidationOutcome


def prepare(config: RunConfig) -> Plan:
    """Parses the schema, checks the budget and the output location, and reserves the run's
    (epsilon, delta) in the budget ledger. Nothing private is read, beyond hashing the input
    file to know which data set it is.

    Raises:
        SchemaError, BudgetError (BudgetExceeded among them), DataError: one-line messages.
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
    source = Path(config.input)
    if not source.is_file():
        raise DataError(f"{source}: cannot read input: no such file")
    try:
        data_set = source_fingerprint(source)
    except OSError as exc:
        raise DataError(f"{source}: cannot read input: {exc.strerror or exc}") from None
    ledger = Ledger(config.ledger)
    entry = ledger.reserve(data_set, schema.name, str(source), str(out), config.synthesizer,
                           budget.epsilon, budget.delta, schema.budget)
    return Plan(config=config, schema=schema, budget=budget, out=out, ledger=ledger,
                entry=entry)


def load(plan: Plan) -> Ingested:
    """Reads and coerces the private input (the only read of private data)."""
    cfg = plan.config
    try:
        data = ingest(cfg.input, plan.schema, clip=cfg.clip, map_unknown=cfg.map_unknown)
    except BaseException:
        plan.ledger.cancel(plan.entry)  # no DP step ran: the reservation is freed
        raise
    for column, count in data.report.clipped.items():
        log.warning("clipped %d value(s) of column '%s' to its declared bounds", count, column)
    for column, count in data.report.mapped_to_catch_all.items():
        log.warning("mapped %d undeclared value(s) of column '%s' to its catch_all", count,
                    column)
    return data


def fit(plan: Plan, data: pd.DataFrame,
        progress: Callable[[int, int], None] | None = None) -> Synthesizer:
    """Trains under the plan's budget. The ledger entry counts in full from the first DP step
    (even if training then fails) and records what the accountant reports at the end."""
    plan.ledger.start(plan.entry)
    model = train(data, plan.schema, plan.budget, plan.config.synthesizer,
                  plan.config.synthesizer_params(), progress=progress)
    plan.ledger.commit(plan.entry, model.privacy_.epsilon, model.privacy_.delta)
    return model


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
