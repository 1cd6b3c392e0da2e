"""One release recipe for every kind of data, and the kinds that follow it.

    prepare -> load -> fit -> generate -> check -> publish

``prepare`` is public (schema, settings, location, lock, budget reserved); ``load`` is the
only read of private data; ``fit`` spends the budget; from ``generate`` on, everything is
post-processing of DP outputs, except the advisory checks a kind runs against the real rows
for the data owner's internal report. ``run`` is what ``synth run`` and the Python API call,
and ``flows/release.py`` wraps each step as a Prefect task; both dispatch on the schema's
``kind`` (``kind_of``).

A kind implements ``Kind``: tables (``pipelines.run``), images (``pipelines.image_run``)
and linked tables of persons (``pipelines.multitable_run``). Adding one: its schema in
schemas/, its steps in a ``pipelines/<kind>_run.py``, one adapter class here and one entry
in ``KINDS`` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipelines import image_run, multitable_run, run
from pipelines.config import RunConfig
from pipelines.plan import REPORT_FILE, AlreadyPublished, already_published, prepare
from pipelines.progress import announce
from schemas import is_image_schema
from schemas.relational import is_multi_table_schema

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Result:
    """What a run returns: where the release is, its privacy report, and what its checks
    found (the kind's verdict: ``success``, ``failed``; None when an identical earlier run had
    published it)."""

    release: Path
    report: dict[str, Any]
    verdict: Any = None


class Kind(Protocol):
    """The steps a kind of data implements; ``run`` and the flow call them in order."""

    name: str
    keeps_data: bool  # whether check and publish read the private data (advisory checks)

    def prepare(self, config: RunConfig) -> Any: ...

    def already_published(self, config: RunConfig) -> Path | None: ...

    def load(self, plan: Any) -> Any: ...

    def fit(self, plan: Any, data: Any, progress: Progress | None = None) -> Any: ...

    def generate(self, plan: Any, model: Any) -> Any: ...

    def check(self, plan: Any, model: Any, synthetic: Any, data: Any) -> Any: ...

    def publish(self, plan: Any, model: Any, synthetic: Any, outcome: Any,
                data: Any) -> Result: ...

    def gate(self, outcome: Any) -> tuple[bool, tuple[str, ...], list[dict[str, Any]]]: ...


def previous(out: Path) -> Result:
    """The result of the run that published the release at ``out`` (its report)."""
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    return Result(release=out, report=report)


def announced(plan: Any, synthesizer: str, unit: str) -> Any:
    """``plan``, after its first progress line (``pipelines.progress.announce``); its lock is
    released if that fails."""
    try:
        announce(plan, synthesizer, unit)
    except BaseException:
        plan.done()
        raise
    return plan


class Tables:
    """A table (CSV or Parquet): ``pipelines.run``."""

    name = "table"
    keeps_data = True  # the internal report's advisory checks compare with the real rows

    def prepare(self, config: RunConfig) -> Any:
        return announced(prepare(config), config.synthesizer, "rows")

    def already_published(self, config: RunConfig) -> Path | None:
        return already_published(config)

    def load(self, plan: Any) -> run.Training:
        return run.load_training(plan)

    def fit(self, plan: Any, data: run.Training, progress: Progress | None = None) -> Any:
        return run.fit(plan, data.train, progress)

    def generate(self, plan: Any, model: Any) -> Any:
        return run.generate(plan, model)

    def check(self, plan: Any, model: Any, synthetic: Any, data: run.Training) -> Any:
        return run.check(plan, model, synthetic, data.real, data.holdout)

    def publish(self, plan: Any, model: Any, synthetic: Any, outcome: Any,
                data: run.Training) -> Result:
        published, report = run.release(plan, model, synthetic, outcome, data.real)
        return Result(published.path, report, outcome)

    def gate(self, outcome: Any) -> tuple[bool, tuple[str, ...], list[dict[str, Any]]]:
        from pipelines.verdict import gate_rows

        return outcome.success, tuple(outcome.failed), gate_rows(outcome)


class Images:
    """A labelled image set: ``pipelines.image_run``."""

    name = "image"
    keeps_data = False  # its checks read the synthetic images only

    def prepare(self, config: RunConfig) -> Any:
        plan = image_run.prepare(config)
        return announced(plan, plan.synthesizer, "images")

    def already_published(self, config: RunConfig) -> Path | None:
        return image_run.already_published(config)

    def load(self, plan: Any) -> Any:
        return image_run.load(plan)

    def fit(self, plan: Any, data: Any, progress: Progress | None = None) -> Any:
        return image_run.fit(plan, data, progress)

    def generate(self, plan: Any, model: Any) -> Any:
        return image_run.generate(plan, model)

    def check(self, plan: Any, model: Any, synthetic: Any, data: Any) -> Any:
        return image_run.check(plan, model, synthetic)

    def publish(self, plan: Any, model: Any, synthetic: Any, outcome: Any,
                data: Any) -> Result:
        published = image_run.release(plan, synthetic, outcome)
        return Result(published.path, outcome.report, outcome.outcome)

    def gate(self, outcome: Any) -> tuple[bool, tuple[str, ...], list[dict[str, Any]]]:
        checks = outcome.outcome.checks
        return (outcome.outcome.success, tuple(f"{n}: {d}" for n, ok, d in checks if not ok),
                [{"suite": "image checks", "check": n, "detail": d, "success": ok}
                 for n, ok, d in checks])


class MultiTables:
    """Persons and their rows in linked tables: ``pipelines.multitable_run``."""

    name = "multi-table"
    keeps_data = False  # its checks read the synthetic tables (and the input's keys)

    def prepare(self, config: RunConfig) -> Any:
        return announced(multitable_run.prepare(config), multitable_run.SYNTHESIZER, "persons")

    def already_published(self, config: RunConfig) -> Path | None:
        return multitable_run.already_published(config)

    def load(self, plan: Any) -> Any:
        return multitable_run.load(plan)

    def fit(self, plan: Any, data: Any, progress: Progress | None = None) -> Any:
        return multitable_run.fit(plan, data, progress)

    def generate(self, plan: Any, model: Any) -> Any:
        return multitable_run.generate(plan, model)

    def check(self, plan: Any, model: Any, synthetic: Any, data: Any) -> Any:
        return multitable_run.check(plan, model, synthetic, data)

    def publish(self, plan: Any, model: Any, synthetic: Any, outcome: Any,
                data: Any) -> Result:
        published = multitable_run.release(plan, synthetic, outcome)
        return Result(published.path, outcome.report, outcome.outcome)

    def gate(self, outcome: Any) -> tuple[bool, tuple[str, ...], list[dict[str, Any]]]:
        found = outcome.outcome
        return found.success, tuple(found.failed), [
            {"suite": "schema and integrity", "check": f"{found.evaluated} expectations",
             "detail": "; ".join(found.failed) or "all passed", "success": found.success}]


KINDS: dict[str, Kind] = {"table": Tables(), "image": Images(), "multi-table": MultiTables()}


def kind_of(config: RunConfig) -> Kind:
    """The kind a run's schema declares (``kind: image``, ``kind: multi-table``; one table
    otherwise)."""
    if is_image_schema(config.schema_file):
        return KINDS["image"]
    if is_multi_table_schema(config.schema_file):
        return KINDS["multi-table"]
    return KINDS["table"]


def run_release(config: RunConfig, progress: Progress | None = None) -> Result:
    """The whole job, in process, for any kind: what ``synth run`` does. A rerun of a
    published run is a no-op that returns the release already there."""
    kind = kind_of(config)
    try:
        plan = kind.prepare(config)
    except AlreadyPublished as done:
        log.info("%s", done)
        return previous(done.out)
    try:
        data = kind.load(plan)
        model = kind.fit(plan, data, progress)
        if not kind.keeps_data:
            data = None  # private data is not held past training when nothing reads it
        synthetic = kind.generate(plan, model)
        outcome = kind.check(plan, model, synthetic, data)
        return kind.publish(plan, model, synthetic, outcome, data)
    finally:
        plan.done()


