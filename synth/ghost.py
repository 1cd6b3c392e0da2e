"""Exact per-sample gradient clipping without a per-sample gradient for every parameter.

For each supported layer a rule turns the layer's recorded input ``a`` and output gradient
``g`` into (1) each record's squared gradient norm and (2) the layer's summed gradient with
each record's contribution scaled by its clip factor. Linear and Conv2d layers are one rule:
a convolution is a Linear layer over the unfolded patches, so both see a of shape
(batch, T, d_in) and g of shape (batch, T, d_out). Their per-sample weight gradient is
sum_t g_t a_t^T, whose squared norm is computed the cheaper way: by "ghost norm",
sum_{t,t'} (a_t . a_t')(g_t . g_t') at a cost of T^2, or by instantiating the
(d_out, d_in) gradient; T = 1 reduces to ||g|| ||a||. Embedding gradients are rows of g
added at the looked-up indices; GroupNorm and LayerNorm gradients are small (channels)
and are instantiated. A ``StackedLinear`` (K models at once, ``synth.stacked``) sees a of
shape (K, batch, d_in): its records are (model, row) pairs, each a T = 1 Linear record.
Opacus's GradSampleModule is the oracle for every rule in the tests.

A privacy unit may span several consecutive rows of the batch (``rows_per_record`` k: a DP
GAN's real image and the fake paired with it): the layer's batch is then (k * records, ...),
and a record's gradient is the sum over its k rows, i.e. one record of k times the tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from synth.stacked import StackedLinear

SUPPORTED = (nn.Linear, nn.Conv2d, nn.Embedding, nn.GroupNorm, nn.LayerNorm, StackedLinear)


def supported_layers(module: nn.Module) -> list[nn.Module]:
    """The module's parametrised layers; raises if any trainable parameter lives elsewhere."""
    layers = [m for m in module.modules() if isinstance(m, SUPPORTED)
              and any(p.requires_grad for p in m.parameters(recurse=False))]
    covered = {id(p) for m in layers for p in m.parameters(recurse=False)}
    stray = [n for n, p in module.named_parameters() if p.requires_grad and id(p) not in covered]
    stray += [n for n, m in module.named_modules() if isinstance(m, nn.Embedding)
              and (m.sparse or m.max_norm is not None)]
    if stray:
        names = ", ".join(t.__name__ for t in SUPPORTED)
        raise TypeError(f"DP-SGD here supports parameters in {names} layers only: {stray}")
    return layers


def _as_tokens(layer: nn.Module, a: torch.Tensor, g: torch.Tensor, group: int = 1):
    """Linear or Conv2d input/output-grad as (records, T, d_in) and (records, T, d_out),
    where a record is ``group`` consecutive rows of the batch."""
    a, g = _tokens(layer, a, g)
    records = len(a) // group
    return a.reshape(records, -1, a.shape[-1]), g.reshape(records, -1, g.shape[-1])


def _tokens(layer: nn.Module, a: torch.Tensor, g: torch.Tensor):
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise TypeError("Conv2d with string or non-zero padding modes is not supported")
        a = F.unfold(a, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        if layer.groups != 1:
            raise TypeError("grouped Conv2d is not supported")
        return a.transpose(1, 2), g.flatten(2).transpose(1, 2)
    return a.reshape(len(a), -1, a.shape[-1]), g.reshape(len(g), -1, g.shape[-1])


def _matmul_norm_sq(a: torch.Tensor, g: torch.Tensor):
    """(batch,) squared norms of sum_t g_t a_t^T, by the cheaper of ghost and instantiation,
    and the instantiated per-sample gradients (batch, d_out, d_in) when that was cheaper."""
    t, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if t == 1:
        return g[:, 0].pow(2).sum(1) * a[:, 0].pow(2).sum(1), None
    if t * t <= d_in * d_out:
        return (a @ a.transpose(1, 2) * (g @ g.transpose(1, 2))).sum((1, 2)), None
    per_sample = torch.bmm(g.transpose(1, 2), a)  # (batch, d_out, d_in)
    return per_sample.pow(2).sum((1, 2)), per_sample


def _normalized(layer: nn.Module, a: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.GroupNorm):
        return F.group_norm(a, layer.num_groups, eps=layer.eps)
    return F.layer_norm(a, layer.normalized_shape, eps=layer.eps)


def _norm_layer_grads(layer: nn.Module, a: torch.Tensor, g: torch.Tensor):
    """Per-sample (weight, bias) gradients of GroupNorm/LayerNorm, flattened to (batch, -1)."""
    xg = _normalized(layer, a) * g
    if isinstance(layer, nn.GroupNorm):  # channels are dim 1; sum over the rest
        return xg.flatten(2).sum(2), g.flatten(2).sum(2)
    lead = a.dim() - len(layer.normalized_shape)  # batch + any sequence dims
    dims = tuple(range(1, lead))
    w, b = (xg.sum(dims) if dims else xg), (g.sum(dims) if dims else g)
    return w.flatten(1), b.flatten(1)


def _by_record(x: torch.Tensor, group: int) -> torch.Tensor:
    """(group * records, d) per-row gradients -> (records, d) per-record sums."""
    return x if group == 1 else x.view(len(x) // group, group, -1).sum(1)


def _embedding_grads(layer: nn.Embedding, a: torch.Tensor, g: torch.Tensor, group: int = 1):
    """Indices (records, T) and output gradients (records, T, d); padding rows get none."""
    records = len(a) // group
    idx, gt = a.reshape(records, -1), g.reshape(records, -1, g.shape[-1])
    if layer.padding_idx is not None:
        gt = gt * (idx != layer.padding_idx).unsqueeze(-1)
    return idx, gt


def norm_sq(layer: nn.Module, a: torch.Tensor, g: torch.Tensor, group: int = 1):
    """(records,) squared norm of each record's gradient over this layer's parameters (a
    record is ``group`` consecutive rows), and what ``set_clipped_grads`` can reuse
    (unfolded tokens, instantiated gradients)."""
    if isinstance(layer, StackedLinear):  # (K, batch) records of one token each
        if group != 1:
            raise TypeError("stacked models take one row per record")
        sq = g.pow(2).sum(-1) * a.pow(2).sum(-1)
        return (sq + g.pow(2).sum(-1) if layer.bias is not None else sq), None
    if isinstance(layer, nn.Embedding):
        idx, gt = _embedding_grads(layer, a, g, group)
        same = (idx[:, :, None] == idx[:, None, :]).to(gt.dtype)
        return (same * (gt @ gt.transpose(1, 2))).sum((1, 2)), None
    if isinstance(layer, (nn.GroupNorm, nn.LayerNorm)):
        w, b = (_by_record(x, group) for x in _norm_layer_grads(layer, a, g))
        return w.pow(2).sum(1) + (b.pow(2).sum(1) if layer.bias is not None else 0.0), None
    at, gt = _as_tokens(layer, a, g, group)
    sq, per_sample = _matmul_norm_sq(at, gt)
    if layer.bias is not None:
        sq = sq + (gt[:, 0] if gt.shape[1] == 1 else gt.sum(1)).pow(2).sum(1)
    return sq, (at, gt, per_sample)


def set_clipped_grads(layer: nn.Module, a: torch.Tensor, g: torch.Tensor,
                      scale: torch.Tensor, cache=None, group: int = 1) -> None:
    """Sets ``.grad`` of the layer's parameters to sum_i scale_i * (record i's gradient);
    ``cache`` is what ``norm_sq`` returned for the same a, g and ``group``."""
    if isinstance(layer, StackedLinear):  # scale (K, batch): one batched matmul
        g = g * scale.unsqueeze(-1)
        layer.weight.grad = torch.bmm(g.transpose(1, 2), a)
        if layer.bias is not None:
            layer.bias.grad = g.sum(1)
        return
    if cache is not None:
        at, gt, per_sample = cache
        if per_sample is not None:
            layer.weight.grad = torch.einsum("b,boi->oi", scale, per_sample).view_as(
                layer.weight)
            if layer.bias is not None:
                layer.bias.grad = scale @ gt.sum(1)
            return
    row_scale = scale.repeat_interleave(group) if group > 1 else scale  # (batch,)
    g = g * row_scale.view(-1, *([1] * (g.dim() - 1)))
    if isinstance(layer, nn.Embedding):
        idx, gt = _embedding_grads(layer, a, g)
        grad = torch.zeros_like(layer.weight)
        grad.index_add_(0, idx.reshape(-1), gt.reshape(-1, gt.shape[-1]))
        layer.weight.grad = grad
        return
    if isinstance(layer, (nn.GroupNorm, nn.LayerNorm)):
        w, b = _norm_layer_grads(layer, a, g)
        layer.weight.grad = w.sum(0).view_as(layer.weight)
        if layer.bias is not None:
            layer.bias.grad = b.sum(0).view_as(layer.bias)
        return
    at, gt = (_as_tokens(layer, a, g, group) if cache is None
              else (cache[0], cache[1] * scale[:, None, None]))
    gt, at = gt.reshape(-1, gt.shape[-1]), at.reshape(-1, at.shape[-1])  # (batch*T, d)
    layer.weight.grad = (gt.T @ at).view_as(layer.weight)  # one matmul
    if layer.bias is not None:
        layer.bias.grad = gt.sum(0)


class GhostClipper:
    """Records each supported layer's input and output in the forward pass; ``backward``
    asks autograd only for the gradients of those outputs (no parameter gradients: they would
    be thrown away), and ``clipped_sum`` forms the sum of per-sample gradients clipped to
    ``max_grad_norm`` in each parameter's ``.grad``. With ``rows_per_record`` k > 1 the
    batch holds k consecutive rows per record, and each record's summed gradient is
    clipped."""

    def __init__(self, module: nn.Module, max_grad_norm: float | torch.Tensor,
                 rows_per_record: int = 1):
        self.layers = supported_layers(module)
        self.max_grad_norm = max_grad_norm
        self.rows_per_record = rows_per_record
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.outputs: dict[nn.Module, torch.Tensor] = {}
        self.grads: dict[nn.Module, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._record) for m in self.layers]

    def _record(self, layer: nn.Module, args, output: torch.Tensor) -> None:
        if layer in self.inputs:
            raise RuntimeError(f"{type(layer).__name__} was called twice in one forward pass")
        self.inputs[layer] = args[0].detach()
        self.outputs[layer] = output

    def backward(self, loss: torch.Tensor) -> None:
        """Output gradients of every recorded layer for the summed per-sample ``loss``."""
        grads = torch.autograd.grad(loss, [self.outputs[m] for m in self.layers],
                                    allow_unused=True)
        self.grads = {m: torch.zeros_like(self.outputs[m]) if g is None else g
                      for m, g in zip(self.layers, grads)}
        self.outputs.clear()

    def per_sample_norms(self) -> torch.Tensor:
        """(records,) exact norms of each record's full gradient."""
        k = self.rows_per_record
        results = {m: norm_sq(m, self.inputs[m], self.grads[m], k) for m in self.layers}
        self._caches = {m: cache for m, (_, cache) in results.items()}
        return torch.as_tensor(sum(sq for sq, _ in results.values())).sqrt()

    def clipped_sum(self, weights: torch.Tensor | None = None) -> None:
        """Sets each parameter's ``.grad`` to the sum of clipped per-sample gradients, each
        times its ``weights`` entry if given (0 drops a padding row)."""
        scale = (self.max_grad_norm / (self.per_sample_norms() + 1e-6)).clamp(max=1.0)
        if weights is not None:
            scale = scale * weights
        for m in self.layers:
            set_clipped_grads(m, self.inputs[m], self.grads[m], scale, self._caches[m],
                              self.rows_per_record)
        self.inputs.clear()
        self.grads.clear()
        self._caches = {}

    def close(self) -> None:
        for h in self._handles:
            h.remove()
