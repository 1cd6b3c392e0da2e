"""The tabular synthesizer contract, and its factory by name (the names: ``synth.registry``).

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
            progress: Callable[[int, int], None] | None = None) -> Synthesizer: ...

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame: ...

    def get_params(self) -> dict[str, Any]: ...


def synthesizer_names() -> list[str]:
    """The tabular synthesizers' names (``synth.registry``)."""
    from synth import registry

    return registry.names("table")


def make_synthesizer(name: str, **params: Any) -> Synthesizer:
    """A new, unfitted tabular synthesizer by registry name (``synth.registry``)."""
    from synth import registry

    return registry.make(name, "table", **params)
