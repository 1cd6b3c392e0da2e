"""One release, step by step: the recipe ``synth run`` follows and the Prefect flow mirrors.

prepare (``pipelines.plan``: public checks; budget reserved in the ledger) -> ingest (private; a holdout split
  kept apart) -> train (DP) -> sample -> check (schema suite, fidelity suite, leakage checks)
  -> publish at ``out`` (or quarantine at ``out.quarantine``), internal report at
  ``out.internal``
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import large
from pipelines.holdout import holdout_key
from pipelines.holdout import split as split_records
from pipelines.config import RunConfig
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
    AlreadyPublished,
    Plan,
    internal_dir,
    prepare,
    quarantine_dir,
)
from pipelines.publish import Release, publish, publish_folder
from pipelines.report import now, privacy_report, release_metadata
from pipelines.surrogates import add_surrogates, surrogate_seed
from pipelines.train import sample, train
from pipelines.validate import ValidationFailed, ValidationOutcome, validate_synthetic
from pipelines.validate.fidelity import observed, validate_fidelity
from synth.audit import AuditResult, audit
from synth.base import Synthesizer, make_synthesizer
from synth.encoding import DEFAULT_MAX_BINS, CodedTable, TableEncoder

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ReleaseResult:
    release: Path
    report: dict[str, Any]
    verdict: Verdict | None  # None: an earlier, identical run had published it


def previous(out: Path) -> ReleaseResult:
    """The result of the run that published the release at ``out`` (its report)."""
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    return ReleaseResult(release=out, report=report, verdict=None)


def load(plan: Plan) -> Ingested:
    """Reads and coerces the private input (the only read of private data)."""
    cfg = plan.config
    try:
        data = ingest(cfg.input, plan.schema, clip=cfg.clip, map_unknown=cfg.map_unknown)
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
    rows = large.rows_of(cfg.input)
    if rows is None or rows <= cfg.batch_above_rows:
        real, holdout = split_holdout(plan, load(plan).frame)
        return Training(real, real, holdout)
    params = cfg.synthesizer_params()  # the codes must be the synthesizer's own
    max_bins = make_synthesizer(cfg.synthesizer, **params).get_params().get(
        "max_bins", DEFAULT_MAX_BINS)
    try:
        data = large.load_large(cfg.input, plan.schema, TableEncoder(plan.schema, max_bins),
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
    if not plan.resumed:
        plan.ledger.start(plan.entry)
    model = train(data, plan.schema, plan.budget, plan.config.synthesizer,
                  plan.config.synthesizer_params(), progress=progress,
                  checkpoint=plan.checkpoint)
    plan.ledger.commit(plan.entry, model.privacy_.epsilon, model.privacy_.delta)
    return model


def generate(plan: Plan, model: Synthesizer) -> pd.DataFrame:
    """Samples the release's rows; with a ``survival:`` declaration they are post-processed
    to obey it (time within follow-up, no event after it; see synth.survival.constrain).
    Identifier columns the schema asks to carry get fake surrogate values in front, generated
    from the schema and a secret seed alone (pipelines.surrogates)."""
    from synth import survival

    synthetic = sample(model, plan.config.rows, seed=plan.config.seed)
    synthetic = survival.constrain(synthetic, plan.schema)
    return add_surrogates(synthetic, plan.schema, surrogate_seed(plan.config.noise_seed))


@dataclass(frozen=True)
class Verdict:
    """What the checks of a release found.

    Attributes:
        structural: the schema suite (synthetic rows only: public).
        fidelity: the fidelity suite (synthetic vs real: internal), None when switched off.
        leakage: the release checks (copies, attack risks, DCR: internal), None without a
            holdout.
        audit: the one-run canary audit of the model's mechanism (reads no private data).
        identifier_hits: per identifier column of the input, how many of its values appear
            in a text cell of the output (any is a leak: the release is quarantined).
    """

    structural: ValidationOutcome
    fidelity: ValidationOutcome | None
    leakage: LeakageReport | None
    audit: AuditResult | None = None
    identifier_hits: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return (self.structural.success and (self.fidelity is None or self.fidelity.success)
                and (self.audit is None or self.audit.passed)
                and not any(self.identifier_hits.values()))

    @property
    def failed(self) -> tuple[str, ...]:
        audit = () if self.audit is None or self.audit.passed else (
            f"canary audit: empirical epsilon lower bound {self.audit.epsilon_lower:.3f} "
            f"exceeds the claimed {self.audit.epsilon_claimed:.3f}: the mechanism adds less "
            "noise than it accounts for",)
        leaked = tuple(f"identifier check: {n} value(s) of the input's identifier column "
                       f"'{c}' appear in the output (a surrogate from a small pool? use a "
                       "pattern)" for c, n in self.identifier_hits.items() if n)
        return (self.structural.failed + (self.fidelity.failed if self.fidelity else ())
                + audit + leaked)

    def summary(self) -> str:
        """One line of pass counts, no statistic of the real data."""
        def counts(o: ValidationOutcome) -> str:
            return f"passed {o.evaluated - len(o.failed)} of {o.evaluated}"
        fidelity = counts(self.fidelity) if self.fidelity else "not run"
        return f"schema suite {counts(self.structural)}, fidelity suite {fidelity}"

    def public_json(self) -> str:
        """validation.json of the release: the schema suite in full, the fidelity suite as
        pass/fail per expectation (its values are statistics of the real data)."""
        doc = json.loads(self.structural.to_json())
        if self.fidelity is not None:
            doc["fidelity"] = {"success": self.fidelity.success,
                               "expectations": [{k: r[k] for k in ("expectation", "subject",
                                                                   "threshold", "success")}
                                                for r in observed(self.fidelity)]}
        return json.dumps(doc, indent=2) + "\n"


def split_holdout(plan: Plan, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holds out ``config.holdout`` of the real records from training, each by its own secret
    coin (``pipelines.holdout``): the leakage checks of the internal report compare the
    release with records it never saw. The held-out records are never trained on."""
    return split_records(frame, plan.config.holdout, holdout_key(plan.config.noise_seed))


def check(plan: Plan, model: Synthesizer, synthetic: pd.DataFrame, real: pd.DataFrame,
          holdout: pd.DataFrame) -> Verdict:
    """Runs the schema suite on the synthetic rows, the fidelity suite against the real
    training rows (when enabled), the leakage checks against the held-out rows (when there
    are some) and the canary audit of the model's mechanism. Does not raise: ``release``
    publishes or quarantines by the verdict."""
    output = synthetic  # with any surrogate identifiers: scanned for real identifier values
    synthetic = synthetic[plan.schema.names]  # surrogates are fake: not compared
    structural = validate_synthetic(synthetic, plan.schema)
    thresholds = plan.config.fidelity
    fidelity = (validate_fidelity(real, synthetic, plan.schema, thresholds)
                if thresholds.enabled and len(real) else None)
    # 2,000 attacks: intervals about +-0.02 wide, in a few seconds on Adult-sized data
    leakage = (check_leakage(real, holdout, synthetic, plan.schema, n_attacks=2000,
                             reference_rows=10_000, seed=plan.config.seed)
               if len(holdout) else None)
    # every value of the input's identifier columns, against every text cell of the output
    # (surrogates, categories; numbers could match by chance and cannot carry a name)
    raw = read_identifiers(plan.config.input, plan.schema)
    text = output[[c for c in output.columns if not pd.api.types.is_numeric_dtype(output[c])
                   and not pd.api.types.is_bool_dtype(output[c])]]
    hits = identifier_leaks(raw, list(raw.columns), text) if len(raw.columns) else {}
    for warning in leakage.warnings if leakage else ():
        log.warning("release check: %s", warning)
    params = model.get_params()
    # 99%: it gates every release, so an honest one is quarantined by chance at most 1 in 100
    audited = audit(model.privacy_, seed=plan.config.seed, confidence=0.99,
                    secure_noise=bool(params.get("secure_noise")),
                    noise_seed=params.get("noise_seed"))
    return Verdict(structural, fidelity, leakage, audited, hits)


def release(plan: Plan, model: Synthesizer, synthetic: pd.DataFrame, verdict: Verdict,
            real: pd.DataFrame | None = None) -> tuple[Release, dict[str, Any]]:
    """Publishes the rows, the privacy report, the validation result and the release-safe
    HTML report at ``out``, and the internal report (real-data statistics) at
    ``<out>.internal``. A release that failed its checks goes to ``<out>.quarantine``
    instead, and ValidationFailed says which expectations failed."""
    report = privacy_report(plan.schema, plan.config.synthesizer, model, len(synthetic), now())
    report["validation"] = verdict.summary()
    gates = ["the schema suite (synthetic rows only)", "the canary audit (no real data)"]
    if verdict.fidelity is not None:
        gates.append("the fidelity suite (compares the synthetic rows with the real training "
                     "rows)")
    if plan.schema.identifiers:
        gates.append("the identifier check (the input's identifier values against the output)")
    report["release_gate"] = (
        "published only if these checks passed: " + "; ".join(gates) + ". The checks that "
        "read the real data are not differentially private: their values stay in the internal "
        "report, but publication itself reveals that they passed, which the (epsilon, delta) "
        "above does not cover. Leakage checks against held-out rows only warn.")
    if verdict.fidelity is not None or plan.schema.identifiers:
        report["guarantee"] += ("; the decision to publish rests on non-private checks of "
                                "the real data (see release_gate)")
    if plan.config.holdout > 0:
        report["private_steps"].insert(1, (
            f"a random {plan.config.holdout:g} of the records held out of training (seeded; "
            "they are read only by the internal leakage checks)"))
    report["private_steps"] += ["internal checks: fidelity suite, leakage checks, identifier "
                                "check (their values stay in the internal report)"]
    inputs = ReportInputs(
        schema=plan.schema, privacy=report, synthetic=synthetic,
        structural=(verdict.structural.evaluated - len(verdict.structural.failed),
                    verdict.structural.evaluated, verdict.structural.failed),
        fidelity=observed(verdict.fidelity) if verdict.fidelity else None, real=real,
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
             HTML_FILE: render(inputs, internal=False).encode()}
    if verdict.success:  # reruns of this very run become no-ops once this release is out
        internal[KEY_FILE] = (f"{plan.key}\n{hashlib.sha256(files[REPORT_FILE]).hexdigest()}"
                              "\n").encode()
    publish_folder(internal, internal_dir(plan.out))
    target = plan.out if verdict.success else quarantine_dir(plan.out)
    published = publish(synthetic, plan.schema, release_metadata(report, verdict.summary()),
                        target, extra_files=files,
                        overwrite=plan.config.overwrite or not verdict.success)
    if not verdict.success:
        log.error("checks failed: the release is quarantined in %s, the internal report is in "
                  "%s", target, internal_dir(plan.out))
        raise ValidationFailed(ValidationOutcome(
            success=False, evaluated=verdict.structural.evaluated + (
                verdict.fidelity.evaluated if verdict.fidelity else 0),
            failed=verdict.failed, result={}), quarantine=target)
    return published, report


def run_release(config: RunConfig,
                progress: Callable[[int, int], None] | None = None) -> ReleaseResult:
    """The whole job, in process: what ``synth run`` does. A rerun of a published run is a
    no-op that returns the release already there."""
    try:
        plan = prepare(config)
    except AlreadyPublished as done:
        log.info("%s", done)
        return previous(done.out)
    data = load_training(plan)
    model = fit(plan, data.train, progress)
    synthetic = generate(plan, model)
    verdict = check(plan, model, synthetic, data.real, data.holdout)
    published, report = release(plan, model, synthetic, verdict, data.real)
    return ReleaseResult(release=published.path, report=report, verdict=verdict)
