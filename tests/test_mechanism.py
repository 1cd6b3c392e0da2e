"""Privacy checks that can fail: each check passes on the real mechanism and catches a
corpus of deliberately broken variants (noise halved or quartered, clipping off, fixed-size
batches accounted as Poisson, a vocabulary read from the rows). Plus a second, independent
accountant (Google's dp-accounting) against Opacus's."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from schemas import load_schema
from synth.dpsgd import DPSGDConfig, DPStep, plan, train_dp
from synth.encoding import TableEncoder
from synth.privacy import PrivacyBudget, epsilon_of
from synth.randomness import PrivateRandom
from tests.conftest import ROOT

SIGMA, CLIP, BATCH = 1.5, 2.0, 100


# --- the checks ---------------------------------------------------------------------------

def noise_std_ok(step_factory) -> bool:
    """Zero data gradients: every update is pure noise of std sigma*C/B per coordinate."""
    model = nn.Linear(50, 40, bias=False)
    nn.init.zeros_(model.weight)
    step = step_factory(model)
    grads = []
    for _ in range(20):
        step(lambda: model(torch.zeros(BATCH, 50)).sum(1) * 0.0)
        grads.append(model.weight.grad.detach().clone().reshape(-1))
    measured = torch.cat(grads).std().item()
    return abs(measured / (SIGMA * CLIP / BATCH) - 1) < 0.15


def clipping_ok(step_factory) -> bool:
    """One record with a huge gradient, no noise: the update has norm exactly C / B."""
    model = nn.Linear(5, 1)
    step = step_factory(model, sigma=0.0)
    step(lambda: model(torch.full((1, 5), 100.0)).sum(1) * 100.0)
    norm = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm().item()
    return abs(norm - CLIP / BATCH) < 1e-4 * CLIP / BATCH


def batch_sizes_binomial(sizes, n, q) -> bool:
    edges = np.quantile(stats.binom.rvs(n, q, size=20_000, random_state=0),
                        [0, .2, .4, .6, .8]).astype(int).tolist() + [n + 1]
    edges = sorted(set(edges))
    observed = np.histogram(sizes, bins=edges)[0]
    expected = np.diff(stats.binom.cdf(np.array(edges) - 1, n, q)) * len(sizes)
    return stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-3


def encoding_public(encoder_factory) -> bool:
    """The encoding of a fixed row must not depend on the other rows."""
    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    row = {c.name: (c.categories[0] if c.kind == "categorical" else int(c.minimum))
           for c in schema.columns}
    other = dict(row, workclass="Without-pay", occupation="Armed-Forces")
    frames = [pd.DataFrame([row] * 3), pd.DataFrame([row, other, other])]
    codes = []
    for f in frames:
        f = f.astype({c.name: ("category" if c.kind == "categorical" else "Int64")
                      for c in schema.columns})
        enc = encoder_factory(schema, f)
        codes.append((tuple(enc.sizes), tuple(enc.encode(f)[0])))
    return codes[0] == codes[1]


# --- the real mechanism and its broken variants ---------------------------------------------

def real_step(model, sigma=SIGMA):
    return DPStep(model, torch.optim.SGD(model.parameters(), lr=0.0), sigma, CLIP, BATCH,
                  PrivateRandom(0))


def noise_scaled(factor):
    def factory(model, sigma=SIGMA):
        return real_step(model, sigma * factor)  # the accountant is still told SIGMA
    return factory


def clipping_off(model, sigma=SIGMA):
    return DPStep(model, torch.optim.SGD(model.parameters(), lr=0.0), sigma, 1e12, BATCH,
                  PrivateRandom(0))


class VocabularyFromRows(TableEncoder):
    """Broken: drops declared categories that the rows do not use."""

    def __init__(self, schema, frame):
        from schemas import Column, Schema

        cols = [Column(**{**c.__dict__, "categories": tuple(
            k for k in c.categories if k in set(frame[c.name].astype(str)))})
            if c.kind == "categorical" else c for c in schema.columns]
        super().__init__(Schema(**{**schema.__dict__, "columns": tuple(cols)}))


def test_noise_check_passes_the_mechanism_and_catches_halved_and_quartered_noise():
    assert noise_std_ok(real_step)
    assert not noise_std_ok(noise_scaled(0.5))
    assert not noise_std_ok(noise_scaled(0.25))


def test_clipping_check_passes_the_mechanism_and_catches_clipping_off():
    assert clipping_ok(real_step)
    assert not clipping_ok(clipping_off)


def test_sampling_check_passes_poisson_and_catches_fixed_size_batches():
    n, config = 2000, DPSGDConfig(epochs=10, batch_size=50)
    sizes = []

    def loss(m, batch, g):
        sizes.append(len(batch))
        return m(batch).sum(dim=1)

    random = PrivateRandom(1)
    dp_plan = plan(n, PrivacyBudget(8.0, 1e-5), config, random)
    train_dp(nn.Linear(2, 1), loss, torch.zeros(n, 2), dp_plan, random)
    # Binomial(N, q) at the rate set from the noisy count: the true N is what is sampled
    q, steps = dp_plan.sampling_rate, dp_plan.steps
    assert batch_sizes_binomial(sizes, n, q)
    assert not batch_sizes_binomial([50] * steps, n, q)  # shuffling: fixed-size batches


def test_encoding_check_passes_the_schema_encoder_and_catches_a_vocabulary_from_rows():
    assert encoding_public(lambda schema, frame: TableEncoder(schema))
    assert not encoding_public(VocabularyFromRows)


@pytest.mark.parametrize("sigma,q,steps,delta", [
    (3.33984375, 0.031448665581523906, 318, 1e-9),  # the Adult demo's run
    (1.0, 0.05, 210, 1e-5),
    (1.1, 0.01, 10_000, 1e-5),
])
def test_opacus_accountants_agree_with_google_dp_accounting(sigma, q, steps, delta):
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import RdpAccountant

    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)),
                                    steps)
    pld = pld_privacy_accountant.PLDAccountant()
    pld.compose(event)
    google_rdp = RdpAccountant()
    google_rdp.compose(event)
    prv = epsilon_of(sigma, q, steps, delta, "prv")
    # PRV is never below the PLD value and within 1.5% of it (0.2% at delta = 1e-5)
    assert pld.get_epsilon(delta) <= prv <= 1.015 * pld.get_epsilon(delta)
    assert epsilon_of(sigma, q, steps, delta, "rdp") == pytest.approx(
        google_rdp.get_epsilon(delta), rel=1e-4)
