"""The private randomness of a fit (synth.randomness): a 128-bit key, from the OS unless a
test fixes the seed, and every bit of a fixed seed counts (torch's CPU generator keeps 32)."""

import pytest
import torch
from scipy import stats
from torch import nn

from synth.dpsgd import DPSGDConfig, plan, train_dp
from synth.privacy import PrivacyBudget
from synth.randomness import KEY_BITS, PrivateRandom

S = 12345
HIGH_BITS = (S, S + 2**40, S + 2**62)  # equal in their low 32 bits


def _stream(random: PrivateRandom) -> tuple:
    return (random.normal((64,), 1.0).numpy().tobytes(),
            random.mask(256, 0.5).numpy().tobytes())


def test_torch_cpu_generator_keeps_only_32_bits_of_its_seed():
    """Why the private randomness left torch's generator: these seeds collide there."""
    draws = [torch.rand(8, generator=torch.Generator().manual_seed(s)) for s in HIGH_BITS]
    assert all(torch.equal(draws[0], d) for d in draws[1:])


def test_seeds_that_differ_only_in_high_bits_give_different_streams():
    streams = [_stream(PrivateRandom(s)) for s in HIGH_BITS]
    assert len({s[0] for s in streams}) == len({s[1] for s in streams}) == 3


def test_a_fixed_seed_reproduces_and_no_seed_is_fresh():
    assert _stream(PrivateRandom(S)) == _stream(PrivateRandom(S))
    assert _stream(PrivateRandom()) != _stream(PrivateRandom())
    assert PrivateRandom(S).fixed and not PrivateRandom().fixed


def test_the_secret_state_is_at_least_128_bits():
    assert KEY_BITS >= 128
    assert PrivateRandom().key_bits >= 128 and PrivateRandom(S).key_bits >= 128


def test_reseed_gives_a_fresh_stream_reproducible_only_for_a_fixed_seed():
    a, b = PrivateRandom(S), PrivateRandom(S)
    first = _stream(a)
    a.reseed(3)
    b.reseed(3)
    assert _stream(a) == _stream(b) != first
    c = PrivateRandom(S)
    c.reseed(4)
    assert _stream(c) != _stream(b)
    d, e = PrivateRandom(), PrivateRandom()
    d.reseed(3)
    e.reseed(3)
    assert _stream(d) != _stream(e)


def test_normal_and_mask_have_the_stated_distributions_on_the_device():
    random = PrivateRandom(S)
    z = random.normal((200, 1000), 2.0)
    assert z.shape == (200, 1000) and z.dtype == torch.float32
    assert abs(z.mean().item()) < 0.03 and z.std().item() == pytest.approx(2.0, rel=0.01)
    assert stats.kstest(z.flatten().numpy() / 2.0, "norm").pvalue > 1e-3
    m = random.mask(100_000, 0.03, "cpu")
    assert m.dtype == torch.bool and m.shape == (100_000,)
    assert abs(m.float().mean().item() - 0.03) < 0.002
    assert random.mask(1000, 1.0).all() and not random.mask(1000, 0.0).any()
    secure = random.normal((50_000,), 3.0, secure=True)
    assert secure.dtype == torch.float32 and secure.std().item() == pytest.approx(3.0, rel=0.03)


def test_the_torch_generator_follows_the_seed():
    a = torch.rand(4, generator=PrivateRandom(S).torch_generator())
    b = torch.rand(4, generator=PrivateRandom(S).torch_generator())
    c = torch.rand(4, generator=PrivateRandom(S + 2**40).torch_generator())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_negative_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        PrivateRandom(-1)


def _fit(noise_seed):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    data = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    budget = PrivacyBudget(4.0, 1e-5)
    config = DPSGDConfig(epochs=1, batch_size=20, accountant="rdp")  # fast calibration
    random = PrivateRandom(noise_seed)
    train_dp(model, lambda m, b, g: m(b).pow(2).sum(1), data,
             plan(len(data), budget, config, random), random)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_a_fit_is_reproduced_by_its_noise_seed_and_fresh_without_one():
    assert torch.equal(_fit(S), _fit(S))
    assert not torch.equal(_fit(S), _fit(S + 2**40))  # the same seed to torch's generator
    assert not torch.equal(_fit(None), _fit(None))

