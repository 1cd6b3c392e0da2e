"""Tests for pipelines.ingest on real Adult rows: the full UCI files once, then small copies
(the first 200 lines of adult.data) corrupted one way at a time. Every rejection is a one-line
DataError naming the file, the column, and the first row (and line) where it happens."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import lzma
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import DataError
from pipelines.ingest import Ingested, ingest
from pipelines.ingest import files as ingest_files
from schemas import SCHEMA_DIR, CsvFormat, load_schema, pandas_dtype, schema_from_dict
from tests.conftest import DATASETS, DEMO_ADULT, shared

DATA = DATASETS / "adult"
# the shared raw file, or the identical gzipped copy that ships in the repo
ADULT_DATA = DATA / "adult.data" if (DATA / "adult.data").exists() else DEMO_ADULT
SAMPLE_ROWS = 200



@pytest.fixture(scope="module")
def schema():
    return load_schema(SCHEMA_DIR / "adult.yaml")


@pytest.fixture(scope="module")
def header_schema(schema):
    """The Adult schema for CSV files that carry a header line."""
    return dataclasses.replace(schema, csv=CsvFormat())


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    """The first 200 raw lines of adult.data (no header, ", " separated)."""
    with (gzip.open(ADULT_DATA, "rt") if ADULT_DATA.suffix == ".gz" else open(ADULT_DATA)) as f:
        return [next(f).rstrip("\n") for _ in range(SAMPLE_ROWS)]


@pytest.fixture(scope="module")
def expected(schema, sample_lines, tmp_path_factory) -> pd.DataFrame:
    """The sample as ingest reads it from the untouched file."""
    path = tmp_path_factory.mktemp("expected") / "sample.csv"
    path.write_text("\n".join(sample_lines) + "\n")
    return ingest(path, schema).frame


def fields(line: str) -> list[str]:
    return line.split(", ")


def corrupt(lines: list[str], record: int, column: str, value: str, schema) -> list[str]:
    """A copy of headerless Adult ``lines`` with ``column`` of the 1-based ``record`` set."""
    out = list(lines)
    parts = fields(out[record - 1])
    parts[schema.names.index(column)] = value
    out[record - 1] = ", ".join(parts)
    return out


def write(tmp_path, lines: list[str], name: str = "adult.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def rejection(path, schema, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        ingest(path, schema, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def check_dtypes(frame: pd.DataFrame, schema) -> None:
    assert list(frame.columns) == schema.names
    for col in schema.columns:
        assert frame[col.name].dtype == pandas_dtype(col), col.name


# --- the real files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def adult_train(schema) -> Ingested:
    return ingest(ADULT_DATA, schema)


@pytest.fixture(scope="module")
def adult_test(schema) -> Ingested:
    return ingest(shared("adult/adult.test"), schema)


def test_adult_data_whole_file(adult_train, schema):
    frame, report = adult_train.frame, adult_train.report
    assert len(frame) == report.rows == 32_561
    check_dtypes(frame, schema)
    # "?" marks missing in exactly these three columns (UCI's documented counts).
    nulls = frame.isna().sum()
    assert nulls[nulls > 0].to_dict() == {"workclass": 1_836, "occupation": 1_843,
                                          "native-country": 583}
    assert report.source == str(ADULT_DATA)
    assert report.clipped == {} and report.mapped_to_catch_all == {}
    assert report.dropped_columns == ()
    assert frame["age"].min() == 17 and frame["age"].max() == 90
    assert set(frame["income"]) == {"<=50K", ">50K"}
    # First record of the file, spaces after the separators stripped.
    first = frame.iloc[0]
    assert (first["age"], first["workclass"], first["fnlwgt"]) == (39, "State-gov", 77_516)
    assert first["native-country"] == "United-States"


def test_adult_test_file(adult_test, schema):
    frame = adult_test.frame
    assert len(frame) == adult_test.report.rows == 16_281  # "|1x3 Cross validator" skipped
    check_dtypes(frame, schema)
    # Labels "<=50K." / ">50K." reach the declared categories through the schema's aliases.
    assert frame["income"].notna().all()
    assert frame["income"].value_counts().to_dict() == {"<=50K": 12_435, ">50K": 3_846}
    assert (frame.iloc[0]["age"], frame.iloc[0]["education"]) == (25, "11th")
    assert frame.isna().sum()[["workclass", "occupation", "native-country"]].gt(0).all()


# --- other layouts of the same rows -----------------------------------------------------------

def test_csv_with_header_in_any_order(tmp_path, header_schema, sample_lines, expected):
    raw = pd.DataFrame([fields(line) for line in sample_lines], columns=header_schema.names)
    shuffled = raw[list(reversed(header_schema.names))].assign(extra="ignored")
    path = tmp_path / "with_header.csv"
    shuffled.to_csv(path, index=False)
    result = ingest(path, header_schema)
    pd.testing.assert_frame_equal(result.frame, expected)
    assert result.report.dropped_columns == ("extra",)


def test_parquet_of_strings(tmp_path, schema, sample_lines, expected):
    raw = pd.DataFrame([fields(line) for line in sample_lines], columns=schema.names)
    assert (raw["workclass"] == "?").any()
    path = tmp_path / "adult.parquet"
    raw.to_parquet(path)
    result = ingest(path, schema)
    pd.testing.assert_frame_equal(result.frame, expected)
    assert result.frame["workclass"].isna().sum() == (raw["workclass"] == "?").sum()


def test_parquet_with_types(tmp_path, schema, expected):
    path = tmp_path / "typed.parquet"
    expected.to_parquet(path)
    pd.testing.assert_frame_equal(ingest(path, schema).frame, expected)
    # Plain numpy types (int64, object strings with None) are coerced too.
    plain = expected.astype({c.name: "float64" if c.is_numeric else object
                             for c in schema.columns})
    plain.to_parquet(path)
    pd.testing.assert_frame_equal(ingest(path, schema).frame, expected)


def test_gzipped_csv(tmp_path, schema, sample_lines, expected):
    path = tmp_path / "adult.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(sample_lines) + "\n")
    pd.testing.assert_frame_equal(ingest(path, schema).frame, expected)


def test_stray_whitespace_is_stripped(tmp_path, schema, header_schema, sample_lines, expected):
    padded = ["  " + ",".join(f" {v}\t " for v in fields(line)) + "  " for line in sample_lines]
    pd.testing.assert_frame_equal(ingest(write(tmp_path, padded), schema).frame, expected)
    header = " , ".join(f" {n} " for n in header_schema.names)
    path = write(tmp_path, [header] + padded, "with_header.csv")
    pd.testing.assert_frame_equal(ingest(path, header_schema).frame, expected)


def test_blank_lines_are_skipped(tmp_path, schema, sample_lines, expected):
    lines = sample_lines[:3] + ["", "   "] + sample_lines[3:]
    pd.testing.assert_frame_equal(ingest(write(tmp_path, lines), schema).frame, expected)


# --- input that cannot be read ----------------------------------------------------------------

def test_missing_file(tmp_path, schema):
    path = tmp_path / "absent.csv"
    assert "no such file" in rejection(path, schema)


def test_empty_file(tmp_path, schema):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "is empty" in rejection(path, schema)


def test_header_only_file(tmp_path, header_schema):
    path = write(tmp_path, [",".join(header_schema.names)])
    assert "no data rows" in rejection(path, header_schema)


def test_comment_only_file(tmp_path, schema):
    path = write(tmp_path, ["|1x3 Cross validator"])
    assert "no data rows" in rejection(path, schema)


def test_required_column_missing(tmp_path, header_schema, sample_lines):
    raw = pd.DataFrame([fields(line) for line in sample_lines[:5]], columns=header_schema.names)
    path = tmp_path / "no_age.csv"
    raw.drop(columns=["age", "sex"]).to_csv(path, index=False)
    message = rejection(path, header_schema)
    assert "columns 'age', 'sex' required by" in message
    assert str(SCHEMA_DIR / "adult.yaml") in message
    assert "are missing" in message


def test_too_many_fields(tmp_path, schema, sample_lines):
    lines = list(sample_lines[:10])
    lines[3] += ", surplus"
    assert "line 4" in rejection(write(tmp_path, lines), schema)


# --- values that do not fit the schema --------------------------------------------------------

def test_value_above_max(tmp_path, schema, sample_lines):
    path = write(tmp_path, corrupt(sample_lines, 3, "age", "153", schema))
    message = rejection(path, schema)
    assert ("column 'age' value 153 is above the schema's maximum 90 in row 3 (line 3)"
            in message)
    assert "adult.yaml" in message and "--clip" in message


def test_clip_clips_and_counts(tmp_path, schema, sample_lines, expected):
    lines = corrupt(sample_lines, 3, "age", "153", schema)
    lines = corrupt(lines, 7, "age", "200", schema)
    lines = corrupt(lines, 9, "age", "12", schema)
    lines = corrupt(lines, 9, "hours-per-week", "0", schema)
    result = ingest(write(tmp_path, lines), schema, clip=True)
    age = result.frame["age"]
    assert (age[2], age[6], age[8]) == (90, 90, 17)
    assert result.frame["hours-per-week"][8] == 1
    assert result.report.clipped == {"age": 3, "hours-per-week": 1}
    untouched = [i for i in range(SAMPLE_ROWS) if i not in (2, 6, 8)]
    assert age[untouched].tolist() == expected["age"][untouched].tolist()
    assert age.dtype == pd.Int64Dtype()


def test_value_below_min(tmp_path, schema, sample_lines):
    path = write(tmp_path, corrupt(sample_lines, 4, "hours-per-week", "0", schema))
    message = rejection(path, schema)
    assert ("column 'hours-per-week' value 0 is below the schema's minimum 1 in row 4 (line 4)"
            in message)


def test_unknown_category_rejected(tmp_path, schema, sample_lines):
    lines = corrupt(sample_lines, 2, "workclass", "Astronaut", schema)
    lines = corrupt(lines, 11, "workclass", "Pirate", schema)
    message = rejection(write(tmp_path, lines), schema, map_unknown=True)  # no catch_all here
    assert ("column 'workclass' value 'Astronaut' is not a declared category in row 2 (line 2) "
            "(2 rows in all)") in message
    assert "catch_all" in message


@pytest.fixture(scope="module")
def catch_all_schema(schema):
    raw = schema.to_dict()
    workclass = next(c for c in raw["columns"] if c["name"] == "workclass")
    workclass["categories"].append("Other")
    workclass["catch_all"] = "Other"
    return schema_from_dict(raw, path="adult-with-other.yaml")


def test_unknown_category_mapped_to_catch_all(tmp_path, catch_all_schema, sample_lines,
                                              expected):
    lines = corrupt(sample_lines, 2, "workclass", "Astronaut", catch_all_schema)
    lines = corrupt(lines, 11, "workclass", "Pirate", catch_all_schema)
    path = write(tmp_path, lines)
    message = rejection(path, catch_all_schema)  # map_unknown not asked for: still rejected
    assert "value 'Astronaut' is not a declared category in row 2 (line 2)" in message
    assert "--map-unknown" in message
    result = ingest(path, catch_all_schema, map_unknown=True)
    workclass = result.frame["workclass"]
    assert (workclass[1], workclass[10]) == ("Other", "Other")
    assert result.report.mapped_to_catch_all == {"workclass": 2}
    others = [i for i in range(SAMPLE_ROWS) if i not in (1, 10)]
    assert workclass[others].astype(object).equals(expected["workclass"][others].astype(object))
    assert workclass.isna().sum() == expected["workclass"].isna().sum()  # "?" is still missing


def test_entirely_null_column(tmp_path, schema, sample_lines):
    lines = sample_lines
    for record in range(1, SAMPLE_ROWS + 1):
        lines = corrupt(lines, record, "occupation", "?", schema)
    message = rejection(write(tmp_path, lines), schema)
    assert "column 'occupation' has no value in any of its 200 rows" in message


def test_null_in_non_nullable_column(tmp_path, schema, sample_lines):
    lines = corrupt(sample_lines, 4, "education", "?", schema)
    lines = corrupt(lines, 6, "education", "", schema)
    message = rejection(write(tmp_path, lines), schema)
    assert ("column 'education' is missing a value in row 4 (line 4) (2 rows in all)"
            in message)
    assert "nullable" in message


def test_non_numeric_value_in_integer_column(tmp_path, schema, sample_lines):
    path = write(tmp_path, corrupt(sample_lines, 8, "fnlwgt", "lots", schema))
    message = rejection(path, schema)
    assert "column 'fnlwgt' value 'lots' is not a number in row 8 (line 8)" in message


def test_non_whole_number_in_integer_column(tmp_path, schema, sample_lines):
    path = write(tmp_path, corrupt(sample_lines, 3, "age", "38.5", schema))
    message = rejection(path, schema)
    assert "column 'age' value " in message
    assert "is not a whole number in row 3 (line 3)" in message
    assert "declare the column float" in message


def test_non_whole_number_message_shows_the_value(tmp_path, schema, sample_lines):
    path = write(tmp_path, corrupt(sample_lines, 3, "age", "38.5", schema))
    assert "column 'age' value 38.5 is not a whole number" in rejection(path, schema)


def test_several_problems_in_one_message(tmp_path, schema, sample_lines):
    lines = corrupt(sample_lines, 2, "age", "153", schema)
    lines = corrupt(lines, 5, "sex", "Robot", schema)
    message = rejection(write(tmp_path, lines), schema)
    assert message.count("; ") == 1
    assert "column 'age' value 153 is above" in message
    assert "column 'sex' value 'Robot' is not a declared category in row 5 (line 5)" in message
    assert "more problem" not in message


def test_more_than_three_problems_are_counted(tmp_path, schema, sample_lines):
    lines = corrupt(sample_lines, 2, "age", "153", schema)
    lines = corrupt(lines, 3, "sex", "Robot", schema)
    lines = corrupt(lines, 4, "education", "?", schema)
    lines = corrupt(lines, 5, "fnlwgt", "many", schema)
    lines = corrupt(lines, 6, "race", "Martian", schema)
    message = rejection(write(tmp_path, lines), schema)
    # Columns are checked in schema order: age, fnlwgt, education are spelled out.
    assert "column 'age'" in message and "column 'fnlwgt'" in message
    assert "column 'education'" in message
    assert message.endswith("; and 2 more problems")
    lines = corrupt(lines, 6, "race", "White", schema)
    assert rejection(write(tmp_path, lines), schema).endswith("; and 1 more problem")


# --- rows and lines ---------------------------------------------------------------------------

def test_row_and_line_headerless(tmp_path, schema, sample_lines):
    path = write(tmp_path, corrupt(sample_lines, 5, "age", "abc", schema))
    assert "column 'age' value 'abc' is not a number in row 5 (line 5):" in rejection(path, schema)


def test_row_and_line_after_comment_line(tmp_path, schema, sample_lines):
    lines = ["|1x3 Cross validator"] + corrupt(sample_lines, 1, "age", "abc", schema)
    assert "in row 1 (line 2):" in rejection(write(tmp_path, lines), schema)
    lines = ["|1x3 Cross validator"] + corrupt(sample_lines, 5, "age", "abc", schema)
    assert "in row 5 (line 6):" in rejection(write(tmp_path, lines), schema)


def test_row_and_line_with_header_and_blank_lines(tmp_path, header_schema, sample_lines):
    lines = corrupt(sample_lines, 5, "age", "abc", header_schema)
    lines = [",".join(header_schema.names)] + lines[:2] + [""] + lines[2:]
    message = rejection(write(tmp_path, lines), header_schema)
    assert "in row 5 (line 7):" in message


def test_row_in_the_real_test_file(tmp_path, schema):
    with open(shared("adult/adult.test")) as f:
        lines = [next(f).rstrip("\n") for _ in range(20)]
    lines[1] = lines[1].replace("<=50K.", "<=60K.").replace(">50K.", ">60K.")
    message = rejection(write(tmp_path, lines, "adult.test"), schema)
    assert "column 'income' value" in message and "in row 1 (line 2):" in message


def test_parquet_rows_have_no_line(tmp_path, schema, sample_lines):
    raw = pd.DataFrame([fields(line) for line in sample_lines], columns=schema.names)
    raw.loc[4, "age"] = "153"
    path = tmp_path / "bad.parquet"
    raw.to_parquet(path)
    message = rejection(path, schema)
    assert "column 'age' value 153 is above the schema's maximum 90 in row 5:" in message
    assert "(line" not in message


# --- other kinds (booleans, dates) on a tiny hand-made file -----------------------------------

def test_boolean_and_date_columns(tmp_path):
    schema = schema_from_dict({"name": "t", "columns": [
        {"name": "flag", "kind": "boolean", "nullable": True},
        {"name": "day", "kind": "date", "min": "2020-01-01", "max": "2020-12-31"},
        {"name": "at", "kind": "datetime", "min": "2020-01-01T00:00:00",
         "max": "2020-12-31T23:59:59"},
    ]}, path="t.yaml")
    good = write(tmp_path, ["flag,day,at", "yes,2020-03-01,2020-03-01T10:00:00",
                            "F,2020-12-31,2020-12-31 23:00:00", ",2020-01-01,2020-01-01T00:00:00"])
    frame = ingest(good, schema).frame
    check_dtypes(frame, schema)
    assert frame["flag"].tolist() == [True, False, pd.NA]
    assert frame["day"].tolist() == [pd.Timestamp(d) for d in
                                     ("2020-03-01", "2020-12-31", "2020-01-01")]
    assert frame["at"][1] == pd.Timestamp("2020-12-31 23:00:00")
    bad = write(tmp_path, ["flag,day,at", "maybe,2021-01-01,2020-03-01T10:00:00",
                           "yes,2020-01-01,soon"], "bad.csv")
    message = rejection(bad, schema)
    assert "column 'flag' value 'maybe' is not a boolean in row 1 (line 2)" in message
    assert ("column 'day' value 2021-01-01 is above the schema's maximum 2020-12-31 in row 1 "
            "(line 2)") in message
    assert "column 'at' value 'soon' is not an ISO datetime in row 2 (line 3)" in message


def test_public_message_redacts_every_value(tmp_path, schema, sample_lines):
    lines = corrupt(sample_lines, 3, "age", "153", schema)
    lines = corrupt(lines, 4, "workclass", "Secret-employer", schema)
    path = write(tmp_path, lines)
    with pytest.raises(DataError) as caught:
        ingest(path, schema)
    assert "153" in str(caught.value) and "Secret-employer" in str(caught.value)
    public = caught.value.public
    assert "153" not in public and "Secret-employer" not in public
    assert "column 'age' value <redacted> is above the schema's maximum 90: " in public
    # nor where or how often: a count of rows is a counting query on the private data
    assert "row" not in public.replace("rows of", "") and "in all" not in public


# --- hostile input: every malformed file is one bounded line, and its public form quotes none
# of it. Each builder writes one file into a folder and returns it with the column it names
# (None where the problem is the file's); "SECRET123" is planted wherever a value can be.

MARK = "SECRET123"
TINY = schema_from_dict({"name": "tiny", "columns": [
    {"name": "age", "kind": "integer", "min": 0, "max": 120},
    {"name": "colour", "kind": "categorical", "categories": ["red", "green", "other"]},
    {"name": "score", "kind": "float", "min": 0, "max": 1, "nullable": True},
]}, path="tiny.yaml")
HEAD = "age,colour,score\n"
GOOD = HEAD + "30,red,0.5\n" * 5
Hostile = tuple[Path, str | None]


def _text(folder: Path, body: str | bytes, name: str = "in.csv") -> Path:
    path = folder / name
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    return path


def test_the_first_records_width_is_counted_as_pandas_counts_it(tmp_path):
    """The header's width is checked before pandas builds a frame of it (a frame of 100,000
    columns takes seconds only to be refused): counted by the csv module, quotes and
    embedded delimiters and line breaks as pandas reads them; pandas decides where the csv
    module cannot (a delimiter of several characters)."""
    from pipelines.ingest.readers import _first_record_width

    for first in ['age,colour,score', 'age,"col,our",score', '"a\nb",c', 'a', ',,,', '"x""y",z']:
        path = _text(tmp_path, first + "\n1,2,3\n")
        frame = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
        assert _first_record_width(path, TINY, 10**6) == frame.shape[1], first
    wide = dataclasses.replace(TINY, csv=CsvFormat(delimiter="||"))
    assert _first_record_width(_text(tmp_path, "a||b\n"), wide, 10**6) is None


def _parquet(folder: Path, columns: dict, name: str = "in.parquet") -> Path:
    path = folder / name
    pq.write_table(pa.table(columns), path)
    return path


def _good_parquet(folder: Path, name: str = "in.parquet", rows: int = 200) -> Path:
    return _parquet(folder, {"age": [i % 100 for i in range(rows)], "colour": ["red"] * rows,
                             "score": [0.5] * rows}, name)


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _row(age="30", colour="red", score="0.5") -> str:
    return f"{age},{colour},{score}\n"


def _inf_int(d: Path) -> Hostile:
    return _text(d, GOOD + _row(age="inf")), "age"


def _minus_inf_float(d: Path) -> Hostile:
    return _text(d, GOOD + _row(score="-inf")), "score"


def _infinity(d: Path) -> Hostile:
    return _text(d, GOOD + _row(score="Infinity")), "score"


def _nan_not_nullable(d: Path) -> Hostile:
    return _text(d, GOOD + _row(age="nan")), "age"


def _int_2_63(d: Path) -> Hostile:
    return _text(d, GOOD + _row(age="9223372036854775808")), "age"


def _int_huge(d: Path) -> Hostile:
    return _text(d, GOOD + _row(age="99999999999999999999999")), "age"


def _int_1e400(d: Path) -> Hostile:
    return _text(d, GOOD + _row(age="1" + "0" * 400)), "age"


def _nan_parquet(d: Path) -> Hostile:
    return _parquet(d, {"age": [30.0, float("nan")], "colour": ["red"] * 2,
                        "score": [0.5] * 2}), "age"


def _inf_parquet(d: Path) -> Hostile:
    return _parquet(d, {"age": [30, 31], "colour": ["red"] * 2,
                        "score": [0.5, float("inf")]}), "score"


def _inf_parquet_int(d: Path) -> Hostile:
    return _parquet(d, {"age": [30.0, -np.inf], "colour": ["red"] * 2,
                        "score": [0.5] * 2}), "age"


def _uint64_parquet(d: Path) -> Hostile:
    return _parquet(d, {"age": pa.array([30, 2**63], pa.uint64()), "colour": ["red"] * 2,
                        "score": [0.5] * 2}), "age"


def _gz_truncated(d: Path) -> Hostile:
    path = d / "in.csv.gz"
    path.write_bytes(gzip.compress((GOOD + _row(colour=MARK) * 2000).encode()))
    return _cut_in_half(path), None


def _gz_not_gzip(d: Path) -> Hostile:
    return _text(d, GOOD + _row(colour=MARK), "in.csv.gz"), None


def _zip_not_zip(d: Path) -> Hostile:
    return _text(d, GOOD + _row(colour=MARK), "in.csv.zip"), None


def _bz2_not_bz2(d: Path) -> Hostile:
    return _text(d, GOOD + _row(colour=MARK), "in.csv.bz2"), None


def _xz_not_xz(d: Path) -> Hostile:
    return _text(d, GOOD + _row(colour=MARK), "in.csv.xz"), None


def _bz2_truncated(d: Path) -> Hostile:
    return _cut_in_half(_text(d, bz2.compress((GOOD * 500).encode()), "in.csv.bz2")), None


def _xz_truncated(d: Path) -> Hostile:
    return _cut_in_half(_text(d, lzma.compress((GOOD * 500).encode()), "in.csv.xz")), None


def _zip_of_two(d: Path) -> Hostile:
    path = d / "in.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", GOOD)
        archive.writestr(f"{MARK}.csv", GOOD)
    return path, None


def _zstd(d: Path) -> Hostile:
    return _text(d, GOOD, "in.csv.zst"), None


def _parquet_truncated(d: Path) -> Hostile:
    return _cut_in_half(_good_parquet(d)), None


def _parquet_corrupt(d: Path) -> Hostile:
    path = _good_parquet(d)
    data = bytearray(path.read_bytes())
    data[4:len(data) // 2] = b"\xff" * (len(data) // 2 - 4)
    path.write_bytes(bytes(data))
    return path, None


def _parquet_garbage(d: Path) -> Hostile:
    return _text(d, b"PAR1" + os.urandom(200) + b"PAR1", "in.parquet"), None


def _duplicate_column(d: Path) -> Hostile:
    return _text(d, "age,colour,score,age\n" + _row() + "\n"), "age"


def _duplicate_after_strip(d: Path) -> Hostile:
    return _text(d, "age,colour, score ,score\n30,red,0.5,0.5\n"), "score"


def _duplicate_parquet(d: Path) -> Hostile:
    table = pa.Table.from_arrays([pa.array([30]), pa.array(["red"]), pa.array([0.5]),
                                  pa.array([31])], names=["age", "colour", "score", "age"])
    path = d / "in.parquet"
    pq.write_table(table, path)
    return path, "age"


def _wide_header(d: Path) -> Hostile:
    return _text(d, HEAD.strip() + "," + ",".join(f"{MARK}{i}" for i in range(100_000))
                 + "\n" + _row()), None


def _wide_parquet(d: Path) -> Hostile:
    return _parquet(d, {"age": [30], "colour": ["red"], "score": [0.5],
                        **{f"{MARK}{i}": [1] for i in range(10_001)}}), None


def _ten_mb_cell(d: Path) -> Hostile:
    return _text(d, GOOD + _row(colour=MARK * 1_200_000)), "colour"


def _long_number_cell(d: Path) -> Hostile:
    return _text(d, GOOD + _row(age=MARK + "9" * 100_000)), "age"


def _swallowed_rows(d: Path) -> Hostile:
    """A quote opened, and closed 100 rows later: one huge field."""
    return _text(d, GOOD + '30,"red' + "\n" + _row(colour=MARK) * 100 + '",0.5\n'), "colour"


def _unclosed_quote(d: Path) -> Hostile:
    return _text(d, GOOD + '30,"red,0.5\n' + _row(colour=MARK) * 100), None


def _no_header(d: Path) -> Hostile:
    return _text(d, _row(colour=MARK) + _row()), None


def _empty(d: Path) -> Hostile:
    return _text(d, b""), None


def _header_only(d: Path) -> Hostile:
    return _text(d, HEAD), None


def _blank_lines_only(d: Path) -> Hostile:
    return _text(d, "\n\n\n"), None


def _nul_byte(d: Path) -> Hostile:
    return _text(d, (GOOD + f"30,red\0{MARK},0.5\n").encode()), None


def _binary(d: Path) -> Hostile:
    return _text(d, bytes(range(256)) * 20 + MARK.encode()), None


def _utf16(d: Path) -> Hostile:
    return _text(d, (GOOD + _row(colour=MARK)).encode("utf-16")), None


def _latin1(d: Path) -> Hostile:
    return _text(d, (GOOD + _row(colour=MARK + "\xe9")).encode("latin-1")), None


def _parquet_named_csv(d: Path) -> Hostile:
    return _good_parquet(d, "in.csv"), None


def _gzip_named_csv(d: Path) -> Hostile:
    return _text(d, gzip.compress(GOOD.encode())), None


def _semicolons(d: Path) -> Hostile:
    return _text(d, GOOD.replace(",", ";") + f"30;{MARK};0.5\n"), None


def _directory(d: Path) -> Hostile:
    path = d / "in.csv"
    path.mkdir()
    return path, None


def _fifo(d: Path) -> Hostile:
    path = d / "in.csv"
    os.mkfifo(path)
    return path, None


def _extra_field(d: Path) -> Hostile:
    return _text(d, GOOD + f"30,red,0.5,{MARK}\n"), None


def _binary_parquet_column(d: Path) -> Hostile:
    return _parquet(d, {"age": pa.array([b"\xff\xfe" + MARK.encode()]), "colour": ["red"],
                        "score": [0.5]}), "age"


def _long_first_line(d: Path) -> Hostile:
    """No line break in the first 10 MiB: that is no header."""
    return _text(d, "age,colour,score," + MARK * 1_200_000 + "\n" + _row()), None


HOSTILE: list[Callable[[Path], Hostile]] = [
    _inf_int, _minus_inf_float, _infinity, _nan_not_nullable, _int_2_63, _int_huge, _int_1e400,
    _nan_parquet, _inf_parquet, _inf_parquet_int, _uint64_parquet, _gz_truncated, _gz_not_gzip,
    _zip_not_zip, _bz2_not_bz2, _xz_not_xz, _bz2_truncated, _xz_truncated, _zip_of_two, _zstd,
    _parquet_truncated, _parquet_corrupt, _parquet_garbage, _duplicate_column,
    _duplicate_after_strip, _duplicate_parquet, _wide_header, _wide_parquet, _ten_mb_cell,
    _long_number_cell, _swallowed_rows, _unclosed_quote, _no_header, _empty, _header_only,
    _blank_lines_only, _nul_byte, _binary, _utf16, _latin1, _parquet_named_csv,
    _gzip_named_csv, _semicolons, _directory, _fifo, _extra_field, _binary_parquet_column,
    _long_first_line,
]


CLIPPED = {_int_2_63, _int_huge, _uint64_parquet}


def check_refusal(error: DataError, path: Path, column: str | None) -> None:
    """One bounded line naming the file (and the column), and a public form quoting none of
    the file's values, rows or lines."""
    message = str(error)
    assert "\n" not in message and len(message) <= 400, message
    assert str(path) in message, message
    if column is not None:
        assert f"column '{column}'" in message, message
        assert f"column '{column}'" in error.public, error.public
    assert message.count(MARK) <= 7, message  # a quoted value is cut to 60 characters
    public = error.public
    assert "\n" not in public and len(public) <= 400, public
    assert MARK not in public and "SECRET" not in public, public
    assert not re.search(r"\b(row|line|position) \d", public), public


@pytest.mark.parametrize("build", HOSTILE, ids=lambda b: b.__name__.strip("_"))
@pytest.mark.parametrize("clip", [False, True], ids=["strict", "clip"])
def test_hostile_input_is_one_bounded_line(tmp_path, build, clip):
    path, column = build(tmp_path)
    if clip and build in CLIPPED:  # a finite number past the bound: --clip clips it
        assert ingest(path, TINY, clip=True).frame[column].max() == 120
        return
    with pytest.raises(DataError) as caught:
        ingest(path, TINY, clip=clip)
    check_refusal(caught.value, path, column)


def test_infinity_is_named_and_never_clipped(tmp_path):
    path, _ = _minus_inf_float(tmp_path)
    with pytest.raises(DataError) as caught:
        ingest(path, TINY, clip=True)
    assert (f"{path}: column 'score' holds an infinite value '-inf' in row 6 (line 7)"
            in str(caught.value))
    assert "holds an infinite value:" in caught.value.public


def test_header_problems_are_found_before_the_body_is_read(tmp_path):
    # the body would be refused too (a record of too many fields): the header's problem is
    # the one named
    path = _text(tmp_path, "age,colour,score,age\n" + "1,2,3,4,5,6,7\n")
    with pytest.raises(DataError, match="column 'age' appears 2 times in the header"):
        ingest(path, TINY)
    path = _text(tmp_path, ",".join(f"c{i}" for i in range(10_001)) + "\n1\n" * 10_002)
    with pytest.raises(DataError, match="its columns: 10,001 exceeds the limit of 10,000 "
                                        r"\(raise it with SYNTH_MAX_COLUMNS"):
        ingest(path, TINY)


def test_column_limit_and_malformed_limit_variable(tmp_path, monkeypatch):
    path = _text(tmp_path, GOOD)
    monkeypatch.setenv("SYNTH_MAX_COLUMNS", "2")
    with pytest.raises(DataError, match="3 exceeds the limit of 2"):
        ingest(path, TINY)
    monkeypatch.setenv("SYNTH_MAX_COLUMNS", "lots")
    with pytest.raises(DataError, match="SYNTH_MAX_COLUMNS='lots' is not a positive integer"):
        ingest(path, TINY)


def test_compression_bomb_is_refused_as_it_decompresses(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_files, "DECODED_FLOOR", 2**20)
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress((HEAD + "30,red," + "0" * 8 * 2**20 + "\n").encode()))
    with pytest.raises(DataError) as caught:
        ingest(path, TINY)
    assert "decompresses to more than 200 times its size" in str(caught.value)
    assert "SYNTH_MAX_COMPRESSION" in caught.value.public
    monkeypatch.setenv("SYNTH_MAX_COMPRESSION", "100000")  # raised: read, and judged
    with pytest.raises(DataError, match="column 'score' value"):
        ingest(path, TINY)


def test_compressed_csv_of_every_inferred_kind_is_read(tmp_path):
    want = ingest(_text(tmp_path, GOOD), TINY).frame
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress),
                             (".xz", lzma.compress)):
        path = _text(tmp_path, compress(GOOD.encode()), "in.csv" + suffix)
        pd.testing.assert_frame_equal(ingest(path, TINY).frame, want)
    path = tmp_path / "in.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("in.csv", GOOD)
    pd.testing.assert_frame_equal(ingest(path, TINY).frame, want)


def test_legitimate_oddities_are_read(tmp_path):
    want = ingest(_text(tmp_path, GOOD), TINY).frame
    for body in ("\ufeff" + GOOD, GOOD.replace("\n", "\r\n"), GOOD.replace("score", "score,"),
                 GOOD.replace("age,", "age,age.1,").replace("\n30,", "\n30,1,")):
        pd.testing.assert_frame_equal(ingest(_text(tmp_path, body), TINY).frame, want)


def test_integer_beyond_exact_float_within_wide_bounds(tmp_path):
    # a schema built in code, past the parser's own check of bounds: ingest holds anyway
    age = dataclasses.replace(TINY.columns[0], maximum=1e30)
    schema = dataclasses.replace(TINY, columns=(age, *TINY.columns[1:]))
    path = _text(tmp_path, GOOD + _row(age="99999999999999999999999"))
    with pytest.raises(DataError, match=r"column 'age' value 1e\+23 is too large to hold "
                                        r"exactly \(beyond 2\*\*53\) in row 6"):
        ingest(path, schema)


@pytest.mark.parametrize("folder", ["", "d" * 120])
def test_long_listings_name_problems_within_the_line(tmp_path, folder):
    (tmp_path / folder).mkdir(exist_ok=True)
    body = HEAD + _row(age="500") + _row(colour=MARK * 20) + _row(score="-3") + _row(age="x")
    path = _text(tmp_path / folder, body)
    with pytest.raises(DataError) as caught:
        ingest(path, TINY)
    message = str(caught.value)
    assert len(message) <= 400 and message.startswith(f"{path}: column 'age'")
    listed = message.count("; column '") + 1
    rest = int(re.search(r"; and (\d+) more problems?$", message).group(1))
    assert listed + rest == 4  # age twice (not a number, above), colour, score
    assert listed == (3 if not folder else 2)  # remedies give way to problems, then to room
