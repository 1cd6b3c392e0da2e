"""A differentially private conditional GAN for mixed tabular data (DP-CTGAN).

In the spirit of CTGAN (Xu et al. 2019), under the privacy rules of docs/ARCHITECTURE.md:

* Every column is one categorical block (``synth.encoding``): numeric bins, categories and
  the missing state alike. The generator G outputs one (straight-through) Gumbel-softmax per
  block.
* One Gaussian mechanism releases all 1-way histograms (L2 sensitivity sqrt(columns) under
  add/remove of one record). They give the conditional vectors' category frequencies and
  anchor G's 1-way marginals; both uses are post-processing.
* Only the discriminator D reads real rows, by DP-SGD with one record per privacy unit
  (Poisson sampling, per-sample clipping, Gaussian noise; no packing). G is trained with
  plain Adam through D: post-processing of D's private state.
* The number of records is private too: a noisy count (``synth.dpsgd.plan``) sets the
  sampling rate, the steps and the expected batch size.
* The histogram release, the count and the DP-SGD steps compose in one Opacus accountant
  history; the DP-SGD noise is calibrated so that the whole history stays within the budget.

Fit reads like the mechanism: measure histograms, count the records and plan, train D
privately and G through it, account.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from schemas import Schema
from synth.adversarial import adversarial_training
from synth.base import Params
from synth.checkpoint import Checkpoint, Resumable
from synth.dpsgd import DPSGDConfig, DPSGDPlan, DPStep, plan
from synth.encoding import DEFAULT_MAX_BINS, TableEncoder
from synth.evidence import NoisyMarginal
from synth.privacy import PrivacyBudget, epsilon_of_history, gaussian_noise_multiplier
from synth.randomness import PrivateRandom
from synth.sampling import check_request, chunks, draw, resolve_device

DISCRETE_KINDS = ("categorical", "boolean")  # the columns conditional vectors pick from
NOISE_FLOOR = 2.0  # noised counts below 2 noise stds are read as zero


def _offsets(sizes: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.long, device=device)


def _one_hot(codes: torch.Tensor, offsets: torch.Tensor, width: int) -> torch.Tensor:
    # codes (batch, columns) -> (batch, width)
    x = torch.zeros(len(codes), width, device=codes.device)
    return x.scatter_(1, codes + offsets, 1.0)


def _frequencies(counts: np.ndarray) -> np.ndarray:
    """Noisy counts -> a distribution (negative counts are noise: zero them)."""
    c = np.clip(counts, 0.0, None)
    return c / c.sum() if c.sum() > 0 else np.full(len(c), 1.0 / len(c))


class _Residual(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.fc, self.norm = nn.Linear(d_in, d_out), nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.norm(self.fc(x))), x], dim=1)


class _Generator(nn.Module):
    """(latent noise, conditional vector) -> logits of every block: CTGAN's residual MLP,
    with LayerNorm where CTGAN has BatchNorm: each fake row must not depend on how many rows
    were generated beside it, since D's batch (one fake per real record) has a private size."""

    def __init__(self, latent_dim: int, cond_width: int, hidden: int, width: int):
        super().__init__()
        d = latent_dim + cond_width
        self.body = nn.Sequential(_Residual(d, hidden), _Residual(d + hidden, hidden))
        self.out = nn.Linear(d + 2 * hidden, width)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([z, cond], dim=1)))  # (batch, width)


class _Discriminator(nn.Module):
    """(row, conditional vector) -> logit of "real". Only layers the DP-SGD engine clips
    exactly (Linear; no BatchNorm, no gradient penalty); maps (..., d_in) -> (...)."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(-1)


class _Conditions:
    """Conditional vectors over the discrete columns: one-hot of (column, category).

    Args:
        columns: indices (in the table) of the discrete columns.
        sizes: block sizes of all the table's columns.
        counts: noised category counts of each discrete column.
        device: where the vectors live.
    """

    def __init__(self, columns: list[int], sizes: list[int], counts: list[np.ndarray],
                 device: torch.device):
        self.columns = torch.tensor(columns, dtype=torch.long, device=device)
        cond_sizes = [sizes[c] for c in columns]
        self.width = sum(cond_sizes)
        self.cond_offsets = _offsets(cond_sizes, device)
        self.table_offsets = _offsets(sizes, device)[self.columns]
        # (discrete columns, largest block): frequencies, and CTGAN's log-frequencies
        freq = np.zeros((len(columns), max(cond_sizes, default=1)))
        log_freq = np.zeros_like(freq)
        for i, c in enumerate(counts):
            freq[i, :len(c)] = _frequencies(c)
            log_freq[i, :len(c)] = _frequencies(np.log1p(np.clip(c, 0.0, None)))
        self.freq = torch.tensor(freq, dtype=torch.float32, device=device)
        self.log_freq = torch.tensor(log_freq, dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.columns)

    def _vector(self, which: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(which), self.width, device=which.device)
        return out.scatter_(1, (self.cond_offsets[which] + category)[:, None], 1.0)

    def of_rows(self, codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(batch, cond width): each row conditioned on its own value of a uniformly chosen
        discrete column. Per record, so Poisson sampling's analysis is untouched."""
        if not len(self):
            return torch.zeros(len(codes), 0, device=codes.device)
        which = torch.randint(len(self), (len(codes),), generator=generator, device=codes.device)
        return self._vector(which, codes.gather(1, self.columns[which][:, None])[:, 0])

    def sample(self, n: int, generator: torch.Generator, log: bool = False):
        """n conditions: a discrete column uniformly, then a category by its noised frequency
        (``log``: by log-frequency). Returns vectors (n, cond width) and, for the
        generator's cross-entropy term, the one-hot index of the condition in the table's
        encoding (n,) (None without discrete columns)."""
        device = self.freq.device
        if not len(self):
            return torch.zeros(n, 0, device=device), None
        which = torch.randint(len(self), (n,), generator=generator, device=device)
        table = self.log_freq if log else self.freq
        category = torch.multinomial(table[which], 1, generator=generator)[:, 0]
        return self._vector(which, category), self.table_offsets[which] + category


def noisy_counts(codes: np.ndarray, sizes: list[int], std: float, random: PrivateRandom,
                 secure: bool = False) -> list[np.ndarray]:
    """The Gaussian mechanism on every column's 1-way histogram: each count plus N(0, std^2),
    from ``random`` (``secure``: from the OS CSPRNG). Adding or removing one record changes
    one cell of each of the d histograms by 1, so the L2 sensitivity of all of them together
    is sqrt(d)."""
    out = []
    for i, size in enumerate(sizes):
        exact = np.bincount(codes[:, i], minlength=size).astype("float64")
        noise = random.normal((size,), std, secure=secure)
        # rounded: an integer count plus float noise would leak the count through the
        # float's representation; count + round(noise) reveals nothing beyond the noise
        out.append(np.rint(exact + noise.double().cpu().numpy()))
    return out


def _gumbel_hard(logits: torch.Tensor, sizes: list[int], tau: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Straight-through Gumbel-softmax per block: one-hot samples forward (so D cannot tell
    fake rows by their softness), the tempered softmax's gradient backward. Uses an explicit
    generator (F.gumbel_softmax draws from the global RNG). (batch, width) -> same."""
    gumbel = -torch.empty_like(logits).exponential_(generator=generator).clamp_min(1e-20).log()
    soft = torch.cat([F.softmax(b / tau, dim=1) for b in (logits + gumbel).split(sizes, 1)], 1)
    hard = torch.cat([F.one_hot(b.argmax(1), b.shape[1]).to(b.dtype)
                      for b in soft.split(sizes, 1)], 1)
    return hard - soft.detach() + soft


class DPCTGAN(Params):
    """DP conditional tabular GAN; only the discriminator reads real rows, under DP-SGD.

    Args:
        epochs: DP-SGD epochs of the discriminator (in expectation over Poisson sampling).
        batch_size: expected number of real rows per discriminator step.
        lr: discriminator Adam learning rate.
        generator_lr: generator Adam learning rate.
        generator_steps: generator steps per discriminator step (free: no real rows).
        max_grad_norm: per-sample clipping bound of the discriminator's gradients.
        latent_dim: size of the generator's noise input.
        hidden: width of the generator's hidden layers.
        discriminator_hidden: width of the discriminator's hidden layers.
        histogram_share: epsilon the noised 1-way histograms would spend alone, as a share
            of the budget. Composed with DP-SGD in one accountant they cost far less (0.3
            raises the DP-SGD noise by ~4% at epsilon 1).
        marginal_weight: weight of the generator's loss KL(noised marginal || generated
            marginal) per column, which anchors G's 1-way marginals to the histograms.
        log_frequency: condition the generator's steps on log-frequencies (CTGAN's default)
            rather than frequencies; off, G trains on the conditions it samples with.
        tau: Gumbel-softmax temperature of the generator's outputs.
        max_bins: bins per numeric column (a schema column's own ``bins`` wins); integer
            columns with at most this many values keep exact values.
        accountant: "prv" or "rdp".
        device: "auto" (CUDA when available), "cpu" or "cuda".
        seed: seeds the weight initialisation.
        noise_seed: seeds the private randomness (record count, histogram noise, Poisson
            sampling, DP noise, conditions and latents while training). None, the default,
            draws a fresh 128-bit key from the operating system for every fit
            (``synth.randomness``). Fix it only for tests; never publish it.
        secure_noise: draw the DP noise (count, histograms and DP-SGD) from the OS CSPRNG.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 1024, lr: float = 1e-3,
                 generator_lr: float = 5e-4, generator_steps: int = 1,
                 max_grad_norm: float = 1.0, latent_dim: int = 64, hidden: int = 256,
                 discriminator_hidden: int = 128, histogram_share: float = 0.3,
                 marginal_weight: float = 1.0, log_frequency: bool = False, tau: float = 0.2,
                 max_bins: int = DEFAULT_MAX_BINS, accountant: str = "prv", device: str = "auto",
                 seed: int = 0, noise_seed: int | None = None, secure_noise: bool = False):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.generator_lr = generator_lr
        self.generator_steps = generator_steps
        self.max_grad_norm = max_grad_norm
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.discriminator_hidden = discriminator_hidden
        self.histogram_share = histogram_share
        self.marginal_weight = marginal_weight
        self.log_frequency = log_frequency
        self.tau = tau
        self.max_bins = max_bins
        self.accountant = accountant
        self.device = device
        self.seed = seed
        self.noise_seed = noise_seed
        self.secure_noise = secure_noise

    def fit(self, data: pd.DataFrame, schema: Schema, budget: PrivacyBudget,
            progress: Callable[[int, int], None] | None = None,
            checkpoint: Checkpoint | None = None) -> DPCTGAN:
        """Fits on private ``data`` (the schema's dtypes), spending at most ``budget``;
        saves to, and resumes from, ``checkpoint`` (``synth.checkpoint``)."""
        if not 0 < self.histogram_share < 1:
            raise ValueError(f"histogram_share must lie in (0, 1), got {self.histogram_share}")
        device = resolve_device(self.device)
        d = len(schema.columns)
        config = DPSGDConfig(epochs=self.epochs, batch_size=self.batch_size,
                             max_grad_norm=self.max_grad_norm, lr=self.lr,
                             accountant=self.accountant, secure_noise=self.secure_noise)
        random = PrivateRandom(self.noise_seed)
        # one-shot releases: noise from the OS CSPRNG unless a test fixed the seed
        secure = self.secure_noise or not random.fixed

        # 1. All 1-way histograms, by one Gaussian mechanism (std = multiplier * sqrt(d)).
        # PRV is tight for a single Gaussian release (Opacus's RDP orders stop short of it);
        # the epsilon reported below comes from ``self.accountant`` over the whole history.
        hist_sigma = gaussian_noise_multiplier(self.histogram_share * budget.epsilon,
                                               budget.delta, "prv")
        std = hist_sigma * math.sqrt(d)
        self.encoder_ = TableEncoder(schema, max_bins=self.max_bins)
        codes: np.ndarray = self.encoder_.encode(data).astype(np.int64, copy=False)  # (N, cols)
        resume = Resumable(checkpoint)
        self.noisy_counts_ = [np.asarray(c) for c in resume.measure("histograms", lambda: (
            noisy_counts(codes, self.encoder_.sizes, std, random, secure)))]
        # post-processing: counts below NOISE_FLOOR stds are read as zero, else the many
        # empty bins of a fine histogram would keep noise mass
        self.noisy_marginals_ = tuple(  # what the release gate compares the sample with
            NoisyMarginal((b.column.name,), c, std)
            for b, c in zip(self.encoder_.blocks, self.noisy_counts_))
        counts = [np.where(c > NOISE_FLOOR * std, c, 0.0) for c in self.noisy_counts_]

        # 2. The noisy record count sets q and the steps; the discriminator's DP-SGD noise
        # is calibrated on the whole history (histograms, count, steps).
        dp_plan = plan(len(codes), budget, config, random, resume,
                       prior=[(hist_sigma, 1.0, 1)])

        # 3. Train: D by DP-SGD on real rows, G by plain Adam through D.
        discrete = [i for i, c in enumerate(schema.columns) if c.kind in DISCRETE_KINDS]
        self.conditions_ = _Conditions(discrete, self.encoder_.sizes,
                                       [counts[i] for i in discrete], device)
        self._init_models(counts, device)
        self._train(torch.as_tensor(codes, device=device), dp_plan, random, progress, resume)

        # 4. Account for exactly the history executed.
        self.history_ = list(dp_plan.history)
        histogram = {
            "mechanism": "Gaussian mechanism on every column's 1-way histogram (conditional "
                         "vectors and the generator's marginal anchor)",
            "columns": list(schema.names), "l2_sensitivity": math.sqrt(d), "noise_std": std,
            "noise_multiplier": hist_sigma,
            "epsilon_alone": epsilon_of_history([(hist_sigma, 1.0, 1)], budget.delta,
                                                self.accountant),
            "accounted_as": "(noise_multiplier, sampling_rate 1.0, 1 step), composed with "
                            "DP-SGD in one accountant history"}
        self.privacy_ = dp_plan.report(
            dp_plan.epsilon(),
            mechanism="DP-CTGAN: Gaussian mechanism on the 1-way histograms and on the "
                      "number of records, then DP-SGD (Poisson sampling, per-sample "
                      "clipping, Gaussian noise) on the discriminator only; the generator is "
                      "post-processing",
            measurements=(histogram,))
        self.epsilon_spent_ = self.privacy_.epsilon
        return self

    def _init_models(self, counts: list[np.ndarray], device: torch.device) -> None:
        """G starts as the independent-columns model of the noised marginals: output biases
        at their log-frequencies, small output weights."""
        width = self.encoder_.width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator_ = _Generator(self.latent_dim, self.conditions_.width, self.hidden,
                                         width).to(device)
            self.discriminator_ = _Discriminator(width + self.conditions_.width,
                                                 self.discriminator_hidden).to(device)
        self.marginals_ = torch.tensor(np.concatenate([_frequencies(c) for c in counts]),
                                       dtype=torch.float32, device=device)  # (width,)
        with torch.no_grad():
            self.generator_.out.weight.mul_(0.1)
            self.generator_.out.bias.copy_(torch.log(self.marginals_ + 1e-3))

    def _fake(self, n: int, generator: torch.Generator, log: bool = False):
        """n generated rows: one-hot rows (n, width), cond vectors, logits, cond targets."""
        cond, target = self.conditions_.sample(n, generator, log=log)
        z = torch.randn(n, self.latent_dim, generator=generator, device=cond.device)
        logits = self.generator_(z, cond)
        rows = _gumbel_hard(logits, self.encoder_.sizes, self.tau, generator)
        return rows, cond, logits, target

    def _generator_loss(self, D: nn.Module, m: int, generator: torch.Generator):
        """Reads no real row: conditions and marginals come from the noised histograms."""
        sizes = self.encoder_.sizes
        rows, cond, logits, target = self._fake(m, generator, log=self.log_frequency)
        loss = F.softplus(-D(torch.cat([rows, cond], dim=1))).mean()  # non-saturating
        if target is not None:  # CTGAN's term: G's output must match its condition
            log_p = torch.cat([F.log_softmax(b, 1) for b in logits.split(sizes, 1)], 1)
            loss = loss - log_p.gather(1, target[:, None]).mean()
        if self.marginal_weight:
            if self.log_frequency:  # the anchor needs rows conditioned as when sampling
                logits = self._fake(m, generator)[2]
            generated = torch.cat([F.softmax(b, 1).mean(0) for b in logits.split(sizes, 1)])
            p = self.marginals_
            loss = loss + self.marginal_weight * (
                p * (torch.log(p + 1e-8) - torch.log(generated + 1e-8))).sum()
        return loss

    def _train(self, codes: torch.Tensor, dp_plan: DPSGDPlan, random: PrivateRandom,
               progress, resume: Resumable) -> None:
        G, D, conditions = self.generator_, self.discriminator_, self.conditions_
        width = self.encoder_.width
        offsets = _offsets(self.encoder_.sizes, codes.device)
        expected_batch = dp_plan.expected_batch_size  # q times the noisy count
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.9, 0.999))
        opt_g = torch.optim.Adam(G.parameters(), lr=self.generator_lr, betas=(0.5, 0.9))
        step_d = DPStep(D, opt_d, dp_plan.noise_multiplier, self.max_grad_norm,
                        expected_batch, random, secure_noise=self.secure_noise)
        generator = random.torch_generator(codes.device)  # conditions, latents, G's steps

        def d_loss(real_codes: torch.Tensor) -> torch.Tensor:
            # Record i's loss is softplus(-D(real_i, cond_i)) + softplus(D(fake_i, cond'_i)):
            # one fresh fake row per real row, fed as the record's second token
            # (batch, 2, features), so each real record touches exactly one clipped term
            # and the summed clipped gradient's sensitivity stays max_grad_norm. Fake rows
            # are conditioned by the noised frequencies, which is how real rows' own-value
            # conditions are distributed, so D cannot tell them apart by the condition.
            real = torch.cat([_one_hot(real_codes, offsets, width),
                              conditions.of_rows(real_codes, generator)], dim=1)
            with torch.no_grad():
                rows, cond, *_ = self._fake(len(real_codes), generator)
            fake = torch.cat([rows, cond], dim=1)
            logits = D(torch.stack([real, fake], dim=1))  # (batch, 2)
            return F.softplus(-logits[:, 0]) + F.softplus(logits[:, 1])  # (batch,)

        adversarial_training(
            G, D, opt_g, step_d, codes, dp_plan, random, generator, d_loss,
            lambda: self._generator_loss(D, max(2, round(expected_batch)), generator),
            self.generator_steps, resume, progress)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """n synthetic rows with the schema's dtypes; the same seed gives the same rows."""
        check_request(self, n)
        device = next(self.generator_.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        codes = []
        for m in chunks(n):
            cond, _ = self.conditions_.sample(m, generator)  # by frequency, as in the data
            z = torch.randn(m, self.latent_dim, generator=generator, device=device)
            logits = self.generator_(z, cond)
            codes.append(draw((F.softmax(b, dim=1) for b in logits.split(self.encoder_.sizes,
                                                                          dim=1)), generator))
        return self.encoder_.decode(torch.cat(codes).cpu().numpy(), np.random.default_rng(seed))
