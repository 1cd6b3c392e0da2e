"""A differentially private class-conditional convolutional GAN for small images.

Under the privacy rules of docs/ARCHITECTURE.md, like the tabular DP-CTGAN (``synth.gan``):

* Only the discriminator D reads real images, by DP-SGD (``DPStep``): Poisson sampling,
  per-record clipping, Gaussian noise. One record is one privacy unit: record i's loss is
  softplus(-D(real_i, y_i)) + softplus(D(fake_i, y_i)), the real image and one fresh fake of
  the same label, fed as two consecutive rows of D's batch and clipped as one term
  (``rows_per_record=2``), so the noised sum's sensitivity stays ``max_grad_norm``.
* D is conditional by a head per class (the logit of class y_i is read); it and G use
  GroupNorm, never BatchNorm: no image's output depends on the rest of a (private-size)
  batch.
* The generator G never sees a real image: it is trained with plain Adam through D on
  labels from the public label prior (``synth.image_nets.LabelPrior``), post-processing of
  D's private state. Its weights are averaged over its last ~50 steps (DP noise makes G
  jitter).
* The number of images is private too: a noisy count (``synth.dpsgd.plan``) sets the
  sampling rate, the steps and the expected batch size.
* An optional noised label histogram composes with the count and DP-SGD in one accountant
  history.

The defaults (10 epochs, batch 512, discriminator width 32) are the configuration measured
to meet the targets on Fashion-MNIST (28x28x1, all 60,000 training images, delta 1e-5; a
CNN trained on 60,000 samples, scored on the real test set; BENCHMARKS.md): 0.762 at
epsilon 1 and 0.799 at epsilon 10 (3 seeds each), 0.800 at epsilon 10 with ``epochs=20``;
the fit takes 30 to 55 s on one H200 and about 18 minutes on 2 CPU cores. On a CPU,
``epochs=3, batch_size=128, discriminator_width=16`` fits in about 3 minutes and scores
0.622 at epsilon 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synth.adversarial import adversarial_training
from synth.base import Params
from synth.checkpoint import Checkpoint, Resumable
from synth.dpsgd import DPSGDConfig, DPSGDPlan, DPStep, plan
from synth.image_nets import (
    Downsampler,
    Upsampler,
    check_images,
    image_chunks,
    label_prior,
    to_device,
    to_uint8,
)
from synth.privacy import PrivacyBudget
from synth.randomness import PrivateRandom
from synth.sampling import check_request, resolve_device


class _Generator(nn.Module):
    """(latent (batch, z), labels (batch,)) -> images in [-1, 1], (batch, C, H', W')."""

    def __init__(self, latent_dim: int, n_classes: int, shape: tuple[int, int, int], w: int):
        super().__init__()
        channels, height, width = shape
        self.n_classes = n_classes
        self.net = Upsampler(latent_dim + n_classes, channels, height, width, w)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, F.one_hot(labels, self.n_classes).float()], dim=1)
        return torch.tanh(self.net(h))


class _Discriminator(nn.Module):
    """(images (batch, C, H', W') in [-1, 1], labels (batch,)) -> (batch,) logits of "real",
    one output head per class."""

    def __init__(self, n_classes: int, shape: tuple[int, int, int], w: int):
        super().__init__()
        self.net = Downsampler(*shape, n_classes, w)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(x).gather(1, labels[:, None])[:, 0]


class DPConvGAN(Params):
    """DP class-conditional convolutional GAN; only the discriminator reads real images.

    Args:
        epochs: DP-SGD epochs of the discriminator (in expectation over Poisson sampling).
        batch_size: expected number of real images per discriminator step.
        max_grad_norm: per-record clipping bound of the discriminator's gradients.
        lr: discriminator Adam learning rate.
        generator_lr: generator Adam learning rate.
        generator_steps: generator steps per discriminator step (free: no real images).
        latent_dim: size of the generator's noise input.
        width: base channel count of the generator (its layers have 4w, 2w, w).
        discriminator_width: base channel count of the discriminator (w, 2w).
        label_share: 0 samples labels uniformly from the public label set (free); > 0
            releases the noised label histogram, spending this share of epsilon if it ran
            alone (composed with DP-SGD it costs less), and samples by its frequencies.
        accountant: "prv" or "rdp".
        seed: seeds the weight initialisation.
        noise_seed: seeds the private randomness (count, sampling, DP noise, latents while
            training); None draws a fresh 128-bit key from the OS. Fix it only for tests.
        secure_noise: draw the DP noise from the OS CSPRNG.
        device: "auto" (CUDA when available), "cpu" or "cuda".
    """

    def __init__(self, epochs: int = 10, batch_size: int = 512, max_grad_norm: float = 1.0,
                 lr: float = 2e-3, generator_lr: float = 1e-3, generator_steps: int = 1,
                 latent_dim: int = 64, width: int = 32, discriminator_width: int = 32,
                 label_share: float = 0.0, accountant: str = "prv", seed: int = 0,
                 noise_seed: int | None = None, secure_noise: bool = False,
                 device: str = "auto"):
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.lr = lr
        self.generator_lr = generator_lr
        self.generator_steps = generator_steps
        self.latent_dim = latent_dim
        self.width = width
        self.discriminator_width = discriminator_width
        self.label_share = label_share
        self.accountant = accountant
        self.seed = seed
        self.noise_seed = noise_seed
        self.secure_noise = secure_noise
        self.device = device

    def fit(self, images: np.ndarray, labels: np.ndarray, n_classes: int,
            budget: PrivacyBudget, progress: Callable[[int, int], None] | None = None,
            checkpoint: Checkpoint | None = None) -> DPConvGAN:
        """Fits on private uint8 ``images`` (N, H, W, C) and int ``labels`` (N,) in
        [0, n_classes), spending at most ``budget``; saves to, and resumes from,
        ``checkpoint`` (``synth.checkpoint``)."""
        check_images(images, labels, n_classes)
        if not 0 <= self.label_share < 1:
            raise ValueError(f"label_share must lie in [0, 1), got {self.label_share}")
        device = resolve_device(self.device)
        config = DPSGDConfig(epochs=self.epochs, batch_size=self.batch_size,
                             max_grad_norm=self.max_grad_norm, lr=self.lr,
                             accountant=self.accountant, secure_noise=self.secure_noise)
        random = PrivateRandom(self.noise_seed)

        # 1. The label prior: uniform, or the noised label histogram (accounted).
        resume = Resumable(checkpoint)
        self.labels_, prior, measurements = label_prior(
            labels, n_classes, self.label_share, budget, random,
            self.secure_noise or not random.fixed, resume)

        # 2. The noisy image count sets q and the steps; the discriminator's DP-SGD noise is
        # calibrated on the whole history (label histogram, count, steps).
        dp_plan = plan(len(images), budget, config, random, resume, prior=prior)

        # 3. Train: D by DP-SGD on (real, fake) pairs, G by plain Adam through D.
        self.shape_ = images.shape[1:]  # (H, W, C)
        real = to_device(images, device)  # uint8 (N, C, H', W')
        self._init_models(n_classes, tuple(real.shape[1:]), device)
        self._train(real, torch.as_tensor(labels, dtype=torch.long, device=device), dp_plan,
                    random, progress, resume)

        # 4. Account for exactly the history executed.
        self.history_ = list(dp_plan.history)
        self.privacy_ = dp_plan.report(
            dp_plan.epsilon(),
            mechanism="DP conditional conv GAN: Gaussian mechanism on the number of images, "
                      "then DP-SGD (Poisson sampling, per-record clipping of a (real, fake) "
                      "pair, Gaussian noise) on the discriminator only; the generator is "
                      "post-processing; labels sampled "
                      + ("by the noised label histogram" if self.labels_.counts is not None
                         else "uniformly from the public label set"),
            measurements=measurements)
        self.epsilon_spent_ = self.privacy_.epsilon
        return self

    def _init_models(self, n_classes: int, shape: tuple[int, int, int],
                     device: torch.device) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator_ = _Generator(self.latent_dim, n_classes, shape, self.width)
            self.discriminator_ = _Discriminator(n_classes, shape, self.discriminator_width)
        self.generator_.to(device)
        self.discriminator_.to(device)

    def _fake(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(labels), self.latent_dim, generator=generator,
                        device=labels.device)
        fake = self.generator_(z, labels)  # (batch, C, H', W') in [-1, 1]
        (h, w, _), (hp, wp) = self.shape_, fake.shape[2:]
        # the padding of real images is black: so is the fake's, or D would tell them apart
        return fake if (h, w) == (hp, wp) else F.pad(fake[..., :h, :w], (0, wp - w, 0, hp - h),
                                                     value=-1.0)

    def _train(self, real: torch.Tensor, labels: torch.Tensor, dp_plan: DPSGDPlan,
               random: PrivateRandom, progress, resume: Resumable) -> None:
        G, D = self.generator_, self.discriminator_
        expected_batch = dp_plan.expected_batch_size  # q times the noisy count
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(G.parameters(), lr=self.generator_lr, betas=(0.5, 0.999))
        step_d = DPStep(D, opt_d, dp_plan.noise_multiplier, self.max_grad_norm,
                        expected_batch, random, secure_noise=self.secure_noise,
                        rows_per_record=2)
        generator = random.torch_generator(real.device)  # fakes, labels, G's steps

        def d_loss(index: torch.Tensor) -> torch.Tensor:
            x = real[index].float() / 127.5 - 1.0  # (batch, C, H', W')
            y = labels[index]
            with torch.no_grad():
                fake = self._fake(y, generator)
            pairs = torch.stack([x, fake], dim=1).flatten(0, 1)  # (2 batch, C, H', W')
            logits = D(pairs, y.repeat_interleave(2)).view(-1, 2)  # (batch, [real, fake])
            return F.softplus(-logits[:, 0]) + F.softplus(logits[:, 1])  # (batch,)

        def g_loss() -> torch.Tensor:
            y = self.labels_.sample(max(2, round(expected_batch)), generator)
            return F.softplus(-D(self._fake(y, generator), y)).mean()

        # the records are indices into the images
        adversarial_training(G, D, opt_g, step_d, torch.arange(len(real), device=real.device),
                             dp_plan, random, generator, d_loss, g_loss,
                             self.generator_steps, resume, progress)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """n images, uint8 (n, H, W, C), and their int64 labels (n,): the given ``labels``,
        else drawn from the label prior. The same seed gives the same images."""
        check_request(self, n)
        device = next(self.generator_.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        y = self.labels_.resolve(n, labels, generator)
        out, start = [], 0
        for m in image_chunks(n):
            out.append(to_uint8((self._fake(y[start:start + m], generator) + 1) / 2,
                                self.shape_))
            start += m
        return np.concatenate(out), y.cpu().numpy()
