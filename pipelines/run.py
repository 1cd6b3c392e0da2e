"""One release, step by step: the recipe ``synth run`` follows and the Prefect flow mirrors.

prepare (public checks; budget reserved in the ledger) -> ingest (private; a holdout split
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

from pipelines import checkpoints
from pipelines.checkpoints import RunCheckpoint
from pipelines.config import RunConfig
from pipelines.html_report import ReportInputs, render
from pipelines.ingest import DataError, Ingested, ingest, read_identifiers
from pipelines.leakage import LeakageReport, check_leakage, identifier_leaks
from pipelines.ledger import Ledger, source_fingerprint
from pipelines.paths import release_dir
from pipelines.publish import (
    DATA_FILE,
    Release,
    publish,
    publish_folder,
    sweep_leftovers,
)
from pipelines.report import code_version, now, privacy_report, release_metadata
from pipelines.surrogates import add_surrogates
from pipelines.train import sample, train
from pipelines.validate import ValidationFailed, ValidationOutcome, validate_synthetic
from pipelines.validate.fidelity import observed, validate_fidelity
from schemas import Schema, SchemaError, load_schema
from synth.audit import AuditResult, audit
from synth.base import Synthesizer
from synth.privacy import PrivacyBudget

log = logging.getLogger(__name__)

REPORT_FILE = "privacy_report.json"
VALIDATION_FILE = "validation.json"
HTML_FILE = "report.html"
FIDELITY_FILE = "fidelity.json"  # internal: the fidelity suite's values
LEAKAGE_FILE = "leakage.json"  # internal: the release checks
KEY_FILE = "run_key"  # internal: what makes a rerun of the same run a no-op


@dataclass(frozen=True)
class Plan:
    """The public half of a run, checked before any private byte is read."""

    config: RunConfig
    schema: Schema
    budget: PrivacyBudget
    out: Path
    ledger: Ledger
    entry: int  # this run's reservation in the ledger
    key: str = ""  # run_key: what the release footer records to make reruns no-ops
    checkpoint: RunCheckpoint | None = None  # training checkpoints (DP-SGD synthesizers)
    resumed: bool = False  # training resumes from a killed run's checkpoint (and entry)


@dataclass(frozen=True)
class ReleaseResult:
    release: Path
    report: dict[str, Any]
    verdict: Verdict | None  # None: an earlier, identical run had published it


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
    out = release_dir(config.out)
    source = Path(config.input)
    if not source.is_file():
        raise DataError(f"{source}: cannot read input: no such file")
    try:
        data_set = source_fingerprint(source)
    except OSError as exc:
        raise DataError(f"{source}: cannot read input: {exc.strerror or exc}") from None
    key = run_key(config, data_set, schema)
    if published_key(out) == key:
        sweep_leftovers(out)  # what a run killed after publishing it may have left beside it
        raise AlreadyPublished(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not config.overwrite:
        raise DataError(f"{out} already exists: choose another --out or pass --overwrite")
    ledger, entry, checkpoint = reserve_or_resume(
        config, key, out, data_set, schema.name, str(source), config.synthesizer, budget,
        schema.budget)
    return Plan(config=config, schema=schema, budget=budget, out=out, ledger=ledger,
                entry=entry, key=key, checkpoint=checkpoint,
                resumed=checkpoint is not None and checkpoint.resumed)


def reserve_or_resume(config: RunConfig, key: str, out: Path, data_set: str, name: str,
                      source: str, synthesizer: str, budget: PrivacyBudget,
                      limit: tuple[float, float] | None
                      ) -> tuple[Ledger, int, RunCheckpoint | None]:
    """The run's ledger entry and its training checkpoint. A killed run of these very
    settings (same run key) that left a checkpoint is resumed: its entry, charged since its
    first DP step, is taken over instead of reserving the budget again. Otherwise the run's
    (epsilon, delta) is reserved, or refused past the data set's total.

    Raises:
        BudgetExceeded; CheckpointError: a checkpoint file that cannot be loaded safely.
    """
    ledger = Ledger(config.ledger)
    ledger.release_stale()  # reservations of runs killed before training
    path = internal_dir(out) / checkpoints.FILE
    saved = RunCheckpoint.found(path, key) if config.checkpoint_every else None
    if saved is not None and ledger.adopt(int(saved["entry"]), data_set):
        entry = int(saved["entry"])
        log.info("resuming training from %s (step %d), charged to ledger entry %d", path,
                 saved["state"]["step"], entry)
    else:
        saved = None
        entry = ledger.reserve(data_set, name, source, str(out), synthesizer, budget.epsilon,
                               budget.delta, limit)
    if not config.checkpoint_every:
        return ledger, entry, None
    checkpoint = RunCheckpoint(path, key, entry, config.checkpoint_every)
    if saved is not None:
        checkpoint.resume_from(saved)
    return ledger, entry, checkpoint


def previous(out: Path) -> ReleaseResult:
    """The result of the run that published the release at ``out`` (its report)."""
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    return ReleaseResult(release=out, report=report, verdict=None)


class AlreadyPublished(Exception):
    """The release at ``out`` came from this very run (same input bytes, schema, settings and
    code): running it again would spend budget for nothing, so nothing is done."""

    def __init__(self, out: Path):
        self.out = out
        super().__init__(f"{out} already holds the release of this run (same input, schema, "
                         "settings and code): nothing was spent or published again")


def already_published(config: RunConfig) -> Path | None:
    """The release location if an identical run already published there, else None (reads
    the schema, hashes the input file; nothing else)."""
    source = Path(config.input)
    try:
        out = release_dir(config.out)
        if not (out / DATA_FILE).is_file() or not source.is_file():
            return None
        key = run_key(config, source_fingerprint(source), load_schema(config.schema_file))
    except (OSError, SchemaError, DataError):
        return None  # prepare reports it
    return out if published_key(out) == key else None


def run_key(config: RunConfig, data_set: str, schema: Schema) -> str:
    """sha256 naming a run by what determines it: the input's bytes, the schema, every
    setting but where it goes, and the code version."""
    settings = config.model_dump(mode="json", exclude={"out", "overwrite", "ledger", "input",
                                                       "schema_file", "checkpoint_every"})
    blob = json.dumps({"data_set": data_set, "schema": schema.fingerprint(),
                       "settings": settings, "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def published_key(out: Path) -> str | None:
    """The run key of the release at ``out``, if one is there. It is kept in the internal
    folder, never in the release: it hashes the private input's bytes, and anyone who knew
    every record but one could test guesses of that one against it. The file also holds the
    sha256 of the release's privacy_report.json: it is written with the internal folder,
    before the release is moved into place, and names only that release (a run killed in
    between leaves a key that matches no release at ``out``)."""
    key = internal_dir(out) / KEY_FILE
    if not (out / DATA_FILE).is_file() or not key.is_file():
        return None
    lines = key.read_text(encoding="utf-8").split()
    if len(lines) > 1:
        try:
            report = (out / REPORT_FILE).read_bytes()
        except OSError:
            return None
        if hashlib.sha256(report).hexdigest() != lines[1]:
            return None
    return lines[0] if lines else None


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
    from the schema and the seed alone (pipelines.surrogates)."""
    from synth import survival

    synthetic = sample(model, plan.config.rows, seed=plan.config.seed)
    synthetic = survival.constrain(synthetic, plan.schema)
    return add_surrogates(synthetic, plan.schema, plan.config.seed)


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
    """Holds out ``config.holdout`` of the real rows from training, at random (seeded by
    ``config.seed``): the leakage checks compare the release with rows it never saw. The
    held-out rows are never trained on; they only feed the internal report."""
    share = plan.config.holdout
    if share <= 0 or len(frame) < 10:
        return frame, frame.iloc[:0]
    order = np.random.default_rng(plan.config.seed).permutation(len(frame))
    cut = len(frame) - max(1, int(round(share * len(frame))))
    return (frame.iloc[np.sort(order[:cut])].reset_index(drop=True),
            frame.iloc[np.sort(order[cut:])].reset_index(drop=True))


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


def internal_dir(out: Path) -> Path:
    """Where the internal report of the release at ``out`` goes (never publish it)."""
    return out.with_name(out.name + ".internal")


def quarantine_dir(out: Path) -> Path:
    """Where a release that failed its checks goes instead of ``out``."""
    return out.with_name(out.name + ".quarantine")


def run_release(config: RunConfig,
                progress: Callable[[int, int], None] | None = None) -> ReleaseResult:
    """The whole job, in process: what ``synth run`` does. A rerun of a published run is a
    no-op that returns the release already there."""
    try:
        plan = prepare(config)
    except AlreadyPublished as done:
        log.info("%s", done)
        return previous(done.out)
    real, holdout = split_holdout(plan, load(plan).frame)
    model = fit(plan, real, progress)
    synthetic = generate(plan, model)
    verdict = check(plan, model, synthetic, real, holdout)
    published, report = release(plan, model, synthetic, verdict, real)
    return ReleaseResult(release=published.path, report=report, verdict=verdict)
