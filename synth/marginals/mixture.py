"""The estimator: a uniform mixture of product distributions over the encoded columns.

One softmax per column per component; fitted by Adam to noisy marginal measurements by
weighted least squares. Its marginals are closed-form, and its sampler draws rows whose
histograms follow the model's closely (stratified, then matched). It runs on the GPU when
there is one. Everything here is post-processing of the measurements.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from synth.marginals.mechanisms import Clique, Measurement
from synth.sampling import chunks

JOINT_BATCH = 2**18  # the most numbers in one batch of marginals' outer products
MATCH_PASSES = 8  # passes of swaps that bring a sample's marginals to the model's
MATCH_CELLS = 2**23  # the most marginal cells a sample is matched on
MATCH_LIMIT = 2**25  # the most cell indices (rows x marginals) held at once while matching
MATCH_WORK = 2**29  # the most cell lookups matching a chunk takes


class _MixtureModel:
    """A uniform mixture of product distributions over the encoded columns; with
    ``members``, that many mixtures fitted side by side (logits (members, components,
    states), each member's marginals its own) until ``join`` makes them one."""

    def __init__(self, sizes: list[int], components: int, generator: torch.Generator,
                 device: torch.device, merged: dict[int, torch.Tensor] | None = None,
                 members: int | None = None):
        self.sizes = sizes
        self.merged = merged or {}  # column -> (codes, groups) one-hot map, for 2+-way
        shape = (components, sum(sizes)) if members is None else (members, components,
                                                                  sum(sizes))
        # the parameters, states-major (..., states, components): a softmax over a column's
        # few codes is then a reduction across contiguous rows (an order of magnitude faster
        # on the CPU than along a short innermost axis)
        self.scores = (0.01 * torch.randn(shape, generator=generator, device=device)
                       ).transpose(-1, -2).contiguous().requires_grad_()

    @property
    def logits(self) -> torch.Tensor:
        """Each component's log-probabilities of every code up to a constant per column,
        (..., components, states): a view of ``scores``."""
        return self.scores.transpose(-1, -2)

    def probs(self) -> list[torch.Tensor]:
        """Each column's distributions, (..., components, codes)."""
        return [q.transpose(-1, -2) for q in self._columns()]

    def _columns(self) -> list[torch.Tensor]:
        """Each column's distributions states-major, (..., codes, components), contiguous."""
        return [F.softmax(b, dim=-2) for b in self.scores.split(self.sizes, dim=-2)]

    def join(self) -> None:
        """One mixture of all the members' components: their average."""
        self.scores = self.scores.detach().movedim(-2, 0).flatten(1)

    def marginal(self, probs: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
                 clique: Clique, grouped: bool = True) -> torch.Tensor:
        """The clique's distribution, flattened (row-major over the clique's columns), one
        per member, from each column's distributions (..., components, codes) as ``probs``
        gives them; in a 2+-way clique a column with merged codes counts them as one group
        when ``grouped``."""
        return self.marginals(probs, [clique], grouped)[0]

    def marginals(self, probs: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
                  cliques: Sequence[Clique], grouped: bool = True) -> list[torch.Tensor]:
        """``marginal`` of each clique, the cliques of one shape computed together."""
        columns = {c: probs[c].transpose(-1, -2) for r in cliques for c in r}
        out = {i: columns[r[0]].mean(-1) for i, r in enumerate(cliques) if len(r) == 1}
        for shape, at, keys, orders in self._shapes([(r, grouped) for r in cliques]):
            for i, joint, order in zip(at, self._joint(columns, keys), orders):
                out[i] = _reorder(joint, shape, order, back=True)
        return [out[i] for i in range(len(cliques))]

    def _shapes(self, cliques: Sequence[tuple[Clique, bool]]
                ) -> list[tuple[tuple[int, ...], list[int], list[list[tuple[int, bool]]],
                                list[list[int]]]]:
        """The 2+-way (clique, grouped) pairs in batches of one shape: (sizes, the pairs'
        indices, each position's columns, each clique's order), the columns of a clique
        ordered narrowest first (the per-component outer product, elementwise, spans the
        narrower columns, the matmul the widest); a column is (column, counted by its merged
        groups). A batch's outer products hold at most ``JOINT_BATCH`` numbers (but one
        clique's): larger batches leave the CPU's caches and are slower, not faster."""
        shapes: dict[tuple[int, ...], list[tuple[int, list[tuple[int, bool]], list[int]]]] = {}
        for i, (clique, grouped) in enumerate(cliques):
            if len(clique) > 1:
                keys = [(c, grouped and c in self.merged) for c in clique]
                sizes = [self.merged[c].shape[1] if g else self.sizes[c] for c, g in keys]
                order = sorted(range(len(clique)), key=sizes.__getitem__)
                shapes.setdefault(tuple(sizes[j] for j in order), []).append(
                    (i, [keys[j] for j in order], order))
        batches = []
        for shape, items in shapes.items():
            step = max(1, JOINT_BATCH // (math.prod(shape[:-1]) * self.scores[..., 0, :].numel()))
            for part in (items[i:i + step] for i in range(0, len(items), step)):
                batches.append((shape, [i for i, _, _ in part],
                                [list(k) for k in zip(*(keys for _, keys, _ in part))],
                                [order for _, _, order in part]))
        return batches

    def _joint(self, columns: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
               keys: list[list[tuple[int, bool]]]) -> torch.Tensor:
        """The joint distributions of n cliques of one shape from the columns' distributions
        states-major (..., codes, components): (n, ..., cells), cells row-major over the
        cliques' columns in the order of ``keys`` (each position's n columns)."""
        grouped = {c: self.merged[c].T @ columns[c] for k in keys for c, g in k if g}
        stacked = [torch.stack([grouped[c] if g else columns[c] for c, g in k]) for k in keys]
        return (_Product.apply(*stacked) / stacked[0].shape[-1]).flatten(-2)

    def fit(self, measurements: list[Measurement], total: float, iterations: int,
            lr: float) -> None:
        """Weighted least squares to every measurement (``objective``) by Adam, each member on
        its own (the loss is their sum; Adam's steps are per element)."""
        loss = self.objective(measurements, total)
        moments = torch.zeros_like(self.scores), torch.zeros_like(self.scores)
        for step in range(1, iterations + 1):
            self.scores.grad = None
            loss().backward()
            with torch.no_grad():
                _adam(self.scores, *moments, step, lr)

    def objective(self, measurements: list[Measurement], total: float
                  ) -> Callable[[], torch.Tensor]:
        """The fit's loss of the current logits: sum_i w_i ||marginal_i - y_i||^2 / sum_i w_i,
        w_i = 1 / sigma_i^2 (shares: y_i = counts / total), up to a constant. Repeated
        measurements of a marginal are pooled (``_pooled``) and the 1-way terms are one
        vector over every code (weight 0 where a column has none): one term, however many
        columns."""
        device = self.scores.device
        targets = _pooled(measurements, total, device)
        norm = sum(w for *_, w in targets)
        starts = np.cumsum([0] + self.sizes)
        one_y = torch.zeros(int(starts[-1]), device=device)
        one_w = torch.zeros(int(starts[-1]), device=device)
        for (c, *_), _, y, w in (t for t in targets if len(t[0]) == 1):
            one_y[starts[c]:starts[c + 1]], one_w[starts[c]:starts[c + 1]] = y, w / norm
        many = [t for t in targets if len(t[0]) > 1]
        shapes = []  # per shape: each position's columns, the targets in that order, weights
        for shape, at, keys, orders in self._shapes([(c, grouped) for c, grouped, *_ in many]):
            y = torch.stack([_reorder(many[i][2], shape, order) for i, order in zip(at, orders)])
            shapes.append((keys, y, torch.tensor([many[i][3] / norm for i in at],
                                                 device=device)))

        def loss() -> torch.Tensor:
            columns = self._columns()
            out = (one_w * (torch.cat([q.mean(-1) for q in columns], -1) - one_y).pow(2)).sum()
            for keys, y, w in shapes:
                joint = self._joint(columns, keys)  # (terms, ..., cells)
                errors = (joint - y.view(len(y), *[1] * (joint.dim() - 2), -1)).pow(2)
                out = out + errors.flatten(1).sum(1) @ w
            return out

        return loss

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, match: int = 0) -> np.ndarray:
        """n rows of codes, stratified, then matched: drawn together so that their
        histograms follow the model's closely.

        In each chunk every component gets its share of the rows (the remainder to
        components picked at random); within a component each column's codes come from
        systematic sampling of its distribution (one uniform offset, evenly spaced points
        through the inverse CDF) and are paired across columns by independent random
        permutations. So far every row is distributed exactly as the mixture (as it would be
        drawing a component and then every column independently per row), but the rows'
        histograms vary less around the model's. With ``match`` (a marginal size, such as 3)
        the rows are then matched to the model's ``match``-way marginals (see ``_match``). The
        rows are shuffled last. Why: docs/decisions/marginals.md."""
        cdfs = [c / c[:, -1:] for c in (p.double().contiguous().cumsum(1) for p in self.probs())]
        k, device = self.scores.shape[-1], self.scores.device
        out = []
        for m in chunks(n):
            counts = torch.full((k,), m // k, device=device)
            counts[torch.randperm(k, generator=generator, device=device)[: m % k]] += 1
            component = torch.repeat_interleave(torch.arange(k, device=device), counts)
            # point j of component c sits at (u_c + j) / counts_c, grid (components, slots)
            slot = torch.arange(int(counts.max()), device=device, dtype=torch.float64)
            used = slot[None, :] < counts[:, None]
            codes = []
            for cdf in cdfs:
                u = torch.rand(k, 1, generator=generator, device=device, dtype=torch.float64)
                points = (u + slot) / counts.clamp(min=1)[:, None]
                grid = torch.searchsorted(cdf, points, right=True).clamp_(max=cdf.shape[1] - 1)
                # component-major, then a random order inside each component
                key = component + torch.rand(m, generator=generator, device=device,
                                             dtype=torch.float64)
                codes.append(grid[used][torch.argsort(key)])
            rows = torch.stack(codes, dim=1).cpu().numpy()
            if match > 1 and k > 1:
                seed = int(torch.randint(2**62, (1,), generator=generator, device=device))
                rows = self._match(rows, component.cpu().numpy(), match,
                                   np.random.default_rng(seed))
            out.append(rows[torch.randperm(m, generator=generator, device=device).cpu().numpy()])
        return np.concatenate(out)

    @torch.no_grad()
    def sample_given(self, fixed: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """Rows of codes that keep ``fixed``'s codes (rows, columns; -1 where free): each
        row's component is drawn from its posterior given its fixed codes, its free columns
        from that component. Post-processing of the model, as ``sample``."""
        probs = [p.detach().double() for p in self.probs()]
        device = probs[0].device
        out = np.array(fixed, dtype="int64", copy=True)
        for at in range(0, len(out), 4096):
            part = torch.as_tensor(out[at:at + 4096], device=device)
            logpost = torch.zeros(len(part), probs[0].shape[0], device=device,
                                  dtype=torch.float64)
            for j, p in enumerate(probs):
                known = part[:, j] >= 0
                logpost[known] += p[:, part[known, j]].T.clamp(min=1e-300).log()
            component = torch.multinomial(logpost.softmax(1), 1, generator=generator)[:, 0]
            for j, p in enumerate(probs):
                free = part[:, j] < 0
                if free.any():
                    part[free, j] = torch.multinomial(p[component[free]], 1,
                                                      generator=generator)[:, 0]
            out[at:at + 4096] = part.cpu().numpy()
        return out

    def _match(self, rows: np.ndarray, component: np.ndarray, size: int,
               rng: np.random.Generator) -> np.ndarray:
        """Brings the rows' marginals of ``size`` columns to the model's, in L1 (the rows'
        count against rows times the model's probability, cell by cell).

        In passes over the columns in random order, the rows of each component are paired
        at random and a pair swaps the column's codes when that lowers the L1 summed over
        every marginal holding the column (judged in batches of 100 pairs against the counts
        before the batch). Swaps keep each component's codes per column, so the 1-way
        histograms do not change; the lower marginals follow the higher. Bounded: at most
        ``MATCH_PASSES`` passes, ``MATCH_WORK`` cell lookups, ``MATCH_CELLS`` marginal cells
        and ``MATCH_LIMIT`` cell indices held (the components split into groups matched one
        after another); fewer columns per marginal where those would not fit (many wide
        columns fall back to the 2-way marginals). Post-processing of the model; what it
        gains and costs: docs/decisions/marginals.md."""
        m, d = rows.shape
        for k in range(min(size, d), 1, -1):  # columns per marginal
            cliques = list(itertools.combinations(range(d), k))
            cells = [math.prod(self.sizes[c] for c in q) for q in cliques]
            passes = min(MATCH_PASSES, MATCH_WORK // (m * len(cliques) * k))
            if sum(cells) <= MATCH_CELLS and passes:
                break
        else:
            return rows
        stride = np.zeros((d, len(cliques)), dtype=np.int32)  # a column's stride per clique
        for i, q in enumerate(cliques):
            dims = [self.sizes[c] for c in q]
            stride[list(q), i] = [math.prod(dims[j + 1:]) for j in range(k)]
        offset = np.cumsum([0] + cells[:-1]).astype(np.int32)  # a clique's first cell
        probs = self.probs()
        excess: np.ndarray = np.zeros(sum(cells), dtype=np.float32)  # rows' count - model's, so far
        for group in np.array_split(np.arange(self.scores.shape[-1]),
                                    -(-m * len(cliques) // MATCH_LIMIT)):
            # numpy's overlapping searchsorted overloads (numpy#27032) type the list's result
            # as one scalar
            at = slice(*np.searchsorted(  # type: ignore[misc]
                component, [group[0], group[-1] + 1]))  # sorted
            mixture = [p[group[0]:group[-1] + 1] for p in probs]
            target = np.concatenate([self.marginal(mixture, q, grouped=False).cpu().numpy()
                                     for q in cliques])
            rows[at] = self._swaps(rows[at], component[at], stride, offset, target, excess,
                                   passes, rng)
        return rows

    @staticmethod
    def _swaps(rows, component, stride, offset, target, excess, passes, rng) -> np.ndarray:
        """``_match``'s swaps on the rows of some components; ``excess`` (the rows' counts
        so far minus the model's) takes these rows' counts against ``target`` (their
        components' marginals) and follows the swaps."""
        m, d = rows.shape
        cell = offset + rows.astype(np.int32) @ stride  # (rows, cliques): each row's cell
        excess += np.bincount(cell.ravel(), minlength=len(target)) - m * target

        def change(at, step):
            e = excess[at]
            return np.abs(e + step) - np.abs(e)

        for _ in range(passes):
            for j in rng.permutation(d):
                holding = np.nonzero(stride[j])[0]
                order = np.argsort(component + rng.random(m))  # random pairs per component
                a, b = order[0:m - 1:2], order[1::2]
                keep = (component[a] == component[b]) & (rows[a, j] != rows[b, j])
                a, b = a[keep], b[keep]
                for s in range(0, len(a), 100):
                    A, B = a[s:s + 100], b[s:s + 100]
                    shift = (rows[B, j] - rows[A, j]).astype(np.int32)[:, None] \
                        * stride[j, holding]
                    old_a, old_b = cell[A][:, holding], cell[B][:, holding]
                    new_a, new_b = old_a + shift, old_b - shift
                    moved = old_a != new_b  # else the pair agrees on the clique's other columns
                    gain = np.where(moved, change(old_a, -1) + change(old_b, -1)
                                    + change(new_a, 1) + change(new_b, 1), 0).sum(1)
                    better = gain < -1e-9
                    if not better.any():
                        continue
                    A, B, moved = A[better], B[better], moved[better]
                    for at, step in ((old_a, -1), (old_b, -1), (new_a, 1), (new_b, 1)):
                        np.add.at(excess, at[better][moved], step)
                    cell[A[:, None], holding] = new_a[better]
                    cell[B[:, None], holding] = new_b[better]
                    rows[A, j], rows[B, j] = rows[B, j], rows[A, j].copy()
        return rows


class _Product(torch.autograd.Function):
    """sum_k prod_i x_i[..., :, k]: the joint of columns x_i (..., codes_i, components),
    summed over the components, as (..., codes_0 * ... * codes_n-2, codes_n-1) (the outer
    product of all but the last, then a matmul with the last). The backward pass is written
    out so that every product reads contiguous memory: autograd's own (through the matmul's
    transposed gradient and broadcast products) is several times slower on the CPU."""

    @staticmethod
    def forward(ctx, *columns: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        columns = tuple(c.contiguous() for c in columns)
        joints = [columns[0]]  # joints[i]: the outer product of columns 0..i
        for c in columns[1:-1]:
            joints.append((joints[-1][..., :, None, :] * c[..., None, :, :]).flatten(-3, -2))
        ctx.save_for_backward(*columns, *joints)
        return joints[-1] @ columns[-1].transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        n = (len(saved) + 1) // 2
        columns, joints = saved[:n], saved[n:]
        grad = grad.contiguous()
        grads = [grad.transpose(-1, -2) @ joints[-1]]  # the last column's, then backwards
        g = grad @ columns[-1]  # the joint's: (..., joint, components)
        for i in range(n - 2, 0, -1):  # joints[i] = joints[i - 1] x columns[i]
            g = g.unflatten(-2, (joints[i - 1].shape[-2], columns[i].shape[-2]))
            grads.append((g * joints[i - 1][..., :, None, :]).sum(-3))
            g = (g * columns[i][..., None, :, :]).sum(-2)
        return (g, *reversed(grads))


def _adam(x: torch.Tensor, mean: torch.Tensor, square: torch.Tensor, step: int, lr: float,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """Adam's ``step``-th update of ``x`` from its gradient (Kingma and Ba; the arithmetic of
    torch.optim.Adam's defaults). Written out because torch.optim's first use imports
    torch._dynamo, slow to import in every process that fits."""
    grad = x.grad
    assert grad is not None
    mean.lerp_(grad, 1 - betas[0])
    square.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
    scale = square.sqrt().div_(math.sqrt(1 - betas[1] ** step)).add_(eps)
    x.addcdiv_(mean, scale, value=-lr / (1 - betas[0] ** step))


def _reorder(marginal: torch.Tensor, shape: tuple[int, ...], order: list[int],
             back: bool = False) -> torch.Tensor:
    """A clique's flattened marginal (..., cells), its columns put in ``order`` (their sizes
    then ``shape``); ``back``: from that order to the clique's."""
    lead, inverse = marginal.shape[:-1], [order.index(c) for c in range(len(order))]
    n = len(lead)
    sizes, axes = (shape, inverse) if back else ([shape[i] for i in inverse], order)
    return marginal.reshape(*lead, *sizes).permute(*range(n), *(n + a for a in axes)).flatten(n)


def _pooled(measurements: list[Measurement], total: float, device: torch.device
            ) -> list[tuple[Clique, bool, torch.Tensor, float]]:
    """One least-squares target per marginal: (clique, grouped, shares, weight). Repeated
    measurements of a marginal are pooled: sum_i w_i ||x - y_i||^2 and W ||x - y||^2, with W
    the sum of the weights and y the weighted mean, differ by a constant, so the fit's
    gradients are the same and the model's marginal is computed once, not once each."""
    pooled: dict[tuple[Clique, bool], tuple[float, torch.Tensor]] = {}
    for m in measurements:
        w = (total / m.sigma) ** 2
        key = (m.clique, not m.full)
        weight, weighted = pooled.get(key, (0.0, 0))
        pooled[key] = weight + w, weighted + w * m.counts.to(device, torch.float64) / total
    return [(clique, grouped, (weighted / weight).float(), weight)  # the model's precision
            for (clique, grouped), (weight, weighted) in pooled.items()]
