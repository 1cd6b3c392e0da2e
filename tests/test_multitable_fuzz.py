"""Hostile and careless input to a linked-tables run: each case ends in one bounded
``error:`` line and exit 2, with nothing written and no budget counted (the harness and
its rules are tests/test_fuzz.py's), through ``synth run`` with two ``--input
TABLE=FILE`` options and a multi-table schema.

Classes: the table inputs (a table missing, unknown, given twice, empty, truncated, a
directory), the keys (repeated, empty, a column missing), the child table's cells (inf,
2^63, a bad category, a duplicate header) and the multi-table schema (links to nothing,
no person table, absurd caps, duplicate YAML keys)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipelines.cli import main as synth
from tests.test_fuzz import Case, check_one_line, counted, run_synth, tree

SCHEMA = """\
kind: multi-table
name: mt-fuzz
person: people
tables:
  - name: people
    key: pid
    columns:
      - {name: age, kind: integer, min: 0, max: 120}
      - {name: colour, kind: categorical, categories: [red, green, blue]}
  - name: visits
    parent: {table: people, key: pid}
    max_rows_per_person: 4
    sequence: {column: day, start: 0}
    columns:
      - {name: day, kind: integer, min: 0, max: 1000}
      - {name: score, kind: float, min: 0, max: 10}
"""
COLOURS = ("red", "green", "blue")


def people_rows(n: int = 40) -> list[list[str]]:
    return [[f"p{i}", str(20 + i % 60), COLOURS[i % 3]] for i in range(n)]


def visit_rows(n: int = 40) -> list[list[str]]:
    return [[f"p{i}", str(30 * k), f"{(i + k) % 10}.5"] for i in range(n) for k in range(i % 3)]


def text(header: list[str], rows: list[list[str]]) -> str:
    return ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)


PEOPLE = text(["pid", "age", "colour"], people_rows())
VISITS = text(["pid", "day", "score"], visit_rows())


def files(**given: str | bytes):
    """Writes the named tables' files (the others stay good); returns the --input map."""
    def build(d: Path) -> dict[str, str]:
        out = {}
        for table, blob in given.items():
            path = d / f"{table}.csv{'.gz' if isinstance(blob, bytes) else ''}"
            (path.write_bytes if isinstance(blob, bytes) else path.write_text)(blob)
            out[table] = str(path)
        return out
    return build


def visits_cell(column: str, value: str, row: int = 5) -> str:
    rows = visit_rows()
    rows[row - 1][["pid", "day", "score"].index(column)] = value
    return text(["pid", "day", "score"], rows)


def people_cell(column: str, value: str, row: int = 5) -> str:
    rows = people_rows()
    rows[row - 1][["pid", "age", "colour"].index(column)] = value
    return text(["pid", "age", "colour"], rows)


def schema(replace: tuple[str, str] | None = None, raw: str | None = None):
    def build(d: Path) -> dict[str, str]:
        body = raw if raw is not None else SCHEMA.replace(*replace) if replace else SCHEMA
        path = d / "bad.yaml"
        path.write_text(body)
        return {"schema": str(path)}
    return build


def inputs(*specs: str):
    """--input options as given (TABLE=FILE or bare), in the case's folder."""
    def build(d: Path) -> dict[str, str]:
        good = files()(d)
        return {"specs": "\n".join(s.format(d=d, **good) for s in specs)}
    return build


def truncated_gzip() -> bytes:
    whole = gzip.compress(VISITS.encode())
    return whole[:len(whole) // 2]


CASES = [
    # the table inputs
    Case("tables-visits-missing", inputs("people={d}/people.csv"), "no input for table visits"),
    Case("tables-unknown-name", inputs("people={d}/people.csv", "visits={d}/visits.csv",
                                       "pets={d}/visits.csv"), "pets"),
    Case("tables-given-twice", inputs("people={d}/people.csv", "people={d}/people.csv",
                                      "visits={d}/visits.csv"), "names table 'people' twice"),
    Case("tables-empty-path", inputs("people={d}/people.csv", "visits="),
         "no file after visits="),
    Case("tables-no-name", inputs("people={d}/people.csv", "={d}/visits.csv"),
         "name each one's table"),
    Case("tables-a-directory", inputs("people={d}/people.csv", "visits={d}"),
         "input of table visits: a directory"),
    Case("tables-no-such-file", inputs("people={d}/people.csv", "visits={d}/none.csv"),
         "none.csv: cannot read input of table visits: no such file"),
    Case("tables-header-only", files(visits="pid,day,score\n"), "no data rows"),
    Case("tables-people-header-only", files(people="pid,age,colour\n"), "no data rows"),
    Case("tables-truncated-gzip", files(visits=truncated_gzip()), "visits.csv.gz"),
    Case("tables-empty-file", files(visits=""), "visits.csv"),
    # keys
    Case("keys-repeated-person", files(people=people_cell("pid", "p2")), "pid"),
    Case("keys-empty-person", files(people=people_cell("pid", "")), "pid"),
    Case("keys-visits-without-key", files(visits=text(["day", "score"], [
        r[1:] for r in visit_rows()])), "no column 'pid'"),
    Case("keys-people-without-key", files(people=text(["age", "colour"], [
        r[1:] for r in people_rows()])), "no column 'pid'"),
    # the child table's cells
    Case("cells-score-inf", files(visits=visits_cell("score", "inf")), "score"),
    Case("cells-day-2^63", files(visits=visits_cell("day", str(2**63))), "day"),
    Case("cells-day-negative", files(visits=visits_cell("day", "-4")), "day"),
    Case("cells-score-text", files(visits=visits_cell("score", "SECRET4242")), "score"),
    Case("cells-colour-unknown", files(people=people_cell("colour", "mauve")), "colour"),
    Case("cells-duplicate-header", files(visits=text(["pid", "day", "day"], visit_rows())),
         "day"),
    # the multi-table schema
    Case("schema-parent-unknown", schema(("table: people, key", "table: persons, key")),
         "'parent' must be {table: people"),
    Case("schema-person-unknown", schema(("person: people", "person: nobody")),
         "'person' must name one of the tables"),
    Case("schema-cap-huge", schema(("max_rows_per_person: 4",
                                    f"max_rows_per_person: {2**63}")), "max_rows_per_person"),
    Case("schema-cap-zero", schema(("max_rows_per_person: 4", "max_rows_per_person: 0")),
         "max_rows_per_person"),
    Case("schema-one-table", schema(raw=SCHEMA[:SCHEMA.index("  - name: visits")]), "two"),
    Case("schema-duplicate-table", schema(("name: visits", "name: people")), "people"),
    Case("schema-duplicate-yaml-key", schema(("person: people", "person: people\nperson: visits")),
         "person"),
    Case("schema-sequence-unknown", schema(("column: day, start", "column: when, start")),
         "'sequence' must be {column: <a numeric column>"),
]


def arguments(case: Case, folder: Path, state: Path) -> list[str]:
    """The good run's arguments with the case's changes."""
    good = files(people=PEOPLE, visits=VISITS)(folder)
    schema_file = folder / "good.yaml"
    schema_file.write_text(SCHEMA)
    given = case.build(folder)
    specs = (given["specs"].split("\n") if "specs" in given else
             [f"{t}={given.get(t, path)}" for t, path in good.items()])
    return ["run", *(x for s in specs for x in ("--input", s)), "--schema",
            given.get("schema", str(schema_file)), "--epsilon", "1", "--rows", "40",
            "--out", str(folder / "release"), "--ledger", str(state / "ledger.db"), "-q"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_linked_tables_run_refuses_in_one_line_writing_and_spending_nothing(
        case, tmp_path, capsys):
    folder, state = tmp_path / "case", tmp_path / "state"
    folder.mkdir()
    state.mkdir()
    argv = arguments(case, folder, state)
    before = tree(folder)
    check_one_line(case, *run_synth(argv, capsys))
    assert tree(folder) == before, f"{case.id}: something was written"
    assert counted(state / "ledger.db") == []


def test_the_good_linked_run_of_the_corpus_publishes(tmp_path, capsys):
    """The corpus's good files and schema make a release: every case is one change away."""
    folder, state = tmp_path / "case", tmp_path / "state"
    folder.mkdir()
    state.mkdir()
    argv = arguments(Case("good", lambda d: {}), folder, state)
    assert synth(argv) == 0, capsys.readouterr().err
    assert {p.name for p in (folder / "release").iterdir()} >= {"people.parquet",
                                                                 "visits.parquet"}
