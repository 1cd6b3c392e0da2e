"""DP-CTGAN: its privacy accounting against Opacus, the histogram noise, the generator's
isolation from real rows, and its samples against the schema."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from schemas import pandas_dtype
from synth.gan import DPCTGAN
from synth.ghost import supported_layers
from synth.privacy import (
    BudgetError,
    PrivacyBudget,
    calibrate_noise_after,
    epsilon_of_history,
    gaussian_noise_multiplier,
)
from tests.conftest import FrozenStep

TINY = {"epochs": 1, "batch_size": 200, "hidden": 32, "latent_dim": 8,
        "discriminator_hidden": 32, "noise_seed": 5}


@pytest.fixture(scope="module")
def fitted(adult):
    schema, frame = adult
    return DPCTGAN(**TINY).fit(frame, schema, PrivacyBudget(1.0, 1e-9))


@pytest.mark.parametrize("accountant,oracle", [("prv", PRVAccountant), ("rdp", RDPAccountant)])
def test_epsilon_is_a_fresh_opacus_accountant_over_the_full_history(adult, accountant, oracle):
    schema, frame = adult
    budget = PrivacyBudget(2.0, 1e-9)
    model = DPCTGAN(**TINY, accountant=accountant).fit(frame, schema, budget)
    report = model.privacy_
    histogram, count = report.measurements
    history = [(histogram["noise_multiplier"], 1.0, 1), (count["noise_multiplier"], 1.0, 1),
               (report.noise_multiplier, report.sampling_rate, report.steps)]
    assert model.history_ == history
    acct = oracle()
    acct.history = history
    with np.errstate(divide="ignore"):  # PRV's log(1 - q) at q = 1
        expected = acct.get_epsilon(delta=budget.delta)
    assert report.epsilon == pytest.approx(expected, rel=1e-9)
    assert model.epsilon_spent_ == report.epsilon <= budget.epsilon
    assert report.epsilon > 0.9 * budget.epsilon  # calibrated, not wastefully over-noised
    # the histogram and the count are paid for: DP-SGD alone would have spent less
    assert epsilon_of_history(history[2:], budget.delta, accountant) < report.epsilon
    # q and the divisor come from the noisy count of the rows, never from len(frame)
    assert report.sampling_rate == 200 / count["noisy_count"] != 200 / len(frame)
    assert report.expected_batch_size == pytest.approx(200)
    assert report.steps == math.ceil(1 / report.sampling_rate)


def test_histogram_noise_is_added_at_the_stated_scale(adult, fitted):
    schema, frame = adult
    histogram = fitted.privacy_.measurements[0]
    d = len(schema.columns)
    assert histogram["l2_sensitivity"] == pytest.approx(math.sqrt(d))
    assert histogram["noise_std"] == pytest.approx(histogram["noise_multiplier"] * math.sqrt(d))
    codes = fitted.encoder_.encode(frame)
    exact = [np.bincount(codes[:, i], minlength=s) for i, s in enumerate(fitted.encoder_.sizes)]
    z = np.concatenate([(noisy - e) / histogram["noise_std"]
                        for noisy, e in zip(fitted.noisy_counts_, exact)])
    assert len(z) == fitted.encoder_.width
    assert abs(z.mean()) < 4 / math.sqrt(len(z))
    assert 0.85 < z.std() < 1.15  # noise of the stated std, not a fraction of it
    other = DPCTGAN(**dict(TINY, noise_seed=6)).fit(frame, schema, PrivacyBudget(1.0, 1e-9))
    assert not np.allclose(other.noisy_counts_[0], fitted.noisy_counts_[0])
    # rounded: a float sum of integer count and noise would leak the count in its low bits
    assert all(np.array_equal(c, np.rint(c)) for c in fitted.noisy_counts_)


def test_only_the_discriminator_is_trained_by_dp_sgd(fitted):
    supported_layers(fitted.discriminator_)  # Linear layers only: clipped exactly
    kinds = {type(m) for m in fitted.discriminator_.modules()}
    assert torch.nn.BatchNorm1d not in kinds
    G = fitted.generator_
    # no BatchNorm in G: D's per-record loss pairs one fake row with each real record and the
    # batch size is private, so a fake row must not depend on how many others were drawn
    assert torch.nn.BatchNorm1d not in {type(m) for m in G.modules()}
    G.train()
    inputs = torch.randn(40, G.body[0].fc.in_features, generator=torch.Generator().manual_seed(0))
    z, cond = inputs[:, :fitted.latent_dim], inputs[:, fitted.latent_dim:]
    with torch.no_grad():
        torch.testing.assert_close(G(z, cond)[:3], G(z[:3], cond[:3]))
    G.eval()


def _generator_after_fit(frame, schema, frozen_discriminator: bool, monkeypatch):
    with monkeypatch.context() as m:
        if frozen_discriminator:
            m.setattr("synth.gan.DPStep", FrozenStep)
        model = DPCTGAN(**TINY).fit(frame, schema, PrivacyBudget(1.0, 1e-9))
    return model.generator_.state_dict()


def test_generator_reads_real_rows_only_through_the_discriminator(adult, monkeypatch):
    """Two tables with the same 1-way histograms (so the same noised histograms under one
    noise seed) but different rows: with D held fixed, G ends up identical, so G learnt
    nothing from the rows except through D; letting D learn makes them differ."""
    schema, frame = adult
    rng = np.random.default_rng(0)
    shuffled = pd.DataFrame({c: frame[c].to_numpy()[rng.permutation(len(frame))]
                             for c in frame.columns}).astype(frame.dtypes.to_dict())
    for frozen in (True, False):
        a, b = (_generator_after_fit(f, schema, frozen, monkeypatch) for f in (frame, shuffled))
        same = all(torch.equal(a[k], b[k]) for k in a)
        assert same == frozen


def test_sample_follows_the_schema_and_its_seed(adult, fitted):
    schema, _ = adult
    out = fitted.sample(500, seed=3)
    assert list(out.columns) == schema.names and len(out) == 500
    for column in schema.columns:
        assert out[column.name].dtype == pandas_dtype(column), column.name
        if column.is_numeric:
            assert out[column.name].dropna().between(column.minimum, column.maximum).all()
    pd.testing.assert_frame_equal(out, fitted.sample(500, seed=3))
    assert not out.equals(fitted.sample(500, seed=4))


def test_table_without_discrete_columns_is_unconditional(adult):
    schema, frame = adult
    numeric = tuple(c for c in schema.columns if c.is_numeric)
    schema = dataclasses.replace(schema, columns=numeric)
    model = DPCTGAN(**TINY).fit(frame[list(schema.names)], schema, PrivacyBudget(1.0, 1e-9))
    assert model.conditions_.width == 0
    assert model.privacy_.epsilon <= 1.0
    out = model.sample(100, seed=0)
    assert list(out.columns) == schema.names


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_calibration_composes_with_a_prior_release():
    prior = [(gaussian_noise_multiplier(0.3, 1e-6, "rdp"), 1.0, 1)]
    assert epsilon_of_history(prior, 1e-6, "rdp") <= 0.3
    sigma = calibrate_noise_after(PrivacyBudget(1.0, 1e-6), prior, 0.01, 500, "rdp")
    assert epsilon_of_history(prior + [(sigma, 0.01, 500)], 1e-6, "rdp") <= 1.0
    assert epsilon_of_history(prior + [(0.97 * sigma, 0.01, 500)], 1e-6, "rdp") > 1.0
    with pytest.raises(BudgetError, match="already spend"):
        calibrate_noise_after(PrivacyBudget(0.2, 1e-6), prior, 0.01, 500, "rdp")


def test_unseeded_histogram_noise_comes_from_the_csprng(adult, monkeypatch):
    """Without a noise_seed (a release), the noised counts (histograms and the record count)
    come from the OS CSPRNG, never from a seeded generator."""
    import synth.randomness as randomness

    calls = []
    real = randomness.secure_normal

    def spy(shape, std, device):
        calls.append((shape, std))
        return real(shape, std, device)

    monkeypatch.setattr(randomness, "secure_normal", spy)
    schema, frame = adult
    model = DPCTGAN(**dict(TINY, noise_seed=None)).fit(frame, schema, PrivacyBudget(1.0, 1e-9))
    discrete = [c for c in schema.columns if c.kind in ("categorical", "boolean")]
    assert len(calls) >= len(discrete) + 1 and all(std > 0 for _, std in calls)
    count = model.privacy_.measurements[1]
    assert ((1,), count["noise_std"]) in calls
