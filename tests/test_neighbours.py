"""The neighbouring-data harness: nothing leaves the private boundary unless a mechanism paid
for it.

Whole releases run on a data set D, on D with one record added (D+) and on D with one record
removed (D-), with all private randomness fixed (``--noise-seed``) and the paid mechanisms'
outputs coupled: every mechanism returns on D+ and D- what it returned on D (its noise made
up the difference, which is what DP bounds). Then every channel that leaves the boundary
must be identical, since all that may differ between neighbours is a mechanism's output.

Channels covered (``CHANNELS``): the training split of every other record, the encodings
(the synthesizer's bins and codes), the release's files and their bytes (the synthetic rows,
``privacy_report.json``, ``validation.json``, ``report.html``, the manifest) where the
coupling fixes the model (``dp-marginals``, ``dp-independent``), and otherwise the privacy
report's and Parquet footer's fields with the Arrow schema and its field metadata; the
quarantine folder; the budget ledger's entries; error messages (the public one, which may be
stored); Prefect's artifacts, logs, flow and task run states and parameters.

The broken-variant corpus (the ``test_broken_*`` tests) reintroduces, one at a time, each
flaw the guarantee issue found, and checks that the harness catches it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.ledger import Ledger
from pipelines.validate.fidelity import observed
from tests.conftest import DEMO_ADULT, ROOT

SCHEMA = ROOT / "schemas" / "adult.yaml"
SMALL = ("age", "workclass", "education", "sex", "hours-per-week", "income")  # for releases
CHANNELS = ("training split", "encodings", "release files", "release bytes",
            "privacy report", "Parquet footer", "Arrow schema", "quarantine", "ledger",
            "public error message", "Prefect artifacts", "Prefect logs", "Prefect states",
            "Prefect parameters")
VOLATILE = ("created", "code_version")  # the clock and the checkout: not data
ROWS = 400  # records of D


# --- the data: D, D+ (one record added), D- (one record removed) -------------------------

@pytest.fixture(scope="module")
def lines() -> list[str]:
    with gzip.open(DEMO_ADULT, "rt") as src:
        return [line for _, line in zip(range(ROWS + 1), src)]


def neighbours(lines: list[str]) -> dict[str, str]:
    """The three data sets as CSV text: D, D plus a record, D minus one."""
    d = lines[:ROWS]
    return {"D": "".join(d), "D+": "".join(d + [lines[ROWS]]),
            "D-": "".join(d[:17] + d[18:])}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Adult's schema cut to six columns (CSV with a header): whole releases stay quick."""
    import yaml

    raw = yaml.safe_load(SCHEMA.read_text())
    raw["name"], raw["csv"]["header"] = "adult-small", True
    raw["columns"] = [c for c in raw["columns"] if c["name"] in SMALL]
    path = tmp_path_factory.mktemp("schema") / "adult-small.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def as_small(text: str) -> str:
    """Raw Adult lines as the small schema's CSV."""
    names = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
             "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
             "hours-per-week", "native-country", "income"]
    keep = [names.index(c) for c in SMALL]
    rows = [[f.strip() for f in line.split(",")] for line in text.splitlines() if line]
    return ",".join(SMALL) + "\n" + "".join(",".join(r[i] for i in keep) + "\n" for r in rows)


# --- coupling: each paid mechanism returns on a neighbour what it returned on D ------------

class Tape:
    """Records the mechanisms' outputs on the first run, replays them on the next ones."""

    def __init__(self):
        self.outputs: list = []
        self.replaying = False
        self.position = 0

    def __call__(self, value):
        if not self.replaying:
            self.outputs.append(value)
            return value
        value, self.position = self.outputs[self.position], self.position + 1
        return value

    def rewind(self):
        self.replaying, self.position = True, 0


def couple(monkeypatch, tape: Tape) -> None:
    """Routes every paid mechanism's output through ``tape``: the noisy marginals and
    noisy-max choices of dp-marginals (OpenDP), and the noisy record count of DP-SGD. The
    clock and the code version are fixed too (neither is data)."""
    from pipelines import image_run, report, run
    from synth import dpsgd, marginals

    monkeypatch.setattr(run, "now", lambda: "2026-01-01T00:00:00+00:00")
    monkeypatch.setattr(image_run, "now", lambda: "2026-01-01T00:00:00+00:00")
    monkeypatch.setattr(report, "code_version", lambda: "0.1.0")  # the checkout: not data
    noisy, select, count = (marginals._Mechanisms._noisy, marginals._Mechanisms.select,
                            dpsgd.noisy_count)
    monkeypatch.setattr(marginals._Mechanisms, "_noisy",
                        lambda self, *a, **k: tape(noisy(self, *a, **k)))
    monkeypatch.setattr(marginals._Mechanisms, "select",
                        lambda self, *a, **k: tape(select(self, *a, **k)))
    monkeypatch.setattr(dpsgd, "noisy_count", lambda *a, **k: tape(count(*a, **k)))


# --- the channels of one release ----------------------------------------------------------

def footer(path: Path) -> dict:
    meta = pq.read_metadata(path)
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()
          if not k.startswith(b"ARROW")}
    return {k: v for k, v in kv.items() if k.removeprefix("synth.") not in VOLATILE}


def arrow_schema(path: Path) -> list:
    schema = pq.read_schema(path)
    return [(f.name, str(f.type), f.nullable, dict(f.metadata or {})) for f in schema]


def report_fields(path: Path) -> dict:
    report = json.loads(path.read_text())
    return {k: v for k, v in report.items() if k not in VOLATILE}


# per-run identifiers Great Expectations draws at random (uuids, load and run times): not
# data, so not compared
GX_IDS = {"batch_id", "id", "data_asset_name", "datasource_name", "ge_load_time", "run_time",
          "validation_id", "validation_time", "suite_name"}


def without_ids(value):
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k not in GX_IDS}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def digest(path: Path) -> str:
    """sha256 of a release file (GX's random run identifiers left out of validation.json,
    and the manifest's entry for it)."""
    if path.name == "validation.json":
        text = json.dumps(without_ids(json.loads(path.read_text())), sort_keys=True).encode()
    elif path.name == "manifest.json":
        manifest = json.loads(path.read_text())
        manifest["files"].pop("validation.json", None)
        text = json.dumps(manifest, sort_keys=True).encode()
    else:
        text = path.read_bytes()
    return hashlib.sha256(text).hexdigest()


def ledger_rows(db: Path) -> list[dict]:
    keep = ("data_set", "name", "source", "release", "synthesizer", "epsilon", "delta",
            "state")
    return [{k: e[k] for k in keep} for e in Ledger(db).history()]


def channels(work: Path, text: str, args: list[str], whole: bool, capsys,
             schema: Path) -> dict:
    """Runs ``synth run`` on ``text`` (raw Adult lines, as ``schema``'s CSV) written to the
    same input path as every neighbour's, publishing to the same place (so paths are equal),
    and collects what left the boundary. ``whole``: the coupling fixes the model, so the
    release's bytes must be equal too."""
    data, out, db = work / "input.csv", work / "release", work / "ledger.db"
    data.write_text(as_small(text))
    before = len(Ledger(db).history()) if db.exists() else 0
    code = main(["run", "--input", str(data), "--schema", str(schema), "--out", str(out),
                 "--ledger", str(db), "--noise-seed", "11", "--overwrite", "-q", *args])
    capsys.readouterr()  # the operator's terminal: inside the boundary
    got: dict = {"exit": code, "quarantine": out.with_name("release.quarantine").exists()}
    where = out if out.exists() else out.with_name("release.quarantine")
    got["release files"] = sorted(p.name for p in where.iterdir())
    got["privacy report"] = report_fields(where / "privacy_report.json")
    got["Parquet footer"] = footer(where / "data.parquet")
    got["Arrow schema"] = arrow_schema(where / "data.parquet")
    got["ledger"] = ledger_rows(db)[before:]
    if whole:
        got["release bytes"] = {p.name: digest(p) for p in sorted(where.iterdir())}
    return got


def compare(runs: dict[str, dict]) -> list[str]:
    """The channels in which a neighbour differs from D (empty: the harness passes), each
    with the first difference found."""
    base = runs["D"]
    return [f"{name}: {channel}: {first_difference(base[channel], run[channel])}"
            for name, run in runs.items() if name != "D"
            for channel in base if run[channel] != base[channel]]


def first_difference(a, b) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return f"[{key!r}] {str(a.get(key))[:150]!r} != {str(b.get(key))[:150]!r}"
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for x, y in zip(a, b):
            if x != y:
                return first_difference(x, y)
    return f"{str(a)[:150]!r} != {str(b)[:150]!r}"


def release_neighbours(tmp_path, monkeypatch, capsys, lines, args, whole, schema,
                       which: tuple[str, ...]) -> dict:
    tape = Tape()
    couple(monkeypatch, tape)
    runs = {}
    for name, text in neighbours(lines).items():
        if name not in which:
            continue
        runs[name] = channels(tmp_path, text, args, whole, capsys, schema)
        tape.rewind()
    return runs


MARGINALS = ["--epsilon", "1", "--rows", "300"]
# dp-marginals with a small mixture: the channels compared are the same whatever its size
SMALL_MIXTURE = ["--components", "64"]
DPSGD = ["--epsilon", "1", "--rows", "300", "--epochs", "1", "--batch-size", "64"]


# --- the harness on every tabular synthesizer ---------------------------------------------

# dp-marginals against both neighbours; the others against one each (either direction is
# covered by some synthesizer, and each release costs seconds)
@pytest.mark.parametrize("synthesizer,args,whole,which", [
    ("dp-marginals", MARGINALS + SMALL_MIXTURE, True, ("D", "D+", "D-")),
    ("dp-independent", MARGINALS, True, ("D", "D-")),
    ("dp-vae", DPSGD, False, ("D", "D+")),
    ("dp-ctgan", DPSGD, False, ("D", "D-")),
])
def test_neighbouring_releases_differ_only_through_mechanisms(tmp_path, monkeypatch, capsys,
                                                              lines, small, synthesizer,
                                                              args, whole, which):
    runs = release_neighbours(tmp_path, monkeypatch, capsys, lines,
                              ["--synthesizer", synthesizer, *args], whole, small, which)
    assert runs["D"]["exit"] == 0, runs["D"]
    assert not (diff := compare(runs)), "\n".join(diff)


def training_sets(tmp_path: Path, lines: list[str]) -> dict[str, set]:
    """Each neighbour's training records (after the holdout split), as a set of rows; the
    ledger entries its preparation wrote."""
    from pipelines.config import RunConfig
    from pipelines.plan import prepare
    from pipelines.run import load_training

    trained = {}
    for name, text in neighbours(lines).items():
        path = tmp_path / "input.csv"
        path.write_text(text)
        plan = prepare(RunConfig(input=str(path), schema_file=str(SCHEMA), epsilon=1,
                                 out=str(tmp_path / "out"), noise_seed=11,
                                 ledger=str(tmp_path / "l.db")))
        data = load_training(plan)
        plan.ledger.cancel(plan.entry)
        plan.done()
        trained[name] = set(map(tuple, data.train.astype(str).itertuples(index=False)))
    return trained


def split_moves(trained: dict[str, set]) -> int:
    """The most records by which a neighbour's training set differs from D's."""
    return max(len(trained["D"] ^ trained[k]) for k in ("D+", "D-"))


def test_neighbours_train_on_the_same_records_but_one(tmp_path, lines):
    """The training split of every other record does not move; the ledger's entries of the
    three preparations are equal; the encodings come from the schema alone."""
    from schemas import load_schema
    from synth.encoding import TableEncoder

    trained = training_sets(tmp_path, lines)
    assert split_moves(trained) <= 1
    assert 0 < len(trained["D"]) < ROWS  # some records were held out
    entries = ledger_rows(tmp_path / "l.db")
    assert len(entries) == 3 and entries[0] == entries[1] == entries[2]
    schema = load_schema(SCHEMA)
    assert TableEncoder(schema).sizes == TableEncoder(schema).sizes  # no data argument at all


# --- error messages ------------------------------------------------------------------------

def bad(lines: list[str], where: int, age: str) -> str:
    fields = lines[where].split(",")
    return ",".join([age] + fields[1:])


def public_error(tmp_path: Path, text: str) -> str:
    from pipelines.errors import DataError
    from pipelines.ingest import ingest
    from schemas import load_schema

    path = tmp_path / "input.csv"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        ingest(path, load_schema(SCHEMA))
    return caught.value.public


def test_neighbouring_bad_inputs_get_the_same_public_message(tmp_path, lines):
    """A record more, good or bad, anywhere: the message that may be stored is the same."""
    d = lines[:ROWS]
    one = d[:5] + [bad(lines, 5, "153")] + d[5:]
    messages = {public_error(tmp_path, "".join(t)) for t in (
        one, one + [lines[ROWS]], one[:50] + [bad(lines, 9, "200")] + one[50:], one[1:])}
    assert len(messages) == 1, messages
    [message] = messages
    assert "153" not in message and "row" not in message


# --- Prefect: artifacts, logs, states, parameters -------------------------------------------

def prefect_channels(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # logs reach the API in the background: all, first
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        # a result's storage key is a fresh uuid per run: where, not what
        artifacts = [(a.key, a.type, a.description, a.data if a.key else None)
                     for a in client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))]
        logs = [(log.name, log.level, log.message) for log in client.read_logs(
            log_filter=LogFilter(flow_run_id={"any_": [flow_run_id]}))]
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    volatile = ("Finished in state", "Created task run", "Executing", "Beginning flow run",
                "View at")
    return {"Prefect artifacts": sorted(map(str, artifacts)),
            # wall-clock times (elapsed, left) vary as Prefect's own timestamps do
            "Prefect logs": sorted(re.sub(r"\d+:\d\d(:\d\d)?", "T", m) for _, _, m in logs
                                   if not any(v in m for v in volatile)),
            "Prefect states": (run.state.type.value, run.state.message,
                               sorted((t.name.split("-")[0], t.state.type.value,
                                       t.state.message) for t in tasks)),
            "Prefect parameters": json.dumps(run.parameters, sort_keys=True)}


def test_neighbouring_flow_runs_leave_the_same_trace_in_prefect(prefect_home, tmp_path,
                                                                 monkeypatch, lines, small):
    from prefect.context import get_run_context  # noqa: F401  (Prefect is imported)

    from flows.parameters import parameters
    from flows.release import release
    from pipelines.config import RunConfig

    tape = Tape()
    couple(monkeypatch, tape)
    data, out = tmp_path / "input.csv", tmp_path / "release"
    config = RunConfig(input=str(data), schema_file=str(small), out=str(out), epsilon=1.0,
                       rows=300, noise_seed=11, overwrite=True, ledger=str(tmp_path / "l.db"),
                       components=64)
    runs = {}
    for name, text in list(neighbours(lines).items())[:2]:
        data.write_text(as_small(text))
        state = release(**parameters(config), return_state=True)
        runs[name] = prefect_channels(state.state_details.flow_run_id)
        runs[name]["release bytes"] = {p.name: digest(p) for p in sorted(out.iterdir())}
        tape.rewind()
        for db in tmp_path.glob("l.db*"):  # each world's run is the first its ledger holds
            db.unlink()
    assert not (diff := compare(runs)), "\n".join(diff)
    assert any("release" in a for a in runs["D"]["Prefect artifacts"])


def test_neighbouring_bad_inputs_leave_the_same_trace_in_prefect(prefect_home, tmp_path,
                                                                 lines):
    from flows.parameters import parameters
    from flows.release import release
    from pipelines.config import RunConfig

    data = tmp_path / "input.csv"
    config = RunConfig(input=str(data), schema_file=str(SCHEMA), out=str(tmp_path / "out"),
                       epsilon=1.0, rows=300, ledger=str(tmp_path / "l.db"))
    d = lines[:ROWS]
    one = d[:5] + [bad(lines, 5, "153")] + d[5:]
    runs = {}
    for name, text in {"D": one, "D+": one + [bad(lines, 9, "200")],
                       "D-": one[1:]}.items():
        data.write_text("".join(text))
        state = release(**parameters(config), return_state=True)
        assert state.is_failed()
        runs[name] = prefect_channels(state.state_details.flow_run_id)
    assert not (diff := compare(runs)), "\n".join(diff)
    assert "153" not in str(runs["D"])


# --- the image synthesizers -----------------------------------------------------------------

@pytest.mark.parametrize("synthesizer,extra", [
    ("dp-merf", []),
    ("dp-conv-gan", ["--epochs", "1", "--batch-size", "64"]),
    ("dp-conv-vae", ["--epochs", "1", "--batch-size", "64"]),
])
def test_neighbouring_image_releases_differ_only_through_mechanisms(tmp_path, monkeypatch,
                                                                    capsys, synthesizer,
                                                                    extra):
    from pipelines.images import ingest_images
    from schemas import load_image_schema
    from synth import image_nets

    fashion = ROOT / "schemas" / "fashion_mnist.yaml"
    schema = load_image_schema(fashion)
    real = ingest_images(ROOT / "data" / "fashion-mnist", schema)
    images, labels = real.images[:201], np.array(schema.labels)[real.labels[:201]]
    from pipelines import image_run

    # dp-merf small enough for a test (its defaults take minutes): its generator's steps and
    # batches are post-processing, whatever their size
    params = image_run.image_params
    small_merf = {"features": 256, "steps": 20, "batch_per_class": 10}
    monkeypatch.setattr(image_run, "image_params", lambda config, name: {
        **params(config, name), **(small_merf if name == "dp-merf" else {})})
    tape = Tape()
    couple(monkeypatch, tape)
    measure = image_nets.measure_labels  # the noisy label histogram: a paid mechanism too
    monkeypatch.setattr(image_nets, "measure_labels", lambda *a, **k: tape(measure(*a, **k)))
    data, out, db = tmp_path / "images.npz", tmp_path / "release", tmp_path / "l.db"
    runs = {}
    for name, keep in {"D": slice(0, 200), ("D-" if synthesizer == "dp-merf" else "D+"):
                       slice(0, 199) if synthesizer == "dp-merf" else slice(0, 201)}.items():
        np.savez(data, images=images[keep], labels=labels[keep])
        before = len(Ledger(db).history()) if db.exists() else 0
        code = main(["run", "--schema", str(fashion), "--input", str(data), "--epsilon", "10",
                     "--delta", "1e-5", "--out", str(out), "--synthesizer", synthesizer,
                     "--rows", "20", "--noise-seed", "11", "--overwrite", "-q", "--ledger",
                     str(db), *extra])
        capsys.readouterr()
        where = out if out.exists() else out.with_name("release.quarantine")
        runs[name] = {"exit": code, "release files": sorted(p.name for p in where.iterdir()),
                      "privacy report": report_fields(where / "privacy_report.json"),
                      "Parquet footer": footer(where / "data.parquet"),
                      "Arrow schema": arrow_schema(where / "data.parquet"),
                      "ledger": ledger_rows(db)[before:]}
        tape.rewind()
    assert runs["D"]["exit"] == 0
    assert not (diff := compare(runs)), "\n".join(diff)


# --- the DP schema draft ----------------------------------------------------------------------

def test_neighbouring_data_sets_give_the_same_dp_draft(tmp_path):
    from pipelines.draft import draft_dp_schema

    drafts = {}
    for name, extra in {"D": "", "D+": "150,90000000,komodo,2500-06-01\n"}.items():
        path = tmp_path / "people.csv"
        path.write_text(people() + extra)
        drafts[name] = draft_dp_schema(path, 4.0, 1e-9, ledger=tmp_path / "l.db", seed=5).text
    assert drafts["D"] == drafts["D+"] and "komodo" not in drafts["D+"]


def people() -> str:
    rng = np.random.default_rng(3)
    return "age,salary,pet,joined\n" + "".join(
        f"{20 + i % 50},{int(rng.integers(20, 80)) * 1000},{('cat', 'dog', 'fish')[i % 3]},"
        f"{2000 + i % 20}-0{1 + i % 9}-15\n" for i in range(4000))


# --- the broken-variant corpus: each flaw the issue found, put back, is caught ----------------

def test_broken_holdout_by_public_permutation_is_caught(tmp_path, lines, monkeypatch):
    """Flaw 1: a holdout cut by a permutation seeded by the public seed moves many records
    between training and holdout when one record is added or removed."""
    from pipelines import run

    def permutation(plan, frame):
        order = np.random.default_rng(plan.config.seed).permutation(len(frame))
        cut = len(frame) - max(1, int(round(plan.config.holdout * len(frame))))
        return (frame.iloc[np.sort(order[:cut])].reset_index(drop=True),
                frame.iloc[np.sort(order[cut:])].reset_index(drop=True))

    monkeypatch.setattr(run, "split_holdout", permutation)
    assert split_moves(training_sets(tmp_path, lines)) > 1


def test_broken_exact_record_count_is_caught(tmp_path, monkeypatch, capsys, lines, small):
    """Flaw 2: a sampling rate set from the exact number of records, not a paid count,
    shows in the report and the footer of neighbouring releases."""
    from synth import dpsgd

    tape = Tape()
    couple(monkeypatch, tape)
    monkeypatch.setattr(dpsgd, "noisy_count", lambda n, *a, **k: float(n))  # no mechanism
    runs = {}
    for name, text in list(neighbours(lines).items())[:2]:
        runs[name] = channels(tmp_path, text, ["--synthesizer", "dp-vae", *DPSGD], False,
                              capsys, small)
        tape.rewind()
    caught = compare(runs)  # the accountant's epsilon, the rate, the steps: N shows through
    assert any(line.startswith("D+: privacy report") for line in caught)
    assert runs["D"]["privacy report"]["sampling_rate"] != \
        runs["D+"]["privacy report"]["sampling_rate"]


@pytest.mark.parametrize("broken", [False, True])
def test_broken_32_bit_randomness_is_caught(broken):
    """Flaw 3: a CPU torch.Generator keeps 32 bits of its seed: seeds s, s + 2^40 and
    s + 2^62 give one stream. The private randomness must tell them apart."""
    import torch

    from synth.randomness import PrivateRandom

    def stream(seed: int) -> np.ndarray:
        if broken:
            return torch.randn(8, generator=torch.Generator().manual_seed(seed)).numpy()
        return PrivateRandom(seed).normal((8,), 1.0).numpy()

    s = 12345
    same = [np.array_equal(stream(s), stream(t)) for t in (s + 2**40, s + 2**62)]
    assert any(same) == broken


def test_broken_counts_in_public_messages_are_caught(tmp_path, lines, monkeypatch):
    """Flaw 4: a 'redacted' message that still says how many rows broke the rule (or where)
    answers a counting query for free."""
    from pipelines import ingest

    describe = ingest.Problem.describe
    monkeypatch.setattr(ingest.Problem, "describe",
                        lambda self, redact=False, **kw: describe(self, False, **kw).replace(
                            str(self.value), "<redacted>"))
    d = lines[:ROWS]
    one = d[:5] + [bad(lines, 5, "153")] + d[5:]
    messages = {public_error(tmp_path, "".join(t)) for t in (one, one + [bad(lines, 9, "200")])}
    assert len(messages) == 2


def test_broken_gate_on_real_rows_is_caught(tmp_path, monkeypatch, capsys, lines, small):
    """Flaw 5: publication decided by a fidelity check against the real rows. With its bound
    where D sits, one added record of the category the release has too few of crosses it:
    D is published and D+ quarantined, which the harness sees. (The real gate ignores the
    advisory suite: the harness above publishes both.)"""
    from pipelines import run

    edge: dict = {}

    def workclass_tv(verdict) -> float:
        return next(r["observed"] for r in observed(verdict.fidelity)
                    if r["subject"] == "workclass")

    def broken(verdict) -> bool:  # a gate on the real rows, its bound where D sits
        tv = workclass_tv(verdict)
        edge.setdefault("bound", tv + 1e-9)
        return verdict.structural.success and tv <= edge["bound"]

    monkeypatch.setattr(run.Verdict, "success", property(broken))
    tape = Tape()
    couple(monkeypatch, tape)
    args = ["--synthesizer", "dp-marginals", *MARGINALS, *SMALL_MIXTURE, "--holdout", "0"]
    d = lines[:ROWS]
    runs = {"D": channels(tmp_path, "".join(d), args, True, capsys, small)}
    real = pd.read_csv(tmp_path / "input.csv")["workclass"].value_counts(normalize=True)
    synthetic = pd.read_parquet(tmp_path / "release" / "data.parquet")["workclass"]
    gap = real.sub(synthetic.astype(str).value_counts(normalize=True), fill_value=0)
    record = next(line for line in d if line.split(",")[1].strip() == gap.idxmax())
    tape.rewind()
    runs["D+"] = channels(tmp_path, "".join(d + [record]), args, True, capsys, small)
    assert runs["D"]["exit"] == 0 and runs["D+"]["exit"] == 3
    assert any("quarantine" in line for line in compare(runs))


def test_broken_ledger_keyed_by_file_bytes_is_caught(tmp_path, lines, monkeypatch):
    """Flaw 7: a ledger keyed by the input's sha256 gives each version of the file a fresh
    total and stores a hash of the private bytes."""
    from pipelines import plan as planning

    reserve = Ledger.reserve

    def by_bytes(self, data_set, name, source, *rest):
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        return reserve(self, digest, name, source, *rest)

    monkeypatch.setattr(Ledger, "reserve", by_bytes)
    assert planning.Ledger is Ledger
    training_sets(tmp_path, lines)
    entries = ledger_rows(tmp_path / "l.db")
    assert len({e["data_set"] for e in entries}) == 3


def test_broken_unreviewed_draft_accepted_is_caught(tmp_path, monkeypatch, capsys):
    """Flaw 8: the pipeline could not tell a draft read without DP from a reviewed schema.
    The real check refuses it before anything is reserved; with the check gone, the run
    goes ahead to reserve budget and read the rows."""
    from pipelines import plan as planning
    from pipelines.config import RunConfig
    from pipelines.draft import draft_schema

    path = tmp_path / "people.csv"
    path.write_text(people())
    drafted = tmp_path / "people.yaml"
    drafted.write_text(draft_schema(path))
    argv = ["run", "--input", str(path), "--schema", str(drafted), "--epsilon", "1",
            "--out", str(tmp_path / "out"), "--ledger", str(tmp_path / "l.db"), "-q"]
    assert main(argv) == 2 and "draft" in capsys.readouterr().err
    assert not (tmp_path / "l.db").exists() or not Ledger(tmp_path / "l.db").history()
    monkeypatch.setattr(planning, "refuse_unreviewed_draft", lambda schema: None)
    plan = planning.prepare(RunConfig(input=str(path), schema_file=str(drafted), epsilon=1,
                                      out=str(tmp_path / "out"),
                                      ledger=str(tmp_path / "l.db")))
    assert Ledger(tmp_path / "l.db").history()[0]["state"] == "reserved"  # not refused
    plan.ledger.cancel(plan.entry)
    plan.done()


def test_broken_surrogates_from_the_public_seed_are_caught(monkeypatch):
    """Flaw 6: surrogates computed from the public seed can be recomputed by anyone; drawn
    from secret bits, two runs with the same public seed give different ones."""
    from pipelines import surrogates
    from schemas import load_schema

    schema = load_schema(ROOT / "schemas" / "medical_demo.yaml")
    frame = pd.DataFrame({"age": range(20)})

    def differ() -> bool:
        a, b = (surrogates.add_surrogates(frame, schema, surrogates.surrogate_seed(None))
                for _ in range(2))
        return not a.equals(b)

    assert differ()
    monkeypatch.setattr(surrogates, "surrogate_seed", lambda noise_seed: 0)  # the public seed
    assert not differ()
