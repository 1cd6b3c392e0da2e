"""DP-SGD for a grid of fits at once: K models (seeds, budgets) trained as one network.

Each model k is its own DP-SGD fit, run exactly as ``synth.dpsgd.train_dp`` runs it: its
own plan (noisy count, sampling rate, steps, noise multiplier, clipping bound), its own
``PrivateRandom`` (Poisson masks, noise), its own accountant history and privacy report.
Only the arithmetic is shared. Each step gathers the K Poisson batches into one
(K, B, ...) tensor, B the largest of them (the rows past a model's own batch are padding:
zeros, weighted 0), evaluates the stacked network (``synth.stacked``) once, clips every (model,
record) gradient by the ghost rules, and adds model k's noise, drawn from its own
randomness, to its slice before dividing by its own expected batch size. A model whose
plan has fewer steps than the longest is restored to its weights after its last step.

Nothing crosses between models: model k's update reads only its own batch, so each fit's
guarantee is the one its plan states (fits of the same data compose, as any K releases
do; that is the ledger's business). The tests hold the result to K sequential
``train_dp`` runs with the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from synth.dpsgd import DPSGDPlan, Progress
from synth.ghost import GhostClipper
from synth.privacy import PrivacyReport
from synth.randomness import PrivateRandom
from synth.stacked import stack, unstack

# per_sample_loss(stacked module, batch (K, B, ...), one generator per model) -> (K, B)
ManyLossFn = Callable[[nn.Module, torch.Tensor, Sequence[torch.Generator]], torch.Tensor]


def _gather(masks: list[torch.Tensor | None], device: torch.device):
    """(K, B) row indices of each model's batch (row 0 where padding) and their weights
    (1 for a sampled row, 0 for padding)."""
    rows = [torch.empty(0, dtype=torch.long, device=device) if m is None
            else torch.nonzero(m)[:, 0] for m in masks]
    width = max(len(r) for r in rows)
    index = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    weight = torch.zeros(len(rows), width, device=device)
    for k, r in enumerate(rows):
        index[k, :len(r)] = r
        weight[k, :len(r)] = 1.0
    return index, weight


def train_dp_many(modules: Sequence[nn.Module], per_sample_loss: ManyLossFn,
                  data: torch.Tensor, plans: Sequence[DPSGDPlan],
                  randoms: Sequence[PrivateRandom], progress: Progress | None = None
                  ) -> list[PrivacyReport]:
    """Trains ``modules`` (K networks of one shape, see ``synth.stacked.stack``) in place on
    ``data``, model k under DP-SGD as ``plans[k]`` says with ``randoms[k]``, and returns
    each fit's privacy report.

    Args:
        modules: the K networks; their weights are the starting point and the result.
        per_sample_loss: the loss of each (model, record) of a (K, B, ...) batch, (K, B).
        data: the encoded private records, shape (N, ...), on the training device.
        plans: one DP-SGD plan per model (``synth.dpsgd.plan``); the learning rate must be
            the same for all (one Adam over the stacked weights).
        randoms: one private randomness per model.
        progress: called after each step of the longest plan.

    Raises:
        ValueError: lengths differ or the learning rates do.
    """
    k_models = len(modules)
    if not k_models or len(plans) != k_models or len(randoms) != k_models:
        raise ValueError("one plan and one PrivateRandom per model are needed")
    if len({p.config.lr for p in plans}) != 1:
        raise ValueError("models trained together share one learning rate")
    device = data.device
    net = stack(modules).to(device)
    params = list(net.parameters())
    sizes = [p[0].numel() for p in params]  # one model's share of each parameter
    optimizer = torch.optim.Adam(params, lr=plans[0].config.lr)
    clip = torch.tensor([[p.config.max_grad_norm] for p in plans], device=device)
    clipper = GhostClipper(net, clip)
    divisor = torch.tensor([p.expected_batch_size for p in plans], device=device)
    generators = [r.torch_generator(device) for r in randoms]  # as train_dp draws its own
    steps = [p.steps for p in plans]
    longest = max(steps)
    final: dict[int, list[torch.Tensor]] = {}
    n = len(data)  # only the sampling reads it
    net.train()
    try:
        for step in range(longest):
            live = [step < s for s in steps]
            masks = [r.mask(n, p.sampling_rate, device) if on else None
                     for r, p, on in zip(randoms, plans, live)]
            optimizer.zero_grad(set_to_none=True)
            index, weight = _gather(masks, device)
            if index.shape[1]:
                batch = data[index]
                batch[weight == 0] = 0  # padding holds zeros, not a record
                clipper.backward(per_sample_loss(net, batch, generators).sum())
                clipper.clipped_sum(weight)
            noise = [r.normal((sum(sizes),), p.noise_multiplier * p.config.max_grad_norm,
                              device, secure=p.config.secure_noise).split(sizes) if on
                     else [torch.zeros(s, device=device) for s in sizes]
                     for r, p, on in zip(randoms, plans, live)]
            for j, p in enumerate(params):
                z = torch.stack([draws[j].view_as(p[0]) for draws in noise])
                clipped = p.grad if p.grad is not None else torch.zeros_like(p)
                p.grad = (clipped + z) / divisor.view(-1, *([1] * (p.dim() - 1)))
            optimizer.step()
            for k, s in enumerate(steps):
                if s == step + 1 and s < longest:
                    final[k] = [p[k].detach().clone() for p in params]
            if progress is not None:
                progress(step + 1, longest)
        with torch.no_grad():
            for k, weights in final.items():
                for p, w in zip(params, weights):
                    p[k].copy_(w)
    finally:
        clipper.close()
        optimizer.zero_grad(set_to_none=True)
    unstack(net, modules)
    for m in modules:
        m.eval()
    return [p.report(p.epsilon()) for p in plans]
