"""Person-level DP synthesis of a person table and the tables of their rows.

The privacy unit is a person: their row of the person table and every row of theirs in each
child table. Two per-person transformations come first, both before any measurement: a
child's rows beyond the declared cap are dropped (the first ``cap`` in sequence order are
kept), and rows that name no person are dropped. Then:

* **the person model**: one row per person, the person table's columns plus, for each child
  table, the person's number of rows (0 to the cap) and the child's per-person columns. A
  person is one row here: an AIM-style ``DPMarginals`` (sensitivity 1).
* **a model per child table**: one row per child row, its own columns plus the person's
  context (the number of rows, the row's position: only, first, middle or last, its time as
  a share of the person's follow-up, and the per-person and ``same_as`` values). Each row
  weighs ``cap // n`` for a person of ``n`` rows, so a person's rows weigh at most ``cap``
  together (and at least half of it): ``DPMarginals`` with ``contribution=cap``, every
  measurement's sensitivity ``cap``. The weight depends on ``n`` alone, which the model
  holds as a column, so the rows' distribution given ``n`` is the data's.

The budget is split in zCDP (``person_share`` to the person model, the rest evenly to the
children); the costs add up, as OpenDP's maps state them. Sampling is post-processing:
persons first, each with fresh synthetic keys, then each child's rows drawn conditionally on
their person's context, then the sequence rebuilt (first row at the start, increasing, within
the person's follow-up), so every child row references a person and integrity holds by
construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from schemas import Column, Schema
from schemas.relational import Child, MultiTableSchema
from synth.base import NotFittedError, Params
from synth.marginals import DPMarginals
from synth.privacy import PrivacyBudget, PrivacyReport, zcdp_epsilon, zcdp_rho

# DPMarginals settings of every model (others keep dp-marginals' defaults): the tables of
# persons are small and each model sees one person's budget share, so fewer components and
# rounds lose little and fit several times faster (docs/multi-table.md)
DEFAULTS = {"components": 256, "rounds_per_column": 2, "members": 1}
KEY = "__key__"  # the column of each input frame that names the row's person
ROWS, POSITION, ELAPSED = "__rows__", "__position__", "__elapsed__"
POSITIONS = ("only", "first", "middle", "last")


def rows_column(child: str) -> str:
    """The person model's column counting a person's rows in ``child``."""
    return f"{child}.{ROWS}"


def person_column(child: str, name: str) -> str:
    """The person model's column holding ``child``'s per-person column ``name``."""
    return f"{child}.{name}"


def synthetic_keys(table: str, n: int) -> pd.Series:
    """Fresh keys ``<table>-000001``...: never a real key's value."""
    width = max(6, len(str(n)))
    return pd.Series([f"{table}-{i:0{width}d}" for i in range(1, n + 1)], dtype="string")


class PersonMarginals(Params):
    """Person-level DP synthesizer of linked tables (see the module's docstring).

    Args:
        person_share: share of the budget (in zCDP) for the person model; the child
            models share the rest evenly.
        seed: seeds the models' initialisation and sampling.
        noise_seed: a fixed seed of the DP noise, for reproducible tests only.
        **params: ``DPMarginals`` settings shared by every model (``degree``,
            ``components``...); ``DEFAULTS`` where not given.
    """

    mechanism = ("person-level AIM-style marginals: a person model and a model per child "
                 "table (sensitivity: the declared rows per person), composed in zCDP")

    def __init__(self, person_share: float = 0.4, seed: int = 0,
                 noise_seed: int | None = None, **params):
        self.person_share = person_share
        self.seed = seed
        self.noise_seed = noise_seed
        self.params = {**DEFAULTS, **params}

    def get_params(self) -> dict:
        return {"person_share": self.person_share, "seed": self.seed,
                "noise_seed": self.noise_seed, **self.params}

    def fit(self, tables: dict[str, pd.DataFrame], schema: MultiTableSchema,
            budget: PrivacyBudget, progress: Callable[[int, int], None] | None = None
            ) -> PersonMarginals:
        """Fits on the private ``tables`` (each the table's schema columns plus ``KEY``)."""
        if not 0 < self.person_share < 1:
            raise ValueError("person_share must lie in (0, 1)")
        self.schema_ = schema
        kept, self.dropped_ = cap_rows(tables, schema)  # private counts: operator only
        rho = zcdp_rho(budget) * (1 - 1e-6)
        shares = {schema.person: self.person_share} | {
            c: (1 - self.person_share) / len(schema.children) for c in schema.children}
        frames = {schema.person: person_frame(kept, schema)} | {
            c: child_frame(kept, schema, c) for c in schema.children}
        self.models_: dict[str, DPMarginals] = {}
        done = 0.0
        for table, frame in frames.items():
            part = PrivacyBudget(zcdp_epsilon(rho * shares[table], budget.delta), budget.delta)
            model_schema = person_schema(schema) if table == schema.person else child_schema(
                schema, table)
            cap = 1 if table == schema.person else schema.children[table].cap
            model = DPMarginals(seed=self.seed, noise_seed=self.noise_seed, contribution=cap,
                                **self.params)
            step = (lambda k, n, at=done, w=shares[table]: progress(
                int(1000 * (at + w * k / n)), 1000)) if progress else None
            # a child row weighs cap // (its person's rows): every person counts about one
            # unit of cap rows, however many rows they have (at most cap: the sensitivity)
            weights = None if cap == 1 else (cap // frame[ROWS].to_numpy()).astype("int64")
            self.models_[table] = model.fit(frame[model_schema.names], model_schema, part, step,
                                            weights=weights)
            done += shares[table]
        spent = sum(m.rho_spent_ for m in self.models_.values())
        self.privacy_ = PrivacyReport(
            epsilon=zcdp_epsilon(spent, budget.delta), delta=budget.delta,
            target_epsilon=budget.epsilon, accountant="zcdp", mechanism=self.mechanism,
            measurements=tuple({"table": t, "rows_per_person": 1 if t == schema.person
                                else schema.children[t].cap, **m}
                               for t, model in self.models_.items()
                               for m in model.privacy_.measurements))
        self.rho_spent_ = spent
        return self

    def sample(self, n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
        """``n`` synthetic persons and their rows: one frame per table, linked by fresh
        keys in each table's key column."""
        if not hasattr(self, "models_"):
            raise NotFittedError("fit the synthesizer before sampling")
        schema = self.schema_
        persons = self.models_[schema.person].sample(n, seed)
        keys = synthetic_keys(schema.person, n)
        out = {}
        for i, (table, child) in enumerate(schema.children.items()):
            out[table], persons = self._child_rows(table, child, persons, keys, seed + 1 + i)
        person = schema.tables[schema.person]
        out = {schema.person: _ordered(persons.assign(**{schema.key: keys}), person,
                                       schema.key)} | out
        return out

    def _child_rows(self, table: str, child: Child, persons: pd.DataFrame, keys: pd.Series,
                    seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        schema = self.schema_
        counts = persons[rows_column(table)].fillna(0).astype("int64").clip(0, child.cap)
        owner: np.ndarray = np.repeat(np.arange(len(persons)), counts.to_numpy())
        given = pd.DataFrame({ROWS: counts.to_numpy()[owner],
                              POSITION: _positions(counts.to_numpy())})
        for name in child.per_person:
            given[name] = persons[person_column(table, name)].to_numpy()[owner]
        for name, parent in child.same_as:
            given[name] = persons[parent].to_numpy()[owner]
        model = self.models_[table]
        given = given.astype({c.name: _dtype(c) for c in model.encoder_.schema.columns
                              if c.name in given})
        rows = model.sample_given(given, seed) if len(given) else _empty(model)
        rows[KEY] = owner
        for name in child.per_person:  # one value per person: the first row's
            first = rows.groupby(KEY)[name].transform("first")
            rows[name] = first
            persons.loc[persons.index[np.unique(owner)], person_column(table, name)] = \
                rows.groupby(KEY)[name].first().to_numpy()
        if child.sequence is not None:
            rows = _sequence(rows, child, persons, schema.tables[table])
        rows[child.key] = keys.to_numpy()[rows[KEY].to_numpy()]
        return _ordered(rows, schema.tables[table], child.key), persons


def cap_rows(tables: dict[str, pd.DataFrame], schema: MultiTableSchema
             ) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, int]]]:
    """Each child's rows of known persons, at most ``cap`` per person (the first in sequence
    order, else in file order), and the counts dropped (private: the operator's only)."""
    known = pd.Index(tables[schema.person][KEY])
    out, dropped = {schema.person: tables[schema.person]}, {}
    for table, child in schema.children.items():
        frame = tables[table]
        linked = frame[frame[KEY].isin(known)]
        if child.sequence is not None:
            linked = linked.sort_values([KEY, child.sequence.column], kind="stable")
        rank = linked.groupby(KEY, sort=False).cumcount()
        out[table] = linked[rank < child.cap]
        dropped[table] = {"unlinked": len(frame) - len(linked),
                          "over_cap": int((rank >= child.cap).sum())}
    return out, dropped


def person_frame(tables: dict[str, pd.DataFrame], schema: MultiTableSchema) -> pd.DataFrame:
    """One row per person: the person table's columns, each child's row count and
    per-person columns (their first row's value; missing where they have no rows)."""
    frame = tables[schema.person].set_index(KEY, drop=False)
    for table, child in schema.children.items():
        rows = tables[table]
        counts = rows.groupby(KEY).size()
        frame[rows_column(table)] = counts.reindex(frame.index).fillna(0).astype("int64")
        firsts = rows.groupby(KEY).first()
        for name in child.per_person:
            frame[person_column(table, name)] = firsts[name].reindex(frame.index)
    return frame.reset_index(drop=True)


def child_frame(tables: dict[str, pd.DataFrame], schema: MultiTableSchema,
                table: str) -> pd.DataFrame:
    """A child's rows with their person's context: row count, position, elapsed share of
    the follow-up (with a sequence) and ``same_as`` values."""
    child = schema.children[table]
    rows = tables[table].copy()
    counts = rows.groupby(KEY)[KEY].transform("size").to_numpy()
    rank = rows.groupby(KEY).cumcount().to_numpy()
    rows[ROWS] = counts
    rows[POSITION] = np.where(counts == 1, "only", np.where(
        rank == 0, "first", np.where(rank == counts - 1, "last", "middle")))
    person = tables[schema.person].set_index(KEY)
    for name, parent in child.same_as:
        rows[name] = person[parent].reindex(rows[KEY]).to_numpy()
    seq = child.sequence
    if seq is not None and seq.within is not None:
        within = _within(rows, seq.within, child, person)
        start = seq.start or 0.0
        span = (within - start).where(within > start)
        rows[ELAPSED] = ((rows[seq.column].astype("float64") - start) / span).clip(0, 1)
    return rows


def _within(rows: pd.DataFrame, within: str, child: Child, person: pd.DataFrame) -> pd.Series:
    if within in child.per_person:
        return rows[within].astype("float64")
    return pd.Series(person[within].reindex(rows[KEY]).astype("float64").to_numpy(),
                     index=rows.index)


def person_schema(schema: MultiTableSchema) -> Schema:
    """The person model's columns: the person table's, then each child's row count and
    per-person columns (nullable: a person may have no rows)."""
    columns = list(schema.tables[schema.person].columns)
    for table, child in schema.children.items():
        columns.append(Column(rows_column(table), "integer", minimum=0.0,
                              maximum=float(child.cap), role="feature"))
        own = schema.tables[table]
        columns += [replace(own.column(n), name=person_column(table, n), input_name="",
                            nullable=True, role="feature") for n in child.per_person]
    base = schema.tables[schema.person]
    return replace(base, columns=tuple(columns), identifiers=(), order=())


def child_schema(schema: MultiTableSchema, table: str) -> Schema:
    """A child model's columns: its own (sequence, per-person and ``same_as`` columns
    aside), then the person's context."""
    child, own = schema.children[table], schema.tables[table]
    seq = child.sequence
    aside = {n for n, _ in child.same_as} | set(child.per_person)
    if seq is not None and seq.within is not None:
        aside.add(seq.column)
    parent = schema.tables[schema.person]
    columns = [c for c in own.columns if c.name not in aside]
    columns += [Column(ROWS, "integer", minimum=1.0, maximum=float(child.cap)),
                Column(POSITION, "categorical", categories=POSITIONS)]
    if seq is not None and seq.within is not None:
        columns.append(Column(ELAPSED, "float", minimum=0.0, maximum=1.0, nullable=True))
    columns += [own.column(n) for n in child.per_person]
    columns += [replace(parent.column(p), name=n, input_name="") for n, p in child.same_as]
    return replace(own, columns=tuple(replace(c, role="feature") for c in columns),
                   identifiers=(), order=(), survival=None)


def _positions(counts: np.ndarray) -> np.ndarray:
    out = []
    for n in counts:
        if n == 1:
            out.append(["only"])
        elif n > 1:
            out.append(["first", *["middle"] * (n - 2), "last"])
    return np.concatenate(out) if out else np.array([], dtype=object)


def _sequence(rows: pd.DataFrame, child: Child, persons: pd.DataFrame,
              own: Schema) -> pd.DataFrame:
    """The sequence column rebuilt per person from the elapsed shares: the first row at
    ``start``, the rest in increasing order, none past the person's follow-up; a whole-
    valued column gets distinct whole values, and rows that no longer fit are dropped."""
    seq = child.sequence
    assert seq is not None
    column = own.column(seq.column)
    start = seq.start if seq.start is not None else float(column.minimum)
    if seq.within is None:
        values = rows[seq.column].astype("float64")
        limit = pd.Series(np.inf, index=rows.index)
    else:
        source = rows[seq.within] if seq.within in child.per_person else pd.Series(
            persons[seq.within].to_numpy()[rows[KEY].to_numpy()], index=rows.index)
        limit = source.astype("float64").fillna(start)
        values = start + rows[ELAPSED].astype("float64").fillna(0) * (limit - start)
    first = rows[POSITION].isin(["first", "only"]).to_numpy()
    if seq.start is not None:
        values = values.where(~first, start)
    rows = rows.assign(**{seq.column: values, "__limit__": limit})
    rows["__first__"] = ~first  # the first row sorts first
    rows = rows.sort_values([KEY, "__first__", seq.column], kind="stable")
    whole = column.kind != "float"
    out = []
    for _, group in rows.groupby(KEY, sort=False):
        v = group[seq.column].to_numpy(dtype="float64")
        top = float(group["__limit__"].iloc[0])
        k = np.arange(len(v))
        # whole values: each at least one past the one before; else non-decreasing
        v = np.maximum.accumulate(np.floor(v) - k) + k if whole else np.maximum.accumulate(v)
        ok = v <= top if np.isfinite(top) else np.ones(len(v), bool)
        out.append(group.assign(**{seq.column: v})[ok])
    rows = pd.concat(out) if out else rows.iloc[:0]
    rows[seq.column] = rows[seq.column].astype(_dtype(column))
    return rows.drop(columns=["__limit__", "__first__"])


def _ordered(frame: pd.DataFrame, schema: Schema, key: str) -> pd.DataFrame:
    """The table's released columns, its key first, then the schema's columns in order."""
    return frame[[key, *schema.names]].reset_index(drop=True)


def _dtype(column: Column):
    from schemas import pandas_dtype

    return pandas_dtype(column)


def _empty(model: DPMarginals) -> pd.DataFrame:
    return pd.DataFrame({c.name: pd.Series([], dtype=_dtype(c))
                         for c in model.encoder_.schema.columns})

