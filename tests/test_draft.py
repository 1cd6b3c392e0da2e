"""Tests for pipelines.draft: the plain draft (read without DP, marked, printing nothing held
by fewer than RARE rows) and the DP draft (noisy counts, charged to the ledger), and that
ingest accepts the very file a schema was drafted from."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.draft import RARE, draft_dp_schema, draft_schema
from pipelines.errors import DataError
from pipelines.ingest import ingest
from pipelines.ledger import Ledger
from schemas import Draft, Schema, schema_from_dict
from synth.describe import Grid, NoisyCounts, calibrate, round_numbers, tail_bound
from synth.privacy import PrivacyBudget
from tests.conftest import DATASETS

FLCHAIN = DATASETS / "flchain" / "flchain.csv"

needs_flchain = pytest.mark.skipif(not FLCHAIN.exists(), reason=f"{FLCHAIN} is not available")


def parsed(text: str) -> Schema:
    return schema_from_dict(yaml.safe_load(text), path="draft.yaml")


def words(text: str) -> set[str]:
    """Every token of a draft: what a reader could learn a value from."""
    return set(re.findall(r"[^\s,'\"{}\[\]:()]+", text))


@pytest.fixture(scope="module")
def text() -> str:
    return draft_schema(FLCHAIN)


@pytest.fixture(scope="module")
def drafted(text) -> Schema:
    return parsed(text)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """flchain.csv as plain pandas reads it: the oracle for the extremes and counts."""
    return pd.read_csv(FLCHAIN, na_values=["?", ""], keep_default_na=False)


# --- the plain draft on flchain -------------------------------------------------------------

@needs_flchain
def test_draft_parses_as_a_schema(drafted, rows):
    assert drafted.name == "flchain"
    assert drafted.draft == Draft(dp=False)
    assert drafted.names == list(rows.columns)
    kinds = {c.name: c.kind for c in drafted.columns}
    assert kinds == {"age": "integer", "sex": "categorical", "sample.yr": "integer",
                     "kappa": "float", "lambda": "float", "flc.grp": "integer",
                     "creatinine": "float", "mgus": "categorical", "futime": "integer",
                     "death": "categorical", "chapter": "categorical"}
    assert {c.name for c in drafted.columns if c.nullable} == {"creatinine", "chapter"}
    assert drafted.column("death").categories == ("alive", "dead")
    assert drafted.column("mgus").categories == ("no", "yes")  # the data's words, not True/False
    counts = rows["chapter"].value_counts()
    assert set(drafted.column("chapter").categories) == set(counts[counts >= RARE].index) | {
        "other"}
    assert drafted.column("chapter").catch_all == "other"
    assert "?" not in drafted.column("chapter").categories


@needs_flchain
def test_draft_opens_with_a_private_data_warning(text):
    first = text.splitlines()[0]
    assert first.startswith("# DRAFT")
    assert "PRIVATE data" in first and str(FLCHAIN) in first and "without differential" in first
    assert "reviewed" in text.splitlines()[1]
    assert "draft: {dp: false}" in text


@needs_flchain
def test_rare_categories_are_left_out_unnamed(text, rows):
    counts = rows["chapter"].value_counts()
    rare = sorted(counts[counts < RARE].index)
    assert rare == ["Blood", "Congenital", "Skin"]  # the data really has rare chapters
    for category in rare:
        assert category not in text
    review = [line for line in text.splitlines() if "REVIEW" in line]
    assert len(review) == 1 and review[0].lstrip().startswith("#")
    assert "3 categories held by fewer than 10 rows left out" in review[0]
    lines = text.splitlines()  # the note stands just before the column it is about
    assert lines[lines.index(review[0]) + 1].strip() == "- name: chapter"


@needs_flchain
@pytest.mark.parametrize("name", ["age", "sample.yr", "kappa", "lambda", "flc.grp",
                                  "creatinine", "futime"])
def test_bounds_rest_on_the_tenth_extremes(drafted, rows, name):
    col, values = drafted.column(name), np.sort(rows[name].dropna().to_numpy())
    assert col.minimum <= values[RARE - 1] and col.maximum >= values[-RARE]
    # so fewer than RARE values lie beyond each bound
    assert (values < col.minimum).sum() < RARE and (values > col.maximum).sum() < RARE


@needs_flchain
@pytest.mark.parametrize("name, low, high", [
    ("age", 50, 100),          # 10th extremes 50..96 (data 50..101)
    ("kappa", 0.0, 15.0),      # 10th largest 10.4 (data max 20.5)
    ("lambda", 0.0, 15.0),     # 10th largest 11.4 (data max 26.6)
    ("creatinine", 0.5, 6.5),  # 0.5..6.1 (data 0.4..10.8)
    ("futime", 0, 5500),       # 1..5132 (data 0..5215)
    ("sample.yr", 1995, 2003),  # ranges of a few units keep their scale
    ("flc.grp", 1, 10),
])
def test_bounds_are_rounded_outward(drafted, name, low, high):
    col = drafted.column(name)
    assert (col.minimum, col.maximum) == (low, high)


@needs_flchain
def test_ingest_accepts_its_own_draft_with_the_flags_it_names(drafted, rows):
    result = ingest(FLCHAIN, drafted, clip=True, map_unknown=True)
    frame = result.frame
    assert len(frame) == 7_874
    assert all(0 < n < 2 * RARE for n in result.report.clipped.values())
    counts = rows["chapter"].value_counts()
    assert result.report.mapped_to_catch_all == {"chapter": counts[counts < RARE].sum()}
    assert frame["chapter"].isna().sum() == rows["chapter"].isna().sum() == 5_705
    assert frame["creatinine"].isna().sum() == 1_350
    assert (frame["mgus"] == "yes").sum() == (rows["mgus"] == "yes").sum()


@needs_flchain
def test_parquet_draft(tmp_path, rows):
    path = tmp_path / "flchain.parquet"
    rows.head(500).to_parquet(path)
    drafted = parsed(draft_schema(path))
    assert drafted.column("futime").kind == "integer"
    assert drafted.column("kappa").kind == "float"
    assert drafted.column("chapter").nullable
    assert len(ingest(path, drafted, clip=True, map_unknown=True).frame) == 500


# --- the plain draft on small tables --------------------------------------------------------

def test_name_can_be_given(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text("a,b\n" + "1,x\n2,y\n" * RARE)
    assert parsed(draft_schema(path, name="mine")).name == "mine"
    assert parsed(draft_schema(path)).name == "tiny"


def test_dates_get_whole_year_bounds(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("day,n\n" + "2019-03-04,1\n2021-07-01,2\n2020-01-01,3\n" * RARE)
    drafted = parsed(draft_schema(path))
    day = drafted.column("day")
    assert day.kind == "date"
    assert (day.minimum.isoformat(), day.maximum.isoformat()) == ("2019-01-01", "2021-12-31")
    assert len(ingest(path, drafted).frame) == 3 * RARE


def test_datetime_draft_covers_the_last_day(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("at,n\n" + "2020-03-01T10:00:00,1\n2021-12-31T12:30:00,2\n" * RARE)
    drafted = parsed(draft_schema(path))
    assert drafted.column("at").kind == "datetime"
    assert len(ingest(path, drafted).frame) == 2 * RARE


def test_header_whitespace_matches_ingest(tmp_path):
    path = tmp_path / "padded.csv"
    path.write_text("age , sex\n" + "50,F\n60,M\n" * RARE)
    drafted = parsed(draft_schema(path))
    assert drafted.names == ["age", "sex"]
    assert len(ingest(path, drafted).frame) == 2 * RARE


def test_a_column_with_fewer_than_rare_values_is_left_out(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("a,b\n" + "".join(f"{i},{7 if i < 3 else ''}\n" for i in range(30)))
    text = draft_schema(path)
    assert parsed(text).names == ["a"]
    assert f"column 'b' has fewer than {RARE} values" in text


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match="no such file") as info:
        draft_schema(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("content", ["", "a,b\n"], ids=["empty", "header-only"])
def test_nothing_to_draft_from(tmp_path, content):
    path = tmp_path / "nothing.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        draft_schema(path)
    assert str(info.value).startswith(f"{path}: ")


def test_identifier_like_column_is_left_out_without_its_values(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("mrn,sex\n" + "".join(f"MRN{i:05d},{'F' if i % 2 else 'M'}\n"
                                           for i in range(300)))
    text = draft_schema(path)
    assert "MRN00042" not in text and "300 distinct values" in text
    drafted = parsed(text)
    assert [c.name for c in drafted.columns] == ["sex"]


# --- nothing held by fewer than RARE rows ---------------------------------------------------

def people(n: int = 1200, extra: str = "") -> str:
    """A table whose values are each held by at least 20 rows, but for a category held by 3
    rows, an age of 97 and a salary of 987,654 held by one row each."""
    lines = ["age,salary,pet,visits"]
    for i in range(n):
        pet = "cat" if i % 2 else "dog"
        lines.append(f"{20 + i % 50},{(20 + i % 60) * 1000},{pet},{i % 7}")
    lines += ["97,987654,iguana,3", "45,30000,iguana,2", "33,40000,iguana,1"]
    return "\n".join(lines) + "\n" + extra


def test_plain_draft_prints_no_value_held_by_fewer_than_rare_rows(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(people())
    frame = pd.read_csv(path, dtype=str)
    text = draft_schema(path)
    rare = {v for c in frame for v, n in frame[c].value_counts().items() if n < RARE}
    assert {"97", "987654", "iguana"} <= rare
    assert not words(text) & rare
    drafted = parsed(text)
    assert drafted.column("age").maximum < 97 and drafted.column("salary").maximum < 987_654
    assert drafted.column("pet").categories == ("cat", "dog", "other")


def test_one_extreme_record_does_not_move_a_plain_bound(tmp_path):
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    before.write_text(people())
    after.write_text(people(extra="95,2000000,cat,4\n"))
    assert draft_schema(after).replace("after.csv", "before.csv").replace(
        "name: after", "name: before") == draft_schema(before)


# --- a drafted schema accepts the file it was drafted from ----------------------------------

def fractional_ages(n: int = 300) -> str:
    """Ages with fractions (and some over 89) in a table with an identifier: the draft
    proposes Safe Harbor's age rule for a float column."""
    return "email,age,score\n" + "".join(
        f"p{i}@example.org,{20 + (i % 150) / 2},{i % 5}\n" for i in range(n))


@pytest.mark.parametrize("content, flags", [
    (fractional_ages(), {}),
    ("n,colour\n" + "".join(f"{i % 20},{'red' if i % 3 else 'blue'}\n" for i in range(90)),
     {}),
    (people(), {"clip": True, "map_unknown": True}),
], ids=["fractional-ages", "plain", "rare-values-left-out"])
def test_a_drafted_schema_accepts_its_own_file(tmp_path, content, flags):
    path = tmp_path / "table.csv"
    path.write_text(content)
    drafted = parsed(draft_schema(path))
    result = ingest(path, drafted, **flags)
    assert len(result.frame) == content.count("\n") - 1
    if "clip" in flags:  # what --clip and --map-unknown changed: values held by few rows
        assert result.report.clipped == {"age": 1, "salary": 1}
        assert result.report.mapped_to_catch_all == {"pet": 3}


def test_fractional_ages_keep_their_fractions(tmp_path):
    path = tmp_path / "ages.csv"
    path.write_text(fractional_ages())
    drafted = parsed(draft_schema(path))
    age = drafted.column("age")
    assert (age.kind, age.generalize.rule, age.maximum) == ("float", "age90", 90.0)
    frame = ingest(path, drafted).frame
    assert frame["age"].iloc[35] == 37.5 and frame["age"].max() == 90.0


# --- the DP draft ---------------------------------------------------------------------------

def big_people(extra: str = "") -> str:
    """4,000 rows: enough for the DP draft's noisy counts at epsilon 4."""
    rng = np.random.default_rng(3)
    lines = ["age,salary,pet,joined"]
    for i in range(4000):
        lines.append(f"{20 + i % 50},{int(rng.integers(20, 80)) * 1000},"
                     f"{('cat', 'dog', 'fish')[i % 3]},{2000 + i % 20}-0{1 + i % 9}-15")
    return "\n".join(lines) + "\n" + extra


def dp_draft(tmp_path, content: str, **kwargs):
    path = tmp_path / "people.csv"
    path.write_text(content)
    return path, draft_dp_schema(path, 4.0, 1e-9, ledger=tmp_path / "ledger.db", **kwargs)


def test_dp_draft(tmp_path):
    path, result = dp_draft(tmp_path, big_people(), seed=11)
    drafted = parsed(result.text)
    assert drafted.name == "people" and drafted.draft.dp
    assert drafted.draft.epsilon == pytest.approx(4.0, rel=0.01)
    assert 5e-10 <= drafted.draft.delta <= 1e-9  # half for the noise, half for the threshold
    assert result.text.startswith("# DRAFT schema, read from the data in")
    assert "under differential privacy" in result.text.splitlines()[0]
    kinds = {c.name: c.kind for c in drafted.columns}
    assert kinds == {"age": "integer", "salary": "integer", "pet": "categorical",
                     "joined": "date"}
    assert drafted.column("pet").categories == ("cat", "dog", "fish")
    age, salary, joined = (drafted.column(c) for c in ("age", "salary", "joined"))
    assert age.minimum <= 20 and 69 <= age.maximum <= 100  # round numbers around 20..69
    assert salary.minimum <= 20_000 and 79_000 <= salary.maximum <= 100_000
    assert (joined.minimum.year, joined.maximum.year) == (2000, 2019)
    assert not any(c.nullable for c in drafted.columns)
    ingest(path, drafted, clip=True, map_unknown=True)


def test_neighbouring_data_sets_give_the_same_dp_draft(tmp_path):
    """D and D plus one record with an extreme age and salary and a new pet: with the noise
    fixed, the drafts are the same; the outlier moves no bound and the pet never appears."""
    first, second = tmp_path / "d", tmp_path / "d-plus-one"
    first.mkdir()
    second.mkdir()
    _, d = dp_draft(first, big_people(), seed=5)
    _, plus = dp_draft(second, big_people("150,90000000,komodo dragon,2500-06-01\n"), seed=5)
    assert plus.text.replace(str(second), str(first)) == d.text
    assert "komodo" not in plus.text and "90000000" not in plus.text
    assert parsed(plus.text).column("salary").maximum <= 100_000


def test_a_dp_draft_is_charged_to_the_ledger_under_its_name(tmp_path):
    path, result = dp_draft(tmp_path, big_people(), name="staff")
    assert parsed(result.text).name == "staff" == result.name
    entries = Ledger(tmp_path / "ledger.db").history()
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["data_set"], entry["name"], entry["state"]) == ("staff", "staff", "committed")
    assert (entry["synthesizer"], entry["release"], entry["source"]) == (
        "schema-draft", "(schema draft)", str(path))
    assert entry["epsilon"] == pytest.approx(result.epsilon) and result.epsilon <= 4.0
    assert entry["delta"] == pytest.approx(result.delta) and result.delta <= 1e-9
    assert entry["id"] == result.entry


def test_a_dp_draft_of_an_unreadable_file_spends_nothing(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError):
        draft_dp_schema(path, 1.0, ledger=tmp_path / "ledger.db")
    assert [e["state"] for e in Ledger(tmp_path / "ledger.db").history()] == ["cancelled"]


def test_noisy_counts_are_secure_by_default_and_keyed_by_a_test_seed():
    calibration = calibrate(PrivacyBudget(1.0, 1e-9), 3, 1)
    zeros = np.zeros(2000, dtype=int)
    one, two = (NoisyCounts(calibration).release("h", zeros)[0] for _ in range(2))
    assert not np.array_equal(one, two)  # OpenDP's sampler: fresh noise every time
    assert np.array_equal(one, np.round(one))  # integer counts
    assert one.std() == pytest.approx(calibration.sigma, rel=0.1)
    seeded = NoisyCounts(calibration, seed=1)
    _, kept = seeded.release("h", zeros[:3], {"a": 10_000, "b": 1})
    assert set(kept) == {"a"}  # a label held by one record stays under the threshold
    _, again = NoisyCounts(calibration, seed=1).release("h", zeros[:5], {"a": 10_000})
    assert again == kept  # a key's noise does not depend on the other keys
    with pytest.raises(RuntimeError, match="calibrated for"):
        for _ in range(3):
            seeded.release("more", zeros[:3])


@pytest.mark.parametrize("epsilon, histograms, thresholded", [(1.0, 12, 4), (0.1, 3, 1),
                                                              (8.0, 45, 15)])
def test_calibration_spends_at_most_the_budget(epsilon, histograms, thresholded):
    from synth.privacy import zcdp_delta

    budget = PrivacyBudget(epsilon, 1e-9)
    c = calibrate(budget, histograms, thresholded)
    rho = histograms / (2 * c.sigma**2)  # each histogram: L2 sensitivity 1
    assert zcdp_delta(rho, budget.epsilon) <= budget.delta / 2 * (1 + 1e-6)
    assert c.epsilon <= budget.epsilon and c.delta <= budget.delta
    # the threshold: one record's new label survives with probability at most delta / 2
    assert thresholded * tail_bound(c.sigma, c.threshold - 1) <= budget.delta / 2
    assert thresholded * tail_bound(c.sigma, c.threshold - 2) > budget.delta / 2


@pytest.mark.parametrize("sigma", [0.8, 3.0, 40.0])
def test_tail_bound_covers_the_discrete_gaussian(sigma):
    xs = np.arange(-int(60 * sigma) - 60, int(60 * sigma) + 61)
    weights = np.exp(-xs.astype(float) ** 2 / (2 * sigma**2))
    for m in (0, 1, int(2 * sigma), int(5 * sigma)):
        exact = weights[xs >= m].sum() / weights.sum()
        assert exact <= tail_bound(sigma, m) <= 2 * exact + 1e-300


def test_public_grid_keys():
    grid = Grid(round_numbers())
    values = np.array([0.0, 90.0, 100.0, 0.3, -7.0, 1e20])
    spans = [grid.span(int(k)) for k in grid.keys(values)]
    assert spans == [(0.0, 0.0), (50.0, 100.0), (100.0, 100.0), (0.2, 0.5), (-10.0, -5.0),
                     (5e15, 5e15)]


# --- the command line -----------------------------------------------------------------------

def cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_synth_run_refuses_a_plain_draft(tmp_path, capsys):
    data = tmp_path / "people.csv"
    data.write_text(people())
    code, stdout, _ = cli(["schema", "draft", data], capsys)
    schema = tmp_path / "people.yaml"
    schema.write_text(stdout)
    code, stdout, _ = cli(["schema", "check", schema], capsys)
    assert code == 0 and "ok" in stdout and "unreviewed draft read without DP" in stdout
    out = tmp_path / "release"
    code, _, err = cli(["run", "--input", data, "--schema", schema, "--epsilon", 1, "--out",
                        out, "--ledger", tmp_path / "ledger.db", "-q"], capsys)
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert err == (f"error: {schema} is an unreviewed draft read from the private data without "
                   "differential privacy: review every bound, category and role against "
                   "public knowledge, then delete its `draft:` line\n")
    assert not out.exists() and not (tmp_path / "ledger.db").exists()


def test_cli_dp_draft(tmp_path, capsys):
    data = tmp_path / "people.csv"
    data.write_text(big_people())
    ledger = tmp_path / "ledger.db"
    code, stdout, err = cli(["schema", "draft", data, "--epsilon", 4, "--ledger", ledger],
                            capsys)
    assert code == 0 and "draft: {dp: true, epsilon: " in stdout
    assert "charged to data set 'people'" in err
    schema = tmp_path / "people.yaml"
    schema.write_text(stdout)
    code, stdout, _ = cli(["schema", "check", schema], capsys)
    assert code == 0 and "a DP draft" in stdout and "`synth run` accepts it" in stdout
    code, _, err = cli(["schema", "draft", data, "--delta", 1e-6], capsys)
    assert code == EXIT_BAD_INPUT and "apply to a DP draft only" in err


def test_synth_run_accepts_a_dp_draft_and_charges_the_same_data_set(tmp_path, capsys):
    data = tmp_path / "people.csv"
    data.write_text(big_people())
    ledger = tmp_path / "ledger.db"
    _, stdout, _ = cli(["schema", "draft", data, "--epsilon", 2, "--ledger", ledger], capsys)
    schema = tmp_path / "people.yaml"
    schema.write_text(stdout)
    code, _, err = cli(["run", "--input", data, "--schema", schema, "--epsilon", 1, "--out",
                        tmp_path / "release", "--ledger", ledger, "--synthesizer",
                        "dp-independent", "--rows", 100, "--no-fidelity", "-q", "--clip",
                        "--map-unknown"], capsys)
    assert code == 0, err
    entries = Ledger(ledger).history()
    assert [(e["data_set"], e["synthesizer"], e["state"]) for e in entries] == [
        ("people", "schema-draft", "committed"), ("people", "dp-independent", "committed")]
