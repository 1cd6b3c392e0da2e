"""The release job as a Prefect 3 flow: the steps of ``pipelines.recipe`` (the recipe
``synth run`` follows, for tables and images alike), each as a task.

Run it locally with no server to start by hand (Prefect starts a temporary one):

    python -m flows.release --input data.csv --schema schemas/NAME.yaml --epsilon 1 --out DIR

Tasks that hold private data (the ingested rows, the model being fitted) never persist or
cache their results, and the flow returns only the release location and the privacy report.
"""
# No `from __future__ import annotations` here: it breaks deployment runs of flows with
# pydantic parameters (Prefect 3.9).

import json
import logging
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from pydantic import ValidationError

from flows.artifacts import release_artifacts
from flows.parameters import config_of, docstring, parameters, signature
from pipelines.cli import Parser, guarded, quiet_libraries
from pipelines.config import RunConfig, add_run_arguments, config_from_args
from pipelines.errors import DataError
from pipelines.plan import REPORT_FILE, AlreadyPublished, quarantine_dir
from pipelines.progress import PROGRESS
from pipelines.recipe import Kind, kind_of, previous
from pipelines.validate import ValidationFailed
from pipelines.validate.images import ImageCheckFailed
from schemas.limits import bounded

local = logging.getLogger("synth.local")  # stdlib logging: not shipped to Prefect's API

# Private data must never be written to Prefect's result storage or cache.
PRIVATE = {"persist_result": False, "cache_policy": NO_CACHE}


class RunLog(logging.Handler):
    """Forwards the public progress lines (``pipelines.progress``) to the Prefect run
    logger of the flow or task run in progress: they land in the run's logs in the UI.
    Outside a run it does nothing (``synth run`` prints them itself)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = get_run_logger()
        except MissingContextError:
            return
        logger.log(record.levelno, "%s", record.getMessage())


if not any(isinstance(h, RunLog) for h in logging.getLogger(PROGRESS).handlers):
    logging.getLogger(PROGRESS).addHandler(RunLog())


@task(name="prepare", **PRIVATE)
def prepare(kind: Kind, config: RunConfig) -> Any:
    return kind.prepare(config)


@task(name="ingest", **PRIVATE)
def ingest(kind: Kind, plan: Any) -> Any:
    """The private data: what trains (and, for tables, the rows the advisory checks read)."""
    try:
        return kind.load(plan)
    except DataError as exc:
        # The full message quotes values from the private file: it goes to this process's
        # stderr only. Prefect stores state messages and logs, so it gets the redacted one.
        local.error("%s", exc)
        raise DataError(exc.public) from None


@task(name="train", **PRIVATE)
def train(kind: Kind, plan: Any, data: Any) -> Any:
    return kind.fit(plan, data)


@task(name="sample", **PRIVATE)
def sample(kind: Kind, plan: Any, model: Any) -> Any:
    return kind.generate(plan, model)


@task(name="validate", **PRIVATE)
def validate(kind: Kind, plan: Any, model: Any, synthetic: Any, data: Any) -> Any:
    return kind.check(plan, model, synthetic, data)


@task(name="publish", **PRIVATE)
def publish(kind: Kind, plan: Any, model: Any, synthetic: Any, verdict: Any,
            data: Any) -> dict:
    try:
        result = kind.publish(plan, model, synthetic, verdict, data)
    except (ValidationFailed, ImageCheckFailed):
        report_artifacts(kind, plan, verdict)
        raise
    report_artifacts(kind, plan, verdict)
    return {"release": str(result.release), "privacy_report": result.report}


def report_artifacts(kind: Kind, plan: Any, verdict: Any) -> None:
    """The run's artifacts in the Prefect UI (``flows.artifacts``: public facts only)."""
    success, failed, rows = kind.gate(verdict)
    where = plan.out if success else quarantine_dir(plan.out)
    report = json.loads((where / REPORT_FILE).read_text(encoding="utf-8"))
    release_artifacts(report, where, success, failed, plan.ledger, plan.schema.name,
                      plan.schema.budget, rows)


def run(config: RunConfig) -> dict:
    """The recipe of ``pipelines.recipe``, a task per step, for the kind the schema
    declares."""
    kind = kind_of(config)
    done = kind.already_published(config)
    if done is not None:  # an identical run published it: spend nothing, write nothing
        get_run_logger().info("%s", AlreadyPublished(done))
        return {"release": str(done), "privacy_report": previous(done).report}
    try:
        plan = prepare(kind, config)
    except AlreadyPublished as raced:  # an identical run published while this one waited
        get_run_logger().info("%s", raced)
        return {"release": str(raced.out), "privacy_report": previous(raced.out).report}
    try:  # the release location stays locked until the run published or failed
        data = ingest(kind, plan)
        model = train(kind, plan, data)
        if not kind.keeps_data:
            data = None  # private data is not held past training when nothing reads it
        synthetic = sample(kind, plan, model)
        verdict = validate(kind, plan, model, synthetic, data)
        result = publish(kind, plan, model, synthetic, verdict, data)
    finally:
        plan.done()
    return result


def release(**settings) -> dict:
    try:
        config = config_of(settings)
    except ValidationError as exc:  # one line, as `synth run` says it
        raise ValueError(bounded("; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()))) from None
    return run(config)


release.__signature__ = signature()  # type: ignore[attr-defined]
release.__doc__ = docstring(
    "Ingest -> DP training -> sample -> validate -> publish, for one private table or "
    "image set: the run form in Prefect's UI. A deployment's run may give any subset of "
    "the parameters; the deployment's values stand for the rest.")
release = flow(name="synth-release", persist_result=False)(release)  # type: ignore[assignment]


def main(argv=None) -> int:
    parser = Parser(prog="python -m flows.release",
                                     description="Run the release flow locally under Prefect.")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    quiet_libraries()

    def go() -> int:
        result = release(**parameters(config_from_args(args)))
        rows = result["privacy_report"].get("rows_released")
        for table in rows if isinstance(rows, dict) else ["data"]:  # a file per table
            print(f"release:  {result['release']}/{table}.parquet")
        print(f"report:   {result['release']}/report.html")
        internal = Path(f"{result['release']}.internal") / "report.html"
        if internal.exists():  # tables: real-vs-synthetic statistics for the owner
            print(f"internal: {internal} (keep it private)")
        return 0

    return guarded(go)

if __name__ == "__main__":
    sys.exit(main())
