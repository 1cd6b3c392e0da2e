"""The steps of an image release (the kind ``pipelines.recipe`` runs for a ``kind: image``
schema).

prepare (public checks; budget reserved in the ledger) -> load (private) -> fit (DP)
  -> generate -> check (structural checks, canary audit) -> release (Parquet of PNGs +
  contact sheet + privacy report + HTML report; or quarantine at ``<out>.quarantine``)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import checkpoints
from pipelines.checkpoints import RunCheckpoint
from pipelines.config import DEFAULT_SYNTHESIZER, TUNABLE, RunConfig
from pipelines.errors import DataError
from pipelines.html_report import ReportInputs, render
from pipelines.image_publish import CONTACT_SHEET, contact_sheet, image_table
from pipelines.images import ImageSet, image_set_fingerprint, ingest_images
from pipelines.ledger import Ledger
from pipelines.lock import OutLock
from pipelines.paths import release_dir
from pipelines.plan import (
    HTML_FILE,
    KEY_FILE,
    check_location,
    claim,
    commit_spent,
    internal_dir,
    published_key,
    quarantine_dir,
    run_key,
)
from pipelines.progress import Steps, phase
from pipelines.publish import (
    DATA_FILE,
    Release,
    footer_metadata,
    publish_folder,
    publish_table,
)
from pipelines.report import now, privacy_report, release_metadata
from pipelines.validate.images import ImageCheck, ImageCheckFailed, check_image_table
from schemas import SchemaError
from schemas.image import ImageSchema, load_image_schema
from synth import registry
from synth.audit import audit
from synth.images import image_synthesizer_names, make_image_synthesizer
from synth.privacy import PrivacyBudget

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SYNTHESIZER = registry.DEFAULT["image"]
REPORT_FILE = "privacy_report.json"
VALIDATION_FILE = "validation.json"


@dataclass(frozen=True)
class ImagePlan:
    """The public half of an image run, checked before any private byte is read."""

    config: RunConfig
    schema: ImageSchema
    synthesizer: str
    params: dict[str, Any]
    budget: PrivacyBudget
    out: Path
    ledger: Ledger
    entry: int  # this run's reservation in the ledger
    key: str = ""  # run key: a rerun of a published run is a no-op
    checkpoint: RunCheckpoint | None = None  # training checkpoints
    resumed: bool = False  # training resumes from a killed run's checkpoint (and entry)
    lock: OutLock | None = None  # held from prepare until the run published or failed

    def done(self) -> None:
        """Releases the release location's lock (the run published or failed)."""
        if self.lock is not None:
            self.lock.release()


def image_synthesizer(config: RunConfig) -> str:
    """The image synthesizer a config names: the tabular default (``dp-marginals``, which
    ``--synthesizer`` falls back to) means the image default, ``dp-conv-gan``.

    Raises:
        DataError: a tabular synthesizer was asked for.
    """
    name = config.synthesizer
    if name == DEFAULT_SYNTHESIZER:
        return DEFAULT_IMAGE_SYNTHESIZER
    if name not in image_synthesizer_names():
        raise DataError(f"synthesizer {name} is for tables; with an image schema use "
                        f"{' or '.join(image_synthesizer_names())}")
    return name


def image_params(config: RunConfig, name: str) -> dict[str, Any]:
    """The DP-SGD settings given, plus the seeds; the rest keep the synthesizer's defaults.

    Raises:
        DataError: a setting the synthesizer does not take, or a tabular-only option.
    """
    if config.clip or config.map_unknown:
        raise DataError("--clip and --map-unknown apply to tables only: fix the images or "
                        "the image schema instead")
    accepted = make_image_synthesizer(name).get_params()
    given = {k: getattr(config, k) for k in TUNABLE if getattr(config, k) is not None}
    if config.secure_noise:
        given["secure_noise"] = True
    wrong = sorted(set(given) - set(accepted))
    if wrong:
        raise DataError(f"{', '.join('--' + k.replace('_', '-') for k in wrong)} do(es) not "
                        f"apply to synthesizer {name}")
    return {"seed": config.seed, "noise_seed": config.noise_seed, **given}


def prepare(config: RunConfig) -> ImagePlan:
    """Parses the image schema, checks the options and the output location, and reserves the
    run's (epsilon, delta) in the ledger. Nothing private is read, beyond hashing the input
    files to know which data set they are.

    Raises:
        SchemaError, BudgetError (BudgetExceeded among them), DataError: one-line messages.
    """
    schema = load_image_schema(config.schema_file)
    if not isinstance(config.input, str):
        raise DataError(f"{config.schema_file} declares an image set: pass --input FOLDER or "
                        "FILE (TABLE=FILE inputs are for multi-table schemas)")
    budget = PrivacyBudget(config.epsilon, config.delta)
    name = image_synthesizer(config)
    params = image_params(config, name)
    out = release_dir(config.out)
    check_location(out)
    try:
        data_set = image_set_fingerprint(config.input)
    except OSError as exc:
        raise DataError(f"{config.input}: cannot read input: {exc.strerror or exc}") from None
    key = run_key(config, data_set, schema)
    ledger, entry, checkpoint, lock = claim(config, key, out, schema.name, str(config.input),
                                            name, budget, schema.budget)
    return ImagePlan(config=config, schema=schema, synthesizer=name, params=params,
                     budget=budget, out=out, ledger=ledger, entry=entry, key=key,
                     checkpoint=checkpoint,
                     resumed=checkpoint is not None and checkpoint.resumed, lock=lock)


def already_published(config: RunConfig) -> Path | None:
    """The release location if an identical image run already published there, else None
    (reads the schema, hashes the input files; nothing else)."""
    try:
        out = release_dir(config.out)
        if not (out / DATA_FILE).is_file() or not isinstance(config.input, str):
            return None
        key = run_key(config, image_set_fingerprint(config.input),
                      load_image_schema(config.schema_file))
    except (OSError, SchemaError, DataError):
        return None  # prepare reports it
    return out if published_key(out) == key else None


def load(plan: ImagePlan) -> ImageSet:
    """Reads and checks the private images (the only read of private data)."""
    phase("ingest", "reading the images of %s and checking them against the schema",
          plan.config.input)
    try:
        return ingest_images(plan.config.path, plan.schema)
    except BaseException:
        plan.ledger.cancel(plan.entry)  # no DP step ran: the reservation is freed
        raise


def fit(plan: ImagePlan, data: ImageSet, progress: Callable[[int, int], None] | None = None):
    """Trains under the plan's budget; the ledger entry counts in full from the first DP step
    and records what the accountant reports at the end; a resumed run's entry has counted
    since the killed run's first step."""
    phase("train", "%s under epsilon=%g, delta=%g%s", plan.synthesizer, plan.budget.epsilon,
          plan.budget.delta, " (resuming from the last checkpoint)" if plan.resumed else "")
    if not plan.resumed:
        plan.ledger.start(plan.entry)
    model = make_image_synthesizer(plan.synthesizer, **plan.params).fit(
        data.images, data.labels, len(plan.schema.labels), plan.budget,
        progress=Steps("train", also=progress), checkpoint=plan.checkpoint)
    commit_spent(plan.ledger, plan.entry, model.privacy_, plan.budget)
    return model


def generate(plan: ImagePlan, model) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` synthetic images and labels: post-processing, public from here on."""
    phase("sample", "%s synthetic images", f"{plan.config.rows:,}")
    return model.sample(plan.config.rows, seed=plan.config.seed)


def _report(plan: ImagePlan, model, rows: int) -> dict[str, Any]:
    report = privacy_report(plan.schema, plan.synthesizer, model, rows, now())
    report["public_inputs"][0] = ("the image schema (height, width, channels, value range, "
                                  "label names)")
    report["private_steps"][0] = ("ingest (decoding and checks against the image schema; "
                                  "nothing released)")
    report["post_processing"] = ["sampling from the fitted model", "PNG encoding",
                                 "structural checks (synthetic images only)",
                                 "Parquet writing and the contact sheet"]
    return report


@dataclass(frozen=True)
class Checked:
    """Synthetic images that passed the checks, ready to publish (all public)."""

    table: Any  # pyarrow.Table of the release, footer metadata still to be completed
    report: dict[str, Any]
    outcome: ImageCheck


def check(plan: ImagePlan, model, synthetic: tuple[np.ndarray, np.ndarray]) -> Checked:
    """Builds the release table and checks it: the structural checks of the synthetic images
    and the canary audit of the model's DP-SGD (no real data is read). Does not raise:
    ``release`` publishes or quarantines by the outcome."""
    images, labels = synthetic
    report = _report(plan, model, len(images))
    table = image_table(images, labels, plan.schema, release_metadata(report, "pending"))
    outcome = check_image_table(table, plan.schema, plan.config.rows)
    params = model.get_params()
    audited = audit(model.privacy_, seed=plan.config.seed, confidence=0.99,
                    secure_noise=bool(params.get("secure_noise")),
                    noise_seed=params.get("noise_seed"))
    outcome = ImageCheck(outcome.checks + ((
        "canary audit", audited.passed, f"empirical epsilon lower bound (99%) "
        f"{audited.epsilon_lower:.3f}, claimed {audited.epsilon_claimed:.3f}"),))
    for name, ok, detail in outcome.checks:
        phase("check", "%s: %s (%s)", name, "passed" if ok else "FAILED", detail)
    report["validation"] = outcome.verdict
    report["release_gate"] = ("published only if the structural checks of the synthetic "
                              "images and the canary audit passed; neither reads real data")
    return Checked(table=table, report=report, outcome=outcome)


def release(plan: ImagePlan, synthetic: tuple[np.ndarray, np.ndarray],
            checked: Checked) -> Release:
    """Publishes the checked images (PNG in Parquet), the contact sheet, the privacy report,
    the check result and the HTML report, atomically; images that failed a check go to
    ``<out>.quarantine`` instead, and ImageCheckFailed says which."""
    images, labels = synthetic
    report = checked.report
    table = checked.table.replace_schema_metadata(
        footer_metadata(release_metadata(report, checked.outcome.verdict), plan.schema))
    sheet = contact_sheet(images, labels, plan.schema)
    failed = tuple(f"{n}: {d}" for n, ok, d in checked.outcome.checks if not ok)
    html = render(ReportInputs(
        schema=plan.schema, privacy=report, synthetic=pd.DataFrame(),
        structural=(len(checked.outcome.checks) - len(failed), len(checked.outcome.checks),
                    failed), images={"Synthetic images, a row per label": sheet},
        quarantined=failed),
        internal=False)
    files = {REPORT_FILE: json.dumps(report, indent=2).encode(),
             VALIDATION_FILE: json.dumps(checked.outcome.to_dict(), indent=2).encode(),
             CONTACT_SHEET: sheet, HTML_FILE: html.encode()}
    target = plan.out if checked.outcome.success else quarantine_dir(plan.out)
    # the checkpoint is carried over until the release is in place (checkpoints.carried)
    internal = {REPORT_FILE: files[REPORT_FILE], **checkpoints.carried(plan.checkpoint)}
    if checked.outcome.success:  # reruns of this very run become no-ops
        internal[KEY_FILE] = (f"{plan.key}\n"
                              f"{hashlib.sha256(files[REPORT_FILE]).hexdigest()}\n").encode()
    publish_folder(internal, internal_dir(plan.out))
    published = publish_table(table, target, extra_files=files,
                              overwrite=plan.config.overwrite or not checked.outcome.success)
    checkpoints.discard(internal_dir(plan.out))
    if checked.outcome.success:
        phase("publish", "published %s", published.path)
    else:
        phase("publish", "QUARANTINED in %s: %s", target, "; ".join(failed),
              level=logging.WARNING)
    if not checked.outcome.success:
        plan.ledger.quarantine(plan.entry)  # still counted: the budget was spent
        log.error("checks failed; the images are quarantined in %s", target)
        raise ImageCheckFailed(checked.outcome, quarantine=target)
    return published
