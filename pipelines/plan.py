"""The public half of a run: everything settled before a private byte is read.

prepare parses the schema, checks the settings and the output location (inside the output
root, see ``pipelines.paths``), names the run by its run key (input bytes, schema, settings,
code), returns early when that very run already published, and reserves the run's (epsilon,
delta) in the budget ledger, or takes over the entry of a killed run it resumes from a
training checkpoint. ``pipelines.run`` (tables) and ``pipelines.image_run`` (images) share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines import checkpoints
from pipelines.checkpoints import RunCheckpoint
from pipelines.config import RunConfig
from pipelines.errors import DataError
from pipelines.ledger import Ledger, source_fingerprint
from pipelines.lock import HeldHere, OutLock
from pipelines.paths import release_dir
from pipelines.preflight import warnings as preflight_warnings
from pipelines.progress import phase
from pipelines.publish import DATA_FILE, MANIFEST_FILE, check_replaceable, sweep_leftovers
from pipelines.report import code_version
from schemas import ImageSchema, Schema, SchemaError, load_schema, refuse_unreviewed_draft
from schemas.relational import MultiTableSchema
from synth.privacy import PrivacyBudget, PrivacyReport

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
    lock: OutLock | None = None  # held from prepare until the run published or failed

    def done(self) -> None:
        """Releases the release location's lock (the run published or failed)."""
        if self.lock is not None:
            self.lock.release()


def prepare(config: RunConfig) -> Plan:
    """Parses the schema, checks the budget and the output location, takes the location's
    lock (``pipelines.lock``: one run at a time per ``out``) and reserves the run's
    (epsilon, delta) in the budget ledger. Every check that needs no private data comes
    first, so that what can be refused is refused before anything is written or reserved.
    Before the reservation, ``pipelines.preflight`` warns (on the ``synth.progress`` logger)
    when the schema and settings predict noise-dominated one-way marginals.
    Nothing private is read, beyond hashing the input file to know which data set it is. The
    caller calls ``plan.done()`` when the run has published or failed.

    Raises:
        SchemaError, BudgetError (BudgetExceeded among them), DataError: one-line messages.
    """
    schema = load_schema(config.schema_file)
    refuse_unreviewed_draft(schema)  # a draft read without DP is not public knowledge
    budget = PrivacyBudget(config.epsilon, config.delta)
    try:
        config.synthesizer_params()
    except ValueError as exc:
        raise DataError(str(exc)) from None
    out = release_dir(config.out)
    check_location(out)
    if not isinstance(config.input, str):
        raise DataError(f"{schema.where} declares one table: pass --input FILE (TABLE=FILE "
                        "inputs are for multi-table schemas)")
    source = Path(config.input)
    if not source.is_file():
        raise DataError(f"{source}: cannot read input: no such file")
    try:
        data_set = source_fingerprint(source)
    except OSError as exc:
        raise DataError(f"{source}: cannot read input: {exc.strerror or exc}") from None
    key = run_key(config, data_set, schema)
    for line in preflight_warnings(schema, config):  # public facts only: warn, never refuse
        logging.getLogger("synth.progress").warning("%s", line)
    ledger, entry, checkpoint, lock = claim(config, key, out, schema.name, str(source),
                                            config.synthesizer, budget, schema.budget)
    return Plan(config=config, schema=schema, budget=budget, out=out, ledger=ledger,
                entry=entry, key=key, checkpoint=checkpoint,
                resumed=checkpoint is not None and checkpoint.resumed, lock=lock)


def claim(config: RunConfig, key: str, out: Path, name: str, source: str, synthesizer: str,
          budget: PrivacyBudget, limit: tuple[float, float] | None
          ) -> tuple[Ledger, int, RunCheckpoint | None, OutLock]:
    """The last public step of a run (tables and images): the folders it will replace are
    this tool's, then, holding the location's lock, it is not already published and the
    budget is reserved (``reserve_or_resume``). Returns the ledger, the entry, the training
    checkpoint and the lock, which the caller releases when the run ends.

    Raises:
        AlreadyPublished: this very run published at ``out`` (the lock is released).
    """
    if published_key(out) != key:  # refused before the lock file is written, if it can be
        check_targets(out, config.overwrite)
    Ledger(config.ledger).exists()  # LedgerError: a ledger this tool cannot use or did not make
    lock = take_lock(out)
    try:
        if published_key(out) == key:
            sweep_leftovers(out)  # what a run killed after publishing it may have left
            checkpoints.discard(internal_dir(out))
            raise AlreadyPublished(out)
        check_targets(out, config.overwrite)  # again: another run may have published there
        return (*reserve_or_resume(config, key, out, name, source, synthesizer, budget,
                                   limit), lock)
    except BaseException:
        lock.release()
        raise


def check_location(out: Path) -> None:
    """Before anything is written: the release folder can be created where ``out`` says (its
    nearest existing folder is a folder this process may write in, not a file).

    Raises:
        DataError: naming the path.
    """
    where = out.absolute()
    above = where.parent
    while not above.exists() and not above.is_symlink():
        above = above.parent
    if not above.is_dir():
        raise DataError(f"{out}: cannot create the release folder: {above} is a file, not a "
                        "folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise DataError(f"{out}: cannot create the release folder: {above} is not writable "
                        "by this user")


def take_lock(out: Path) -> OutLock:
    """The lock of ``out`` (waits for another run on it to end).

    Raises:
        DataError: the lock file cannot be created.
    """
    try:
        return OutLock(out).acquire()
    except HeldHere:
        raise DataError(f"{out}: a run of this process is still writing there (a plan that "
                        "was not finished with plan.done())") from None
    except OSError as exc:
        raise DataError(f"{out}: cannot lock the release location "
                        f"({exc.strerror or type(exc).__name__})") from None


def check_targets(out: Path, overwrite: bool) -> None:
    """Before anything is spent: the release folder is free, or ``overwrite`` and this
    tool's (its manifest says so, checked file by file); so are the internal and quarantine
    folders the run will replace.

    Raises:
        DataError, PublishError: naming the folder.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out} already exists: choose another --out or pass --overwrite")
    for folder in (out, internal_dir(out), quarantine_dir(out)):
        check_replaceable(folder)


def reserve_or_resume(config: RunConfig, key: str, out: Path, name: str, source: str,
                      synthesizer: str, budget: PrivacyBudget,
                      limit: tuple[float, float] | None
                      ) -> tuple[Ledger, int, RunCheckpoint | None]:
    """The run's ledger entry and its training checkpoint. A killed run of these very
    settings (same run key) that left a checkpoint is resumed: its entry, charged since its
    first DP step, is taken over instead of reserving the budget again. Otherwise the run's
    (epsilon, delta) is reserved, or refused past the data set's total. The ledger knows the
    data set by its declared identity, the schema's ``name``, across versions of the file
    (an edited or recompressed file spends from the same total), and holds no hash of the
    private bytes.

    Raises:
        BudgetExceeded; CheckpointError: a checkpoint file that cannot be loaded safely.
    """
    ledger = Ledger(config.ledger)
    ledger.release_stale()  # reservations of runs killed before training
    path = internal_dir(out) / checkpoints.FILE
    saved = RunCheckpoint.found(path, key) if config.checkpoint_every else None
    if saved is not None and ledger.adopt(int(saved["entry"]), name, str(out),
                                          synthesizer, budget.epsilon, budget.delta):
        entry = int(saved["entry"])
        log.info("resuming training from %s (step %d), charged to ledger entry %d", path,
                 saved["state"]["step"], entry)
    else:
        saved = None
        entry = ledger.reserve(name, name, source, str(out), synthesizer, budget.epsilon,
                               budget.delta, limit)
    if not config.checkpoint_every:
        return ledger, entry, None
    checkpoint = RunCheckpoint(path, key, entry, config.checkpoint_every)
    if saved is not None:
        checkpoint.resume_from(saved)
    return ledger, entry, checkpoint


def commit_spent(ledger: Ledger, entry: int, spent: PrivacyReport,
                 budget: PrivacyBudget) -> None:
    """After training: what the accountant reports, checked against the budget, recorded in
    the run's ledger entry, and its progress line.

    Raises:
        RuntimeError: the model spent more than the budget (a bug; nothing is recorded).
    """
    if spent.epsilon > budget.epsilon * (1 + 1e-9):
        raise RuntimeError(f"spent epsilon {spent.epsilon} exceeds the budget {budget.epsilon}")
    ledger.commit(entry, spent.epsilon, spent.delta)
    phase("train", "done: spent epsilon=%.4f, delta=%.3g (%s accountant)", spent.epsilon,
          spent.delta, spent.accountant)


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
    if not isinstance(config.input, str):
        return None  # prepare reports it
    source = Path(config.input)
    try:
        out = release_dir(config.out)
        if not (out / DATA_FILE).is_file() or not source.is_file():
            return None
        key = run_key(config, source_fingerprint(source), load_schema(config.schema_file))
    except (OSError, SchemaError, DataError):
        return None  # prepare reports it
    return out if published_key(out) == key else None


def run_key(config: RunConfig, data_set: str,
            schema: Schema | ImageSchema | MultiTableSchema) -> str:
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
    if not (out / MANIFEST_FILE).is_file() or not key.is_file():
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


def internal_dir(out: Path) -> Path:
    """Where the internal report of the release at ``out`` goes (never publish it)."""
    return out.with_name(out.name + ".internal")


def quarantine_dir(out: Path) -> Path:
    """Where a release that failed its checks goes instead of ``out``."""
    return out.with_name(out.name + ".quarantine")
