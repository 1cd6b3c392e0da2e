"""The adversarial loop both GANs train by (``synth.gan`` for tables, ``synth.image_gan``
for images): D by DP-SGD on Poisson-sampled real records, G by plain Adam through D, G's
weights averaged, checkpoints every N steps (``synth.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from synth.checkpoint import Resumable
from synth.dpsgd import DPSGDPlan, DPStep
from synth.randomness import PrivateRandom

EMA_DECAY = 0.98  # G's weights are averaged over its last ~50 steps: DP noise makes G jitter


@torch.no_grad()
def average_into(ema: dict[str, torch.Tensor], generator: nn.Module, step: int) -> None:
    """Folds the generator's weights after ``step`` into their running average ``ema``
    (decay (1 + t) / (10 + t) up to EMA_DECAY: bias-corrected early on); buffers that are
    not floating point are copied."""
    decay = min(EMA_DECAY, (1 + step) / (10 + step))
    for k, v in generator.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].mul_(decay).add_(v, alpha=1 - decay)
        else:
            ema[k].copy_(v)


def adversarial_training(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                         step_d: DPStep, records: torch.Tensor, dp_plan: DPSGDPlan,
                         random: PrivateRandom, generator: torch.Generator,
                         d_loss: Callable[[torch.Tensor], torch.Tensor],
                         g_loss: Callable[[], torch.Tensor], generator_steps: int,
                         resume: Resumable,
                         progress: Callable[[int, int], None] | None) -> None:
    """The loop both GANs train by: per step, a Poisson sample of ``records`` (drawn from
    the private ``random`` at the plan's rate) and one DP-SGD step of D on ``d_loss`` (per
    record), then ``generator_steps`` plain Adam steps of G on ``g_loss``, whose forward
    pass through D reads no real record; the losses draw from ``generator``. G's weights are
    averaged (``average_into``) and loaded at the end. Checkpoints go to ``resume`` every
    ``every`` steps, with the accountant history executed so far (the plan's, its DP-SGD
    entry cut at the step); a resumed run starts from its step."""
    ema = {k: v.detach().clone() for k, v in G.state_dict().items()}
    parts = {"generator": G, "discriminator": D, "opt_g": opt_g, "opt_d": step_d.optimizer,
             "average": ema}
    sigma, q, steps = dp_plan.noise_multiplier, dp_plan.sampling_rate, dp_plan.steps
    start, _ = resume.start((sigma, q, steps), parts, random, generator)
    before = list(dp_plan.history[:-1])  # the mechanisms run before DP-SGD, the count's too
    n = len(records)  # only the sampling reads it
    G.train()
    D.train()
    try:
        for step in range(start, steps):
            batch = records[random.mask(n, q, records.device)]
            step_d(partial(d_loss, batch) if len(batch) else None)
            for _ in range(generator_steps):
                with step_d.public_forward():
                    loss = g_loss()
                opt_g.zero_grad(set_to_none=True)
                loss.backward(inputs=list(G.parameters()))
                opt_g.step()
            average_into(ema, G, step)
            resume.after(step + 1, steps, parts, [*before, (sigma, q, step + 1)])
            if progress is not None:
                progress(step + 1, steps)
    finally:
        step_d.close()
    G.load_state_dict(ema)
    G.eval()
    D.eval()
