"""The DP-SGD training loop: a noisy record count, Poisson sampling, per-sample clipping,
Gaussian noise, accounting.

Reads like Opacus's optimizer step: sample, clip, noise, scale, account.

* Count: under add/remove neighbours the number of records N is private, so nothing a fit
  publishes may be an exact function of it. ``plan`` measures N once by the Gaussian
  mechanism (L2 sensitivity 1, ``COUNT_SHARE`` of the budget's zCDP rho), composed in the
  same accountant history as the steps; the sampling rate, the number of steps and the
  divisor of the noised sum come from the noisy count. Poisson sampling at a rate that is
  data-independent given that release is accounted correctly whatever the true N.
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
  size q * (noisy count); sigma is calibrated, and epsilon computed, by Opacus's accountant
  from exactly the (sigma, q, steps) history executed, with the count and any other
  mechanism run before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn

from synth.checkpoint import Resumable
from synth.ghost import GhostClipper
from synth.privacy import (
    PrivacyBudget,
    PrivacyReport,
    calibrate_noise_after,
    epsilon_of_history,
    zcdp_rho,
)
from synth.randomness import PrivateRandom

# per_sample_loss(module, batch, generator) -> (batch,) losses
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]
Progress = Callable[[int, int], None]  # (steps done, total steps)

# Share of the budget's zCDP rho spent on the noisy record count. At epsilon 1 (delta 1e-9)
# its std is about 58 records, a sampling rate within 3% on 2,000 records, and composed with
# the steps it raises the DP-SGD noise multiplier by under 1%.
COUNT_SHARE = 0.01


@dataclass(frozen=True)
class DPSGDConfig:
    """Hyper-parameters of a DP-SGD run.

    Attributes:
        epochs: passes over the data, in expectation; steps = ceil(epochs / q).
        batch_size: expected batch size; the sampling rate is q = batch_size / (noisy count
            of the records).
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


def rate_and_steps(count: float, config: DPSGDConfig) -> tuple[float, int]:
    """Sampling rate and number of steps for ``count`` records (a noisy count: ``plan``)."""
    q = min(1.0, config.batch_size / count)
    return q, max(1, math.ceil(config.epochs / q))


def count_noise(budget: PrivacyBudget) -> float:
    """Noise std of the record count: the Gaussian mechanism with L2 sensitivity 1 (add or
    remove one record) at zCDP rho = 1 / (2 std^2) = COUNT_SHARE times the budget's rho."""
    return 1.0 / math.sqrt(2.0 * COUNT_SHARE * zcdp_rho(budget))


def noisy_count(n_records: int, std: float, random: PrivateRandom, secure: bool) -> float:
    """max(1, round(N + N(0, std^2))): the Gaussian mechanism on the number of records,
    rounded (an integer plus float noise would leak the integer through the float's low
    bits) and clamped to at least one record (post-processing); ``secure`` draws the noise
    from the OS CSPRNG."""
    noise = float(random.normal((1,), std, secure=secure)[0])
    return max(1.0, float(np.rint(n_records + noise)))


@dataclass(frozen=True)
class DPSGDPlan:
    """What a DP-SGD fit runs, set from a noisy count of its records (see ``plan``).

    Attributes:
        budget: the (epsilon, delta) of the whole fit.
        config: the DP-SGD settings.
        noisy_count: the released count of the records (at least 1).
        sampling_rate: q = min(1, batch_size / noisy_count).
        steps: ceil(epochs / q).
        noise_multiplier: sigma, calibrated so that ``history`` stays within the budget.
        history: the accountant history, as (noise multiplier, sampling rate, steps): the
            mechanisms run before, the count, then the DP-SGD steps.
        measurement: the count's entry of ``PrivacyReport.measurements``.
    """

    budget: PrivacyBudget
    config: DPSGDConfig
    noisy_count: float
    sampling_rate: float
    steps: int
    noise_multiplier: float
    history: tuple[tuple[float, float, int], ...]
    measurement: dict = field(compare=False)

    @property
    def expected_batch_size(self) -> float:
        """q times the noisy count: batch_size, or the noisy count when q is 1."""
        return self.sampling_rate * self.noisy_count

    def epsilon(self) -> float:
        """Epsilon of the whole history at the budget's delta, by the plan's accountant."""
        return epsilon_of_history(list(self.history), self.budget.delta,
                                  self.config.accountant)

    def report(self, epsilon: float, mechanism: str | None = None,
               measurements: tuple[dict, ...] = ()) -> PrivacyReport:
        """The privacy report of the fit: the DP-SGD part from the plan, ``measurements``
        (the mechanisms run before) followed by the count's."""
        extra = {} if mechanism is None else {"mechanism": mechanism}
        return PrivacyReport(
            epsilon=epsilon, delta=self.budget.delta, target_epsilon=self.budget.epsilon,
            accountant=self.config.accountant, noise_multiplier=self.noise_multiplier,
            sampling_rate=self.sampling_rate, steps=self.steps,
            max_grad_norm=self.config.max_grad_norm,
            expected_batch_size=self.expected_batch_size,
            measurements=(*measurements, self.measurement), **extra)


def plan(n_records: int, budget: PrivacyBudget, config: DPSGDConfig, random: PrivateRandom,
         resume: Resumable | None = None,
         prior: Sequence[tuple[float, float, int]] = ()) -> DPSGDPlan:
    """Measures the number of records (``noisy_count``; once per run: a resumed run reuses
    its checkpoint's count), sets the sampling rate and steps from the noisy count, and
    calibrates the DP-SGD noise so that ``prior``, the count and the steps compose within
    the budget.

    Args:
        n_records: the private number of records; read only by the count's mechanism.
        budget: the (epsilon, delta) of the whole fit.
        config: DP-SGD settings.
        random: the fit's private randomness. The count's noise comes from the OS CSPRNG
            unless a test fixed the seed (and ``secure_noise`` is off).
        resume: the run's checkpoints.
        prior: Gaussian mechanisms already run on the same data, as (noise multiplier,
            sampling rate, steps).

    Raises:
        BudgetError: the budget cannot cover the mechanisms.
    """
    std = count_noise(budget)
    secure = config.secure_noise or not random.fixed
    count = float((resume or Resumable(None)).measure(
        "record_count", lambda: noisy_count(n_records, std, random, secure)))
    q, steps = rate_and_steps(count, config)
    history = [*prior, (std, 1.0, 1)]
    sigma = calibrate_noise_after(budget, history, q, steps, config.accountant)
    measurement = {
        "mechanism": "Gaussian mechanism on the number of records (it sets the DP-SGD "
                     "sampling rate, steps and expected batch size)",
        "l2_sensitivity": 1.0, "noise_std": std, "noise_multiplier": std,
        "noisy_count": count, "zcdp_rho": COUNT_SHARE * zcdp_rho(budget),
        # PRV: tight for one Gaussian release (Opacus's RDP orders floor its epsilon)
        "epsilon_alone": epsilon_of_history([(std, 1.0, 1)], budget.delta, "prv"),
        "accounted_as": "(noise_multiplier, sampling_rate 1.0, 1 step), composed with "
                        "DP-SGD in one accountant history"}
    return DPSGDPlan(budget, config, count, q, steps, sigma,
                     tuple(history + [(sigma, q, steps)]), measurement)


class DPStep:
    """One DP-SGD update: clip each record's gradient, sum, add noise, scale, step.

    Args:
        module: the model (parameters in nn.Linear layers only).
        optimizer: any torch optimizer over the module's parameters.
        noise_multiplier: sigma; the noise std on the clipped sum is sigma * max_grad_norm.
        max_grad_norm: per-sample clipping bound C.
        expected_batch_size: the divisor of the noised sum (q times the noisy count under
            Poisson sampling).
        random: the fit's private randomness, source of the noise.
        secure_noise: draw the noise from the OS CSPRNG (``secure_normal``) instead.
        rows_per_record: consecutive rows of the module's batch that form one record (one
            clipped term), e.g. 2 for a GAN discriminator's (real, fake) pairs.
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer,
                 noise_multiplier: float, max_grad_norm: float, expected_batch_size: float,
                 random: PrivateRandom, secure_noise: bool = False,
                 rows_per_record: int = 1):
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
             dp_plan: DPSGDPlan, random: PrivateRandom, progress: Progress | None = None,
             resume: Resumable | None = None) -> PrivacyReport:
    """Trains ``module`` in place on ``data`` under DP-SGD as ``dp_plan`` says and returns
    what the whole plan spent (the mechanisms before DP-SGD, the count, the steps).

    Args:
        module: the model; every parameter is trained under DP.
        per_sample_loss: the loss of each record in a batch, shape (batch,).
        data: the encoded private records, shape (N, ...), on the training device.
        dp_plan: sampling rate, steps, noise and history (``plan``).
        random: the fit's private randomness: Poisson sampling, DP noise, and the seed of
            the losses' own generator.
        progress: called after each step.
        resume: the run's checkpoints (the one ``plan`` measured the count through).
    """
    from opacus.accountants import create_accountant

    config, q, steps = dp_plan.config, dp_plan.sampling_rate, dp_plan.steps
    sigma = dp_plan.noise_multiplier
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    step_once = DPStep(module, optimizer, sigma, config.max_grad_norm,
                       dp_plan.expected_batch_size, random, secure_noise=config.secure_noise)
    generator = random.torch_generator(data.device)  # latents etc. inside the loss
    accountant = create_accountant(mechanism=config.accountant)
    resume = resume or Resumable(None)
    parts = {"module": module, "optimizer": optimizer}
    start, history = resume.start((sigma, q, steps), parts, random, generator)
    accountant.history = history or [tuple(h) for h in dp_plan.history[:-1]]
    n = len(data)  # only the sampling reads it
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
    # the history run, as the accountant kept it; the calibration has usually asked already
    return dp_plan.report(epsilon_of_history(accountant.history, dp_plan.budget.delta,
                                             config.accountant))
