"""The steps of a table release (the kind ``pipelines.recipe`` runs for tables).

prepare (``pipelines.plan``: public checks; budget reserved in the ledger) -> ingest
  (private; a holdout split kept apart) -> train (DP) -> sample -> check (the gate: schema
  suite, measured marginals, canary audit; advisory: fidelity suite, leakage checks,
  identifier scan) -> publish at ``out`` (or quarantine at ``out.quarantine``), internal
  report at ``out.internal``
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines import checkpoints, large
from pipelines.columns import finish as finish_columns
from pipelines.holdout import holdout_key
from pipelines.holdout import split as split_records
from pipelines.html_report import ReportInputs, render
from pipelines.ingest import Ingested, IngestReport, ingest, read_identifiers
from pipelines.leakage import LeakageReport, check_leakage, identifier_leaks
from pipelines.plan import (
    FIDELITY_FILE,
    HTML_FILE,
    KEY_FILE,
    LEAKAGE_FILE,
    REPORT_FILE,
    VALIDATION_FILE,
    Plan,
    internal_dir,
    quarantine_dir,
)
from pipelines.progress import Steps, phase
from pipelines.publish import Release, publish, publish_folder
from pipelines.report import now, privacy_report, release_metadata
from pipelines.surrogates import add_surrogates, surrogate_seed
from pipelines.train import sample, train
from pipelines.validate import ValidationFailed, ValidationOutcome, validate_synthetic
from pipelines.validate.fidelity import observed, validate_fidelity
from pipelines.validate.measured import rows as measured_rows
from pipelines.validate.measured import validate_measured
from pipelines.verdict import GATE, Verdict
from schemas import Schema
from synth.audit import audit
from synth.base import Synthesizer, make_synthesizer
from synth.encoding import DEFAULT_MAX_BINS, CodedTable, TableEncoder

log = logging.getLogger(__name__)
# the operator's own terminal only: never configured to reach an orchestrator's database
local = logging.getLogger("synth.local")

def load(plan: Plan) -> Ingested:
    """Reads and coerces the private input (the only read of private data)."""
    cfg = plan.config
    phase("ingest", "reading %s and checking it against the schema", cfg.path)
    try:
        data = ingest(cfg.path, plan.schema, clip=cfg.clip, map_unknown=cfg.map_unknown)
    except BaseException:
        plan.ledger.cancel(plan.entry)  # no DP step ran: the reservation is freed
        raise
    _warn(data.report)
    return data


def _warn(report: IngestReport) -> None:
    for column, count in report.clipped.items():
        log.warning("clipped %d value(s) of column '%s' to its declared bounds", count, column)
    for column, count in report.mapped_to_catch_all.items():
        log.warning("mapped %d undeclared value(s) of column '%s' to its catch_all", count,
                    column)


@dataclass(frozen=True)
class Training:
    """A run's private rows: what trains, and the real rows its checks compare with."""

    train: pd.DataFrame | CodedTable  # the training rows (codes, for a large input)
    real: pd.DataFrame  # the training rows, or a random sample of them (large input)
    holdout: pd.DataFrame  # the held-out rows, or a random sample of them (large input)


def load_training(plan: Plan) -> Training:
    """Reads the private input and holds out ``config.holdout`` of it. A Parquet input of
    more than ``config.batch_above_rows`` rows is read in batches and encoded as it is read
    (``pipelines.large``), never loaded whole."""
    cfg = plan.config
    rows = large.rows_of(cfg.path)
    if rows is not None and rows > cfg.batch_above_rows:
        phase("ingest", "reading %s in batches and encoding it as it is read", cfg.path)
    if rows is None or rows <= cfg.batch_above_rows:
        real, holdout = split_holdout(plan, load(plan).frame)
        return Training(real, real, holdout)
    params = cfg.synthesizer_params()  # the codes must be the synthesizer's own
    max_bins = make_synthesizer(cfg.synthesizer, **params).get_params().get(
        "max_bins", DEFAULT_MAX_BINS)
    try:
        data = large.load_large(cfg.path, plan.schema, TableEncoder(plan.schema, max_bins),
                                holdout=cfg.holdout, key=holdout_key(cfg.noise_seed),
                                seed=cfg.seed, clip=cfg.clip,
                                map_unknown=cfg.map_unknown)
    except BaseException:
        plan.ledger.cancel(plan.entry)  # no DP step ran: the reservation is freed
        raise
    _warn(data.report)
    log.info("the input was read in batches; the checks use a random sample of its rows")
    return Training(data.train, data.real, data.holdout)


def fit(plan: Plan, data: pd.DataFrame | CodedTable,
        progress: Callable[[int, int], None] | None = None) -> Synthesizer:
    """Trains under the plan's budget. The ledger entry counts in full from the first DP step
    (even if training then fails) and records what the accountant reports at the end. A
    resumed run's entry has counted since the killed run's first step."""
    cfg = plan.config
    phase("train", "%s under epsilon=%g, delta=%g%s", cfg.synthesizer, cfg.epsilon,
          cfg.delta, " (resuming from the last checkpoint)" if plan.resumed else "")
    if not plan.resumed:
        plan.ledger.start(plan.entry)
    steps = Steps("train", "permille" if cfg.synthesizer == "dp-marginals" else "step",
                  also=progress)
    model = train(data, plan.schema, plan.budget, cfg.synthesizer,
                  cfg.synthesizer_params(), progress=steps, checkpoint=plan.checkpoint)
    spent = model.privacy_
    plan.ledger.commit(plan.entry, spent.epsilon, spent.delta)
    phase("train", "done: spent epsilon=%.4f, delta=%.3g (%s accountant)", spent.epsilon,
          spent.delta, spent.accountant)
    return model


def synthesize(model: Synthesizer, schema: Schema, rows: int, seed: int,
               noise_seed: int | None) -> pd.DataFrame:
    """``rows`` synthetic rows as a release shows them: with a ``survival:`` declaration
    post-processed to obey it (time within follow-up, no event after it; see
    synth.survival.constrain), the columns finished (pipelines.columns), and the surrogate
    identifiers the schema asks for in front, generated from the schema and a secret seed
    alone (pipelines.surrogates)."""
    from synth import survival

    synthetic = sample(model, rows, seed=seed)
    synthetic = finish_columns(survival.constrain(synthetic, schema), schema)
    return add_surrogates(synthetic, schema, surrogate_seed(noise_seed))


def generate(plan: Plan, model: Synthesizer) -> pd.DataFrame:
    """Samples the release's rows (``synthesize`` with the plan's settings)."""
    cfg = plan.config
    phase("sample", "%s synthetic rows", f"{cfg.rows:,}")
    return synthesize(model, plan.schema, cfg.rows, cfg.seed, cfg.noise_seed)


def split_holdout(plan: Plan, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holds out ``config.holdout`` of the real records from training, each by its own secret
    coin (``pipelines.holdout``): the leakage checks of the internal report compare the
    release with records it never saw. The held-out records are never trained on."""
    return split_records(frame, plan.config.holdout, holdout_key(plan.config.noise_seed))


def check(plan: Plan, model: Synthesizer, synthetic: pd.DataFrame, real: pd.DataFrame,
          holdout: pd.DataFrame) -> Verdict:
    """The gate: the schema suite on the synthetic rows, the synthetic rows against the
    marginals the synthesizer measured under DP (when enabled), the canary audit of the
    model's mechanism. Then, for the internal report only: the fidelity suite against the
    real training rows (when enabled), the leakage checks against the held-out rows (when
    there are some) and the scan for the input's identifier values. Does not raise:
    ``release`` publishes or quarantines by the gate."""
    output = synthetic  # with any surrogate identifiers: scanned for real identifier values
    synthetic = synthetic[plan.schema.names]  # surrogates are fake: not compared
    structural = validate_synthetic(synthetic, plan.schema)
    thresholds = plan.config.fidelity
    measured = (validate_measured(model, synthetic, thresholds.measured_tv_max,
                                  thresholds.measured_joint_tv_max)
                if thresholds.enabled else None)
    phase("check", "schema suite: passed %d of %d", structural.evaluated
          - len(structural.failed), structural.evaluated)
    if measured is not None:
        phase("check", "release against the DP-measured marginals: passed %d of %d",
              measured.evaluated - len(measured.failed), measured.evaluated)
    params = model.get_params()
    # 99%: it gates every release, so an honest one is quarantined by chance at most 1 in 100
    audited = audit(model.privacy_, seed=plan.config.seed, confidence=0.99,
                    secure_noise=bool(params.get("secure_noise")),
                    noise_seed=params.get("noise_seed"))
    phase("check", "canary audit of the mechanism: %s (empirical epsilon lower bound %.3f, "
          "claimed %.3f)", "passed" if audited.passed else "FAILED", audited.epsilon_lower,
          audited.epsilon_claimed)
    phase("check", "advisory checks against the real rows (fidelity, leakage, identifiers): "
          "their results go to the internal report only")
    advisory = internal_checks(plan, synthetic, output, real, holdout)
    return Verdict(structural, measured, audited, *advisory)


def internal_checks(plan: Plan, synthetic: pd.DataFrame, output: pd.DataFrame,
                    real: pd.DataFrame, holdout: pd.DataFrame
                    ) -> tuple[ValidationOutcome | None, LeakageReport | None, dict[str, int]]:
    """The data owner's advisory checks against the real rows: (fidelity suite, leakage
    checks, identifier hits). Statistics of the real data, not covered by the guarantee:
    they go to the internal report and this process's own log, never decide publication."""
    thresholds = plan.config.fidelity
    fidelity = (validate_fidelity(real, synthetic, plan.schema, thresholds)
                if thresholds.enabled and len(real) else None)
    # 2,000 attacks: intervals about +-0.02 wide, in a few seconds on Adult-sized data
    leakage = (check_leakage(real, holdout, synthetic, plan.schema, n_attacks=2000,
                             reference_rows=10_000, seed=plan.config.seed)
               if len(holdout) and len(real) else None)  # equal records share a coin: all
    # of a table of a few distinct records may be held out, and the release still goes out
    # every value of the input's identifier columns, against every text cell of the output
    # (surrogates, categories; numbers could match by chance and cannot carry a name)
    raw = read_identifiers(plan.config.path, plan.schema)
    text = output[[c for c in output.columns if not pd.api.types.is_numeric_dtype(output[c])
                   and not pd.api.types.is_bool_dtype(output[c])]]
    hits = identifier_leaks(raw, list(raw.columns), text) if len(raw.columns) else {}
    for warning in leakage.warnings if leakage else ():
        local.warning("internal release check: %s", warning)
    for column, n in hits.items():
        if n:
            local.warning("internal identifier alarm: %d value(s) of the input's identifier "
                          "column '%s' appear in the output", n, column)
    return fidelity, leakage, hits


def release(plan: Plan, model: Synthesizer, synthetic: pd.DataFrame, verdict: Verdict,
            real: pd.DataFrame | None = None) -> tuple[Release, dict[str, Any]]:
    """Publishes the rows, the privacy report, the validation result and the release-safe
    HTML report at ``out``, and the internal report (real-data statistics) at
    ``<out>.internal``. A release that failed its gate goes to ``<out>.quarantine``
    instead, and ValidationFailed says which checks failed."""
    report = privacy_report(plan.schema, plan.config.synthesizer, model, len(synthetic), now())
    report["validation"] = verdict.summary()
    report["release_gate"] = GATE
    if plan.config.holdout > 0:
        report["private_steps"].insert(1, (
            f"a random {plan.config.holdout:g} of the records held out of training (a secret "
            "coin per record; they are read only by the internal leakage checks)"))
    report["private_steps"] += ["internal, advisory checks against the real rows: fidelity "
                                "suite, leakage checks, identifier scan (their results stay "
                                "in the internal report)"]
    public = ReportInputs(
        schema=plan.schema, privacy=report, synthetic=synthetic,
        structural=(verdict.structural.evaluated - len(verdict.structural.failed),
                    verdict.structural.evaluated, verdict.structural.failed),
        gate=measured_rows(verdict.measured) if verdict.measured else None,
        quarantined=() if verdict.success else verdict.failed)
    inputs = dataclasses.replace(
        public, fidelity=observed(verdict.fidelity) if verdict.fidelity else None, real=real,
        checks={**({"identifier check (values of the input's identifier columns found in "
                    "the output)": verdict.identifier_hits} if verdict.identifier_hits else {}),
                **({"leakage": verdict.leakage.to_dict()} if verdict.leakage else {}),
                **({"canary audit": verdict.audit.to_dict()} if verdict.audit else {})})
    internal = {HTML_FILE: render(inputs, internal=True).encode(),
                REPORT_FILE: json.dumps(report, indent=2).encode()}
    if verdict.fidelity is not None:
        internal[FIDELITY_FILE] = verdict.fidelity.to_json().encode()
    if verdict.leakage is not None:
        internal[LEAKAGE_FILE] = json.dumps(verdict.leakage.to_dict(), indent=2).encode()
    files = {REPORT_FILE: json.dumps(report, indent=2).encode(),
             VALIDATION_FILE: verdict.public_json().encode(),
             HTML_FILE: render(public, internal=False).encode()}
    if verdict.success:  # reruns of this very run become no-ops once this release is out
        internal[KEY_FILE] = (f"{plan.key}\n{hashlib.sha256(files[REPORT_FILE]).hexdigest()}"
                              "\n").encode()
    publish_folder({**internal, **checkpoints.carried(plan.checkpoint)}, internal_dir(plan.out))
    target = plan.out if verdict.success else quarantine_dir(plan.out)
    published = publish(synthetic, plan.schema, release_metadata(report, verdict.summary()),
                        target, extra_files=files,
                        overwrite=plan.config.overwrite or not verdict.success)
    checkpoints.discard(internal_dir(plan.out))  # the release is out: nothing to resume
    if verdict.success:
        phase("publish", "published %s", published.path)
    else:
        phase("publish", "QUARANTINED in %s: %s", target, "; ".join(verdict.failed),
              level=logging.WARNING)
    if not verdict.success:
        plan.ledger.quarantine(plan.entry)  # still counted: the budget was spent
        log.error("checks failed: the release is quarantined in %s, the internal report is in "
                  "%s", target, internal_dir(plan.out))
        raise ValidationFailed(ValidationOutcome(
            success=False, evaluated=verdict.evaluated, failed=verdict.failed, result={}),
            quarantine=target)
    return published, report
