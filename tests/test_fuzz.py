"""Hostile and careless input, generated: every case below ends in one bounded ``error:`` line
and exit 2, with nothing written and no budget counted, through ``synth run`` and through the
release flow under a real Prefect server, whose database then holds none of the inputs'
values.

Classes (each a list of generated cases): run settings (``PARAMETERS``), output and input
paths (``PATHS``), ledgers (``LEDGERS``), schema files (``SCHEMAS``), CSV and Parquet inputs
(``CSV``, ``PARQUET``), image inputs (tests/test_images.py's ``HOSTILE``). A private value
planted in an input (``MARKER``) must reach no Prefect channel. docs/bad-input.md tables
the cases and what each gives.

"Nothing written": no file appears, disappears or changes under the case's folder (the
ledger sits apart). "No budget counted": the ledger holds no entry in a counted state; a
data error found while reading the private rows cancels the run's reservation, which stays
as a cancelled row.
"""

from __future__ import annotations

import gzip
import io
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import EXIT_BAD_INPUT
from pipelines.cli import main as synth
from pipelines.ledger import COUNTED, Ledger
from schemas.limits import Limits
from tests.test_images import HOSTILE as IMAGE_HOSTILE
from tests.test_images import TINY as IMAGE_SCHEMA
from tests.test_images import (
    tree_state as tree,  # every entry: size, mtime; FIFOs unopened
)

MARKER = "SECRET4242"  # a private value: it must reach no public channel
MAX_LINE = len("error: ") + Limits.error_chars

SCHEMA = """\
name: fuzz
version: "1"
columns:
  - {name: age, kind: integer, min: 0, max: 120}
  - {name: income, kind: float, min: 0, max: 1000000, nullable: true}
  - {name: colour, kind: categorical, categories: [red, green, blue]}
  - {name: joined, kind: date, min: 2000-01-01, max: 2030-12-31}
  - {name: member, kind: boolean}
"""
HEADER = ["age", "income", "colour", "joined", "member"]
COLOURS = ("red", "green", "blue")


def good_rows(n: int = 60) -> list[list[str]]:
    return [[str(20 + i % 60), f"{1000 + 37 * i}.5", COLOURS[i % 3],
             f"20{10 + i % 10}-0{1 + i % 9}-1{i % 10}", "true" if i % 2 else "false"]
            for i in range(n)]


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    return ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)


@dataclass
class Case:
    """One malformed input: ``build(folder)`` writes what it needs into ``folder`` and
    returns the ``synth run`` arguments that differ from the good run's."""

    id: str
    build: Callable[[Path], dict[str, str]]
    expect: str = ""  # words the error line must hold
    env: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()  # extra options (or options to drop, as "-OPTION")


# --- run settings ----------------------------------------------------------------------------

def setting(option: str, value: str, expect: str = "") -> Case:
    return Case(f"{option.strip('-')}={value[:20]}", lambda d: {}, expect,
                flags=(option, value))


PARAMETERS = [
    *(setting("--epsilon", v, "epsilon") for v in (
        "0", "-1", "1e300", "1e-300", "nan", "inf", "-inf", "1e-7", "1001", "abc", "",
        "1e999", "0x1p3")),
    *(setting("--delta", v, "delta") for v in ("0", "1", "2", "-1e-9", "nan", "1e-31", "inf",
                                               "x")),
    *(setting("--rows", v, "rows") for v in ("0", "-1", "1000000000000", str(2**63),
                                             "1.5", "x", "1e6")),
    *(setting("--seed", v, "seed") for v in ("-1", str(2**64), "x")),
    *(setting("--noise-seed", v, "noise") for v in ("-5", str(2**70))),
    *(setting("--holdout", v, "holdout") for v in ("-0.1", "0.95", "nan", "inf")),
    setting("--checkpoint-every", "-1", "checkpoint"),
    setting("--batch-above-rows", "-1", "batch"),
    setting("--synthesizer", "dp-magic", "synthesizer"),
    setting("--accountant", "gdp", "accountant"),
    *(setting("--fidelity-threshold", v, "fidelity-threshold") for v in (
        "x", "enabled=1", "nope=1")),
    *(setting("--fidelity-threshold", v, "ks_max") for v in ("ks_max=2", "ks_max=nan",
                                                             "ks_max=")),
    Case("epochs-with-dp-marginals", lambda d: {}, "--epochs",
         flags=("--epochs", "3")),
    Case("batch-size-huge", lambda d: {}, "batch_size",
         flags=("--synthesizer", "dp-vae", "--batch-size", str(10**12))),
    Case("lr-infinite", lambda d: {}, "lr", flags=("--synthesizer", "dp-vae", "--lr", "inf")),
    Case("lr-zero", lambda d: {}, "lr", flags=("--synthesizer", "dp-vae", "--lr", "0")),
    Case("grad-norm-inf", lambda d: {}, "max_grad_norm",
         flags=("--synthesizer", "dp-vae", "--max-grad-norm", "inf")),
    Case("epochs-huge", lambda d: {}, "epochs",
         flags=("--synthesizer", "dp-vae", "--epochs", "1000000")),
    Case("unknown-option", lambda d: {}, "unrecognized", flags=("--epsilom", "1")),
    Case("missing-input", lambda d: {}, "--input", flags=("-input",)),
    Case("missing-epsilon", lambda d: {}, "--epsilon", flags=("-epsilon",)),
    Case("ledger-url-with-password", lambda d: {"ledger": "postgresql://u:pw@host/db"},
         "password"),
    Case("rows-past-lowered-limit", lambda d: {}, "SYNTH_MAX_ROWS",
         env={"SYNTH_MAX_ROWS": "10"}, flags=("--rows", "11")),
    Case("limit-variable-garbage", lambda d: {}, "SYNTH_MAX_ROWS",
         env={"SYNTH_MAX_ROWS": "lots"}),
]


# --- where things are ------------------------------------------------------------------------

def planted(name: str, files: dict[str, bytes]) -> Callable[[Path], dict[str, str]]:
    """An --out folder holding ``files`` this tool did not write."""
    def build(d: Path) -> dict[str, str]:
        (d / name).mkdir()
        for file, blob in files.items():
            (d / name / file).write_bytes(blob)
        return {"out": str(d / name)}
    return build


def release_folder(d: Path) -> Path:
    """A folder that is a release of this tool (its manifest's format)."""
    (d / "rel").mkdir()
    (d / "rel" / "manifest.json").write_text('{"format": "dp-synth release 1", "files": {}}')
    return d / "rel"


def fifo(d: Path, name: str) -> str:
    os.mkfifo(d / name)
    return str(d / name)


PATHS = [
    Case("out-root", lambda d: {"out": "/"}, "root"),
    Case("out-empty", lambda d: {"out": ""}, "empty"),
    Case("out-blank", lambda d: {"out": "   "}, "empty"),
    Case("out-control-char", lambda d: {"out": str(d / "a\x01b")}, "control"),
    Case("out-long-name", lambda d: {"out": str(d / ("n" * 300))}, "longer"),
    Case("out-hidden", lambda d: {"out": str(d / ".hidden")}, "'.'"),
    Case("out-internal-name", lambda d: {"out": str(d / "x.internal")}, ".internal"),
    Case("out-quarantine-name", lambda d: {"out": str(d / "x.quarantine")}, ".quarantine"),
    Case("out-under-a-file", lambda d: (d / "afile").write_text("x") and {
        "out": str(d / "afile" / "rel")}, "is a file"),
    Case("out-is-a-file", lambda d: (d / "afile").write_text("x") and {
        "out": str(d / "afile")}, "already exists"),
    Case("out-inside-a-release", lambda d: {"out": str(release_folder(d) / "inner")},
         "inside"),
    Case("out-inside-an-internal-folder", lambda d: (d / "r.internal").mkdir() or {
        "out": str(d / "r.internal" / "x")}, "inside"),
    Case("out-theirs-no-overwrite", planted("theirs", {"thesis.docx": b"mine"}),
         "already exists"),
    *(Case(f"overwrite-theirs-{name}", planted("theirs", {name: b"mine " + MARKER.encode()}),
           "refusing to replace", flags=("--overwrite",))
      for name in ("report.html", "data.parquet", "manifest.json", "run_key")),
    Case("overwrite-a-link", lambda d: os.symlink(d, d / "link") or {"out": str(d / "link")},
         "link", flags=("--overwrite",)),
    Case("input-missing", lambda d: {"input": str(d / "nope.csv")}, "no such file"),
    Case("input-directory", lambda d: {"input": str(d)}, "input"),
    Case("input-fifo", lambda d: {"input": fifo(d, "pipe.csv")}, "input"),
    Case("input-dev-zero", lambda d: {"input": "/dev/zero"}, "input"),
    Case("schema-missing", lambda d: {"schema": str(d / "nope.yaml")}, "nope.yaml"),
    Case("schema-directory", lambda d: {"schema": str(d)}, "schema"),
    Case("schema-fifo", lambda d: {"schema": fifo(d, "pipe.yaml")}, "pipe.yaml"),
    Case("schema-dev-zero", lambda d: {"schema": "/dev/zero"}, "/dev/zero"),
]


# --- ledgers ---------------------------------------------------------------------------------

def ledger_file(blob: bytes) -> Callable[[Path], dict[str, str]]:
    def build(d: Path) -> dict[str, str]:
        (d / "l.db").write_bytes(blob)
        return {"ledger": str(d / "l.db")}
    return build


def foreign_sqlite(d: Path) -> dict[str, str]:
    with sqlite3.connect(d / "l.db") as db:
        db.execute("CREATE TABLE patients (name TEXT)")
        db.execute("INSERT INTO patients VALUES (?)", (MARKER,))
    return {"ledger": str(d / "l.db")}


LEDGERS = [
    Case("ledger-garbage", ledger_file(os.urandom(4096)), "ledger"),
    Case("ledger-text", ledger_file(b"not a database\n" * 10), "ledger"),
    Case("ledger-empty-file", ledger_file(b""), "ledger"),
    Case("ledger-header-then-garbage", ledger_file(b"SQLite format 3\0" + bytes(100)),
         "ledger"),
    Case("ledger-directory", lambda d: {"ledger": str(d)}, "directory"),
    Case("ledger-foreign-database", foreign_sqlite, "entries"),
    Case("ledger-missing-folder", lambda d: {"ledger": str(d / "no" / "l.db")}, "folder"),
]


# --- schema files ----------------------------------------------------------------------------

def schema_text(text: str | bytes) -> Callable[[Path], dict[str, str]]:
    def build(d: Path) -> dict[str, str]:
        path = d / "bad.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return {"schema": str(path)}
    return build


def column(line: str) -> str:
    """The good schema with its ``age`` column replaced by ``line``."""
    return SCHEMA.replace("  - {name: age, kind: integer, min: 0, max: 120}\n", line + "\n")


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
    for i in range(8))
SCHEMAS = [
    Case("schema-deep-nesting", schema_text("a: " + "[" * 100_000 + "]" * 100_000), "bad.yaml"),
    Case("schema-deep-mapping", schema_text("a: " + "{b: " * 5000 + "1" + "}" * 5000),
         "bad.yaml"),
    Case("schema-billion-laughs-min", schema_text(LAUGHS + column(
        "  - {name: age, kind: integer, min: *i, max: 120}")), "bad.yaml"),
    Case("schema-billion-laughs-categories", schema_text(LAUGHS + SCHEMA.replace(
        "[red, green, blue]", "*i")), "bad.yaml"),
    Case("schema-alias", schema_text(column(
        "  - {name: age, kind: integer, min: &m 0, max: *m}")), "bad.yaml"),
    Case("schema-duplicate-top-key", schema_text("name: other\n" + SCHEMA), "name"),
    Case("schema-duplicate-column-key", schema_text(column(
        "  - {name: age, kind: integer, min: 0, max: 90, max: 1000000000}")), "max"),
    Case("schema-duplicate-column", schema_text(SCHEMA + "  - {name: age, kind: integer, "
                                                "min: 0, max: 9}\n"), "age"),
    *(Case(f"schema-bound-{v}", schema_text(column(
        f"  - {{name: age, kind: float, min: {lo}, max: {hi}}}")), "age")
      for v, lo, hi in (("1e308", "-1e308", "1e308"), ("inf", "-.inf", ".inf"),
                        ("nan", ".nan", "1"), ("2p63", "0", str(2**63)),
                        ("1e400", "0", "1e400"), ("reversed", "10", "1"))),
    Case("schema-integer-2p63", schema_text(column(
        f"  - {{name: age, kind: integer, min: 0, max: {2**63}}}")), "age"),
    Case("schema-date-year-99999", schema_text(SCHEMA.replace("2030-12-31", "99999-12-31")),
         "joined"),
    Case("schema-unknown-kind", schema_text(column("  - {name: age, kind: quantum}")), "kind"),
    Case("schema-no-categories", schema_text(SCHEMA.replace("[red, green, blue]", "[]")),
         "colour"),
    Case("schema-duplicate-categories", schema_text(SCHEMA.replace("[red, green, blue]",
                                                                   "[red, red]")), "colour"),
    Case("schema-huge-category", schema_text(SCHEMA.replace("blue", "b" * 2_000_000)),
         "bad.yaml"),
    Case("schema-name-a-list", schema_text(SCHEMA.replace("name: fuzz", "name: [a, b]")),
         "name"),
    Case("schema-python-tag", schema_text(SCHEMA.replace("name: fuzz", "name: !!python/name:os."
                                                         "system")), "bad.yaml"),
    Case("schema-columns-not-a-list", schema_text("name: fuzz\nversion: '1'\ncolumns: 7\n"),
         "columns"),
    Case("schema-a-list", schema_text("- a\n- b\n"), "bad.yaml"),
    Case("schema-empty", schema_text(""), "bad.yaml"),
    Case("schema-not-utf8", schema_text(SCHEMA.encode() + b"# \xff\xfe\n"), "bad.yaml"),
    Case("schema-truncated", schema_text(SCHEMA[:-30]), "bad.yaml"),
    Case("schema-tabs", schema_text(SCHEMA.replace("  - {name: age", "\t- {name: age")),
         "bad.yaml"),
    Case("schema-binary", schema_text(bytes(range(256)) * 4), "bad.yaml"),
    Case("schema-past-size-limit", schema_text(SCHEMA), "SYNTH_MAX_SCHEMA_BYTES",
         env={"SYNTH_MAX_SCHEMA_BYTES": "100"}),
    Case("schema-past-column-limit", schema_text(SCHEMA), "SYNTH_MAX_COLUMNS",
         env={"SYNTH_MAX_COLUMNS": "2"}),
    Case("schema-past-category-limit", schema_text(SCHEMA), "SYNTH_MAX_CATEGORIES",
         env={"SYNTH_MAX_CATEGORIES": "2"}),
    Case("schema-budget-infinite", schema_text(SCHEMA + "budget: {epsilon: .inf, delta: 1e-6}"
                                               "\n"), "budget"),
    Case("schema-unreviewed-draft", schema_text(SCHEMA + "draft: {dp: false}\n"), "draft"),
    Case("schema-column-name-newline", schema_text(column(
        '  - {name: "a\\nb", kind: integer, min: 0, max: 1}')), "bad.yaml"),
]


# --- CSV and Parquet inputs ------------------------------------------------------------------

def csv_input(text: str | bytes, name: str = "bad.csv") -> Callable[[Path], dict[str, str]]:
    def build(d: Path) -> dict[str, str]:
        blob = text if isinstance(text, bytes) else text.encode()
        (d / name).write_bytes(gzip.compress(blob) if name.endswith(".gz") else blob)
        return {"input": str(d / name)}
    return build


def cell(column_name: str, value: str, row: int = 7) -> str:
    rows = good_rows()
    rows[row][HEADER.index(column_name)] = value
    return csv_text(rows)


def raw_input(blob: bytes, name: str) -> Callable[[Path], dict[str, str]]:
    def build(d: Path) -> dict[str, str]:
        (d / name).write_bytes(blob)
        return {"input": str(d / name)}
    return build


GOOD = csv_text(good_rows())
CELLS = {
    "age": ("inf", "-inf", "Infinity", "nan", "NaN", str(2**63), "1e400",
            "99999999999999999999999", str(-(2**63) - 1), "1.5", "4242424", "-7", MARKER, "",
            "0x10", "１２", "12abc", "1e3"),
    "income": ("inf", "-Infinity", "1e308", "-1e-300", MARKER, "1e400", "2000000"),
    "colour": (MARKER, "", "Red", "red\u200b"),
    "joined": ("1999-12-31", "2031-01-01", MARKER, "2020-13-01", "99999-01-01", "2020-02-30"),
    "member": (MARKER, "2", ""),
}
CSV = [
    *(Case(f"csv-{name}={value[:16] or 'empty'}", csv_input(cell(name, value)), name)
      for name, values in CELLS.items() for value in values),
    Case("csv-duplicate-column", csv_input(csv_text(
        [r + [r[0]] for r in good_rows()], HEADER + ["age"])), "age"),
    Case("csv-missing-column", csv_input(csv_text(
        [r[1:] for r in good_rows()], HEADER[1:])), "age"),
    Case("csv-past-column-limit", csv_input(csv_text(
        [r + ["1"] * 30 for r in good_rows()], HEADER + [f"x{i}" for i in range(30)])),
        "SYNTH_MAX_COLUMNS", env={"SYNTH_MAX_COLUMNS": "20"}),
    Case("csv-100000-columns", csv_input(",".join(f"c{i}" for i in range(100_000)) + "\n"
                                         + ",".join("1" * 100_000) + "\n"), "columns"),
    Case("csv-megabyte-cell", csv_input(cell("colour", MARKER * 100_000)), "colour"),
    Case("csv-unclosed-quote", csv_input(cell("colour", '"' + MARKER)), "bad.csv"),
    Case("csv-no-header", csv_input("".join(",".join(r) + "\n" for r in good_rows())
                                    .replace("red", MARKER, 1)), "bad.csv"),
    Case("csv-empty", csv_input(""), "bad.csv"),
    Case("csv-header-only", csv_input(",".join(HEADER) + "\n"), "bad.csv"),
    Case("csv-nul-bytes", csv_input(GOOD.replace("green", "gr\0een")), "bad.csv"),
    Case("csv-binary", raw_input(os.urandom(5000), "bad.csv"), "bad.csv"),
    Case("csv-extra-field", csv_input(GOOD.replace("\n30,", "\n30,7,", 1)), "bad.csv"),
    Case("csv-missing-field", csv_input(GOOD.replace(",true\n", "\n", 1)), "bad.csv"),
    Case("csv-semicolons", csv_input(GOOD.replace(",", ";")), "bad.csv"),
    Case("csv-latin1", raw_input(GOOD.replace("blue", "bl\xe9", 1).encode("latin-1"),
                                 "bad.csv"), "bad.csv"),
    Case("gz-truncated", raw_input(gzip.compress(GOOD.encode())[:200], "bad.csv.gz"),
         "bad.csv.gz"),
    Case("gz-not-gzip", raw_input(GOOD.encode(), "bad.csv.gz"), "bad.csv.gz"),
    Case("gz-garbage", raw_input(b"\x1f\x8b" + os.urandom(300), "bad.csv.gz"), "bad.csv.gz"),
]


def parquet_of(columns: dict[str, pa.Array], name: str = "bad.parquet",
               names: list[str] | None = None) -> Callable[[Path], dict[str, str]]:
    def build(d: Path) -> dict[str, str]:
        table = pa.Table.from_arrays(list(columns.values()), names=names or list(columns))
        pq.write_table(table, d / name)
        return {"input": str(d / name)}
    return build


def good_columns(**change: pa.Array) -> dict[str, pa.Array]:
    rows = good_rows()
    cols = {"age": pa.array([int(r[0]) for r in rows]),
            "income": pa.array([float(r[1]) for r in rows]),
            "colour": pa.array([r[2] for r in rows]),
            "joined": pa.array([r[3] for r in rows]),
            "member": pa.array([r[4] == "true" for r in rows])}
    cols.update(change)
    return cols


def truncated_parquet(d: Path) -> dict[str, str]:
    buffer = io.BytesIO()
    pq.write_table(pa.table(good_columns()), buffer)
    (d / "bad.parquet").write_bytes(buffer.getvalue()[:-100])
    return {"input": str(d / "bad.parquet")}


N = len(good_rows())
PARQUET = [
    Case("parquet-inf", parquet_of(good_columns(income=pa.array([np.inf] * N))), "income"),
    Case("parquet-nan-age", parquet_of(good_columns(age=pa.array([np.nan] * N))), "age"),
    Case("parquet-uint64-2p63", parquet_of(good_columns(
        age=pa.array([2**63] * N, pa.uint64()))), "age"),
    Case("parquet-duplicate-field", parquet_of(
        {**good_columns(), "age2": pa.array([1] * N)},
        names=[*HEADER, "age"]), "age"),
    Case("parquet-truncated", truncated_parquet, "bad.parquet"),
    Case("parquet-garbage", raw_input(b"PAR1" + os.urandom(500) + b"PAR1", "bad.parquet"),
         "bad.parquet"),
    Case("parquet-text", raw_input(GOOD.encode(), "bad.parquet"), "bad.parquet"),
    Case("parquet-string-age", parquet_of(good_columns(age=pa.array([MARKER] * N))), "age"),
    Case("parquet-missing-column", parquet_of(
        {k: v for k, v in good_columns().items() if k != "colour"}), "colour"),
    Case("parquet-null-colour", parquet_of(good_columns(colour=pa.array([None] * N,
                                                                       pa.string()))),
         "colour"),
    Case("parquet-struct-colour", parquet_of(good_columns(colour=pa.array(
        [{"x": 1}] * N))), "colour"),
    Case("parquet-fractional-age", parquet_of(good_columns(age=pa.array([1.5] * N))), "age"),
]


# --- images ----------------------------------------------------------------------------------

def image_case(case_id: str, build, expect: str, env: dict[str, str]) -> Case:
    def built(d: Path) -> dict[str, str]:
        schema = d / "images.yaml"
        schema.write_text(IMAGE_SCHEMA.format(channels=1, lo=0, hi=255))
        return {"schema": str(schema), "input": str(build(d / "images"))}
    return Case(f"image-{case_id}", built, expect, env)


IMAGES = [image_case(h[0], h[1], h[2], h[3]) for h in IMAGE_HOSTILE]

CASES = PARAMETERS + PATHS + LEDGERS + SCHEMAS + CSV + PARQUET + IMAGES


# --- running a case --------------------------------------------------------------------------

def arguments(case: Case, folder: Path, state: Path) -> list[str]:
    """The good run's arguments, then the case's changes."""
    good = folder / "good.csv"
    good.write_text(GOOD)
    schema = folder / "good.yaml"
    schema.write_text(SCHEMA)
    given = {"input": str(good), "schema": str(schema), "out": str(folder / "release"),
             "ledger": str(state / "ledger.db")}
    given.update(case.build(folder))
    args = {"--input": given["input"], "--schema": given["schema"], "--epsilon": "1",
            "--out": given["out"], "--ledger": given["ledger"], "--rows": "50"}
    drop = {f[1:] for f in case.flags if f.startswith("-") and not f.startswith("--")}
    extra = [f for f in case.flags if not (f.startswith("-") and not f.startswith("--"))]
    flat = [x for k, v in args.items() if k[2:] not in drop for x in (k, v)]
    return [*flat, "-q", *extra] if "-q" not in drop else [*flat, *extra]


def counted(ledger: Path) -> list:
    try:
        return [e for e in Ledger(ledger).history() if e["state"] in COUNTED]
    except Exception:  # noqa: BLE001  a hostile ledger of the case itself: nothing counts in it
        return []


def run_synth(argv: list[str], capsys) -> tuple[int, str, str]:
    """``synth`` on ``argv`` in this process: its exit status, stdout and stderr."""
    try:
        code = synth(argv)
    except SystemExit as exc:  # argparse's exit after its one line
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_one_line(case: Case, code: int, out: str, err: str) -> str:
    lines = err.splitlines()
    assert code == EXIT_BAD_INPUT, f"{case.id}: exit {code}\n{err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case.id}: {err[-2000:]}"
    assert len(lines[0]) <= MAX_LINE, f"{case.id}: a line of {len(lines[0])} characters"
    assert case.expect.lower() in lines[0].lower(), f"{case.id}: {lines[0]}"
    assert not out.strip(), f"{case.id}: {out[:300]}"
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_synth_run_refuses_in_one_line_writing_and_spending_nothing(case, tmp_path, capsys,
                                                                   monkeypatch):
    folder, state = tmp_path / "case", tmp_path / "state"
    folder.mkdir()
    state.mkdir()
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    argv = ["run", *arguments(case, folder, state)]
    before = tree(folder)
    check_one_line(case, *run_synth(argv, capsys))
    assert tree(folder) == before, f"{case.id}: something was written"
    assert counted(state / "ledger.db") == [] and counted(folder / "l.db") == []


def test_the_corpus_is_large_and_every_class_is_in_it():
    kinds = {c.id.split("-")[0].split("=")[0] for c in CASES}
    assert len(CASES) >= 150
    assert {"csv", "parquet", "gz", "schema", "ledger", "out", "input", "image"} <= kinds
    assert len({c.id for c in CASES}) == len(CASES)  # ids name one case each

