"""dp-merf: the image contract, its one Gaussian release (sensitivity, noise, accounting
against a fresh Opacus accountant), and a generator that reads real images only through it."""

import math

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from synth import randomness
from synth.image_merf import DPMERF
from synth.images import make_image_synthesizer
from synth.privacy import PrivacyBudget
from synth.randomness import PrivateRandom

TINY = {"features": 64, "steps": 30, "batch_per_class": 8, "width": 8, "latent_dim": 8,
        "noise_seed": 5, "device": "cpu", "accountant": "rdp"}


def _data(n=200, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            rng.integers(0, 4, n).astype(np.int64))


@pytest.fixture(scope="module")
def fitted():
    return DPMERF(**TINY).fit(*_data(), 4, PrivacyBudget(1.0, 1e-5))


def test_contract_params_samples_and_labels(fitted):
    model = make_image_synthesizer("dp-merf", steps=3)
    assert type(model)(**model.get_params()).get_params() == model.get_params()
    images, labels = fitted.sample(30, seed=1)
    assert images.shape == (30, 8, 8, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and len(np.unique(labels)) > 1
    asked = np.array([3, 0, 2])
    assert np.array_equal(fitted.sample(3, seed=1, labels=asked)[1], asked)
    a, _ = fitted.sample(10, seed=2, labels=np.zeros(10, dtype=np.int64))
    b, _ = fitted.sample(10, seed=2, labels=np.ones(10, dtype=np.int64))
    assert not np.array_equal(a, b)  # labels condition the images
    np.testing.assert_array_equal(fitted.sample(10, seed=4)[0], fitted.sample(10, seed=4)[0])
    with pytest.raises(ValueError, match="labels must be"):
        fitted.sample(2, labels=np.array([0, 4]))


@pytest.mark.parametrize("shape", [(28, 28, 1), (10, 13, 3)])
def test_other_sizes_and_rgb(shape):
    images, labels = _data(60, shape)
    out, _ = DPMERF(**TINY).fit(images, labels, 4, PrivacyBudget(1.0, 1e-5)).sample(4)
    assert out.shape == (4, *shape) and out.dtype == np.uint8


@pytest.mark.parametrize("accountant,oracle", [("prv", PRVAccountant), ("rdp", RDPAccountant)])
def test_epsilon_is_one_gaussian_release_by_a_fresh_opacus_accountant(accountant, oracle):
    budget = PrivacyBudget(2.0, 1e-5)
    model = DPMERF(**{**TINY, "accountant": accountant}).fit(*_data(), 4, budget)
    report = model.privacy_
    assert model.history_ == [(report.noise_multiplier, 1.0, 1)]
    assert (report.sampling_rate, report.steps, report.max_grad_norm) == (1.0, 1, 1.0)
    acct = oracle()
    acct.history = model.history_
    with np.errstate(divide="ignore"):  # PRV's log(1 - q) at q = 1
        expected = acct.get_epsilon(delta=budget.delta)
    assert report.epsilon == pytest.approx(expected, rel=1e-9)
    assert model.epsilon_spent_ == report.epsilon <= budget.epsilon
    assert report.epsilon > 0.9 * budget.epsilon  # calibrated, not wastefully over-noised


def test_each_record_adds_a_vector_of_norm_one_and_the_noise_is_as_stated(monkeypatch):
    """The claim behind the accounting: removing one record moves the released sum by exactly
    norm 1, and the noise added has the reported standard deviation."""
    images, labels = _data(300)
    seen = {}
    index_add = torch.Tensor.index_add_

    def spy(self, dim, index, source):  # the sums being built, chunk by chunk
        seen.setdefault("parts", []).append(source.T.clone())
        return index_add(self, dim, index, source)

    normal = PrivateRandom.normal

    def spy_noise(self, shape, std, *args, **kw):
        seen["noise"] = normal(self, shape, std, *args, **kw)
        seen["std"] = std
        return seen["noise"]

    monkeypatch.setattr(torch.Tensor, "index_add_", spy)
    monkeypatch.setattr(PrivateRandom, "normal", spy_noise)
    model = DPMERF(**{**TINY, "features": 2000, "steps": 0}).fit(
        images, labels, 4, PrivacyBudget(1.0, 1e-5))
    rows = torch.cat(seen["parts"])  # one row per record: its contribution
    assert rows.shape == (300, 2001)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(300, dtype=torch.float64))
    assert seen["std"] == model.privacy_.noise_multiplier  # sensitivity 1: std = sigma
    noise = seen["noise"].double()
    assert noise.std().item() == pytest.approx(seen["std"], rel=0.05)


def test_secure_noise_by_default_and_the_features_are_public(monkeypatch):
    """Without a noise seed the noise comes from the OS CSPRNG; the random features depend
    on ``seed`` only, never on the images."""
    calls = []
    secure = randomness.secure_normal
    monkeypatch.setattr(randomness, "secure_normal",
                        lambda *a: calls.append(a) or secure(*a))
    params = {**TINY, "noise_seed": None, "steps": 0}
    a = DPMERF(**params).fit(*_data(seed=1), 4, PrivacyBudget(1.0, 1e-5))
    b = DPMERF(**params).fit(*_data(seed=2), 4, PrivacyBudget(1.0, 1e-5))
    assert len(calls) == 2
    torch.testing.assert_close(a.frequencies_, b.frequencies_)
    scale = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) / (math.sqrt(64) / 3)
    torch.testing.assert_close(a.frequencies_, scale)


def test_the_generator_moves_toward_the_noised_class_means():
    """Post-processing works: the loss to the released embeddings falls (a bright class and a
    dark class end up apart)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    images = np.where(labels[:, None, None, None] == 0, 230, 20).astype(np.uint8) + \
        rng.integers(0, 20, (400, 8, 8, 1), dtype=np.uint8)
    model = DPMERF(**{**TINY, "steps": 150, "features": 256, "lr": 5e-3}).fit(
        images, labels, 2, PrivacyBudget(10.0, 1e-5))
    bright, _ = model.sample(50, labels=np.zeros(50, dtype=np.int64))
    dark, _ = model.sample(50, labels=np.ones(50, dtype=np.int64))
    assert bright.mean() > dark.mean() + 60


def test_bad_inputs_are_refused_before_training():
    images, labels = _data()
    with pytest.raises(ValueError, match="uint8"):
        DPMERF(**TINY).fit(images.astype(np.float32), labels, 4, PrivacyBudget(1.0))
    with pytest.raises(ValueError, match="even"):
        DPMERF(**{**TINY, "features": 63}).fit(images, labels, 4, PrivacyBudget(1.0))
