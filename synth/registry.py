"""Every synthesizer, by name: the one list that the command line's choices, the run
config's allowed values (and so Prefect's run form), the factories of ``synth.base`` and
``synth.images`` and the documentation derive from.

Adding a synthesizer: write its class in its own module of ``synth/`` (the tabular contract
of ``synth.base.Synthesizer``, or the image one of ``synth.images``), then add one ``Entry``
here. Classes are imported when first made, so reading the registry costs no torch import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["table", "image", "multi-table"]


@dataclass(frozen=True)
class Entry:
    """One synthesizer: its name, the kind of data it takes, where its class lives, whether
    it trains by DP-SGD (and so takes ``--epochs``, ``--batch-size``...), and a one-line
    summary for the help and the run form."""

    name: str
    kind: Kind
    target: str  # "module:Class"
    dpsgd: bool
    summary: str

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


SYNTHESIZERS: tuple[Entry, ...] = (
    Entry("dp-marginals", "table", "synth.marginals:DPMarginals", False,
          "adaptive noisy marginals (AIM-style), the most faithful tables (the default)"),
    Entry("dp-ctgan", "table", "synth.gan:DPCTGAN", True,
          "conditional GAN whose discriminator alone reads real rows, under DP-SGD"),
    Entry("dp-vae", "table", "synth.vae:DPVAE", True,
          "variational autoencoder trained with DP-SGD"),
    Entry("dp-independent", "table", "synth.marginals:DPIndependent", False,
          "every column from its own noisy histogram: a baseline"),
    Entry("dp-person-marginals", "multi-table", "synth.multitable:PersonMarginals", False,
          "linked tables, a person model and a model per table of their rows (the default "
          "for multi-table schemas)"),
    Entry("dp-conv-gan", "image", "synth.image_gan:DPConvGAN", True,
          "convolutional GAN conditioned on the label, under DP-SGD (the image default)"),
    Entry("dp-conv-vae", "image", "synth.image_vae:DPConvVAE", True,
          "convolutional VAE conditioned on the label, under DP-SGD"),
    Entry("dp-merf", "image", "synth.image_merf:DPMERF", False,
          "random-feature mean embeddings per label, released once with Gaussian noise"),
)
NAMES: tuple[str, ...] = tuple(e.name for e in SYNTHESIZERS)
DEFAULT = {"table": "dp-marginals", "image": "dp-conv-gan",
           "multi-table": "dp-person-marginals"}


def names(kind: Kind | None = None) -> list[str]:
    """The names of the synthesizers of ``kind`` (all of them when None), sorted."""
    return sorted(e.name for e in SYNTHESIZERS if kind is None or e.kind == kind)


def entry(name: str) -> Entry:
    """The entry of ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    for e in SYNTHESIZERS:
        if e.name == name:
            return e
    raise ValueError(f"unknown synthesizer {name!r}; known: {', '.join(sorted(NAMES))}")


def make(name: str, kind: Kind, **params: Any) -> Any:
    """A new, unfitted synthesizer of ``kind`` by name.

    Raises:
        ValueError: an unknown name, or one of another kind, listing those of ``kind``.
    """
    if name not in names(kind):
        raise ValueError(f"unknown {'image ' if kind == 'image' else ''}synthesizer "
                         f"{name!r}; known: {', '.join(names(kind))}")
    return entry(name).load()(**params)


def describe() -> str:
    """One line per synthesizer, for a help text or a form's description."""
    return "; ".join(f"{e.name}: {e.summary}" for e in SYNTHESIZERS)
