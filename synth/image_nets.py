"""What the DP image synthesizers share: input checks, pixel scaling, the label prior, and
the convolutional blocks.

* Images enter as uint8 (N, H, W, C) and are kept on the training device as uint8, in the
  (N, C, H', W') layout of the networks, zero-padded to H', W' multiples of 4 (two
  stride-2 stages); generated images are cropped back to H x W.
* Labels: the label set {0, ..., K-1} is public (the schema's), their frequencies are not.
  By default samples draw labels uniformly, which costs nothing. With ``label_share`` > 0
  the label histogram is released once by the Gaussian mechanism (L2 sensitivity 1 under
  add/remove of one record), rounded, and composed into the same accountant history as
  DP-SGD; samples then follow the noised frequencies.
* Only Conv2d, Linear and GroupNorm carry parameters in what DP-SGD trains (the layers
  ``synth.ghost`` clips exactly); nothing has BatchNorm, whose output for one record would
  depend on the other records of the batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synth.checkpoint import Resumable
from synth.privacy import PrivacyBudget, gaussian_noise_multiplier
from synth.randomness import PrivateRandom


def check_images(images: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    """Raises ValueError, saying what to fix, for inputs outside the contract."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"images must be uint8 of shape (N, H, W, C) with C in (1, 3), got "
                         f"{images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(images)},), got "
                         f"{labels.dtype} {labels.shape}")
    if n_classes < 1 or len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}): fix the data or the schema's "
                         f"label set")


def padded(size: int) -> int:
    """The smallest multiple of 4 that holds ``size`` pixels."""
    return 4 * math.ceil(size / 4)


CHUNK = 2_048  # images generated at once: memory stays bounded for any n


def image_chunks(n: int):
    """Sizes of the chunks that make up n images."""
    for start in range(0, n, CHUNK):
        yield min(CHUNK, n - start)


def to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) -> uint8 (N, C, H', W') on ``device``, zero-padded (bottom, right)."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2)
    h, w = x.shape[2:]
    x = F.pad(x, (0, padded(w) - w, 0, padded(h) - h))
    return x.contiguous().to(device)


def to_uint8(x: torch.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """Pixels in [0, 1], (n, C, H', W') -> uint8 (n, H, W, C), cropped to ``shape``."""
    h, w, _ = shape
    x = (x[:, :, :h, :w].clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class LabelPrior:
    """Where sampled labels come from: uniform over the public label set, or the noised,
    rounded label histogram.

    Args:
        n_classes: size of the public label set.
        counts: noised counts (n_classes,), or None for uniform.
    """

    def __init__(self, n_classes: int, counts: np.ndarray | None = None):
        self.n_classes = n_classes
        self.counts = counts
        if counts is None or np.clip(counts, 0, None).sum() <= 0:
            p = np.full(n_classes, 1.0 / n_classes)
        else:
            p = np.clip(counts, 0, None) / np.clip(counts, 0, None).sum()
        self.probabilities = torch.tensor(p, dtype=torch.float32)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n,) int64 labels on the generator's device."""
        p = self.probabilities.to(generator.device)
        return torch.multinomial(p, n, replacement=True, generator=generator)

    def resolve(self, n: int, labels: np.ndarray | None, generator: torch.Generator
                ) -> torch.Tensor:
        """(n,) int64 labels on the generator's device: the given ones, checked, or drawn.

        Raises:
            ValueError: ``labels`` are not n integers in [0, n_classes).
        """
        if labels is None:
            return self.sample(n, generator)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=generator.device)
        if y.shape != (n,) or y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"labels must be {n} integers in [0, {self.n_classes})")
        return y


def measure_labels(labels: np.ndarray, n_classes: int, share: float, budget: PrivacyBudget,
                   random: PrivateRandom, secure: bool):
    """The Gaussian mechanism on the label histogram, spending ``share`` of the budget's
    epsilon if it ran alone; the noise from ``random`` (``secure``: from the OS CSPRNG).
    Returns the noised, rounded counts, the history entry and the report's measurement
    dict."""
    sigma = gaussian_noise_multiplier(share * budget.epsilon, budget.delta, "prv")
    exact = np.bincount(labels, minlength=n_classes).astype("float64")
    noise = random.normal((n_classes,), sigma, secure=secure)
    # rounded: count + round(noise) reveals nothing beyond the noise (no float low bits)
    counts = np.rint(exact + noise.double().cpu().numpy())
    measurement = {"mechanism": "Gaussian mechanism on the label histogram (the labels of "
                                "sampled images)", "l2_sensitivity": 1.0, "noise_std": sigma,
                   "noise_multiplier": sigma, "accounted_as": "(noise_multiplier, sampling "
                   "rate 1.0, 1 step), composed with DP-SGD in one accountant history"}
    return counts, (sigma, 1.0, 1), measurement


def label_prior(labels: np.ndarray, n_classes: int, share: float, budget: PrivacyBudget,
                random: PrivateRandom, secure: bool, resume: Resumable
                ) -> tuple[LabelPrior, list, tuple]:
    """An image model's label prior: uniform over the public label set when ``share`` is 0
    (free), else the noised label histogram (``measure_labels``), measured once per run (a
    resumed run reads it from its checkpoint). Returns the prior, its accountant history
    entries and its measurement dicts."""
    if share <= 0:
        return LabelPrior(n_classes), [], ()
    counts, entry, measurement = resume.measure("labels", lambda: measure_labels(
        labels, n_classes, share, budget, random, secure))
    return LabelPrior(n_classes, np.asarray(counts)), [entry], (measurement,)


def groups(channels: int) -> int:
    """GroupNorm groups: 8 channels a group, at least one group."""
    return max(1, channels // 8)


class Upsampler(nn.Module):
    """(batch, d_in) -> (batch, C, H', W') of logits (no output activation): a Linear layer
    to a (4w, H'/4, W'/4) map, then two sub-pixel stages, each a 3x3 conv at the lower
    resolution to 4 times the channels and a 2x pixel shuffle (no conv runs at full
    resolution, where per-record clipping would unfold every pixel's patch). GroupNorm
    normalises each image on its own."""

    def __init__(self, d_in: int, channels: int, height: int, width: int, w: int = 32):
        super().__init__()
        self.shape = (4 * w, height // 4, width // 4)
        self.fc = nn.Linear(d_in, math.prod(self.shape))
        self.body = nn.Sequential(
            nn.GroupNorm(groups(4 * w), 4 * w), nn.ReLU(),
            nn.Conv2d(4 * w, 4 * 2 * w, 3, padding=1), nn.PixelShuffle(2),  # (2w, H'/2, W'/2)
            nn.GroupNorm(groups(2 * w), 2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * channels, 3, padding=1), nn.PixelShuffle(2))  # (C, H', W')

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(h).view(len(h), *self.shape))


class Downsampler(nn.Module):
    """(batch, C_in, H', W') and optional extra features (batch, d_extra) -> (batch, d_out):
    two stride-2 4x4 convs (the second with GroupNorm), LeakyReLU, and a Linear layer over
    the flattened features and the extra ones (a label's one-hot, say)."""

    def __init__(self, channels: int, height: int, width: int, d_out: int, w: int = 32,
                 d_extra: int = 0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.GroupNorm(groups(2 * w), 2 * w),
            nn.LeakyReLU(0.2), nn.Flatten())
        self.fc = nn.Linear(2 * w * (height // 4) * (width // 4) + d_extra, d_out)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)  # (batch, 2w * H'/4 * W'/4)
        return self.fc(h if extra is None else torch.cat([h, extra], dim=1))
