"""The private randomness of a fit: Poisson sampling masks, DP noise, noised counts.

Everything a DP guarantee rests on being unpredictable comes from one ``PrivateRandom`` per
fit: numpy's Philox-4x64-10, a counter-based generator whose 128-bit key is the whole secret.
The key comes from the operating system's CSPRNG (``secrets``) for every fit; where a test
fixes a ``noise_seed``, it is derived from the whole integer by numpy's ``SeedSequence``, so
seeds that share their low bits (s, s + 2^40, s + 2^62) give unrelated streams. torch's CPU
generator, by contrast, keeps only the low 32 bits of its seed (and a CUDA one 64), few
enough to enumerate.

* ``normal``: Gaussian noise, float32, on the requested device; ``secure=True`` draws it from
  the OS CSPRNG itself (``secure_normal``), for ``secure_noise`` and for one-shot releases.
* ``mask``: one step of Poisson sampling.
* ``reseed``: a resumed run's fresh key (nothing of the key is ever saved).
* ``torch_generator``: a plain torch generator, seeded from the stream, for the randomness
  inside a loss (latents, fake rows, reparameterisation noise) and for the free training of a
  GAN's generator. The DP mechanism (which records a step reads, the noise on their clipped
  sum) never draws from it. Weight initialisation uses the public ``seed`` instead.

Draws are made on the CPU and copied to the device.
"""

from __future__ import annotations

import math
import os
import secrets

import numpy as np
import torch

KEY_BITS = 128  # Philox-4x64-10's key: two 64-bit words


def secure_normal(shape: tuple[int, ...], std: float, device: torch.device | str
                  ) -> torch.Tensor:
    """Gaussian noise from the operating system's CSPRNG (``os.urandom``), by Box-Muller in
    float64: nobody can regenerate it from a seed or a leaked generator state. It does not
    address floating-point representation attacks on the sampled values."""
    n = math.prod(shape)
    raw = torch.frombuffer(bytearray(os.urandom(16 * n)), dtype=torch.int64).view(2, n)
    u = (((raw >> 11) & (2**53 - 1)).double() + 1.0) / 2.0**53  # 53 random bits -> (0, 1]
    z = torch.sqrt(-2.0 * torch.log(u[0])) * torch.cos(2.0 * math.pi * u[1])
    return (z * std).to(device=device, dtype=torch.float32).view(shape)


class PrivateRandom:
    """The private randomness of one fit, from a generator with a 128-bit secret key.

    Args:
        seed: None (every release): the key comes from the OS CSPRNG. A non-negative integer
            (tests only; anyone who knows it can regenerate the noise): the key is derived
            from all of its bits.

    Raises:
        ValueError: a negative seed.
    """

    def __init__(self, seed: int | None = None):
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"noise_seed must be a non-negative integer or None, got {seed!r}")
        self.fixed = seed is not None
        self._seed = None if seed is None else int(seed)
        self._rng = self._stream(())

    def _stream(self, spawn_key: tuple[int, ...]) -> np.random.Generator:
        if self._seed is None:
            key = secrets.randbits(KEY_BITS)
        else:
            key = np.random.SeedSequence(self._seed, spawn_key=spawn_key).generate_state(
                KEY_BITS // 64, np.uint64)
        return np.random.Generator(np.random.Philox(key=key))

    @property
    def key_bits(self) -> int:
        """Bits of secret key behind the stream (the generator's key words times 64)."""
        return 64 * len(self._rng.bit_generator.state["state"]["key"])

    def normal(self, shape: tuple[int, ...], std: float, device: torch.device | str = "cpu",
               secure: bool = False) -> torch.Tensor:
        """float32 N(0, std^2) noise of ``shape`` on ``device``: from the stream, or with
        ``secure`` from the OS CSPRNG (``secure_normal``)."""
        shape = tuple(shape)
        if secure:
            return secure_normal(shape, std, device)
        z = self._rng.standard_normal(math.prod(shape), dtype=np.float32)
        return (torch.from_numpy(z).view(shape) * std).to(device)

    def mask(self, n: int, q: float, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n,) bool: keeps each of n records independently with probability q (one step of
        Poisson sampling, as the accountant assumes)."""
        return torch.from_numpy(self._rng.random(n) < q).to(device)

    def reseed(self, step: int) -> None:
        """Starts a fresh stream for a run resumed at ``step``: a new key from the OS, or,
        for a fixed seed, the key derived from (seed, step)."""
        self._rng = self._stream((int(step),))

    def seed_generator(self, generator: torch.Generator) -> torch.Generator:
        """Seeds ``generator`` with 63 bits drawn from the stream (which reveal nothing of
        the key) and returns it."""
        return generator.manual_seed(int(self._rng.integers(2**63)))

    def torch_generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """A torch generator on ``device`` for the randomness inside a loss, seeded from the
        stream: a fixed seed reproduces it, an unseeded fit's is fresh. Never for masks or
        noise: on the CPU it keeps only 32 bits of its seed."""
        return self.seed_generator(torch.Generator(device=device))
