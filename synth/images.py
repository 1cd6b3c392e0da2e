"""The DP image synthesizers' contract, and their factory by name (``synth.registry``).

Their contract (not the tabular one of ``synth.base``): ``fit(images, labels, n_classes,
budget, progress=None)`` with uint8 images (N, H, W, C) and int labels (N,) in
[0, n_classes), returning ``self`` with ``privacy_`` set; ``sample(n, seed=0, labels=None)``
returning uint8 images (n, H, W, C) and int64 labels (n,).
"""

from __future__ import annotations

from typing import Any

from synth import registry

# the image synthesizers by name, as synth.registry lists them
IMAGE_SYNTHESIZERS: dict[str, type] = {n: registry.entry(n).load()
                                       for n in registry.names("image")}


def image_synthesizer_names() -> list[str]:
    return registry.names("image")


def make_image_synthesizer(name: str, **params: Any) -> Any:
    """A new, unfitted image synthesizer by registry name."""
    return registry.make(name, "image", **params)
