"""Large inputs (pipelines.large): read in batches, trained on codes, checked on samples.
The batched path must not drift from the in-memory one: with the same noise seed and no
holdout, both publish the very same rows."""

import logging

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.errors import DataError
from pipelines.ingest import ingest
from pipelines.large import load_large
from schemas import load_schema
from synth.encoding import CodedTable, TableEncoder
from synth.marginals import DPMarginals
from synth.privacy import PrivacyBudget
from tests.conftest import ROOT
from tests.test_ingest import HOSTILE, TINY, check_refusal

SCHEMA = ROOT / "schemas" / "adult.yaml"


@pytest.fixture(scope="module")
def adult(adult_sample, tmp_path_factory):
    """The 2,000-row Adult sample, checked, and as a Parquet file."""
    schema = load_schema(SCHEMA)
    frame = ingest(adult_sample, schema).frame
    path = tmp_path_factory.mktemp("large") / "adult.parquet"
    frame.to_parquet(path, index=False)
    return schema, frame, path


# What the tests below assert (the batched path equals the in-memory one; the checks run on
# its samples) does not depend on the mixture's size: a small one fits in seconds where the
# default (1,024 components) takes about a minute on 2,000 rows.
SMALL_MIXTURE = {"components": 64}
SMALL_RUN = ["--components", str(SMALL_MIXTURE["components"])]  # the same, for synth run


def test_dp_marginals_fits_codes_as_it_fits_the_frame(adult):
    schema, frame, _ = adult
    encoder = TableEncoder(schema, max_bins=20)
    fine = {encoder.blocks[i].column.name: g.encode(frame[encoder.blocks[i].column.name])
            for i, g in encoder.fine_grids().items()}
    coded = CodedTable(encoder.encode(frame).astype(np.uint16), tuple(encoder.sizes), fine)
    budget = PrivacyBudget(1.0, 1e-9)
    params = {"noise_seed": 3, "iterations": 20, **SMALL_MIXTURE}
    a = DPMarginals(**params).fit(frame, schema, budget).sample(500, seed=1)
    b = DPMarginals(**params).fit(coded, schema, budget).sample(500, seed=1)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="max_bins"):
        DPMarginals(max_bins=10, **params).fit(coded, schema, budget)


def test_load_large_holds_out_rows_and_samples_for_the_checks(adult):
    schema, frame, path = adult
    encoder = TableEncoder(schema, max_bins=20)
    data = load_large(path, schema, encoder, holdout=0.2, key=b"k" * 16, seed=0,
                      check_rows=1000)
    held = len(frame) - len(data.train)
    assert 250 < held < 550  # a secret coin per record, 20%
    assert 0 < len(data.holdout) < len(data.real) < len(frame) and len(data.real) < 1000 + 200
    assert list(data.real.columns) == list(frame.columns)
    assert data.real.dtypes.equals(frame.dtypes)
    assert data.train.codes.dtype == np.uint16 or data.train.codes.dtype == np.uint8
    assert set(data.train.fine) == {encoder.blocks[i].column.name
                                    for i in encoder.fine_grids()}


def test_a_large_input_publishes_the_rows_the_in_memory_path_does(adult, tmp_path, caplog):
    _, _, path = adult
    args = ["run", "--input", str(path), "--schema", str(SCHEMA), "--epsilon", "1",
            "--rows", "500", "--holdout", "0", "--noise-seed", "4", "--no-fidelity", "-q",
            "--ledger", str(tmp_path / "l.db"), *SMALL_RUN]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    with caplog.at_level(logging.INFO, logger="pipelines.run"):
        assert main([*args, "--out", str(tmp_path / "batched"),
                     "--batch-above-rows", "100"]) == 0
    assert "read in batches" in caplog.text
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "data.parquet"),
                                  pd.read_parquet(tmp_path / "batched" / "data.parquet"))


def test_a_large_input_runs_the_checks_on_its_samples(adult, tmp_path):
    _, _, path = adult
    out = tmp_path / "rel"
    assert main(["run", "--input", str(path), "--schema", str(SCHEMA), "--epsilon", "1",
                 "--rows", "800", "--batch-above-rows", "100", "--out", str(out), "-q",
                 "--ledger", str(tmp_path / "l.db"), "--fidelity-threshold", "pmse_max=0.25",
                 "--fidelity-threshold", "ks_max=0.3", "--fidelity-threshold", "tv_max=0.3",
                 "--fidelity-threshold", "association_max=0.2",
                 "--fidelity-threshold", "tstr_min=0.5", *SMALL_RUN]) == 0
    assert (out.with_name("rel.internal") / "leakage.json").exists()
    assert (out.with_name("rel.internal") / "fidelity.json").exists()


PARQUET_HOSTILE = [b for b in HOSTILE if "parquet" in b.__name__]


@pytest.mark.parametrize("build", PARQUET_HOSTILE, ids=lambda b: b.__name__.strip("_"))
def test_a_hostile_large_input_is_one_bounded_line(tmp_path, build):
    path, column = build(tmp_path)
    with pytest.raises(DataError) as caught:
        load_large(path, TINY, TableEncoder(TINY), holdout=0.2, key=b"k" * 16, seed=0)
    check_refusal(caught.value, path, column)


def test_the_checks_sample_is_drawn_batch_by_batch_as_at_once(adult):
    """The rows sampled for the checks are those one draw over the footer's rows picks."""
    schema, frame, path = adult
    encoder = TableEncoder(schema, max_bins=20)
    data = load_large(path, schema, encoder, holdout=0.0, key=b"k" * 16, seed=5,
                      check_rows=300)
    kept = np.random.default_rng(5).random(len(frame)) < 300 / len(frame)
    pd.testing.assert_frame_equal(data.real, frame[kept].reset_index(drop=True))
