"""The steps of a multi-table release (the kind ``pipelines.recipe`` runs for a
``kind: multi-table`` schema): persons and their rows in other tables, person-level DP.

prepare (public checks; budget reserved) -> load (private: every table, keys read to link
  rows) -> fit (``synth.multitable.PersonMarginals``: caps, then DP) -> generate (persons
  with fresh keys, then their rows) -> check (each table's schema suite and the integrity
  suite, synthetic rows only; advisory: no real key or identifier value in any output) ->
  publish ``<table>.parquet`` per table in one atomic release (or quarantine)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.columns import finish as finish_columns
from pipelines.config import DEFAULT_SYNTHESIZER, TUNABLE, RunConfig
from pipelines.errors import DataError
from pipelines.html_report import ReportInputs, render
from pipelines.ingest import ingest, read_identifiers
from pipelines.leakage import identifier_leaks
from pipelines.ledger import Ledger, source_fingerprint
from pipelines.lock import OutLock
from pipelines.paths import release_dir
from pipelines.plan import (
    HTML_FILE,
    KEY_FILE,
    REPORT_FILE,
    VALIDATION_FILE,
    check_location,
    claim,
    commit_spent,
    internal_dir,
    published_key,
    quarantine_dir,
    run_key,
)
from pipelines.progress import Steps, phase
from pipelines.publish import MANIFEST_FILE, Release, publish_folder, publish_tables, to_arrow
from pipelines.report import now, privacy_report, release_metadata
from pipelines.validate import ValidationFailed, ValidationOutcome, validate_synthetic
from pipelines.validate.integrity import validate_integrity
from schemas import Schema, SchemaError
from schemas.relational import MultiTableSchema, load_multi_table_schema
from schemas.roles import Identifier
from synth import registry
from synth.multitable import KEY, PersonMarginals
from synth.privacy import PrivacyBudget

log = logging.getLogger(__name__)
local = logging.getLogger("synth.local")  # the operator's terminal only

SYNTHESIZER = registry.DEFAULT["multi-table"]


@dataclass(frozen=True)
class TablesPlan:
    """The public half of a multi-table run, checked before any private byte is read."""

    config: RunConfig
    schema: MultiTableSchema
    inputs: dict[str, Path]
    budget: PrivacyBudget
    out: Path
    ledger: Ledger
    entry: int
    key: str = ""
    lock: OutLock | None = None
    resumed: bool = False  # nothing to resume: the marginal models train in one go

    def done(self) -> None:
        if self.lock is not None:
            self.lock.release()


def inputs_of(config: RunConfig, schema: MultiTableSchema) -> dict[str, Path]:
    """Each table's input file, from ``--input TABLE=FILE`` (every table once).

    Raises:
        DataError: a table without input, an unknown table, a missing file.
    """
    given = config.input
    wanted = " ".join(f"--input {t}=FILE" for t in schema.names)
    if not isinstance(given, dict):
        raise DataError(f"{schema.where} declares the tables {', '.join(schema.names)}: pass "
                        f"{wanted}")
    unknown = sorted(set(given) - set(schema.names))
    missing = [t for t in schema.names if t not in given]
    if unknown or missing:
        raise DataError(f"{schema.where}: " + "; ".join(
            ([f"no table {', '.join(unknown)} in the schema"] if unknown else [])
            + ([f"no input for table {', '.join(missing)}"] if missing else []))
            + f": pass {wanted}")
    out = {t: Path(given[t]) for t in schema.names}
    for table, path in out.items():
        if not path.is_file():
            what = ("a directory, not a file" if path.is_dir() else
                    "not a regular file" if path.exists() else "no such file")
            raise DataError(f"{path}: cannot read input of table {table}: {what}")
    return out


def synthesizer_of(config: RunConfig) -> str:
    if config.synthesizer not in (DEFAULT_SYNTHESIZER, SYNTHESIZER):
        raise DataError(f"synthesizer {config.synthesizer} takes one table; with a multi-table "
                        f"schema use {SYNTHESIZER}")
    given = [k for k in TUNABLE if getattr(config, k) is not None]
    given += ["secure_noise"] if config.secure_noise else []
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise DataError(f"{flags} do(es) not apply to synthesizer {SYNTHESIZER}")
    return SYNTHESIZER


def prepare(config: RunConfig) -> TablesPlan:
    """Parses the schema, checks the inputs, settings and output location, and reserves the
    run's (epsilon, delta) in the ledger under the schema's name. Nothing private is read,
    beyond hashing the input files to know which data set they are.

    Raises:
        SchemaError, BudgetError (BudgetExceeded among them), DataError: one-line messages.
    """
    schema = load_multi_table_schema(config.schema_file)
    if schema.draft is not None and not schema.draft.dp:
        raise SchemaError(f"{schema.where} was drafted from the data without DP and not yet "
                          "reviewed: check every table's bounds, categories, keys and caps, "
                          "then delete its 'draft:' entry")
    budget = PrivacyBudget(config.epsilon, config.delta)
    name = synthesizer_of(config)
    out = release_dir(config.out)
    check_location(out)
    inputs = inputs_of(config, schema)
    try:
        data_set = hashlib.sha256("".join(
            f"{t}:{source_fingerprint(p)};" for t, p in inputs.items()).encode()).hexdigest()
    except OSError as exc:
        raise DataError(f"cannot read input: {exc.strerror or exc}") from None
    key = run_key(config, data_set, schema)
    source = ", ".join(f"{t}={p}" for t, p in inputs.items())
    ledger, entry, _, lock = claim(config.model_copy(update={"checkpoint_every": 0}), key, out,
                                   schema.name, source, name, budget, schema.budget)
    return TablesPlan(config=config, schema=schema, inputs=inputs, budget=budget, out=out,
                      ledger=ledger, entry=entry, key=key, lock=lock)


def already_published(config: RunConfig) -> Path | None:
    """The release location if an identical run already published there, else None."""
    try:
        out = release_dir(config.out)
        schema = load_multi_table_schema(config.schema_file)
        if not (out / MANIFEST_FILE).is_file():
            return None
        inputs = inputs_of(config, schema)
        data_set = hashlib.sha256("".join(
            f"{t}:{source_fingerprint(p)};" for t, p in inputs.items()).encode()).hexdigest()
        key = run_key(config, data_set, schema)
    except (OSError, SchemaError, DataError):
        return None
    return out if published_key(out) == key else None


def load(plan: TablesPlan) -> dict[str, pd.DataFrame]:
    """Reads and coerces every table, each with its rows' person (``KEY``): the only read of
    private data. A person key missing or repeated is a DataError naming the file, column
    and row."""
    schema = plan.schema
    try:
        out = {}
        for table, path in plan.inputs.items():
            phase("ingest", "reading table %s from %s and checking it against the schema",
                  table, path)
            own = schema.tables[table]
            frame = ingest(path, own, clip=plan.config.clip,
                           map_unknown=plan.config.map_unknown).frame
            key = schema.key if table == schema.person else schema.children[table].key
            found = read_identifiers(path, own)
            if key not in found:
                raise DataError(f"{path}: no column '{key}' (the key linking table {table} "
                                "to its persons, as the schema declares)")
            keys = found[key]
            if len(keys) != len(frame):
                raise DataError(f"{path}: column '{key}': cannot link rows to their keys "
                                "(blank or comment lines in the file): remove them")
            if table == schema.person:
                _check_keys(path, key, keys)
            out[table] = frame.assign(**{KEY: keys.to_numpy()})
        return out
    except BaseException:
        plan.ledger.cancel(plan.entry)  # no DP step ran: the reservation is freed
        raise


def _check_keys(path: Path, key: str, keys: pd.Series) -> None:
    """The person keys are present and unique. The row goes to the operator's terminal; the
    public message (what Prefect may store) names the file and column only."""
    empty = keys.isna() | (keys.str.strip() == "")
    if empty.any():
        rule = f"{path}: column '{key}' (the person key) is empty"
        raise DataError(f"{rule} in row {int(empty.to_numpy().argmax()) + 1:,}: every person "
                        "needs a key", public=f"{rule} in a row: every person needs a key")
    twice = keys.duplicated()
    if twice.any():
        rule = f"{path}: column '{key}' (the person key) repeats a key"
        raise DataError(f"{rule} in row {int(twice.to_numpy().argmax()) + 1:,}: each person "
                        "must have one row in this table",
                        public=f"{rule}: each person must have one row in this table")


def fit(plan: TablesPlan, data: dict[str, pd.DataFrame],
        progress: Callable[[int, int], None] | None = None) -> PersonMarginals:
    """Fits the person-level model; the ledger entry counts from here on."""
    phase("train", "%s under epsilon=%g, delta=%g (the privacy unit: a person, with all "
          "their rows)", SYNTHESIZER, plan.budget.epsilon, plan.budget.delta)
    plan.ledger.start(plan.entry)
    model = PersonMarginals(seed=plan.config.seed, noise_seed=plan.config.noise_seed).fit(
        data, plan.schema, plan.budget, progress=Steps("train", "permille", also=progress))
    for table, counts in model.dropped_.items():  # private counts: the local terminal only
        if any(counts.values()):
            local.warning("table %s: %d rows name no person, %d rows beyond %d per person: "
                          "dropped before training", table, counts["unlinked"],
                          counts["over_cap"], plan.schema.children[table].cap)
    commit_spent(plan.ledger, plan.entry, model.privacy_, plan.budget)
    return model


def generate(plan: TablesPlan, model: PersonMarginals) -> dict[str, pd.DataFrame]:
    """``rows`` synthetic persons and their rows: post-processing, public from here on."""
    from synth import survival

    phase("sample", "%s synthetic persons and their rows", f"{plan.config.rows:,}")
    tables = model.sample(plan.config.rows, seed=plan.config.seed)
    person = plan.schema.person
    tables[person] = survival.constrain(tables[person], plan.schema.tables[person])
    return {t: finish_columns(f, plan.schema.tables[t]) for t, f in tables.items()}


def released_schema(schema: MultiTableSchema, table: str) -> Schema:
    """A table's released columns: its synthetic key (a string, first), then its own."""
    key = schema.key if table == schema.person else schema.children[table].key
    what = ("the synthetic person's key" if table == schema.person else
            f"the key of this row's synthetic person in {schema.person}")
    return replace(schema.tables[table], name=f"{schema.name}.{table}", identifiers=(
        Identifier(key, f"pattern:{schema.person}-######", f"{what} (never a real key)"),))


@dataclass(frozen=True)
class Checked:
    """What the checks found (the gate reads synthetic rows only)."""

    outcome: ValidationOutcome
    report: dict[str, Any]
    identifier_hits: dict[str, int]


def check(plan: TablesPlan, model: PersonMarginals, synthetic: dict[str, pd.DataFrame],
          data: dict[str, pd.DataFrame] | None) -> Checked:
    """The gate: each table's schema suite and the integrity suite (synthetic rows only);
    then, advisory, the scan for real key and identifier values in the release."""
    schema = plan.schema
    outcomes = [validate_synthetic(synthetic[t][schema.tables[t].names], schema.tables[t])
                for t in schema.names]
    outcomes.append(validate_integrity(synthetic, schema))
    outcome = ValidationOutcome(success=all(o.success for o in outcomes),
                                evaluated=sum(o.evaluated for o in outcomes),
                                failed=tuple(f for o in outcomes for f in o.failed),
                                result={"suites": [o.result for o in outcomes]})
    phase("check", "schema and integrity suites: %d of %d expectations passed",
          outcome.evaluated - len(outcome.failed), outcome.evaluated)
    hits: dict[str, int] = {}
    for table, path in plan.inputs.items():  # advisory: the local terminal and internal report
        real = read_identifiers(path, schema.tables[table])
        key = schema.key if table == schema.person else schema.children[table].key
        others = [c for c in real.columns if c != key]
        released = synthetic[table].astype("string")
        # the key against the released keys (whole-number keys match any count elsewhere);
        # other identifiers against every cell, as for one table
        found = identifier_leaks(real, [key], released[[key]]) | (
            identifier_leaks(real, others, released) if others else {})
        hits.update({f"{table}.{k}": v for k, v in found.items() if v})
    if hits:
        local.warning("real key or identifier values found in the synthetic tables: %s", hits)
    rows = sum(len(f) for f in synthetic.values())
    report = privacy_report(schema, SYNTHESIZER, model, rows, now())
    report["guarantee"] = (f"({model.privacy_.epsilon:.4g}, {model.privacy_.delta:.3g})-"
                           "differential privacy for every person (add/remove one person with "
                           "all their rows in every table), covering every step that read them")
    report["privacy_unit"] = {"table": schema.person, "rows_per_person": {
        t: c.cap for t, c in schema.children.items()}}
    report["rows_released"] = {t: len(f) for t, f in synthetic.items()}
    report["validation"] = "success" if outcome.success else "failed"
    report["release_gate"] = ("published only if every table's schema suite and the "
                              "integrity suite passed; neither reads real data")
    return Checked(outcome=outcome, report=report, identifier_hits=hits)


def release(plan: TablesPlan, synthetic: dict[str, pd.DataFrame], checked: Checked) -> Release:
    """Publishes ``<table>.parquet`` per table, the privacy report, the check result and the
    HTML report in one atomic release; a failed gate goes to ``<out>.quarantine``."""
    schema, report, outcome = plan.schema, checked.report, checked.outcome
    verdict = "success" if outcome.success else "failed"
    meta = release_metadata({**report, "rows_released": json.dumps(report["rows_released"])},
                            verdict)
    tables = {}
    for table, frame in synthetic.items():
        released = released_schema(schema, table)
        tables[table] = to_arrow(frame, released, {**meta, "table": table,
                                                   "schema_fingerprint": released.fingerprint()})
    html = render(ReportInputs(
        schema=schema.tables[schema.person], privacy=report, synthetic=synthetic[schema.person],
        structural=(outcome.evaluated - len(outcome.failed), outcome.evaluated,
                    outcome.failed), quarantined=outcome.failed), internal=False)
    files = {REPORT_FILE: json.dumps(report, indent=2, default=str).encode(),
             VALIDATION_FILE: json.dumps({"success": outcome.success,
                                          "evaluated": outcome.evaluated,
                                          "failed": list(outcome.failed)}, indent=2).encode(),
             HTML_FILE: html.encode()}
    internal = {REPORT_FILE: files[REPORT_FILE],
                "identifier_check.json": json.dumps(checked.identifier_hits).encode()}
    if outcome.success:
        internal[KEY_FILE] = (f"{plan.key}\n"
                              f"{hashlib.sha256(files[REPORT_FILE]).hexdigest()}\n").encode()
    publish_folder(internal, internal_dir(plan.out))
    target = plan.out if outcome.success else quarantine_dir(plan.out)
    published = publish_tables(tables, target, extra_files=files,
                               overwrite=plan.config.overwrite or not outcome.success)
    if outcome.success:
        phase("publish", "published %s", published.path)
        return published
    phase("publish", "QUARANTINED in %s: %s", target, "; ".join(outcome.failed),
          level=logging.WARNING)
    plan.ledger.quarantine(plan.entry)
    raise ValidationFailed(outcome, quarantine=target)
