"""The release job as a Prefect 3 flow: the same pipeline steps as ``synth run``, as tasks.

Run it locally with no server to start by hand (Prefect starts a temporary one):

    python -m flows.release --input data.csv --schema schemas/NAME.yaml --epsilon 1 --out DIR

Tasks that hold private data (the ingested rows, the model being fitted) never persist or
cache their results, and the flow returns only the release location and the privacy report.
"""
# No `from __future__ import annotations` here: it breaks deployment runs of flows with
# pydantic parameters (Prefect 3.9).

import logging
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from flows.image_release import release_images
from pipelines import run as steps
from pipelines.cli import Parser, guarded, quiet_libraries
from pipelines.config import RunConfig, add_run_arguments, config_from_args
from pipelines.ingest import DataError
from pipelines.plan import (
    AlreadyPublished,
    Plan,
    already_published,
    internal_dir,
    quarantine_dir,
)
from pipelines.plan import prepare as plan_run
from pipelines.validate.measured import rows as measured_rows
from schemas import is_image_schema

local = logging.getLogger("synth.local")  # stdlib logging: not shipped to Prefect's API

# Private data must never be written to Prefect's result storage or cache.
PRIVATE = {"persist_result": False, "cache_policy": NO_CACHE}


@task(name="prepare", **PRIVATE)
def prepare(config: RunConfig) -> Plan:
    return plan_run(config)


@task(name="ingest", **PRIVATE)
def ingest(plan: Plan) -> steps.Training:
    """The real rows: what trains, and the training and held-out rows the checks read."""
    try:
        return steps.load_training(plan)
    except DataError as exc:
        # The full message quotes values from the private file: it goes to this process's
        # stderr only. Prefect stores state messages and logs, so it gets the redacted one.
        local.error("%s", exc)
        raise DataError(exc.public) from None


@task(name="train", **PRIVATE)
def train(plan: Plan, data):
    return steps.fit(plan, data)


@task(name="sample", **PRIVATE)
def sample(plan: Plan, model):
    return steps.generate(plan, model)


@task(name="validate", **PRIVATE)
def validate(plan: Plan, model, synthetic, real, holdout) -> steps.Verdict:
    return steps.check(plan, model, synthetic, real, holdout)


@task(name="publish", **PRIVATE)
def publish(plan: Plan, model, synthetic, verdict, real) -> dict:
    try:
        release, report = steps.release(plan, model, synthetic, verdict, real)
    finally:
        report_artifacts(plan, verdict)
    return {"release": str(release.path), "privacy_report": report}


def report_artifacts(plan: Plan, verdict: steps.Verdict) -> None:
    """What the Prefect UI shows of a run: the release gate's checks as a table and a
    summary. Only what is public goes there (Prefect's database may be shared or hosted):
    the schema suite, the release against the synthesizer's DP measurements and the canary
    audit. Nothing compared with the real rows (advisory fidelity, leakage, identifier scan)
    and no count of private rows reaches Prefect; those stay in the internal report."""
    where = plan.out if verdict.success else quarantine_dir(plan.out)
    rows = [{"suite": "schema", "check": line, "success": False}
            for line in verdict.structural.failed]
    if verdict.measured is not None:
        rows += [{"suite": "measured marginals", "check": f"{r['expectation']}({r['subject']})",
                  "threshold": r["threshold"], "observed": r["observed"],
                  "success": r["success"]} for r in measured_rows(verdict.measured)]
    if verdict.audit is not None:
        rows.append({"suite": "canary audit", "check": "empirical epsilon lower bound (99%) "
                     "at most the claim", "threshold": verdict.audit.epsilon_claimed,
                     "observed": verdict.audit.epsilon_lower, "success": verdict.audit.passed})
    create_table_artifact(key="release-checks", table=rows or [{"suite": "-", "check": "-"}],
                          description="The release gate: schema suite, the release against "
                                      "the synthesizer's DP measurements, canary audit")
    failed = "\n".join(f"- {line}" for line in verdict.failed) or "none"
    create_markdown_artifact(
        key="release", description="Synthetic release",
        markdown=f"**{'Published' if verdict.success else 'QUARANTINED'}** `{where}`\n\n"
                 f"| | |\n|---|---|\n| release gate | {verdict.summary()} |\n\n"
                 f"Failed checks:\n{failed}\n")
    internal = internal_dir(plan.out) / "report.html"
    create_link_artifact(key="release-report", link=internal.absolute().as_uri(),
                         link_text="internal report (real-data statistics)",
                         description="The run's HTML report; the release-safe one is beside "
                                     "the release as report.html")


@flow(name="synth-release", persist_result=False)
def release(config: RunConfig) -> dict:
    """Ingest -> DP training -> sample -> validate -> publish, for one private table.

    Args:
        config: The release: private input, schema, privacy budget, synthesizer, where to
            publish and the fidelity bounds (the run form in Prefect's UI).
    """
    if is_image_schema(config.schema_file):  # kind: image -> flows/image_release.py
        return release_images(config)
    done = already_published(config)
    if done is not None:  # an identical run published it: spend nothing, write nothing
        get_run_logger().info("%s", AlreadyPublished(done))
        return {"release": str(done), "privacy_report": steps.previous(done).report}
    try:
        plan = prepare(config)
    except AlreadyPublished as done:  # an identical run published while this one waited
        get_run_logger().info("%s", done)
        return {"release": str(done.out), "privacy_report": steps.previous(done.out).report}
    try:  # the release location stays locked until the run published or failed
        data = ingest(plan)
        model = train(plan, data.train)
        synthetic = sample(plan, model)
        verdict = validate(plan, model, synthetic, data.real, data.holdout)
        result = publish(plan, model, synthetic, verdict, data.real)
    finally:
        plan.done()
    get_run_logger().info("published %s", result["release"])
    return result


def main(argv=None) -> int:
    parser = Parser(prog="python -m flows.release",
                                     description="Run the release flow locally under Prefect.")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    quiet_libraries()

    def run() -> int:
        result = release(config_from_args(args))
        print(f"release:  {result['release']}/data.parquet")
        print(f"report:   {result['release']}/report.html")
        internal = Path(f"{result['release']}.internal") / "report.html"
        if internal.exists():  # tables: real-vs-synthetic statistics for the owner
            print(f"internal: {internal} (keep it private)")
        return 0

    return guarded(run)

if __name__ == "__main__":
    sys.exit(main())
