"""The image release as a Prefect 3 flow: the steps of ``pipelines.image_run`` as tasks.

``flows.release.release`` runs it (as a subflow) when the schema says ``kind: image``, so
``python -m flows.release --schema schemas/fashion_mnist.yaml ...`` takes the same options.
Tasks that hold private data (the ingested images, the model being fitted) never persist or
cache their results, and the flow returns only the release location and the privacy report.
"""
# No `from __future__ import annotations` here (see flows/release.py).

import json
import logging

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import release_artifacts
from pipelines import image_run as steps
from pipelines.config import RunConfig
from pipelines.ingest import DataError

local = logging.getLogger("synth.local")  # stdlib logging: not shipped to Prefect's API

# Private data must never be written to Prefect's result storage or cache.
PRIVATE = {"persist_result": False, "cache_policy": NO_CACHE}


@task(name="prepare-images", **PRIVATE)
def prepare(config: RunConfig) -> steps.ImagePlan:
    return steps.prepare(config)


@task(name="ingest-images", **PRIVATE)
def ingest(plan: steps.ImagePlan):
    try:
        return steps.load(plan)
    except DataError as exc:
        # The full message may quote private values: this process's stderr only.
        local.error("%s", exc)
        raise DataError(exc.public) from None


@task(name="train-images", **PRIVATE)
def train(plan: steps.ImagePlan, data):
    return steps.fit(plan, data)


@task(name="sample-images", **PRIVATE)
def sample(plan: steps.ImagePlan, model):
    return steps.generate(plan, model)


@task(name="check-images", **PRIVATE)
def check(plan: steps.ImagePlan, model, synthetic):
    return steps.check(plan, model, synthetic)


@task(name="publish-images", **PRIVATE)
def publish(plan: steps.ImagePlan, synthetic, checked) -> dict:
    try:
        release = steps.release(plan, synthetic, checked)
    finally:  # published or quarantined: the UI shows which, and why (public facts only)
        outcome = checked.outcome
        where = plan.out if outcome.success else steps.quarantine_dir(plan.out)
        if (where / steps.REPORT_FILE).is_file():
            release_artifacts(
                checked.report, where, outcome.success,
                tuple(f"{n}: {d}" for n, ok, d in outcome.checks if not ok), plan.ledger,
                plan.schema.name, plan.schema.budget,
                [{"suite": "image checks", "check": n, "detail": d, "success": ok}
                 for n, ok, d in outcome.checks])
    return {"release": str(release.path), "privacy_report": checked.report}


@flow(name="synth-image-release", persist_result=False)
def release_images(config: RunConfig) -> dict:
    """Ingest images -> DP training -> sample -> check -> publish PNGs in Parquet."""
    done = steps.already_published(config)
    if done is not None:  # an identical run published it: spend nothing, write nothing
        get_run_logger().info("%s", steps.AlreadyPublished(done))
        report = json.loads((done / steps.REPORT_FILE).read_text(encoding="utf-8"))
        return {"release": str(done), "privacy_report": report}
    try:
        plan = prepare(config)
    except steps.AlreadyPublished as raced:  # an identical run published while this one waited
        get_run_logger().info("%s", raced)
        report = json.loads((raced.out / steps.REPORT_FILE).read_text(encoding="utf-8"))
        return {"release": str(raced.out), "privacy_report": report}
    try:  # the release location stays locked until the run published or failed
        data = ingest(plan)
        model = train(plan, data)
        synthetic = sample(plan, model)
        checked = check(plan, model, synthetic)
        result = publish(plan, synthetic, checked)
    finally:
        plan.done()
    return result
