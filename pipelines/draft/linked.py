"""The plain draft of linked tables (``synth schema draft --input T=FILE --input U=FILE``).

Each table's columns are drafted as for one table (``plain``: read without DP, nothing held by
fewer than ``RARE`` rows printed). Then the links, each a proposal for review:

- keys: a column of one table whose values are unique and present is a primary key; a column
  of another table whose values all lie among them is its foreign key; the table the others
  reference is the person table (the privacy unit);
- the cap on rows per person: the ``RARE``-th largest count of rows of a person (so no single
  person sets it; those with more rows lose the rest at run time);
- ``per_person``: child columns with one value per person; ``same_as``: those equal to a
  person-table column wherever both are present;
- ``sequence``: a numeric child column that increases within every person, with the start
  its first value shares across persons and ``within`` the per-person or person-table column
  it never exceeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml  # type: ignore[import-untyped]  # no stubs installed; followed as Any

from pipelines.draft.plain import RARE, _plain
from pipelines.draft.source import read_table
from pipelines.errors import DataError
from schemas.model import DEFAULT_MISSING
from schemas.relational import KIND


def draft_linked_schema(inputs: Mapping[str, str | Path], name: str | None = None) -> str:
    """YAML text of a draft multi-table schema for the tables at ``inputs`` (table name ->
    file), read without DP and marked ``draft: {dp: false}``.

    Raises:
        DataError: fewer than two tables, an unreadable file, or no key linking them.
    """
    if len(inputs) < 2:
        raise DataError("a multi-table draft needs two or more tables: --input TABLE=FILE "
                        "for each")
    frames = {t: read_table(p) for t, p in inputs.items()}
    person, key, links = _keys(frames)
    notes: list[str] = []
    entries = []
    for table, frame in frames.items():
        own = key if table == person else links[table]
        entry: dict = {"name": table}
        if table == person:
            entry["key"] = key
        else:
            entry.update(_child(table, frame, own, person, key, frames[person], notes))
        columns, col_notes = [], []
        for column in frame.columns:
            if column == own:
                continue
            drafted = _plain(str(column), frame[column])
            col_notes += [f"{table}.{column}: {n}" for n in drafted.notes]
            if drafted.col is not None:
                columns.append(drafted.col)
        entry["missing_values"] = list(DEFAULT_MISSING)
        entry["columns"] = columns
        notes += col_notes
        entries.append(entry)
    header = [
        "# DRAFT multi-table schema, read from the PRIVATE data without differential privacy.",
        "# It is not public knowledge until the data owner has reviewed it: check every",
        "# table's bounds, categories and roles, the keys, the person table, each cap on rows",
        "# per person, sequence, per_person and same_as against public documentation, then",
        "# delete the `draft:` line (`synth run` refuses this schema until then). Nothing held",
        f"# by fewer than {RARE} rows is printed.",
    ] + [f"# REVIEW: {n}" for n in notes]
    body = {"kind": KIND, "name": name or person, "version": "1",
            "draft": {"dp": False}, "person": person, "tables": entries}
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, width=100,
                                                      allow_unicode=True)


def _keys(frames: dict[str, pd.DataFrame]) -> tuple[str, str, dict[str, str]]:
    """The person table, its key and each other table's foreign key column."""
    best: tuple[int, str, str, dict[str, str]] | None = None
    for person, frame in frames.items():
        for key in frame.columns:
            values = frame[key]
            if values.isna().any() or not values.is_unique:
                continue
            known = set(values.astype(str))
            links = {}
            for table, other in frames.items():
                if table == person:
                    continue
                found = [c for c in other.columns if other[c].notna().all()
                         and set(other[c].astype(str)) <= known]
                if found:  # the same name first
                    links[table] = key if key in found else found[0]
            if len(links) == len(frames) - 1:
                score = (sum(c == key for c in links.values()), person, key, links)
                if best is None or score[0] > best[0]:
                    best = score
    if best is None:
        raise DataError("no column of one table holds unique keys that every other table's "
                        "rows reference: declare the keys in the schema by hand")
    return best[1], best[2], best[3]


def _child(table: str, frame: pd.DataFrame, fk: str, person: str, key: str,
           parent: pd.DataFrame, notes: list[str]) -> dict:
    out: dict = {"parent": {"table": person, "key": fk}}
    counts = frame.groupby(fk).size().sort_values(ascending=False)
    cap = int(counts.iloc[min(RARE, len(counts)) - 1])
    out["max_rows_per_person"] = cap
    notes.append(f"{table}: max_rows_per_person {cap} is the {RARE}th largest number of rows "
                 "of a person; a person's rows beyond it are dropped before training")
    by = frame.groupby(fk)
    constant = [c for c in frame.columns if c != fk and by[c].nunique(dropna=False).max() <= 1]
    joined = frame.merge(parent, left_on=fk, right_on=key, how="left", suffixes=("", "@p"))
    same = {}
    for c in constant:
        for p in parent.columns:
            theirs = joined[p + "@p" if p + "@p" in joined else p]
            if p != key and (joined[c].astype(str) == theirs.astype(str)).all():
                same[c] = p
                break
    per_person = [c for c in constant if c not in same]
    sequence = _sequence(frame, fk, per_person, joined, parent, key)
    if sequence:
        out["sequence"] = sequence
    if per_person:
        out["per_person"] = per_person
    if same:
        out["same_as"] = same
    return out


def _sequence(frame: pd.DataFrame, fk: str, per_person: list[str], joined: pd.DataFrame,
              parent: pd.DataFrame, key: str) -> dict | None:
    """The numeric column that increases within every person; of several, the one with a
    common start and a bound (a row index increases too, but starts anywhere)."""
    found = []
    for c in frame.columns:
        if c == fk or c in per_person:
            continue
        values = pd.to_numeric(frame[c], errors="coerce")
        if values.isna().any() or not values.groupby(frame[fk]).apply(
                lambda v: v.is_monotonic_increasing and v.is_unique).all():
            continue
        firsts = values.groupby(frame[fk]).first()
        out: dict = {"column": str(c)}
        if firsts.nunique() == 1:
            first = float(firsts.iloc[0])
            out["start"] = int(first) if first.is_integer() else first
        for b in [p for p in per_person if p != c] + [p for p in parent.columns if p != key]:
            limit = pd.to_numeric(frame[b] if b in per_person else
                                  joined[b + "@p" if b + "@p" in joined else b],
                                  errors="coerce")
            if limit.notna().all() and (values <= limit).all():
                out["within"] = str(b)
                break
        found.append(out)
    return max(found, key=lambda o: ("start" in o) + ("within" in o), default=None)
