"""Per-sample clipping rules of synth.ghost against Opacus's per-sample gradients (oracle),
for every supported layer type."""

import pytest
import torch
from opacus import GradSampleModule
from torch import nn

from synth.ghost import GhostClipper


class ConvNet(nn.Module):  # an image discriminator in miniature: Conv2d + GroupNorm
    def __init__(self, kernel=3, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.GroupNorm(2, 6)
        self.conv2 = nn.Conv2d(6, 4, 3, stride=2, bias=False)
        self.head = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        h = torch.relu(self.norm(self.conv1(x)))
        h = torch.relu(self.conv2(h))
        return self.head(h.flatten(1))


class SeqNet(nn.Module):  # Embedding + LayerNorm + Linear over a sequence (batch, T, d)
    def __init__(self, padding_idx=None):
        super().__init__()
        self.emb = nn.Embedding(7, 5, padding_idx=padding_idx)
        self.norm = nn.LayerNorm(5)
        self.mix = nn.Linear(5, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens):
        h = torch.tanh(self.mix(self.norm(self.emb(tokens))))  # (batch, T, 8)
        return self.head(h.mean(1))


def _data(kind, n=6):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    if kind == "conv":
        return torch.randn(n, 2, 8, 8, generator=g), y
    return torch.randint(0, 7, (n, 9), generator=g), y  # repeated tokens within a record


@pytest.mark.parametrize("make,kind", [(ConvNet, "conv"), (lambda: ConvNet(5), "conv"),
                                       (SeqNet, "seq")])
@pytest.mark.parametrize("max_grad_norm", [0.01, 1e3])
def test_rules_match_opacus_per_sample_gradients(make, kind, max_grad_norm):
    x, y = _data(kind)
    loss = nn.CrossEntropyLoss(reduction="sum")
    torch.manual_seed(1)
    oracle = GradSampleModule(make(), loss_reduction="sum")
    loss(oracle(x), y).backward()
    grads = [p.grad_sample.reshape(len(x), -1) for p in oracle.parameters()]
    norms = torch.cat(grads, dim=1).norm(dim=1)
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    expected = [(gs * factor[:, None]).sum(0) for gs in grads]

    torch.manual_seed(1)
    model = make()
    clipper = GhostClipper(model, max_grad_norm)
    clipper.backward(loss(model(x), y))
    assert torch.allclose(clipper.per_sample_norms(), norms, rtol=1e-4, atol=1e-6)
    clipper.clipped_sum()
    clipper.close()
    for (name, p), e in zip(model.named_parameters(), expected):
        assert torch.allclose(p.grad.reshape(-1), e, rtol=1e-4, atol=1e-6), name


def test_ghost_and_instantiated_norms_agree():
    from synth.ghost import _matmul_norm_sq

    g = torch.Generator().manual_seed(0)
    a, gr = torch.randn(4, 10, 3, generator=g), torch.randn(4, 10, 2, generator=g)
    ghost = (a @ a.transpose(1, 2) * (gr @ gr.transpose(1, 2))).sum((1, 2))
    assert torch.allclose(_matmul_norm_sq(a, gr)[0], ghost, rtol=1e-5)  # instantiated
    assert torch.allclose(_matmul_norm_sq(a[:, :2], gr[:, :2])[0],
                          torch.einsum("bto,bti->boi", gr[:, :2], a[:, :2]).pow(2).sum((1, 2)),
                          rtol=1e-5)


def test_embedding_padding_rows_get_no_gradient_as_in_pytorch():
    """Opacus counts padding rows in per-sample norms; PyTorch gives them no gradient. The
    oracle here is the slow exact version: one backward per record."""
    x, y = _data("seq")
    loss = nn.CrossEntropyLoss(reduction="sum")
    torch.manual_seed(1)
    model = SeqNet(padding_idx=0)
    per_record = []
    for i in range(len(x)):
        model.zero_grad()
        loss(model(x[i:i + 1]), y[i:i + 1]).backward()
        per_record.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    per_record = torch.stack(per_record)
    norms = per_record.norm(dim=1)
    expected = (per_record * (0.5 / (norms + 1e-6)).clamp(max=1.0)[:, None]).sum(0)

    model.zero_grad()
    clipper = GhostClipper(model, 0.5)
    clipper.backward(loss(model(x), y))
    assert torch.allclose(clipper.per_sample_norms(), norms, rtol=1e-4, atol=1e-6)
    clipper.clipped_sum()
    clipper.close()
    got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
