"""The release job as a Prefect 3 flow: the same pipeline steps as ``synth run``, as tasks.

Run it locally with no server to start by hand (Prefect starts a temporary one):

    python -m flows.release --input data.csv --schema schemas/NAME.yaml --epsilon 1 --out DIR

Tasks that hold private data (the ingested rows, the model being fitted) never persist or
cache their results, and the flow returns only the release location and the privacy report.
"""
# No `from __future__ import annotations` here: it breaks deployment runs of flows with
# pydantic parameters (Prefect 3.9).

import argparse
import logging
import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import run as steps
from pipelines.cli import guarded, quiet_libraries
from pipelines.config import RunConfig, add_run_arguments, config_from_args
from pipelines.ingest import DataError

local = logging.getLogger("synth.local")  # stdlib logging: not shipped to Prefect's API

# Private data must never be written to Prefect's result storage or cache.
PRIVATE = {"persist_result": False, "cache_policy": NO_CACHE}


@task(name="prepare", **PRIVATE)
def prepare(config: RunConfig) -> steps.Plan:
    return steps.prepare(config)


@task(name="ingest", **PRIVATE)
def ingest(plan: steps.Plan):
    try:
        return steps.load(plan).frame
    except DataError as exc:
        # The full message quotes values from the private file: it goes to this process's
        # stderr only. Prefect stores state messages and logs, so it gets the redacted one.
        local.error("%s", exc)
        raise DataError(exc.public) from None


@task(name="train", **PRIVATE)
def train(plan: steps.Plan, data):
    return steps.fit(plan, data)


@task(name="sample", **PRIVATE)
def sample(plan: steps.Plan, model):
    return steps.generate(plan, model)


@task(name="validate", **PRIVATE)
def validate(plan: steps.Plan, synthetic):
    return steps.check(plan, synthetic)


@task(name="publish", **PRIVATE)
def publish(plan: steps.Plan, model, synthetic, outcome) -> dict:
    release, report = steps.release(plan, model, synthetic, outcome)
    return {"release": str(release.path), "privacy_report": report}


@flow(name="synth-release", persist_result=False)
def release(config: RunConfig) -> dict:
    """Ingest -> DP training -> sample -> validate -> publish, for one private table."""
    plan = prepare(config)
    data = ingest(plan)
    model = train(plan, data)
    synthetic = sample(plan, model)
    outcome = validate(plan, synthetic)
    result = publish(plan, model, synthetic, outcome)
    r = result["privacy_report"]
    create_markdown_artifact(
        key="release", description="Published synthetic release",
        markdown=f"**Release** `{result['release']}`\n\n"
                 f"epsilon = {r['epsilon']:.4f}, delta = {r['delta']:g} ({r['accountant']}), "
                 f"{r['rows_released']:,} rows, validation: {r['validation']}")
    get_run_logger().info("published %s", result["release"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.release",
                                     description="Run the release flow locally under Prefect.")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    quiet_libraries()

    def run() -> int:
        result = release(config_from_args(args))
        print(f"release: {result['release']}/data.parquet")
        print(f"report:  {result['release']}/privacy_report.json")
        return 0

    return guarded(run)

if __name__ == "__main__":
    sys.exit(main())
