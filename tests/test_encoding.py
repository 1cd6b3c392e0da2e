"""Tests for synth.encoding: the schema-only table encoder, as properties on real Adult rows and
on a small hand-made schema covering every kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.ingest import ingest
from schemas import SCHEMA_DIR, load_schema, pandas_dtype, schema_from_dict
from synth.encoding import DEFAULT_MAX_BINS, TableEncoder
from tests.conftest import DATASETS, DEMO_ADULT

ADULT_DATA = DATASETS / "adult" / "adult.data"
if not ADULT_DATA.exists():  # the identical gzipped copy that ships in the repo
    ADULT_DATA = DEMO_ADULT


@pytest.fixture(scope="module")
def adult_schema():
    return load_schema(SCHEMA_DIR / "adult.yaml")


@pytest.fixture(scope="module")
def adult(adult_schema) -> pd.DataFrame:
    if not ADULT_DATA.exists():
        pytest.skip(f"{ADULT_DATA} is not available")
    return ingest(ADULT_DATA, adult_schema).frame


@pytest.fixture(scope="module")
def adult_encoder(adult_schema):
    return TableEncoder(adult_schema)


@pytest.fixture(scope="module")
def adult_codes(adult_encoder, adult):
    return adult_encoder.encode(adult)


@pytest.fixture(scope="module")
def adult_decoded(adult_encoder, adult_codes):
    return adult_encoder.decode(adult_codes, np.random.default_rng(0))


def same_values(a: pd.Series, b: pd.Series) -> bool:
    """Equal values and equal missing positions, whatever the dtypes."""
    return (a.isna().equals(b.isna())
            and a.dropna().astype(object).tolist() == b.dropna().astype(object).tolist())


def all_codes(encoder: TableEncoder, index: int, repeats: int) -> np.ndarray:
    """Codes (size * repeats, columns): every state of column ``index``, zeros elsewhere."""
    size = encoder.blocks[index].size
    codes = np.zeros((size * repeats, len(encoder.blocks)), dtype=np.int64)
    codes[:, index] = np.repeat(np.arange(size), repeats)
    return codes


def bin_range(block, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of bins ``code`` in the column's own units (undoing the log transform)."""
    lo, hi = block.edges[code], block.edges[code + 1]
    if block.column.transform == "log":
        lo, hi = np.expm1(lo), np.expm1(hi)
    return lo, hi


# --- codes -------------------------------------------------------------------------------------

def test_codes_shape_and_range(adult_codes, adult_encoder, adult):
    assert adult_codes.shape == (len(adult), len(adult_encoder.blocks))
    assert adult_codes.dtype == np.int64
    assert (adult_codes >= 0).all()
    assert (adult_codes < np.array(adult_encoder.sizes)).all()
    assert adult_encoder.width == sum(adult_encoder.sizes)


def test_missing_gets_the_last_state(adult_codes, adult_encoder, adult):
    for i, block in enumerate(adult_encoder.blocks):
        missing = adult[block.column.name].isna().to_numpy()
        if block.column.nullable:
            assert missing.any()
            assert (adult_codes[missing, i] == block.size - 1).all()
            assert (adult_codes[~missing, i] < block.size - 1).all()
        else:
            assert not missing.any()


def test_sizes_come_from_the_schema_only(adult_schema, adult):
    small = adult.iloc[:50]
    other = adult.iloc[1000:1100].reset_index(drop=True)
    first, second = TableEncoder(adult_schema), TableEncoder(adult_schema)
    first.encode(small)
    second.encode(other)
    assert first.sizes == second.sizes == TableEncoder(adult_schema).sizes
    expected = []
    for col in adult_schema.columns:
        if col.kind == "categorical":
            n = len(col.categories)
        elif col.maximum - col.minimum + 1 <= DEFAULT_MAX_BINS:
            n = int(col.maximum - col.minimum + 1)  # one state per integer value
        else:
            n = DEFAULT_MAX_BINS
        expected.append(n + int(col.nullable))
    assert first.sizes == expected
    assert dict(zip(adult_schema.names, first.sizes))["age"] == 90 - 17 + 1
    assert dict(zip(adult_schema.names, first.sizes))["workclass"] == 8 + 1


def test_a_row_encodes_the_same_whatever_the_other_rows(adult_encoder, adult, adult_codes):
    part = adult.iloc[500:700].reset_index(drop=True)
    np.testing.assert_array_equal(adult_encoder.encode(part), adult_codes[500:700])


def test_bins_and_max_bins_are_honoured(adult_schema):
    raw = adult_schema.to_dict()
    for col in raw["columns"]:
        if col["name"] == "fnlwgt":
            col["bins"] = 7
    encoder = TableEncoder(schema_from_dict(raw), max_bins=20)
    sizes = dict(zip(adult_schema.names, encoder.sizes))
    assert sizes["fnlwgt"] == 7
    assert sizes["capital-gain"] == 20
    assert sizes["age"] == 20  # 74 values no longer fit 20 bins: equal-width bins


# --- Adult round trip --------------------------------------------------------------------------

def test_adult_round_trip_exact_where_states_are_values(adult, adult_decoded, adult_encoder):
    exact = [b.column.name for b in adult_encoder.blocks
             if b.column.kind == "categorical" or b.integer_values]
    assert set(exact) >= {"age", "education-num", "hours-per-week", "workclass", "income"}
    for name in exact:
        assert same_values(adult_decoded[name], adult[name]), name


def test_adult_round_trip_keeps_missing_positions(adult, adult_decoded):
    pd.testing.assert_frame_equal(adult_decoded.isna(), adult.isna())


def test_decoded_values_use_schema_dtypes_and_bounds(adult_decoded, adult_schema):
    assert list(adult_decoded.columns) == adult_schema.names
    for col in adult_schema.columns:
        values = adult_decoded[col.name]
        assert values.dtype == pandas_dtype(col), col.name
        if col.is_numeric:
            assert values.min() >= col.minimum and values.max() <= col.maximum, col.name


def test_every_state_decodes_inside_the_bounds(adult_encoder, adult_schema):
    rng = np.random.default_rng(3)
    for i, col in enumerate(adult_schema.columns):
        if not col.is_numeric:
            continue
        decoded = adult_encoder.decode(all_codes(adult_encoder, i, 20), rng)[col.name]
        assert decoded.dtype == pd.Int64Dtype()
        assert decoded.notna().all()
        assert decoded.min() >= col.minimum and decoded.max() <= col.maximum, col.name


def test_log_columns_decode_near_their_bin(adult_encoder, adult_schema):
    """Integer log columns: the value drawn inside the bin, then rounded to a whole number."""
    rng = np.random.default_rng(4)
    for i, block in enumerate(adult_encoder.blocks):
        if block.column.transform != "log":
            continue
        codes = all_codes(adult_encoder, i, 20)
        decoded = adult_encoder.decode(codes, rng)[block.column.name].to_numpy("float64")
        lo, hi = bin_range(block, codes[:, i])
        assert (decoded >= np.floor(lo + 0.5)).all() and (decoded <= np.floor(hi + 0.5)).all()


def test_integer_log_columns_decode_inside_their_bin(adult_encoder, adult_codes,
                                                     adult_decoded):
    again = adult_encoder.encode(adult_decoded)
    np.testing.assert_array_equal(again, adult_codes)


def test_float_log_columns_decode_inside_their_bin():
    schema = load_schema(SCHEMA_DIR / "flchain.yaml")
    encoder = TableEncoder(schema)
    rng = np.random.default_rng(5)
    logs = [i for i, b in enumerate(encoder.blocks) if b.column.transform == "log"]
    assert [schema.names[i] for i in logs] == ["kappa", "lambda", "creatinine"]
    for i in logs:
        block = encoder.blocks[i]
        codes = all_codes(encoder, i, 30)
        decoded = encoder.decode(codes, rng)
        values = decoded[block.column.name]
        is_value = codes[:, i] < block.n_values
        lo, hi = bin_range(block, codes[is_value, i])
        got = values[is_value].to_numpy()
        assert (got >= lo - 1e-9).all() and (got <= hi + 1e-9).all()
        assert values[~is_value].isna().all()  # creatinine's missing state
        np.testing.assert_array_equal(encoder.encode(decoded)[:, i], codes[:, i])


def test_decode_is_deterministic_for_a_seed(adult_encoder, adult_codes):
    sample = adult_codes[:2000]
    a = adult_encoder.decode(sample, np.random.default_rng(11))
    b = adult_encoder.decode(sample, np.random.default_rng(11))
    pd.testing.assert_frame_equal(a, b)
    c = adult_encoder.decode(sample, np.random.default_rng(12))
    assert not a["fnlwgt"].equals(c["fnlwgt"])  # the seed is what drives the draws
    assert a["age"].equals(c["age"])  # exact states do not depend on it


# --- every kind, on a hand-made schema ---------------------------------------------------------

HAND = {
    "name": "hand",
    "columns": [
        {"name": "day", "kind": "date", "min": "2024-01-01", "max": "2024-03-31",
         "nullable": True},
        {"name": "era", "kind": "date", "min": "2000-01-01", "max": "2020-12-31"},
        {"name": "at", "kind": "datetime", "min": "2024-01-01T00:00:00",
         "max": "2024-12-31T23:59:59", "nullable": True},
        {"name": "x", "kind": "float", "min": -5, "max": 5, "nullable": True},
        {"name": "n", "kind": "integer", "min": -3, "max": 3},
        {"name": "flag", "kind": "boolean", "nullable": True},
        {"name": "ok", "kind": "boolean"},
        {"name": "color", "kind": "categorical", "categories": ["red", "green", "blue"],
         "nullable": True},
    ],
}


@pytest.fixture(scope="module")
def hand():
    schema = schema_from_dict(HAND)
    rng = np.random.default_rng(21)
    n = 400

    def holes(values):
        s = pd.Series(values)
        return s.mask(rng.random(n) < 0.15)

    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 91, n), unit="D")
    era = pd.Timestamp("2000-01-01") + pd.to_timedelta(rng.integers(0, 7671, n), unit="D")
    at = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 366 * 86_400, n),
                                                      unit="s")
    frame = pd.DataFrame({
        "day": holes(day), "era": era, "at": holes(at), "x": holes(rng.uniform(-5, 5, n)),
        "n": rng.integers(-3, 4, n), "flag": holes(rng.random(n) < 0.5),
        "ok": rng.random(n) < 0.5, "color": holes(rng.choice(["red", "green", "blue"], n)),
    })
    frame = frame.astype({c.name: pandas_dtype(c) for c in schema.columns})
    encoder = TableEncoder(schema)
    codes = encoder.encode(frame)
    decoded = encoder.decode(codes, np.random.default_rng(22))
    return schema, encoder, frame, codes, decoded


def test_hand_sizes(hand):
    schema, encoder, *_ = hand
    assert dict(zip(schema.names, encoder.sizes)) == {
        "day": 91 + 1, "era": 100, "at": 100 + 1, "x": 100 + 1, "n": 7, "flag": 3, "ok": 2,
        "color": 4}


def test_hand_round_trip_dtypes_and_missing(hand):
    schema, _, frame, _, decoded = hand
    for col in schema.columns:
        assert decoded[col.name].dtype == pandas_dtype(col), col.name
    pd.testing.assert_frame_equal(decoded.isna(), frame.isna())
    assert frame.isna().any().sum() == 5  # the nullable columns do hold some missing values


def test_hand_exact_kinds(hand):
    _, _, frame, _, decoded = hand
    for name in ("day", "n", "flag", "ok", "color"):
        assert same_values(decoded[name], frame[name]), name


def test_hand_dates_within_a_day(hand):
    schema, encoder, frame, codes, decoded = hand
    assert (decoded["day"] == frame["day"]).sum() == frame["day"].notna().sum()
    # "era" spans 7,671 days in 100 bins: a decoded date lies in its bin, at day resolution.
    block = encoder.blocks[schema.names.index("era")]
    lo, hi = bin_range(block, codes[:, 1])
    days = decoded["era"].to_numpy("datetime64[D]").astype("int64")
    assert (days >= np.floor(lo)).all() and (days < hi).all()
    error = (decoded["era"] - frame["era"]).abs()
    assert error.max() <= pd.Timedelta(days=np.ceil(7671 / 100))


def test_hand_datetimes_within_their_bin(hand):
    schema, encoder, frame, codes, decoded = hand
    i = schema.names.index("at")
    block = encoder.blocks[i]
    present = frame["at"].notna().to_numpy()
    lo, hi = bin_range(block, codes[present, i])
    seconds = decoded["at"][present].to_numpy("datetime64[s]").astype("int64")
    assert (seconds >= np.floor(lo)).all() and (seconds < hi).all()
    width = pd.Timedelta(seconds=float(block.edges[1] - block.edges[0]))
    assert (decoded["at"] - frame["at"]).abs().max() <= width


def test_hand_floats_within_their_bin(hand):
    schema, encoder, frame, codes, decoded = hand
    i = schema.names.index("x")
    present = frame["x"].notna().to_numpy()
    lo, hi = bin_range(encoder.blocks[i], codes[present, i])
    got = decoded["x"][present].to_numpy()
    assert (got >= lo).all() and (got <= hi).all()
    assert np.abs(got - frame["x"][present].to_numpy()).max() <= 10 / 100
    np.testing.assert_array_equal(encoder.encode(decoded)[:, i], codes[:, i])


def test_hand_decode_is_deterministic(hand):
    _, encoder, _, codes, decoded = hand
    pd.testing.assert_frame_equal(encoder.decode(codes, np.random.default_rng(22)), decoded)


def test_out_of_bound_values_go_to_the_end_bins(hand):
    schema, encoder, frame, _, _ = hand
    edge = frame.iloc[:2].copy()
    edge["x"] = [-50.0, 50.0]
    edge["n"] = pd.array([-10, 10], dtype="Int64")
    codes = encoder.encode(edge)
    assert codes[:, schema.names.index("x")].tolist() == [0, 99]
    assert codes[:, schema.names.index("n")].tolist() == [0, 6]
