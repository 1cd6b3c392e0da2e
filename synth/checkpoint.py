"""Resumable DP training: what a training loop saves every N steps, and how it picks up.

A loop hands its trainable parts (modules, optimizers, tensors such as a weight average) to
a ``Resumable``; every ``checkpoint.every`` steps the parts go to the run's ``Checkpoint``
with the step count, the accountant's history of the steps executed, and the one-shot DP
measurements taken before training (a noised histogram, say). A resumed run restores them,
reuses the measurements instead of measuring again (that would spend twice), and runs the
remaining steps, so it ends with the history, hence the epsilon, of an uninterrupted run.

What a checkpoint does not hold is randomness: no generator state or key is saved. A resumed
run rekeys its private randomness (``synth.randomness.PrivateRandom``: Poisson sampling, DP
noise) with a fresh 128-bit key from the OS, so nothing in a checkpoint predicts the noise of
the steps after it. The steps a killed run executed after its last checkpoint are lost and
run again; their results died with the process, and the budget ledger charges the run's whole
reservation from its first DP step in any case.

Saving and loading is the caller's business (``pipelines.checkpoints`` writes through the
atomic-write path and loads with ``torch.load(weights_only=True)``): this module only says
what a state is. A state holds tensors, numbers, strings and containers of them, nothing
that needs pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from synth.randomness import PrivateRandom


class Checkpoint(Protocol):
    """Where a run's training state goes, every ``every`` steps."""

    every: int

    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


class ResumeError(RuntimeError):
    """A checkpoint that does not belong to this training run (other sizes or plan)."""


def _saveable(value: Any) -> Any:
    """numpy arrays become tensors (``weights_only`` loading refuses numpy objects)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_saveable(v) for v in value)
    if isinstance(value, dict):
        return {k: _saveable(v) for k, v in value.items()}
    return value


def _snapshot(part: Any) -> Any:
    if hasattr(part, "state_dict"):
        return part.state_dict()
    if isinstance(part, dict):  # a dict of tensors, e.g. a running weight average
        return {k: v.detach().clone() for k, v in part.items()}
    raise TypeError(f"cannot checkpoint a {type(part).__name__}")


def _restore(part: Any, state: Any) -> None:
    if hasattr(part, "load_state_dict"):
        part.load_state_dict(state)
    else:
        for k, v in part.items():
            v.copy_(state[k])


class Resumable:
    """One training loop's checkpoints (a no-op without a checkpoint).

    Args:
        checkpoint: where states go; None trains without checkpoints.
    """

    def __init__(self, checkpoint: Checkpoint | None):
        self.checkpoint = checkpoint
        self.state = checkpoint.load() if checkpoint is not None else None
        self.plan: list[float] = []
        self.measured: dict[str, Any] = {}

    @property
    def resumed(self) -> bool:
        return self.state is not None

    def measure(self, name: str, run: Callable[[], Any]) -> Any:
        """A DP measurement taken once per run: ``run()`` on a fresh run; on a resumed one
        the value saved with the checkpoint (numpy arrays come back as tensors)."""
        value = self.state["measured"][name] if self.state is not None else _saveable(run())
        self.measured[name] = value
        return value

    def start(self, plan: tuple, parts: dict[str, Any], random: PrivateRandom,
              generator: torch.Generator | None = None) -> tuple[int, list]:
        """Restores ``parts`` and returns (first step to run, accountant history so far);
        (0, []) on a fresh run. ``plan`` (e.g. sigma, q, steps) must be the one the state was
        saved under. A resumed run's private ``random`` is rekeyed (``PrivateRandom.reseed``:
        from the OS, or from the fixed seed and the step where a test fixed it), and the
        losses' ``generator`` reseeded from it.

        Raises:
            ResumeError: the state was saved under another plan.
        """
        self.plan = [float(x) for x in plan]
        state = self.state
        if state is None:  # not resumed
            return 0, []
        if [float(x) for x in state["plan"]] != self.plan:
            raise ResumeError(f"the checkpoint was saved by a run with plan "
                              f"{state['plan']}, this run's is {self.plan}")
        for name, part in parts.items():
            _restore(part, state["parts"][name])
        step = int(state["step"])
        random.reseed(step)
        if generator is not None:
            random.seed_generator(generator)
        return step, [tuple(h) for h in state["history"]]

    def after(self, done: int, steps: int, parts: dict[str, Any], history: list) -> None:
        """Call after each step (``done`` steps so far): saves every ``every`` steps and
        after the last, so that a run killed between training and publishing resumes with
        no step left to run and charges its budget once."""
        cp = self.checkpoint
        if cp is None or cp.every <= 0 or (done % cp.every and done < steps):
            return
        cp.save({"step": done, "plan": self.plan, "history": [list(h) for h in history],
                 "measured": self.measured,
                 "parts": {name: _snapshot(part) for name, part in parts.items()}})
