"""One contract test over every registered synthesizer (scikit-learn estimator style)."""

import inspect
import math

import pandas as pd
import pytest

from schemas import pandas_dtype
from synth.base import NotFittedError, make_synthesizer, synthesizer_names
from synth.privacy import PrivacyBudget

# Small settings per synthesizer, so the contract runs fast; a name missing here runs its defaults.
SMALL_PARAMS = {
    "dp-ctgan": {"epochs": 2, "batch_size": 200, "hidden": 32, "latent_dim": 8,
                 "discriminator_hidden": 32},
    "dp-marginals": {"rounds_per_column": 2, "components": 64, "iterations": 10},
    "dp-vae": {"epochs": 2, "batch_size": 200, "hidden": 32, "latent_dim": 8},
}


def small(name: str) -> dict:
    return SMALL_PARAMS.get(name, {})


@pytest.mark.parametrize("name", synthesizer_names())
def test_synthesizer_contract(name, adult):
    schema, frame = adult
    model = make_synthesizer(name, **small(name))
    # __init__ only stores parameters
    assert not [k for k in vars(model) if k.endswith("_")]
    assert set(inspect.signature(type(model)).parameters) == set(model.get_params())
    with pytest.raises(NotFittedError):
        model.sample(5)
    budget = PrivacyBudget(1.0, 1e-9)
    assert model.fit(frame, schema, budget) is model
    assert 0 < model.epsilon_spent_ == model.privacy_.epsilon <= budget.epsilon
    out = model.sample(300, seed=7)
    assert list(out.columns) == schema.names and len(out) == 300
    for column in schema.columns:
        assert out[column.name].dtype == pandas_dtype(column), column.name
        if column.is_numeric:
            values = out[column.name].dropna()
            assert values.between(column.minimum, column.maximum).all(), column.name
        if not column.nullable:
            assert out[column.name].notna().all(), column.name
    pd.testing.assert_frame_equal(out, model.sample(300, seed=7))  # seeded: reproducible
    assert not out.equals(model.sample(300, seed=8))


@pytest.mark.parametrize("name", synthesizer_names())
def test_private_randomness_is_fresh_unless_fixed(name, adult):
    """Without a noise_seed two fits differ (the noise cannot be regenerated from public
    parameters); a fixed noise_seed is for tests only."""
    schema, frame = adult
    runs = [make_synthesizer(name, seed=3, **small(name)).fit(frame, schema, PrivacyBudget(2.0))
            .sample(50, seed=0) for _ in range(2)]
    assert not runs[0].equals(runs[1])


@pytest.mark.parametrize("name", synthesizer_names())
def test_fit_is_deterministic_for_a_seed(name, adult):
    schema, frame = adult
    runs = [make_synthesizer(name, seed=3, noise_seed=4, **small(name))
            .fit(frame, schema, PrivacyBudget(2.0))
            .sample(50, seed=0) for _ in range(2)]
    pd.testing.assert_frame_equal(*runs)


DPSGD = ["dp-ctgan", "dp-vae"]


@pytest.mark.parametrize("name", DPSGD)
def test_dpsgd_reports_depend_on_the_noisy_count_not_on_n(name, adult):
    """Add/remove neighbours: N is private, so the report's sampling rate, steps and expected
    batch size are functions of the noisy count of the rows only. With all private
    randomness fixed, D and D minus one row differ only through that count (which moves by
    exactly the one row); the old q = batch_size / N published N exactly."""
    schema, frame = adult
    params = {**small(name), "epochs": 1, "noise_seed": 4, "accountant": "rdp"}
    reports = [make_synthesizer(name, **params).fit(data, schema, PrivacyBudget(1.0, 1e-9))
               .privacy_ for data in (frame, frame.iloc[:-1])]
    counts = []
    for n, report in zip((len(frame), len(frame) - 1), reports):
        count = report.measurements[-1]
        assert "number of records" in count["mechanism"] and count["noise_std"] > 0
        assert count["zcdp_rho"] > 0 and count["epsilon_alone"] > 0  # its cost, listed
        batch = params["batch_size"]
        assert report.sampling_rate == batch / max(1, count["noisy_count"])
        assert report.sampling_rate != batch / n
        assert report.steps == math.ceil(1 / report.sampling_rate)
        assert report.expected_batch_size == pytest.approx(batch)
        counts.append(count["noisy_count"])
    assert counts[0] - counts[1] == 1


def test_unknown_synthesizer_is_named():
    with pytest.raises(ValueError, match="unknown synthesizer 'nope'.*dp-vae"):
        make_synthesizer("nope")


def test_run_config_defaults_match_the_synthesizer_defaults():
    from pipelines.config import RunConfig

    config = RunConfig(input="x", schema_file="y", out="z", epsilon=1.0)
    defaults = make_synthesizer(config.synthesizer).get_params()
    for key, value in config.synthesizer_params().items():
        assert defaults[key] == value, key
