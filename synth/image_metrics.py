"""Image fidelity metrics, computed offline (no downloaded weights).

- ``cnn_accuracy``: a small CNN trained on synthetic images, scored on real test images (the
  "CNN accuracy" of the DPDM paper's tables, with our own small CNN).
- ``frechet_local_cnn_distance``: the Frechet distance between Gaussians fitted to the
  penultimate-layer features of real and synthetic images, features taken from a small CNN
  trained locally on real training images (``train_feature_cnn``). Call it
  "FD (local CNN features)": it is not Inception FID (no Inception weights here), and its
  values do not compare with published FIDs.

Both read real images, so their values are disclosures: they belong in internal reports and
benchmarks, never in a release. Every function takes an explicit seed; the CNN trains on
CUDA when there is one, else on the CPU in a few seconds to minutes (a two-convolution
network, a few epochs: see BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synth.sampling import resolve_device

FEATURES = 128  # penultimate width of the CNN


class SmallCNN(nn.Module):
    """conv 32 - pool - conv 64 - pool - dense 128 - dense classes, for images up to ~64 px.

    ``features`` returns the 128-wide penultimate activations.
    """

    def __init__(self, channels: int, height: int, width: int, n_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), FEATURES)
        self.fc2 = nn.Linear(FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (batch, 32, H/2, W/2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (batch, 64, H/4, W/4)
        return F.relu(self.fc1(h.flatten(1)))  # (batch, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def _tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


@dataclass(frozen=True)
class TrainedCNN:
    """A fitted SmallCNN and how it was trained."""

    model: SmallCNN
    epochs: int
    seed: int


def train_cnn(images: np.ndarray, labels: np.ndarray, n_classes: int, epochs: int = 5,
              batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
              device: str = "auto") -> TrainedCNN:
    """Fits a SmallCNN by Adam on uint8 (N, H, W, C) images and int (N,) labels, on
    ``device`` ("auto": CUDA when available).

    Not private: use it on synthetic images, or on real ones only for internal metrics.
    """
    torch.manual_seed(seed)  # weight init (on the CPU); the shuffles use their own generator
    n, h, w, c = images.shape
    where = resolve_device(device)
    model = SmallCNN(c, h, w, n_classes).to(where)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x = _tensor(images).to(where)
    y = torch.as_tensor(labels, dtype=torch.long, device=where)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(where)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.eval()
    return TrainedCNN(model=model, epochs=epochs, seed=seed)


@torch.no_grad()
def _batched(cnn: TrainedCNN, fn, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """``fn`` (the model or one of its methods) over ``images`` in batches, on the model's
    device."""
    device = next(cnn.model.parameters()).device
    out = [fn(_tensor(images[i:i + batch_size]).to(device)).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def accuracy(cnn: TrainedCNN, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``images`` whose predicted class is ``labels``."""
    logits = _batched(cnn, cnn.model, images)
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean())


def cnn_accuracy(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                 test_labels: np.ndarray, n_classes: int, epochs: int = 5,
                 seed: int = 0) -> float:
    """Accuracy on real ``test_images`` of a SmallCNN trained on ``train_images`` (synthetic
    ones to score a synthesizer; real training images for the train-on-real reference)."""
    cnn = train_cnn(train_images, train_labels, n_classes, epochs=epochs, seed=seed)
    return accuracy(cnn, test_images, test_labels)


def train_feature_cnn(real_images: np.ndarray, real_labels: np.ndarray, n_classes: int,
                      epochs: int = 5, seed: int = 0) -> TrainedCNN:
    """The feature network of ``frechet_local_cnn_distance``: a SmallCNN trained on real
    training images (locally, with a fixed seed, so the distance is reproducible)."""
    return train_cnn(real_images, real_labels, n_classes, epochs=epochs, seed=seed)


def cnn_features(cnn: TrainedCNN, images: np.ndarray) -> np.ndarray:
    """(N, 128) float64 penultimate-layer features."""
    return _batched(cnn, cnn.model.features, images).astype(np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` (N, d) and ``b`` (M, d):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2), which has the same spectrum as S_a S_b.
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(s_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # S_a^(1/2)
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)
    return max(fd, 0.0)


def frechet_local_cnn_distance(feature_cnn: TrainedCNN, real_images: np.ndarray,
                               synthetic_images: np.ndarray) -> float:
    """FD (local CNN features): the Frechet distance between real and synthetic images in the
    penultimate-layer features of ``feature_cnn`` (see ``train_feature_cnn``). Not FID."""
    return frechet_distance(cnn_features(feature_cnn, real_images),
                            cnn_features(feature_cnn, synthetic_images))
