"""K copies of one network trained as a single module: a grid of seeds or budgets at once.

``stack`` turns K networks of the same shape (an ``nn.Sequential`` of ``nn.Linear`` layers
and element-wise activations) into one whose Linear layers hold K weight matrices each
(``StackedLinear``) and map (K, batch, d_in) to (K, batch, d_out) by one batched matmul;
``unstack`` writes the trained weights back into the K networks. Model k sees only slice
k, so the stacked network is K independent networks that share their kernel launches: the
small matmuls of one model become one large batched one, which is where the throughput of
a grid comes from (``synth.many``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# modules applied element-wise: they act on (K, batch, d) exactly as on (batch, d)
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU,
               nn.Softplus, nn.Identity)


class StackedLinear(nn.Module):
    """K independent ``nn.Linear(d_in, d_out)`` layers: weight (K, d_out, d_in), bias
    (K, d_out); input (K, batch, d_in), output (K, batch, d_out)."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())
        has_bias = {m.bias is not None for m in layers}
        if len(has_bias) != 1:
            raise TypeError("stacked Linear layers must all have a bias or none")
        self.bias = (nn.Parameter(torch.stack([m.bias.detach() for m in layers]).clone())
                     if has_bias.pop() else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def _layers(module: nn.Module) -> list[nn.Module]:
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"only nn.Sequential networks can be stacked, not "
                        f"{type(module).__name__}")
    for layer in module:
        if not isinstance(layer, (nn.Linear, *ELEMENTWISE)):
            raise TypeError(f"a stacked network holds Linear layers and element-wise "
                            f"activations only, not {type(layer).__name__}")
    return list(module)


def stack(modules: Sequence[nn.Module]) -> nn.Sequential:
    """One network evaluating ``modules`` (K networks of the same layers and shapes) on
    (K, batch, ...) inputs; the weights are copied, the K networks are left untouched."""
    if not modules:
        raise ValueError("nothing to stack")
    columns = list(zip(*(_layers(m) for m in modules), strict=True))
    out: list[nn.Module] = []
    for column in columns:
        first = column[0]
        if any(type(m) is not type(first) or repr(m) != repr(first) for m in column):
            raise TypeError(f"the networks differ: {first!r} against another layer")
        out.append(StackedLinear(column) if isinstance(first, nn.Linear) else first)
    return nn.Sequential(*out)


def unstack(stacked: nn.Sequential, modules: Sequence[nn.Module]) -> None:
    """Copies model k's slice of ``stacked`` into ``modules[k]``'s parameters."""
    pairs = [(s, column) for s, column in zip(stacked, zip(*(list(m) for m in modules)))
             if isinstance(s, StackedLinear)]
    with torch.no_grad():
        for s, column in pairs:
            for k, m in enumerate(column):
                m.weight.copy_(s.weight[k])
                if m.bias is not None and s.bias is not None:
                    m.bias.copy_(s.bias[k])
