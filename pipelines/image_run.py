"""One image release, step by step: what ``synth run`` does for a ``kind: image`` schema,
and what the Prefect flow mirrors (the tabular recipe is ``pipelines.run``).

prepare (public checks; budget reserved in the ledger) -> load (private) -> fit (DP)
  -> generate -> check -> release (Parquet of PNGs + contact sheet + privacy report)
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

import numpy as np

from pipelines.config import DEFAULT_SYNTHESIZER, TUNABLE, RunConfig
from pipelines.image_publish import (
    CONTACT_SHEET,
    ImageCheck,
    ImageCheckFailed,
    check_image_table,
    contact_sheet,
    image_table,
)
from pipelines.images import ImageSet, image_set_fingerprint, ingest_images
from pipelines.ingest import DataError
from pipelines.ledger import Ledger
from pipelines.publish import Release, footer_metadata, publish_table
from pipelines.report import now, privacy_report, release_metadata
from schemas.image import ImageSchema, load_image_schema
from synth.images import image_synthesizer_names, make_image_synthesizer
from synth.privacy import PrivacyBudget

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SYNTHESIZER = "dp-conv-gan"
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


@dataclass(frozen=True)
class ImageReleaseResult:
    release: Path
    report: dict[str, Any]
    validation: ImageCheck


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
    budget = PrivacyBudget(config.epsilon, config.delta)
    name = image_synthesizer(config)
    params = image_params(config, name)
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not config.overwrite:
        raise DataError(f"{out} already exists: choose another --out or pass --overwrite")
    try:
        data_set = image_set_fingerprint(config.input)
    except OSError as exc:
        raise DataError(f"{config.input}: cannot read input: {exc.strerror or exc}") from None
    ledger = Ledger(config.ledger)
    entry = ledger.reserve(data_set, schema.name, str(config.input), str(out), name,
                           budget.epsilon, budget.delta, schema.budget)
    return ImagePlan(config=config, schema=schema, synthesizer=name, params=params,
                     budget=budget, out=out, ledger=ledger, entry=entry)


def load(plan: ImagePlan) -> ImageSet:
    """Reads and checks the private images (the only read of private data)."""
    try:
        return ingest_images(plan.config.input, plan.schema)
    except BaseException:
        plan.ledger.cancel(plan.entry)  # no DP step ran: the reservation is freed
        raise


def fit(plan: ImagePlan, data: ImageSet, progress: Callable[[int, int], None] | None = None):
    """Trains under the plan's budget; the ledger entry counts in full from the first DP step
    and records what the accountant reports at the end."""
    plan.ledger.start(plan.entry)
    model = make_image_synthesizer(plan.synthesizer, **plan.params).fit(
        data.images, data.labels, len(plan.schema.labels), plan.budget, progress=progress)
    if model.privacy_.epsilon > plan.budget.epsilon * (1 + 1e-9):
        raise RuntimeError(f"spent epsilon {model.privacy_.epsilon} exceeds the budget "
                           f"{plan.budget.epsilon}")
    plan.ledger.commit(plan.entry, model.privacy_.epsilon, model.privacy_.delta)
    return model


def generate(plan: ImagePlan, model) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` synthetic images and labels: post-processing, public from here on."""
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
    """Builds the release table and checks it; on failure saves the result in
    ``<out>.rejected/`` and raises ImageCheckFailed. Nothing is published then."""
    images, labels = synthetic
    report = _report(plan, model, len(images))
    table = image_table(images, labels, plan.schema, release_metadata(report, "pending"))
    outcome = check_image_table(table, plan.schema, plan.config.rows)
    if not outcome.success:
        rejected = plan.out.with_name(plan.out.name + ".rejected")
        rejected.mkdir(parents=True, exist_ok=True)
        tmp = rejected / f".{VALIDATION_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(outcome.to_dict(), indent=2))
        os.replace(tmp, rejected / VALIDATION_FILE)
        log.error("checks failed; result saved in %s", rejected / VALIDATION_FILE)
        raise ImageCheckFailed(outcome)
    report["validation"] = outcome.verdict
    return Checked(table=table, report=report, outcome=outcome)


def release(plan: ImagePlan, synthetic: tuple[np.ndarray, np.ndarray],
            checked: Checked) -> Release:
    """Publishes the checked images (PNG in Parquet), the contact sheet, the privacy report
    and the check result, atomically."""
    images, labels = synthetic
    report = checked.report
    table = checked.table.replace_schema_metadata(
        footer_metadata(release_metadata(report, checked.outcome.verdict), plan.schema))
    files = {REPORT_FILE: json.dumps(report, indent=2).encode(),
             VALIDATION_FILE: json.dumps(checked.outcome.to_dict(), indent=2).encode(),
             CONTACT_SHEET: contact_sheet(images, labels, plan.schema)}
    return publish_table(table, plan.out, extra_files=files, overwrite=plan.config.overwrite)


def run_image_release(config: RunConfig, progress: Callable[[int, int], None] | None = None
                      ) -> ImageReleaseResult:
    """The whole job, in process: what ``synth run`` does for an image schema."""
    plan = prepare(config)
    data = load(plan)
    model = fit(plan, data, progress)
    del data  # private images are not needed past training
    synthetic = generate(plan, model)
    checked = check(plan, model, synthetic)
    published = release(plan, synthetic, checked)
    return ImageReleaseResult(release=published.path, report=checked.report,
                              validation=checked.outcome)
