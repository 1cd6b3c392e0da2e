"""The synthesizer contract and the registry of synthesizers by name.

Synthesizers follow scikit-learn's estimator contract: ``__init__`` only stores parameters,
``fit`` returns ``self`` and sets attributes ending in ``_`` (among them ``privacy_``, the
``PrivacyReport`` of what fitting spent), and ``sample`` refuses to run before ``fit``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import pandas as pd

from schemas import Schema
from synth.privacy import PrivacyBudget, PrivacyReport


class NotFittedError(RuntimeError):
    """``sample`` was called before ``fit``."""


class Params:
    """scikit-learn's ``get_params``: the ``__init__`` arguments, read back from the
    attributes of the same name that ``__init__`` stores."""

    def get_params(self) -> dict[str, Any]:
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names}


class Synthesizer(Protocol):
    privacy_: PrivacyReport

    def fit(self, data: pd.DataFrame, schema: Schema, budget: PrivacyBudget,
            progress: Callable[[int, int], None] | None = None) -> "Synthesizer": ...

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame: ...

    def get_params(self) -> dict[str, Any]: ...


def _registry() -> dict[str, type]:
    from synth.gan import DPCTGAN
    from synth.marginals import DPIndependent, DPMarginals
    from synth.vae import DPVAE

    return {"dp-marginals": DPMarginals, "dp-independent": DPIndependent, "dp-vae": DPVAE,
            "dp-ctgan": DPCTGAN}


def synthesizer_names() -> list[str]:
    return sorted(_registry())


def make_synthesizer(name: str, **params: Any) -> Synthesizer:
    """A new, unfitted synthesizer by registry name."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown synthesizer {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name](**params)
