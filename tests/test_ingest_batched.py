"""Tests for pipelines.batched: a file read in several batches gives the codes, the report and
the rejections (file, column, row, line, counts) of the unbatched ingest + encode."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipelines.batched import _allocate, code_dtype, ingest_encoded
from pipelines.errors import DataError
from pipelines.ingest import ingest
from schemas import schema_from_dict
from synth.encoding import TableEncoder
from tests.conftest import ROOT
from tests.test_ingest import CLIPPED, HOSTILE, TINY, check_refusal

ROWS, BATCH = 2_500, 512  # five batches, the last one short
CITIES = [f"city{i:03d}" for i in range(300)]  # more than 256 states: uint16 codes


@pytest.fixture(scope="module")
def schema():
    return schema_from_dict({"name": "batched", "columns": [
        {"name": "age", "kind": "integer", "min": 0, "max": 90},
        {"name": "income", "kind": "integer", "min": 0, "max": 1_000_000, "transform": "log"},
        {"name": "score", "kind": "float", "min": -5, "max": 5, "nullable": True},
        {"name": "colour", "kind": "categorical", "categories": ["red", "green", "blue"],
         "aliases": {"r": "red"}},
        {"name": "city", "kind": "categorical", "categories": CITIES, "nullable": True},
        {"name": "member", "kind": "boolean"},
        {"name": "day", "kind": "date", "min": "2020-01-01", "max": "2020-12-31"},
        {"name": "at", "kind": "datetime", "min": "2020-01-01T00:00:00",
         "max": "2020-12-31T23:59:59", "nullable": True},
    ]}, path="batched.yaml")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Raw text rows (as a CSV file holds them), some missing where the schema allows."""
    rng = np.random.default_rng(0)
    n = ROWS
    day = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 366, n), unit="D")
    at = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s")
    out = pd.DataFrame({
        "age": rng.integers(0, 91, n).astype(str),
        "income": rng.integers(0, 1_000_001, n).astype(str),
        "score": np.round(rng.uniform(-5, 5, n), 3).astype(str),
        "colour": rng.choice(["red", "green", "blue", "r"], n),
        "city": rng.choice(CITIES, n),
        "member": rng.choice(["yes", "no", "true", "0"], n),
        "day": day.strftime("%Y-%m-%d"),
        "at": at.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    out.loc[rng.random(n) < 0.05, "score"] = ""
    out.loc[rng.random(n) < 0.05, "city"] = "NA"
    out.loc[1030:1700, "at"] = ""  # a whole batch with no value in a nullable column
    return out


def write(frame: pd.DataFrame, path, kind: str):
    if kind == "parquet":
        frame.to_parquet(path, row_group_size=700)
    else:
        frame.to_csv(path, index=False)
    return path


def rejections(path, schema, **kwargs) -> tuple[DataError, DataError]:
    with pytest.raises(DataError) as plain:
        ingest(path, schema, **kwargs)
    with pytest.raises(DataError) as batched:
        ingest_encoded(path, schema, batch_rows=BATCH, **kwargs)
    return plain.value, batched.value


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_codes_equal_the_unbatched_path(tmp_path, schema, frame, kind):
    path = write(frame, tmp_path / f"in.{kind}", kind)
    plain = ingest(path, schema)
    got = ingest_encoded(path, schema, batch_rows=BATCH)
    want = TableEncoder(schema).encode(plain.frame)
    assert np.array_equal(got.matrix(), want)
    assert got.report == plain.report
    dtypes = {name: codes.dtype for name, codes in got.codes.items()}
    assert dtypes["age"] == np.uint8 and dtypes["city"] == np.uint16
    assert all(len(c) == ROWS for c in got.codes.values())


def test_code_dtype_is_the_smallest_that_holds_the_states():
    assert [code_dtype(n) for n in (1, 256, 257, 65_536, 65_537)] == \
        [np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_problems_in_later_batches_name_the_file_row(tmp_path, schema, frame, kind):
    bad = frame.copy()
    bad.loc[2_199, "age"] = "153"  # row 2,200: the fifth batch
    bad.loc[[1_499, 2_399], "colour"] = "purple"  # rows 1,500 and 2,400
    bad.loc[1_024:1_535, "day"] = ""  # the whole third batch, in a column that needs a value
    path = write(bad, tmp_path / f"bad.{kind}", kind)
    plain, batched = rejections(path, schema)
    assert str(batched) == str(plain) and batched.public == plain.public
    message = str(batched)
    assert message.startswith(f"{path}: column 'age' value 153 is above the schema's maximum 90 "
                              "in row 2,200")
    assert "column 'colour' value 'purple' is not a declared category in row 1,500" in message
    assert ("(line 1,501) (2 rows in all)" if kind == "csv" else "(2 rows in all)") in message
    assert "column 'day' is missing a value in row 1,025" in message
    assert "(512 rows in all)" in message and "more problem" not in message


def test_clip_and_catch_all_counts_add_up_over_batches(tmp_path, schema, frame):
    bad = frame.copy()
    bad.loc[[10, 1_000, 2_000], "age"] = "120"
    path = write(bad, tmp_path / "clip.parquet", "parquet")
    plain = ingest(path, schema, clip=True)
    got = ingest_encoded(path, schema, clip=True, batch_rows=BATCH)
    assert got.report.clipped == plain.report.clipped == {"age": 3}
    assert np.array_equal(got.matrix(), TableEncoder(schema).encode(plain.frame))


def test_column_with_no_value_in_any_batch(tmp_path, schema, frame):
    bad = frame.assign(score="")
    path = write(bad, tmp_path / "empty.csv", "csv")
    plain, batched = rejections(path, schema)
    assert str(batched) == str(plain)
    assert "column 'score' has no value in any of its 2,500 rows" in str(batched)


def test_missing_column_and_empty_file(tmp_path, schema, frame):
    path = write(frame.drop(columns=["city"]), tmp_path / "nocity.parquet", "parquet")
    plain, batched = rejections(path, schema)
    assert str(batched) == str(plain)
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    plain, batched = rejections(empty, schema)
    assert str(batched) == str(plain) == f"{empty}: the file is empty"


def test_benchmark_runs_small(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), "--rows", "20000",
                           "--row-group", "8000", "--batch-rows", "5000", "--dir", str(tmp_path),
                           "--json", str(out)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    print(done.stdout)
    result = json.loads(out.read_text())
    assert result["rows"] == 20_000 and result["columns"] == 20
    assert set(result["methods"]) == {"batched ingest+encode", "pandas.read_parquet"}
    for method in result["methods"].values():
        assert method["rows"] == 20_000 and method["peak_rss_mb"] > 0 and method["seconds"] > 0
    assert set(result["ratios"]) == {"time", "peak_rss"}
    assert "ours / pandas" in done.stdout


@pytest.mark.parametrize("build", HOSTILE, ids=lambda b: b.__name__.strip("_"))
def test_hostile_input_is_refused_in_batches_as_it_is_whole(tmp_path, build):
    path, column = build(tmp_path)
    with pytest.raises(DataError) as batched:
        ingest_encoded(path, TINY, batch_rows=2)
    check_refusal(batched.value, path, column)
    with pytest.raises(DataError) as plain:
        ingest(path, TINY)
    assert str(batched.value) == str(plain.value)
    assert batched.value.public == plain.value.public


@pytest.mark.parametrize("build", sorted(CLIPPED, key=lambda b: b.__name__),
                         ids=lambda b: b.__name__.strip("_"))
def test_clipped_huge_numbers_in_batches(tmp_path, build):
    path, column = build(tmp_path)
    got = ingest_encoded(path, TINY, clip=True, batch_rows=2)
    assert got.report == ingest(path, TINY, clip=True).report
    assert got.report.clipped == {column: 1}


def test_a_footer_declaring_more_rows_than_memory_holds(tmp_path):
    with pytest.raises(DataError) as caught:
        _allocate(tmp_path / "in.parquet", 2**62, [np.dtype("uint8")])
    assert "its footer declares 4,611,686,018,427,387,904 rows" in str(caught.value)
    assert "4,611" not in caught.value.public
