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
        self.logits = (0.01 * torch.randn(shape, generator=generator, device=device)
                       ).requires_grad_()

    def probs(self) -> list[torch.Tensor]:
        return [F.softmax(b, dim=-1) for b in self.logits.split(self.sizes, dim=-1)]

    def join(self) -> None:
        """One mixture of all the members' components: their average."""
        self.logits = self.logits.detach().flatten(0, -2)

    def marginal(self, probs: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
                 clique: Clique, grouped: bool = True) -> torch.Tensor:
        """The clique's distribution, flattened (row-major over the clique's columns), one
        per member; in a 2+-way clique a column with merged codes counts them as one group
        when ``grouped``."""
        if len(clique) == 1:
            return probs[clique[0]].mean(-2)
        if self.merged and grouped:
            probs = {c: probs[c] @ self.merged[c] if c in self.merged else probs[c]
                     for c in clique}
        # the widest column last: the per-component outer product (elementwise, as much work
        # as its cells) spans the narrower columns, the matmul the widest
        order = sorted(range(len(clique)), key=lambda i: probs[clique[i]].shape[-1])
        joint = probs[clique[order[0]]]
        for i in order[1:-1]:
            joint = (joint[..., :, None] * probs[clique[i]][..., None, :]).flatten(-2)
        # last column first: the backward pass then runs on contiguous tensors (3 times as
        # fast with members as joint^T @ last)
        out = probs[clique[order[-1]]].transpose(-1, -2) @ joint  # (..., last, joint)
        lead = out.shape[:-2]
        out = (out.transpose(-1, -2) / joint.shape[-2]).reshape(
            *lead, *(probs[clique[i]].shape[-1] for i in order))
        if order != sorted(order):  # back to the clique's order
            out = out.permute(*range(len(lead)), *(len(lead) + order.index(i)
                                                   for i in range(len(clique))))
        return out.flatten(len(lead))

    def fit(self, measurements: list[Measurement], total: float, iterations: int,
            lr: float) -> None:
        """Weighted least squares to every measurement (``objective``) by Adam, each member on
        its own (the loss is their sum; Adam's steps are per element)."""
        loss = self.objective(measurements, total)
        opt = torch.optim.Adam([self.logits], lr=lr)
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()

    def objective(self, measurements: list[Measurement], total: float
                  ) -> Callable[[], torch.Tensor]:
        """The fit's loss of the current logits: sum_i w_i ||marginal_i - y_i||^2 / sum_i w_i,
        w_i = 1 / sigma_i^2 (shares: y_i = counts / total), up to a constant. Repeated
        measurements of a marginal are pooled (``_pooled``) and the 1-way terms are one
        vector over every code (weight 0 where a column has none): one term, however many
        columns."""
        device = self.logits.device
        targets = _pooled(measurements, total, device)
        norm = sum(w for *_, w in targets)
        starts = np.cumsum([0] + self.sizes)
        one_y = torch.zeros(int(starts[-1]), device=device)
        one_w = torch.zeros(int(starts[-1]), device=device)
        for (c, *_), _, y, w in (t for t in targets if len(t[0]) == 1):
            one_y[starts[c]:starts[c + 1]], one_w[starts[c]:starts[c + 1]] = y, w / norm
        many = [t for t in targets if len(t[0]) > 1]
        many_w = torch.tensor([w / norm for *_, w in many], device=device)

        def loss() -> torch.Tensor:
            probs = self.probs()
            out = (one_w * (torch.cat(probs, -1).mean(-2) - one_y).pow(2)).sum()
            if many:
                errors = torch.stack([(self.marginal(probs, c, grouped) - y).pow(2).sum()
                                      for c, grouped, y, _ in many])
                out = out + errors @ many_w
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
        cdfs = [c / c[:, -1:] for c in (p.double().cumsum(1) for p in self.probs())]
        k, device = len(self.logits), self.logits.device
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
        for group in np.array_split(np.arange(len(self.logits)),
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
