"""A differentially private class-conditional image generator fitted to one noised release of
random-feature mean embeddings (DP-MERF: Harder, Adamczewski and Park, AISTATS 2021).

Under the privacy rules of docs/ARCHITECTURE.md:

* The only step that reads real images is one Gaussian mechanism: the sum over records of
  psi(x_i) (outer) onehot(y_i), where psi(x) = [cos(W x), sin(W x), 1] / norms is a vector of
  L2 norm exactly 1 (the random Fourier features of a Gaussian kernel, and a constant that
  counts). One record changes the sum by a vector of norm 1 (add/remove), so noise of standard
  deviation sigma spends one Gaussian release: accounted as (sigma, sampling rate 1, 1 step),
  the same history format as DP-SGD, and what the release's canary audit checks.
* W is drawn from ``seed`` alone, with a length scale from the public image shape
  (sqrt(pixels x channels) / 3, about the typical distance of two images in [0, 1]), never
  from the data: the features are public.
* The generator never sees a real image: plain Adam brings each class's mean embedding of
  its images to the noised one (divided by the class's noised count from the same release).
  Post-processing, so it may run as long as it needs.

Unlike DP-SGD, the noise is spent once on a fixed-size summary, so the result barely depends
on epsilon, and the fit is cheap: on Fashion-MNIST (60,000 images, delta 1e-5) a CNN trained
on 60,000 samples of these defaults scores 0.742 on the real test set at epsilon 1 and 0.729
at epsilon 10 (3 seeds each; fit 3 to 5 s on one H200; BENCHMARKS.md). ``dp-conv-gan``
scores higher at both (0.762 and 0.800) for a fit of 30 to 55 s there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from synth.base import Params
from synth.checkpoint import Checkpoint
from synth.image_gan import _Generator
from synth.image_nets import LabelPrior, check_images, image_chunks, padded, to_uint8
from synth.privacy import (
    PrivacyBudget,
    PrivacyReport,
    epsilon_of_history,
    gaussian_noise_multiplier,
)
from synth.randomness import PrivateRandom
from synth.sampling import check_request, resolve_device

CHUNK = 4_096  # real images embedded at once


class DPMERF(Params):
    """DP class-conditional image generator matched to noised random-feature embeddings.

    Args:
        features: random Fourier features (cosines and sines, half each) of the embedding;
            more resolve finer detail, and each carries its share of the same noise.
        steps: Adam steps of the generator (post-processing: free of privacy cost).
        batch_per_class: generated images per class and step.
        lr: generator Adam learning rate.
        latent_dim: size of the generator's noise input.
        width: base channel count of the generator (its layers have 4w, 2w, w).
        length_scale: of the Gaussian kernel, in pixel units of [0, 1]; None (default):
            sqrt(height x width x channels) / 3, a rule of the public image shape.
        accountant: "prv" or "rdp", to calibrate the one Gaussian release.
        seed: seeds the random features (public) and the generator's initialisation.
        noise_seed: seeds the DP noise and the generator's latents; None (default) draws
            the DP noise from the OS CSPRNG (and the latents' seed from a fresh 128-bit
            key). Fix it only for tests.
        secure_noise: draw the DP noise from the OS CSPRNG even with a ``noise_seed``.
        device: "auto" (CUDA when available), "cpu" or "cuda".
    """

    def __init__(self, features: int = 4000, steps: int = 800, batch_per_class: int = 50,
                 lr: float = 2e-3, latent_dim: int = 32, width: int = 32,
                 length_scale: float | None = None, accountant: str = "prv", seed: int = 0,
                 noise_seed: int | None = None, secure_noise: bool = False,
                 device: str = "auto"):
        self.features = features
        self.steps = steps
        self.batch_per_class = batch_per_class
        self.lr = lr
        self.latent_dim = latent_dim
        self.width = width
        self.length_scale = length_scale
        self.accountant = accountant
        self.seed = seed
        self.noise_seed = noise_seed
        self.secure_noise = secure_noise
        self.device = device

    def fit(self, images: np.ndarray, labels: np.ndarray, n_classes: int,
            budget: PrivacyBudget, progress: Callable[[int, int], None] | None = None,
            checkpoint: Checkpoint | None = None) -> DPMERF:
        """Fits on private uint8 ``images`` (N, H, W, C) and int ``labels`` (N,) in
        [0, n_classes), spending at most ``budget``. ``checkpoint`` is accepted for the
        image contract and not used: the private step is one release of seconds, and a
        killed run is charged and runs again in full."""
        check_images(images, labels, n_classes)
        if self.features < 2 or self.features % 2:
            raise ValueError(f"features must be an even number >= 2, got {self.features}")
        device = resolve_device(self.device)
        self.shape_ = images.shape[1:]  # (H, W, C)
        random = PrivateRandom(self.noise_seed)
        public = torch.Generator(device=device).manual_seed(self.seed)
        pixels = math.prod(self.shape_)
        scale = self.length_scale or math.sqrt(pixels) / 3
        self.frequencies_ = torch.randn(pixels, self.features // 2, generator=public,
                                        device=device) / scale

        # 1. The one private step: the noised sums of psi(x) per class (L2 sensitivity 1).
        sums = torch.zeros(self.features + 1, n_classes, dtype=torch.float64, device=device)
        y = torch.as_tensor(labels, dtype=torch.long, device=device)
        for start in range(0, len(images), CHUNK):
            x = torch.as_tensor(images[start:start + CHUNK], device=device)
            psi = torch.cat([self._embed(x.flatten(1).float() / 255), torch.ones(
                len(x), 1, device=device)], dim=1) / math.sqrt(2)  # norm 1 per record
            sums.index_add_(1, y[start:start + CHUNK], psi.T.double())
        sigma = gaussian_noise_multiplier(budget.epsilon, budget.delta, self.accountant)
        secure = self.secure_noise or not random.fixed  # one release: from the OS CSPRNG
        noise = random.normal(tuple(sums.shape), sigma, device, secure=secure)
        noised = (sums + noise.double()) * math.sqrt(2)
        del sums  # nothing exact leaves this block
        counts = noised[-1].clamp(min=1.0)
        target = (noised[:-1] / counts).T.float()  # (classes, features): mean embeddings

        # 2. Post-processing: the generator's class means brought to the noised ones.
        self.labels_ = LabelPrior(n_classes)  # uniform over the public label set
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            h, w, c = self.shape_
            self.generator_ = _Generator(self.latent_dim, n_classes,
                                         (c, padded(h), padded(w)), self.width).to(device)
        opt = torch.optim.Adam(self.generator_.parameters(), lr=self.lr)
        generator = random.torch_generator(device)  # latents: post-processing
        classes = torch.arange(n_classes, device=device).repeat_interleave(
            self.batch_per_class)
        for step in range(self.steps):
            fake = self._images(classes, generator).flatten(1)
            means = self._embed(fake).view(n_classes, self.batch_per_class, -1).mean(1)
            loss = (means - target).pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress:
                progress(step + 1, self.steps)

        history = [(sigma, 1.0, 1)]
        self.history_ = history
        self.privacy_ = PrivacyReport(
            epsilon=epsilon_of_history(history, budget.delta, self.accountant),
            delta=budget.delta, target_epsilon=budget.epsilon, accountant=self.accountant,
            mechanism="DP-MERF: one Gaussian mechanism on the per-class sums of random-"
                      "feature embeddings of norm 1 (one full-batch step, clipping bound 1); "
                      "the generator is post-processing; labels sampled uniformly from the "
                      "public label set",
            noise_multiplier=sigma, sampling_rate=1.0, steps=1, max_grad_norm=1.0)
        self.epsilon_spent_ = self.privacy_.epsilon
        return self

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, pixels) in [0, 1] -> (n, features) random Fourier features, norm 1 each."""
        projected = x @ self.frequencies_
        return torch.cat([projected.cos(), projected.sin()], dim=1) / math.sqrt(
            self.features // 2)

    def _images(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(n, C, H, W) generated images in [0, 1] of the given labels."""
        z = torch.randn(len(labels), self.latent_dim, generator=generator,
                        device=labels.device)
        h, w, _ = self.shape_
        return (self.generator_(z, labels)[:, :, :h, :w] + 1) / 2

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """n images, uint8 (n, H, W, C), and their int64 labels (n,): the given ``labels``,
        else drawn uniformly. The same seed gives the same images."""
        check_request(self, n)
        device = self.frequencies_.device
        generator = torch.Generator(device=device).manual_seed(seed)
        y = self.labels_.resolve(n, labels, generator)
        out, start = [], 0
        for m in image_chunks(n):
            out.append(to_uint8(self._images(y[start:start + m], generator), self.shape_))
            start += m
        return np.concatenate(out), y.cpu().numpy()
