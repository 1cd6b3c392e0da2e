"""Linked tables under person-level DP (schemas/relational.py, synth/multitable.py,
pipelines/multitable_run.py): the schema, the per-person transformations, the sensitivity
of every measurement, integrity by construction, and the person as the neighbouring unit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.validate.integrity import validate_integrity
from schemas import SchemaError
from schemas.relational import multi_table_from_dict
from synth.marginals import DPMarginals, _Mechanisms
from synth.multitable import KEY, PersonMarginals, cap_rows, child_frame, person_frame
from synth.privacy import PrivacyBudget, zcdp_rho

SMALL = {"components": 16, "rounds_per_column": 2, "iterations": 10, "members": 1,
         "fine_share": 0.0}


def _schema(cap: int = 4) -> dict:
    return {
        "kind": "multi-table", "name": "clinic", "person": "patients",
        "tables": [
            {"name": "patients", "key": "pid",
             "columns": [
                 {"name": "age", "kind": "integer", "min": 18, "max": 90},
                 {"name": "sick", "kind": "categorical", "categories": ["no", "yes"]},
                 {"name": "followup", "kind": "integer", "min": 0, "max": 1000}]},
            {"name": "visits", "parent": {"table": "patients", "key": "pid"},
             "max_rows_per_person": cap,
             "sequence": {"column": "day", "start": 0, "within": "followup"},
             "same_as": {"sex_age": "age"},
             "columns": [
                 {"name": "day", "kind": "integer", "min": 0, "max": 1000},
                 {"name": "sex_age", "kind": "integer", "min": 18, "max": 90},
                 {"name": "lab", "kind": "float", "min": 0, "max": 10}]}]}


def _tables(n: int = 60, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    sick = rng.random(n) < 0.4
    patients = pd.DataFrame({
        "age": pd.array(rng.integers(18, 90, n), dtype="Int64"),
        "sick": pd.Categorical(np.where(sick, "yes", "no"), categories=["no", "yes"]),
        "followup": pd.array(rng.integers(200, 1000, n), dtype="Int64"),
        KEY: [f"p{i}" for i in range(n)]})
    rows = []
    for i in range(n):
        k = int(rng.integers(1, 3)) + 2 * int(sick[i])  # sicker patients: more visits
        days = np.sort(rng.choice(np.arange(1, int(patients.followup[i])), k - 1,
                                  replace=False))
        for j, day in enumerate([0, *days]):
            rows.append({"day": int(day), "sex_age": int(patients.age[i]),
                         "lab": float(np.clip(rng.normal(3 + 2 * sick[i] + j * 0.3, 1), 0, 10)),
                         KEY: f"p{i}"})
    visits = pd.DataFrame(rows).astype({"day": "Int64", "sex_age": "Int64"})
    return {"patients": patients, "visits": visits}


def test_a_multi_table_schema_declares_the_person_and_the_links():
    schema = multi_table_from_dict(_schema())
    assert schema.person == "patients" and schema.key == "pid"
    child = schema.children["visits"]
    assert (child.key, child.cap, child.sequence.column, child.sequence.within) == (
        "pid", 4, "day", "followup")
    # keys are identifiers: dropped at ingest, never modelled or released as they are
    assert [i.name for i in schema.tables["visits"].identifiers] == ["pid"]
    assert "pid" not in schema.tables["patients"].names


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(person="nobody"), "'person' must name one of the tables"),
    (lambda s: s["tables"][1].update(max_rows_per_person=0), "max_rows_per_person"),
    (lambda s: s["tables"][1].update(max_rows_per_person=True), "max_rows_per_person"),
    (lambda s: s["tables"][1]["sequence"].update(within="nowhere"), "sequence within"),
    (lambda s: s["tables"][1].update(parent={"table": "visits", "key": "pid"}), "'parent'"),
    (lambda s: s["tables"][1].update(same_as={"lab": "missing"}), "same_as"),
    (lambda s: s.update(tables=s["tables"][:1]), "at least two tables"),
    (lambda s: s.update(extra=1), "unknown key 'extra'"),
])
def test_a_wrong_multi_table_schema_is_one_line_naming_the_problem(change, words):
    raw = _schema()
    change(raw)
    with pytest.raises(SchemaError, match=words) as caught:
        multi_table_from_dict(raw, "clinic.yaml")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("clinic.yaml: ")


def test_rows_beyond_the_cap_and_rows_of_no_person_are_dropped_before_any_measurement():
    schema = multi_table_from_dict(_schema(cap=2))
    tables = _tables()
    extra = pd.DataFrame({"day": [5, 6], "sex_age": [30, 30], "lab": [1.0, 1.0],
                          KEY: ["ghost", "ghost"]}).astype({"day": "Int64", "sex_age": "Int64"})
    tables["visits"] = pd.concat([tables["visits"], extra], ignore_index=True)
    kept, dropped = cap_rows(tables, schema)
    assert dropped["visits"]["unlinked"] == 2
    assert kept["visits"].groupby(KEY).size().max() == 2
    assert dropped["visits"]["over_cap"] == len(tables["visits"]) - 2 - len(kept["visits"])
    # the earliest visits are kept
    first = kept["visits"].groupby(KEY)["day"].min()
    assert (first == 0).all()


def _exact_counts(frame: pd.DataFrame, model_schema, cap: int) -> dict:
    """Every 1- and 2-way count as the synthesizer measures it: a child row weighs
    cap // (its person's rows)."""
    from synth.encoding import TableEncoder
    from synth.multitable import ROWS

    model = DPMarginals(contribution=cap)
    encoder = TableEncoder(model_schema, max_bins=model.max_bins)
    weights = None if cap == 1 else cap // frame[ROWS].to_numpy()
    if weights is not None:  # a person's rows weigh at most cap together
        assert pd.Series(weights).groupby(frame[KEY].to_numpy()).sum().max() <= cap
    mech = _Mechanisms(encoder.encode(frame[model_schema.names]), encoder.sizes, 0, None, cap,
                       weights)
    d = len(encoder.sizes)
    cliques = [(i,) for i in range(d)] + [(i, j) for i in range(d) for j in range(i + 1, d)]
    return {c: mech.exact(c) for c in cliques}


def test_removing_a_person_moves_every_measured_count_by_at_most_one_unit():
    """The sensitivity each measurement is calibrated to: with a person's rows weighing
    cap // n each in the child model, counted in units of cap (and 1 each in the person
    model), removing one person with all their rows moves every marginal by at most 1 in
    L1, so by at most 1 in L2."""
    from synth.multitable import child_schema, person_schema

    schema = multi_table_from_dict(_schema(cap=3))
    tables = _tables()
    busiest = tables["visits"][KEY].value_counts().index[0]
    without = {t: f[f[KEY] != busiest].reset_index(drop=True) for t, f in tables.items()}
    for frames, build, model_schema, cap in (
            ((tables, without), person_frame, person_schema(schema), 1),
            ((tables, without), lambda k, s: child_frame(k, s, "visits"),
             child_schema(schema, "visits"), 3)):
        counts = [_exact_counts(build(cap_rows(f, schema)[0], schema), model_schema, cap)
                  for f in frames]
        worst = max(np.abs(counts[0][c] - counts[1][c]).sum() for c in counts[0])
        assert 0 < worst <= 1 + 1e-9


def test_a_child_measurement_costs_what_its_noise_in_person_units_says():
    codes = np.zeros((10, 1), dtype="int64")
    for cap in (1, 4):
        mech = _Mechanisms(codes, [3], None, None, contribution=cap)
        noisy = mech.measure((0,), sigma=2.0)
        assert math.isclose(mech.rho_spent, 1 / (2 * 2.0**2), rel_tol=1e-9)
        assert mech.log[0]["sigma"] == 2.0 * cap  # on the integer counts
        assert abs(noisy.sum() - 10 / cap) < 40  # in units of cap rows


@pytest.fixture(scope="module")
def fitted():
    schema = multi_table_from_dict(_schema())
    model = PersonMarginals(noise_seed=3, **SMALL).fit(_tables(), schema, PrivacyBudget(5.0))
    return schema, model


def test_the_spend_of_every_model_adds_up_within_the_budget(fitted):
    schema, model = fitted
    assert model.privacy_.epsilon <= 5.0 * (1 + 1e-9)
    assert math.isclose(model.rho_spent_, zcdp_rho(PrivacyBudget(5.0)), rel_tol=1e-3)
    child = [m for m in model.privacy_.measurements if m["table"] == "visits"]
    assert child and all(m["rows_per_person"] == 4 for m in child)
    assert all(m.get("sensitivity") == 4 for m in child if "sigma" in m)


def test_sampled_tables_link_by_fresh_keys_and_keep_integrity(fitted):
    schema, model = fitted
    out = model.sample(80, seed=1)
    patients, visits = out["patients"], out["visits"]
    assert len(patients) == 80 and patients["pid"].is_unique
    assert set(visits["pid"]) <= set(patients["pid"])
    assert not set(patients["pid"]) & {f"p{i}" for i in range(60)}  # never a real key
    assert visits.groupby("pid").size().max() <= 4
    outcome = validate_integrity(out, schema)
    assert outcome.success, outcome.failed
    # same_as: each visit repeats its patient's value
    joined = visits.merge(patients[["pid", "age"]], on="pid")
    assert (joined["sex_age"] == joined["age"]).all()
    # the sequence: first at 0, increasing, within the follow-up
    days = visits.merge(patients[["pid", "followup"]], on="pid")
    assert (days.groupby("pid")["day"].first() == 0).all()
    assert (days.groupby("pid")["day"].diff().dropna() > 0).all()
    assert (days["day"] <= days["followup"]).all()
    again = model.sample(80, seed=1)
    pd.testing.assert_frame_equal(again["visits"], visits)


def test_the_integrity_suite_catches_broken_links_and_sequences(fitted):
    schema, model = fitted
    out = model.sample(40, seed=2)
    broken = {**out, "visits": out["visits"].copy()}
    broken["visits"].loc[broken["visits"].index[0], "pid"] = "nobody"
    later = out["visits"].groupby("pid").cumcount() == 1
    broken["visits"].loc[later, "day"] = 5000
    outcome = validate_integrity(broken, schema)
    assert not outcome.success
    text = " ".join(outcome.failed)
    assert "every row references a person" in text
    assert "within the person's follow-up" in text
