"""What every synthesizer's ``sample`` shares: the device (and its CPU threads), the checks,
bounded chunks, and one categorical draw per encoded column."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

from synth.base import NotFittedError

CHUNK = 65_536  # rows drawn at once: memory stays bounded for any n


def resolve_device(device: str) -> torch.device:
    """"auto" is CUDA when available, else the CPU; anything else is taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[int]:
    """Torch's intra-op threads for work made of many small operations (milliseconds or
    less each) on the CPU, restored afterwards; yields the number used. ``threads`` None:
    one where OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``, which ``synth`` and
    the flows set), since each operation then pays to wake them; torch's own setting
    otherwise. On 2 CPU cores, one Adam iteration of an Adult-sized mixture (35 marginals)
    took 42 ms on one thread against 55 to 64 ms on two sleeping threads and 30 to 34 ms on
    two spinning ones; a whole ``dp-marginals`` fit on Adult at epsilon 10, 225 s against 412
    s. Not applied on CUDA."""
    before = torch.get_num_threads()
    if device.type != "cpu":
        yield before
        return
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    wanted = threads or (1 if passive else before)
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


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
