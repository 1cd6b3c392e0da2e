"""The registry of DP image synthesizers by name.

Their contract (not the tabular one of ``synth.base``): ``fit(images, labels, n_classes,
budget, progress=None)`` with uint8 images (N, H, W, C) and int labels (N,) in
[0, n_classes), returning ``self`` with ``privacy_`` set; ``sample(n, seed=0, labels=None)``
returning uint8 images (n, H, W, C) and int64 labels (n,).
"""

from __future__ import annotations

from typing import Any

from synth.image_gan import DPConvGAN
from synth.image_merf import DPMERF
from synth.image_vae import DPConvVAE

IMAGE_SYNTHESIZERS: dict[str, type] = {"dp-conv-gan": DPConvGAN, "dp-conv-vae": DPConvVAE,
                                       "dp-merf": DPMERF}


def image_synthesizer_names() -> list[str]:
    return sorted(IMAGE_SYNTHESIZERS)


def make_image_synthesizer(name: str, **params: Any) -> DPConvGAN | DPConvVAE | DPMERF:
    """A new, unfitted image synthesizer by registry name."""
    if name not in IMAGE_SYNTHESIZERS:
        raise ValueError(f"unknown image synthesizer {name!r}; known: "
                         f"{', '.join(image_synthesizer_names())}")
    return IMAGE_SYNTHESIZERS[name](**params)
