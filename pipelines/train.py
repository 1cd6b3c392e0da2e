"""Train and sample: fit a registered DP synthesizer under a budget, then draw rows from it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pandas as pd

from schemas import Schema
from synth.base import Synthesizer, make_synthesizer
from synth.checkpoint import Checkpoint
from synth.privacy import PrivacyBudget


def train(data: pd.DataFrame, schema: Schema, budget: PrivacyBudget, synthesizer: str,
          params: dict[str, Any], progress: Callable[[int, int], None] | None = None,
          checkpoint: Checkpoint | None = None) -> Synthesizer:
    """Fits ``synthesizer`` (a registry name) on private ``data``; the result's ``privacy_``
    says what was spent, never more than ``budget``. Synthesizers trained by DP-SGD save to,
    and resume from, ``checkpoint``; the others (a few one-shot measurements) ignore it."""
    model = make_synthesizer(synthesizer, **params)
    resumable = "checkpoint" in inspect.signature(model.fit).parameters
    model = model.fit(data, schema, budget, progress=progress,
                      **({"checkpoint": checkpoint} if resumable else {}))
    if model.privacy_.epsilon > budget.epsilon * (1 + 1e-9):
        raise RuntimeError(f"spent epsilon {model.privacy_.epsilon} exceeds the budget "
                           f"{budget.epsilon}")
    return model


def sample(model: Synthesizer, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` synthetic rows: post-processing of the DP model, so public from here on."""
    return model.sample(rows, seed=seed)
