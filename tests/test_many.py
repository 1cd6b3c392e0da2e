"""Many DP-SGD fits as one stacked network (synth.many): the oracle is K sequential
``train_dp`` runs with the same seeds, budgets and settings."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from synth.dpsgd import DPSGDConfig, plan, train_dp
from synth.ghost import GhostClipper
from synth.many import train_dp_many
from synth.privacy import PrivacyBudget
from synth.randomness import PrivateRandom
from synth.stacked import StackedLinear, stack, unstack


def mlp(seed: int, d: int = 6) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 1))


def loss(module, batch, _generator):
    """Per-record logistic loss; the same code serves (B, d+1) and (K, B, d+1) batches."""
    return F.binary_cross_entropy_with_logits(module(batch[..., :-1])[..., 0], batch[..., -1],
                                              reduction="none")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 6, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(400, generator=g)) > 0).float()
    return torch.cat([x, y[:, None]], 1)


GRID = [  # (noise seed, epsilon, epochs, clipping bound): budgets, steps and bounds differ
    (11, 1.0, 2, 1.0),
    (12, 4.0, 3, 0.5),
    (13, 20.0, 2, 2.0),
]


def plans(n: int, seeds):
    out = []
    for seed, epsilon, epochs, clip in GRID:
        random = PrivateRandom(seeds(seed))
        config = DPSGDConfig(epochs=epochs, batch_size=64, max_grad_norm=clip, lr=5e-3,
                             accountant="rdp")
        out.append((plan(n, PrivacyBudget(epsilon, 1e-6), config, random), random))
    return out


def test_a_stacked_grid_trains_each_model_as_its_own_sequential_fit(data):
    alone = [mlp(k) for k in range(len(GRID))]
    together = [copy.deepcopy(m) for m in alone]
    sequential = [train_dp(m, loss, data, p, r)
                  for m, (p, r) in zip(alone, plans(len(data), lambda s: s))]
    grid = plans(len(data), lambda s: s)
    assert len({p.steps for p, _ in grid}) > 1  # one model stops before the others
    steps = []
    batched = train_dp_many(together, loss, data, [p for p, _ in grid], [r for _, r in grid],
                            progress=lambda done, total: steps.append((done, total)))
    assert steps[-1][0] == steps[-1][1] == max(p.steps for p, _ in grid)
    for a, b in zip(alone, together):
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, atol=2e-5, rtol=1e-4)
    assert batched == sequential  # the same plans, spends and reports
    assert all(not m.training for m in together)


def test_each_models_noise_comes_from_its_own_randomness(data):
    """Another seed for one model changes that model only (up to float rounding: its other
    Poisson batches change the padded batch, so the matmuls may sum in another order)."""
    grid = plans(len(data), lambda s: s)
    other = plans(len(data), lambda s: s + 100 if s == 12 else s)
    first, second = [mlp(k) for k in range(3)], [mlp(k) for k in range(3)]
    train_dp_many(first, loss, data, [p for p, _ in grid], [r for _, r in grid])
    train_dp_many(second, loss, data, [p for p, _ in other], [r for _, r in other])
    moved = [max(float((a - b).abs().max()) for a, b in zip(x.parameters(), y.parameters()))
             for x, y in zip(first, second)]
    assert moved[0] < 1e-5 and moved[2] < 1e-5 and moved[1] > 1e-2, moved


def test_padding_rows_and_other_models_add_nothing_to_a_models_gradient():
    """Clipped sums of a stacked layer, by (model, row), against each model's own layer."""
    torch.manual_seed(0)
    layers = [nn.Linear(5, 3) for _ in range(2)]
    net = stack([nn.Sequential(m) for m in layers])
    x = torch.randn(2, 4, 5)
    weight = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])  # model 0: 3 rows, model 1: 2
    clipper = GhostClipper(net, torch.tensor([[0.5], [0.5]]))
    clipper.backward(net(x).pow(2).sum())
    clipper.clipped_sum(weight)
    for k, m in enumerate(layers):
        rows = x[k, weight[k].bool()]
        one = GhostClipper(m, 0.5)
        one.backward(m(rows).pow(2).sum())
        one.clipped_sum()
        torch.testing.assert_close(net[0].weight.grad[k], m.weight.grad)
        torch.testing.assert_close(net[0].bias.grad[k], m.bias.grad)
        one.close()
    clipper.close()


def test_stack_and_unstack_round_trip_and_refuse_what_they_cannot_stack():
    nets = [mlp(k) for k in range(2)]
    stacked = stack(nets)
    assert isinstance(stacked[0], StackedLinear) and stacked[0].weight.shape == (2, 16, 6)
    x = torch.randn(2, 5, 6)
    for k, m in enumerate(nets):
        torch.testing.assert_close(stacked(x)[k], m(x[k]))
    with torch.no_grad():
        stacked[0].weight.add_(1.0)
    unstack(stacked, nets)
    torch.testing.assert_close(nets[1][0].weight, stacked[0].weight[1])
    with pytest.raises(TypeError, match="nn.Sequential"):
        stack([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="Conv2d"):
        stack([nn.Sequential(nn.Conv2d(1, 1, 3))])
    with pytest.raises(TypeError, match="differ"):
        stack([mlp(0, d=6), mlp(0, d=7)])
    with pytest.raises(TypeError, match="bias"):
        stack([nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2, bias=False))])


def test_models_trained_together_share_one_learning_rate(data):
    (p0, r0), (p1, r1) = plans(len(data), lambda s: s)[:2]
    p1 = type(p1)(**{**p1.__dict__, "config": DPSGDConfig(lr=1e-2)})
    with pytest.raises(ValueError, match="learning rate"):
        train_dp_many([mlp(0), mlp(1)], loss, data, [p0, p1], [r0, r1])
    with pytest.raises(ValueError, match="one plan"):
        train_dp_many([mlp(0)], loss, data, [p0, p1], [r0, r1])
