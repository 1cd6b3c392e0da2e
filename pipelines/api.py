"""The Python API: read a schema, fit a synthesizer under a budget, sample, run a whole
release, open a release. ``synth run`` and the Prefect flow call the same functions below
it (``pipelines.run``), so a notebook and a scheduled run spend and publish alike.

    schema = load_schema("schemas/adult.yaml")
    model = fit("data/adult/adult.data.gz", schema, epsilon=0.5)   # charged to the ledger
    rows = sample(model, 1_000)                                     # public from here on
    done = release("data/adult/adult.data.gz", "schemas/adult.yaml", "releases/a", 1.0)
    opened = open_release(done.release)                             # rows + privacy report

Every fit reads private rows, so it is charged to the budget ledger like a run: the data
set's (epsilon, delta) is reserved before a row is read (refused past the total its schema
declares), counts in full from the first DP step, and is committed with what the accountant
reported; a fit that fails before any DP step frees its reservation. See docs/python-api.md.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from pipelines.config import RunConfig
from pipelines.errors import DataError
from pipelines.ingest import check_file, coerce, generalize
from pipelines.ledger import Ledger
from pipelines.publish import DATA_FILE, PublishError, verify_release
from pipelines.safe_harbor import drop_identifiers
from schemas import (
    ImageSchema,
    Schema,
    SchemaError,
    is_image_schema,
    refuse_unreviewed_draft,
)
from schemas import load_image_schema as _load_image_schema
from schemas import load_schema as _load_schema
from schemas.limits import limits
from synth.base import NotFittedError, Synthesizer
from synth.privacy import DEFAULT_DELTA, PrivacyBudget

# As in `synth` and the flows (pipelines/cli.py, flows/__init__.py), before torch is
# imported: idle OpenMP threads sleep rather than spin, and no torch.load runs pickle code.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")

from pipelines import recipe, run  # imports torch
from pipelines.plan import REPORT_FILE, VALIDATION_FILE, Plan

__all__ = ["OpenedRelease", "fit", "load_schema", "open_release", "release", "sample"]

log = logging.getLogger(__name__)

FIT_RELEASE = "(python api fit: no release)"  # the ledger's release column for a fit
FRAME_SOURCE = "<DataFrame>"  # how a fit on a frame names its input (ledger, messages)
# the RunConfig fields that mean something to a fit; the rest (rows, out, overwrite,
# fidelity...) belong to a release
FIT_SETTINGS = ("seed", "noise_seed", "epochs", "batch_size", "max_grad_norm", "lr",
                "accountant", "secure_noise", "clip", "map_unknown", "batch_above_rows")


def load_schema(path: str | Path) -> Schema | ImageSchema:
    """The schema declared in a YAML file: a table's, or an image data set's (``kind:
    image``). The only knowledge about a data set that is free of privacy cost.

    Raises:
        SchemaError: the file is missing, does not parse, or contradicts itself.
    """
    return _load_image_schema(path) if is_image_schema(path) else _load_schema(path)


def fit(data: str | Path | pd.DataFrame, schema: Schema | str | Path, epsilon: float,
        delta: float = DEFAULT_DELTA, synthesizer: str = "dp-marginals", *,
        source: str | None = None, ledger: str | Path | None = None,
        **settings: Any) -> Synthesizer:
    """Fits a DP synthesizer on private rows, charged to the budget ledger.

    The ledger knows the data set by its schema's ``name`` and limits it to the total the
    schema declares. The (epsilon, delta) is reserved before any row is read; the entry
    counts in full from the first DP step and is committed with what the accountant reports
    (``model.privacy_``); a fit that fails before any DP step (bad data) frees it.

    Args:
        data: the private rows: a CSV (optionally compressed) or Parquet file, read and
            checked by ``pipelines.ingest``, or a DataFrame with the schema's input columns,
            coerced and checked the same way (identifier columns dropped first).
        schema: a tabular schema, or its file.
        epsilon, delta: the privacy budget of this fit.
        synthesizer: ``dp-marginals``, ``dp-independent``, ``dp-ctgan`` or ``dp-vae``.
        source: how the ledger names the input (default: the path, or ``<DataFrame>``).
        ledger: the budget ledger (default: as ``synth run``).
        **settings: the options of ``synth run`` that apply to a fit: ``seed``,
            ``noise_seed``, ``epochs``, ``batch_size``, ``max_grad_norm``, ``lr``,
            ``accountant``, ``secure_noise``, ``clip``, ``map_unknown``,
            ``batch_above_rows``.

    Returns:
        The fitted synthesizer; ``privacy_`` is what it spent.

    Raises:
        DataError, SchemaError, BudgetError (BudgetExceeded among them): one-line messages;
        all but a DataError about the rows are raised before anything is reserved or read.
    """
    schema = _tabular(schema)
    wrong = sorted(set(settings) - set(FIT_SETTINGS))
    if wrong:
        raise DataError(f"fit() takes no setting {', '.join(map(repr, wrong))}: it takes "
                        f"{', '.join(FIT_SETTINGS)} (the others apply to release())")
    frame = isinstance(data, pd.DataFrame)
    if not frame and not isinstance(data, (str, Path)):
        raise DataError(f"fit() reads a file path or a pandas DataFrame, not "
                        f"{type(data).__name__}")
    name = FRAME_SOURCE if frame else str(data)
    config = _config(input=name, schema_file=schema.where, out=FIT_RELEASE, epsilon=epsilon,
                     delta=delta, synthesizer=synthesizer, holdout=0, ledger=_ledger(ledger),
                     **settings)
    try:
        config.synthesizer_params()
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if not frame:
        check_file(Path(name))  # exists and is a non-empty regular file: nothing read yet
    budget = PrivacyBudget(config.epsilon, config.delta)
    book = Ledger(config.ledger)
    book.release_stale()  # reservations of runs killed before training
    entry = book.reserve(schema.name, schema.name, source or name, FIT_RELEASE,
                         config.synthesizer, budget.epsilon, budget.delta, schema.budget)
    plan = Plan(config=config, schema=schema, budget=budget, out=Path(FIT_RELEASE),
                ledger=book, entry=entry)
    rows = _coerce(plan, data) if frame else run.load_training(plan).train
    return run.fit(plan, rows)  # start, train, commit: what `synth run` does


def sample(model: Synthesizer, rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` synthetic rows of a fitted model, finished as a release's are (survival
    constraints, the release's columns, surrogate identifiers the schema asks for).
    Post-processing of the DP model: spends nothing, public from here on.

    Raises:
        NotFittedError: the model was not fitted; LimitError, DataError: a bad ``rows``.
    """
    encoder = getattr(model, "encoder_", None)
    if encoder is None:
        raise NotFittedError(f"{type(model).__name__} is not fitted: call fit() first")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise DataError(f"sample() draws a whole number of rows, at least 1, not {rows!r}")
    limits().check("rows", rows, "rows")
    return run.synthesize(model, encoder.schema, rows, seed,
                          model.get_params().get("noise_seed"))


def release(input: str | Path, schema: str | Path | Schema | ImageSchema, out: str | Path,
            epsilon: float, **settings: Any) -> recipe.Result:
    """A whole release, as ``synth run`` makes it: prepare (budget reserved), ingest, fit,
    sample, check, publish at ``out``. A rerun of a published run returns it, spending
    nothing.

    Args:
        input: the private file (a table, or images for an image schema).
        schema: the schema file (or a schema loaded from one).
        out: the release folder to create.
        epsilon: the release's privacy budget.
        **settings: any other field of ``pipelines.config.RunConfig`` (the options of
            ``synth run``): ``delta``, ``rows``, ``synthesizer``, ``seed``, ``overwrite``,
            ``ledger``, ``fidelity={"enabled": False}``...

    Returns:
        ``release`` (the folder), ``report`` (the privacy report) and the checks' verdict.

    Raises:
        DataError, SchemaError, BudgetError, PublishError: one-line messages;
        ValidationFailed: the release failed its checks and was quarantined.
    """
    if isinstance(schema, (Schema, ImageSchema)):
        if schema.path is None:
            raise DataError(f"release() reads the schema from its file: {schema.where} was "
                            "not loaded from one")
        schema = schema.path
    config = _config(input=str(input), schema_file=str(schema), out=str(out),
                     epsilon=epsilon, **settings)
    return recipe.run_release(config)  # the function `synth run` calls


@dataclass(frozen=True, eq=False)
class OpenedRelease:
    """A published release, read back.

    Attributes:
        path: the release folder.
        rows: its synthetic rows (``data.parquet``).
        report: its privacy report (``privacy_report.json``): epsilon, delta, accountant...
        validation: its checks (``validation.json``).
    """

    path: Path
    rows: pd.DataFrame
    report: dict[str, Any]
    validation: dict[str, Any]

    def verify(self) -> list[str]:
        """What is wrong with the folder now: [] while every file matches its manifest."""
        return verify_release(self.path)


def open_release(path: str | Path) -> OpenedRelease:
    """Reads a published release after checking it against its manifest.

    Raises:
        PublishError: one line, for a folder that is not a complete, unaltered release (an
            internal report, a quarantined release, a file changed since publishing).
    """
    path = Path(path)
    if path.name.endswith(".quarantine"):
        raise PublishError(f"{path}: a quarantined release (it failed its checks and was "
                           "not published): open the release folder instead")
    problems = verify_release(path)
    if not problems and not (path / REPORT_FILE).is_file():
        problems = [f"{path / REPORT_FILE}: missing: not a release of this tool"]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise PublishError(f"{path}: not a verified release: {problems[0]}{more}")
    validation = path / VALIDATION_FILE
    return OpenedRelease(
        path=path, rows=pd.read_parquet(path / DATA_FILE),
        report=json.loads((path / REPORT_FILE).read_text(encoding="utf-8")),
        validation=(json.loads(validation.read_text(encoding="utf-8"))
                    if validation.is_file() else {}))


def _tabular(schema: Schema | ImageSchema | str | Path) -> Schema:
    """The tabular schema given or named, refused if it is an unreviewed non-DP draft."""
    if isinstance(schema, (str, Path)):
        schema = load_schema(schema)
    if isinstance(schema, ImageSchema):
        raise SchemaError(f"{schema.where} is an image schema: fit() and sample() take "
                          "tables; make an image release with release()")
    if not isinstance(schema, Schema):
        raise SchemaError(f"fit() takes a schema or its file, not {type(schema).__name__}")
    refuse_unreviewed_draft(schema)  # a draft read without DP is not public knowledge
    return schema


def _ledger(ledger: str | Path | None) -> str | None:
    return None if ledger is None else str(ledger)


def _config(**fields: Any) -> RunConfig:
    """The RunConfig of ``fields``; a bad one is a one-line DataError, worded as ``synth``
    words it."""
    try:
        return RunConfig(**fields)
    except ValidationError as exc:
        raise DataError("; ".join(f"{'.'.join(map(str, e['loc']))}: "
                                  f"{e['msg'].removeprefix('Value error, ')}"
                                  for e in exc.errors())) from None


def _coerce(plan: Plan, frame: pd.DataFrame) -> pd.DataFrame:
    """A DataFrame through ingest's checks, as a file's rows go: identifiers dropped before
    anything reads them, generalize rules, then coerced to the schema (every problem
    listed). The reservation is freed if it fails: no DP step ran."""
    schema, cfg = plan.schema, plan.config
    try:
        if frame.empty:
            raise DataError(f"{FRAME_SOURCE}: the frame has no rows")
        raw = drop_identifiers(frame, schema)
        raw = generalize(raw, schema, source=FRAME_SOURCE)
        data = coerce(raw, schema, source=FRAME_SOURCE, clip=cfg.clip,
                      map_unknown=cfg.map_unknown)
    except BaseException:
        plan.ledger.cancel(plan.entry)
        raise
    for column, count in {**data.report.clipped, **data.report.mapped_to_catch_all}.items():
        log.warning("changed %d value(s) of column '%s' (clip / map_unknown)", count, column)
    return data.frame

