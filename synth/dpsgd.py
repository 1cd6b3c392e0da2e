"""The DP-SGD training loop: Poisson sampling, per-sample clipping, Gaussian noise, accounting.

Reads like Opacus's optimizer step: sample, clip, noise, scale, account.

* Sampling: each step keeps every record independently with probability q, drawn from the
  fit's ``PrivateRandom`` (``synth.randomness``), so batch sizes follow Binomial(N, q) as the
  accountant assumes; an empty batch still takes a noise-only step.
* Clipping: exact per-sample gradient norms without materialising a per-sample gradient
  for every parameter (``synth.ghost``): for a Linear layer the per-sample weight gradient
  is g_i a_i^T, so its norm is ||g_i|| ||a_i||, and the clipped sum is one reweighted matmul,
  (c * g)^T a; convolutions, embeddings and normalisation layers have rules of their own.
  Opacus's ``GradSampleModule`` is the oracle in the tests.
* Noise and accounting: Gaussian noise of std sigma * C on the clipped sum, from the fit's
  ``PrivateRandom`` (or the OS CSPRNG with ``secure_noise``), divided by the expected batch
  size; sigma is calibrated, and epsilon computed, by Opacus's accountant from
  exactly the (sigma, q, steps) history executed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from synth.checkpoint import Resumable
from synth.ghost import GhostClipper
from synth.privacy import (
    History,
    PrivacyBudget,
    PrivacyReport,
    calibrate_noise,
    calibrate_noise_after,
)
from synth.randomness import PrivateRandom

# per_sample_loss(module, batch, generator) -> (batch,) losses
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]
Progress = Callable[[int, int], None]  # (steps done, total steps)


@dataclass(frozen=True)
class DPSGDConfig:
    """Hyper-parameters of a DP-SGD run.

    Attributes:
        epochs: passes over the data, in expectation; steps = ceil(epochs / q).
        batch_size: expected batch size; the sampling rate is q = batch_size / N.
        max_grad_norm: per-sample clipping bound C.
        lr: Adam learning rate.
        accountant: "prv" (tighter) or "rdp".
        secure_noise: draw DP noise from the OS CSPRNG (slower; see ``secure_normal``).
    """

    epochs: int = 10
    batch_size: int = 512
    max_grad_norm: float = 1.0
    lr: float = 1e-3
    accountant: str = "prv"
    secure_noise: bool = False

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.max_grad_norm <= 0 or self.lr <= 0:
            raise ValueError(f"invalid DP-SGD settings: {self}")


def plan(n_records: int, config: DPSGDConfig) -> tuple[float, int]:
    """Sampling rate and number of steps for a data set of ``n_records``."""
    q = min(1.0, config.batch_size / n_records)
    return q, max(1, math.ceil(config.epochs / q))


class DPStep:
    """One DP-SGD update: clip each record's gradient, sum, add noise, scale, step.

    Args:
        module: the model (parameters in nn.Linear layers only).
        optimizer: any torch optimizer over the module's parameters.
        noise_multiplier: sigma; the noise std on the clipped sum is sigma * max_grad_norm.
        max_grad_norm: per-sample clipping bound C.
        expected_batch_size: the divisor of the noised sum (q * N under Poisson sampling).
        random: the fit's private randomness, source of the noise.
        secure_noise: draw the noise from the OS CSPRNG (``secure_normal``) instead.
        rows_per_record: consecutive rows of the module's batch that form one record (one
            clipped term), e.g. 2 for a GAN discriminator's (real, fake) pairs.
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer,
                 noise_multiplier: float, max_grad_norm: float, expected_batch_size: float,
                 random: PrivateRandom, secure_noise: bool = False,
                 rows_per_record: int = 1):
        if isinstance(random, torch.Generator):
            # bench/dp_step.py still hands the engine a torch generator: a stream keyed
            # from its seed keeps the benchmark running; no synthesizer takes this path
            warnings.warn("DPStep takes a synth.randomness.PrivateRandom; a torch.Generator "
                          "is keyed from its seed, for benchmarks only", DeprecationWarning,
                          stacklevel=2)
            random = PrivateRandom(random.initial_seed())
        self.secure_noise = secure_noise
        self.clipper = GhostClipper(module, max_grad_norm, rows_per_record)
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = optimizer
        self.noise_std = noise_multiplier * max_grad_norm
        self.expected_batch_size = expected_batch_size
        self.random = random

    def __call__(self, per_sample_loss: Callable[[], torch.Tensor] | None) -> None:
        """Steps once; ``per_sample_loss`` computes (batch,) losses, None for an empty batch."""
        self.optimizer.zero_grad(set_to_none=True)
        if per_sample_loss is not None:
            self.clipper.backward(per_sample_loss().sum())
            self.clipper.clipped_sum()
        # one draw for all parameters: (total parameters,), split per parameter
        sizes = [p.numel() for p in self.params]
        noise = self.random.normal((sum(sizes),), self.noise_std, self.params[0].device,
                                   secure=self.secure_noise).split(sizes)
        for p, z in zip(self.params, noise):
            clipped = p.grad if p.grad is not None else torch.zeros_like(p)
            p.grad = (clipped + z.view_as(p)) / self.expected_batch_size
        self.optimizer.step()

    @contextmanager
    def public_forward(self) -> Iterator[None]:
        """A forward pass inside the block (one per block) is dropped from the clipper's
        records on exit: for losses that read no private rows but go through the module (a
        GAN generator's step through the DP discriminator). Their gradients are the
        caller's business, not DP-SGD's."""
        try:
            yield
        finally:
            self.clipper.inputs.clear()
            self.clipper.outputs.clear()

    def close(self) -> None:
        self.clipper.close()
        self.optimizer.zero_grad(set_to_none=True)


def train_dp(module: nn.Module, per_sample_loss: LossFn, data: torch.Tensor,
             budget: PrivacyBudget, config: DPSGDConfig, random: PrivateRandom,
             progress: Progress | None = None, prior: History = (),
             resume: Resumable | None = None) -> PrivacyReport:
    """Trains ``module`` in place on ``data`` under DP-SGD and returns what it spent.

    Args:
        module: the model; every parameter is trained under DP.
        per_sample_loss: the loss of each record in a batch, shape (batch,).
        data: the encoded private records, shape (N, ...), on the training device.
        budget: the (epsilon, delta) this run may spend.
        config: DP-SGD settings.
        random: the fit's private randomness: Poisson sampling, DP noise, and the seed of
            the losses' own generator.
        progress: called after each step.
        prior: Gaussian mechanisms already run on the same data, as (noise multiplier,
            sampling rate, steps); the DP-SGD noise is calibrated so that they and the
            steps compose within the budget, and the report covers them all.
    """
    from opacus.accountants import create_accountant

    n = len(data)
    q, steps = plan(n, config)
    sigma = (calibrate_noise_after(budget, list(prior), q, steps, config.accountant) if prior
             else calibrate_noise(budget, q, steps, config.accountant))
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    expected_batch = q * n  # = batch_size, unless N < batch_size (then q = 1)
    step_once = DPStep(module, optimizer, sigma, config.max_grad_norm, expected_batch,
                       random, secure_noise=config.secure_noise)
    generator = random.torch_generator(data.device)  # latents etc. inside the loss
    accountant = create_accountant(mechanism=config.accountant)
    resume = resume or Resumable(None)
    parts = {"module": module, "optimizer": optimizer}
    start, history = resume.start((sigma, q, steps), parts, random, generator)
    accountant.history = history or [tuple(h) for h in prior]
    module.train()
    try:
        for step in range(start, steps):
            batch = data[random.mask(n, q, data.device)]
            step_once(partial(per_sample_loss, module, batch, generator) if len(batch)
                      else None)
            accountant.step(noise_multiplier=sigma, sample_rate=q)
            resume.after(step + 1, steps, parts, accountant.history)
            if progress is not None:
                progress(step + 1, steps)
    finally:
        step_once.close()
        module.eval()
    with warnings.catch_warnings():  # PRV takes log(1 - q), -inf at a prior's q = 1
        warnings.simplefilter("ignore", RuntimeWarning)
        epsilon = float(accountant.get_epsilon(delta=budget.delta))
    return PrivacyReport(
        epsilon=epsilon, delta=budget.delta,
        target_epsilon=budget.epsilon, accountant=config.accountant, noise_multiplier=sigma,
        sampling_rate=q, steps=steps, max_grad_norm=config.max_grad_norm,
        expected_batch_size=expected_batch)
