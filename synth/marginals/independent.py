"""The independent-columns baseline: dp-marginals with the whole budget on the 1-way marginals."""

from __future__ import annotations

from synth.marginals.aim import DPMarginals


class DPIndependent(DPMarginals):
    """Baseline: every column drawn independently from its noisy 1-way marginal (the whole
    budget on the 1-way marginals, no selection).

    Args:
        max_bins: bins per numeric column (the schema may set its own).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        seed: seeds the model's initialisation.
        noise_seed: as for ``DPMarginals``: None for OpenDP's secure samplers.
    """

    mechanism = "every 1-way marginal measured once (OpenDP discrete Gaussian), composed in zCDP"

    def __init__(self, max_bins: int = 20, device: str = "auto", seed: int = 0,
                 noise_seed: int | None = None):
        super().__init__(degree=1, rounds_per_column=0, components=1, max_bins=max_bins,
                         fine_share=0.0, device=device, seed=seed, noise_seed=noise_seed)
