"""What every synthesizer's ``sample`` shares: the device, the checks, bounded chunks, and
one categorical draw per encoded column."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from synth.base import NotFittedError

CHUNK = 65_536  # rows drawn at once: memory stays bounded for any n


def resolve_device(device: str) -> torch.device:
    """"auto" is CUDA when available, else the CPU; anything else is taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_request(model: object, n: int) -> None:
    """Raises NotFittedError before ``fit``, ValueError for a non-positive ``n``."""
    if not hasattr(model, "privacy_"):
        raise NotFittedError(f"{type(model).__name__}.sample called before fit")
    if n < 1:
        raise ValueError(f"the number of rows to sample must be positive, got {n}")


def chunks(n: int) -> Iterator[int]:
    """Sizes of the chunks that make up n rows."""
    for start in range(0, n, CHUNK):
        yield min(CHUNK, n - start)


def draw(probabilities: Iterable[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """One code per row from each column's (rows, states) probabilities: (rows, columns)."""
    return torch.stack([torch.multinomial(p, 1, generator=generator)[:, 0]
                        for p in probabilities], dim=1)
