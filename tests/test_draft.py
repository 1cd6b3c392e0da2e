"""Tests for pipelines.draft: a draft schema read from private rows, marked as such, with bounds
rounded outward and rare categories flagged, that ingest then accepts."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from pipelines.draft import RARE, draft_schema
from pipelines.ingest import DataError, ingest
from schemas import Schema, schema_from_dict
from tests.conftest import DATASETS

FLCHAIN = DATASETS / "flchain" / "flchain.csv"

pytestmark = pytest.mark.skipif(not FLCHAIN.exists(), reason=f"{FLCHAIN} is not available")


@pytest.fixture(scope="module")
def text() -> str:
    return draft_schema(FLCHAIN)


@pytest.fixture(scope="module")
def drafted(text) -> Schema:
    return schema_from_dict(yaml.safe_load(text), path="draft.yaml")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """flchain.csv as plain pandas reads it: the oracle for the extremes and counts."""
    return pd.read_csv(FLCHAIN, na_values=["?", ""], keep_default_na=False)


def test_draft_parses_as_a_schema(drafted, rows):
    assert drafted.name == "flchain"
    assert drafted.names == list(rows.columns)
    kinds = {c.name: c.kind for c in drafted.columns}
    assert kinds == {"age": "integer", "sex": "categorical", "sample.yr": "integer",
                     "kappa": "float", "lambda": "float", "flc.grp": "integer",
                     "creatinine": "float", "mgus": "boolean", "futime": "integer",
                     "death": "categorical", "chapter": "categorical"}
    assert {c.name for c in drafted.columns if c.nullable} == {"creatinine", "chapter"}
    assert drafted.column("death").categories == ("alive", "dead")
    chapters = set(rows["chapter"].dropna())
    assert set(drafted.column("chapter").categories) == chapters
    assert "?" not in drafted.column("chapter").categories


def test_draft_opens_with_a_private_data_warning(text):
    first = text.splitlines()[0]
    assert first.startswith("# DRAFT")
    assert "PRIVATE data" in first and str(FLCHAIN) in first
    assert "reviewed" in text.splitlines()[1]


def test_rare_categories_are_flagged(text, rows):
    counts = rows["chapter"].value_counts()
    rare = sorted(counts[counts < RARE].index)
    assert rare == ["Blood", "Congenital", "Skin"]  # the data really has rare chapters
    review = [line for line in text.splitlines() if "REVIEW" in line]
    assert len(review) == 1
    assert review[0].lstrip().startswith("#")
    for category in rare:
        assert category in review[0]
    for common in counts[counts >= RARE].index:
        assert common not in review[0]
    # The note stands just before the column it is about.
    lines = text.splitlines()
    assert lines[lines.index(review[0]) + 1].strip() == "- name: chapter"


@pytest.mark.parametrize("name", ["age", "sample.yr", "kappa", "lambda", "flc.grp",
                                  "creatinine", "futime"])
def test_bounds_cover_the_data(drafted, rows, name):
    col = drafted.column(name)
    assert col.minimum <= rows[name].min()
    assert col.maximum >= rows[name].max()


@pytest.mark.parametrize("name, low, high", [
    ("age", 50, 105),          # data 50..101
    ("kappa", 0.0, 25.0),      # data 0.01..20.5
    ("lambda", 0.0, 30.0),     # data 0.04..26.6
    ("creatinine", 0.0, 15.0),  # data 0.4..10.8
    ("futime", 0, 5500),       # data 0..5215
])
def test_bounds_are_rounded_outward(drafted, rows, name, low, high):
    col = drafted.column(name)
    assert (col.minimum, col.maximum) == (low, high)
    data_low, data_high = rows[name].min(), rows[name].max()
    if data_low != low:  # a round extreme (age 50, futime 0) may be its own bound
        assert col.minimum < data_low
    assert col.maximum > data_high  # none of these maxima is round: it is not revealed


def test_round_extremes_stay(drafted):
    # Ranges of a few units cannot be rounded without losing the scale.
    assert (drafted.column("sample.yr").minimum, drafted.column("sample.yr").maximum) == (
        1995, 2003)
    assert (drafted.column("flc.grp").minimum, drafted.column("flc.grp").maximum) == (1, 10)


def test_ingest_accepts_its_own_draft(drafted, rows):
    result = ingest(FLCHAIN, drafted)
    frame = result.frame
    assert len(frame) == 7_874
    assert result.report.clipped == {} and result.report.mapped_to_catch_all == {}
    assert frame["chapter"].isna().sum() == rows["chapter"].isna().sum() == 5_705
    assert frame["creatinine"].isna().sum() == 1_350
    assert frame["mgus"].sum() == (rows["mgus"] == "yes").sum()
    assert frame["futime"].max() == 5_215


def test_name_can_be_given(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    assert schema_from_dict(yaml.safe_load(draft_schema(path, name="mine"))).name == "mine"
    assert schema_from_dict(yaml.safe_load(draft_schema(path))).name == "tiny"


def test_parquet_draft(tmp_path, rows):
    path = tmp_path / "flchain.parquet"
    rows.head(500).to_parquet(path)
    drafted = schema_from_dict(yaml.safe_load(draft_schema(path)))
    assert drafted.column("futime").kind == "integer"
    assert drafted.column("kappa").kind == "float"
    assert drafted.column("chapter").nullable
    assert len(ingest(path, drafted).frame) == 500


def test_dates_get_whole_year_bounds(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("day,n\n2019-03-04,1\n2021-07-01,2\n2020-01-01,3\n")
    drafted = schema_from_dict(yaml.safe_load(draft_schema(path)))
    day = drafted.column("day")
    assert day.kind == "date"
    assert (day.minimum.isoformat(), day.maximum.isoformat()) == ("2019-01-01", "2021-12-31")
    assert len(ingest(path, drafted).frame) == 3


def test_datetime_draft_covers_the_last_day(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("at,n\n2020-03-01T10:00:00,1\n2021-12-31T12:30:00,2\n")
    drafted = schema_from_dict(yaml.safe_load(draft_schema(path)))
    assert drafted.column("at").kind == "datetime"
    assert len(ingest(path, drafted).frame) == 2


def test_header_whitespace_matches_ingest(tmp_path):
    path = tmp_path / "padded.csv"
    path.write_text("age , sex\n50,F\n60,M\n")
    drafted = schema_from_dict(yaml.safe_load(draft_schema(path)))
    assert drafted.names == ["age", "sex"]
    assert len(ingest(path, drafted).frame) == 2


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
    drafted = schema_from_dict(yaml.safe_load(text))
    assert [c.name for c in drafted.columns] == ["sex"]
