"""A differentially private variational autoencoder for mixed tabular data.

Each column is one categorical block (see ``synth.encoding``); the decoder outputs one
softmax per block, so numeric, categorical and missing values share one likelihood. The whole
VAE reads real rows (the reconstruction loss does), so every parameter is trained under
DP-SGD, at a sampling rate set from a noisy count of the rows (``synth.dpsgd.plan``);
sampling decodes Gaussian latents and is post-processing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from schemas import Schema
from synth.base import Params
from synth.checkpoint import Checkpoint, Resumable
from synth.dpsgd import DPSGDConfig, plan, train_dp
from synth.encoding import DEFAULT_MAX_BINS, TableEncoder
from synth.privacy import PrivacyBudget
from synth.randomness import PrivateRandom
from synth.sampling import check_request, chunks, draw, resolve_device


class _VAE(nn.Module):
    def __init__(self, sizes: list[int], latent_dim: int, hidden: int):
        super().__init__()
        width = sum(sizes)
        self.latent_dim = latent_dim
        self.register_buffer("offsets", torch.tensor(np.cumsum([0] + sizes[:-1])))
        self.sizes = sizes
        self.encoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, width))

    def one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        # codes (batch, columns) -> (batch, width)
        x = torch.zeros(len(codes), sum(self.sizes), device=codes.device)
        return x.scatter_(1, codes + self.offsets, 1.0)

    def forward(self, codes: torch.Tensor, noise: torch.Tensor):
        mu, logvar = self.encoder(self.one_hot(codes)).chunk(2, dim=1)  # (batch, latent) each
        z = mu + noise * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar  # logits (batch, width)

    def per_sample_loss(self, logits, codes, mu, logvar) -> torch.Tensor:
        recon = torch.zeros(len(codes), device=codes.device)
        for i, block in enumerate(logits.split(self.sizes, dim=1)):
            recon = recon + F.cross_entropy(block, codes[:, i], reduction="none")
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return recon + kl  # (batch,)


def _loss(vae: _VAE, codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(len(codes), vae.latent_dim, generator=generator, device=codes.device)
    logits, mu, logvar = vae(codes, noise)
    return vae.per_sample_loss(logits, codes, mu, logvar)


class DPVAE(Params):
    """DP tabular VAE.

    Args:
        epochs: DP-SGD epochs (in expectation).
        batch_size: expected batch size of Poisson sampling.
        lr: Adam learning rate.
        max_grad_norm: per-sample clipping bound.
        latent_dim: size of the latent code.
        hidden: width of the hidden layers.
        max_bins: bins per numeric column (the schema may set its own).
        accountant: "prv" or "rdp".
        device: "auto" (CUDA when available), "cpu" or "cuda".
        seed: seeds the weight initialisation.
        noise_seed: seeds the private randomness (record count, Poisson sampling, DP noise,
            latents while training). None, the default, draws a fresh 128-bit key from the
            operating system for every fit (``synth.randomness``): the DP guarantee needs
            noise nobody can regenerate. Fix it only for reproducible tests, and never
            publish it.
        secure_noise: draw the DP noise from the operating system's CSPRNG.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 1024, lr: float = 1e-2,
                 max_grad_norm: float = 0.1, latent_dim: int = 8, hidden: int = 256,
                 max_bins: int = DEFAULT_MAX_BINS, accountant: str = "prv",
                 device: str = "auto", seed: int = 0, noise_seed: int | None = None,
                 secure_noise: bool = False):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_grad_norm = max_grad_norm
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.max_bins = max_bins
        self.accountant = accountant
        self.device = device
        self.seed = seed
        self.noise_seed = noise_seed
        self.secure_noise = secure_noise

    def fit(self, data: pd.DataFrame, schema: Schema, budget: PrivacyBudget,
            progress: Callable[[int, int], None] | None = None,
            checkpoint: Checkpoint | None = None) -> DPVAE:
        """Fits on private ``data`` (the schema's dtypes), spending at most ``budget``;
        saves to, and resumes from, ``checkpoint`` (``synth.checkpoint``)."""
        device = resolve_device(self.device)
        self.encoder_ = TableEncoder(schema, max_bins=self.max_bins)
        codes = torch.as_tensor(self.encoder_.encode(data).astype(np.int64, copy=False),
                                device=device)  # (N, columns)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = _VAE(self.encoder_.sizes, self.latent_dim, self.hidden).to(device)
        random = PrivateRandom(self.noise_seed)
        config = DPSGDConfig(epochs=self.epochs, batch_size=self.batch_size,
                             max_grad_norm=self.max_grad_norm, lr=self.lr,
                             accountant=self.accountant, secure_noise=self.secure_noise)
        resume = Resumable(checkpoint)
        # the noisy row count sets the sampling rate and steps; then DP-SGD on everything
        dp_plan = plan(len(codes), budget, config, random, resume)
        self.privacy_ = train_dp(self.model_, _loss, codes, dp_plan, random, progress, resume)
        self.epsilon_spent_ = self.privacy_.epsilon
        return self

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """n synthetic rows with the schema's dtypes; the same seed gives the same rows."""
        check_request(self, n)
        device = next(self.model_.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        codes = []
        for m in chunks(n):
            z = torch.randn(m, self.latent_dim, generator=generator, device=device)
            logits = self.model_.decoder(z)
            codes.append(draw((F.softmax(b, dim=1) for b in logits.split(self.model_.sizes, dim=1)),
                              generator))
        return self.encoder_.decode(torch.cat(codes).cpu().numpy(), np.random.default_rng(seed))
