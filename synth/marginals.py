"""Differentially private synthesis from adaptively chosen, noise-measured marginals.

The mechanism is AIM's (McKenna, Mullins, Sheldon and Miklau, VLDB 2022), in zero-
concentrated DP: measure every 1-way marginal with Gaussian noise, then in rounds select the
2- or 3-way marginal the current model gets most wrong (exponential mechanism on
``weight * (L1 error - expected noise L1)``), measure it, refit, and halve the noise when a
measurement stops moving the model. The estimator is ours, in the spirit of GEM (Liu, Vietri
and Wu, 2021) and RAP: the model is a uniform mixture of ``components`` product
distributions over the encoded columns (one softmax per column per component), fitted by
Adam to all noisy measurements by weighted least squares. Its marginals are closed-form, its
samples follow them closely (stratified, then matched), and it runs on the GPU when there is
one.

Privacy: every read of the data is an OpenDP measurement: the discrete Gaussian mechanism on
integer counts (L2 sensitivity 1 under add/remove of one record) and report-noisy-max with
Gumbel noise for selection (sensitivity: the largest weight). Their zCDP costs, as OpenDP's
privacy maps state them, add up; the total converts to (epsilon, delta) by the tight
conversion of Canonne, Kamath and Steinke. The encoding is a function of the schema only; the
number of records is not used except through noisy counts. Sampling is post-processing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from schemas import Schema
from synth.base import Params
from synth.encoding import CodedTable, TableEncoder
from synth.evidence import NoisyMarginal
from synth.privacy import PrivacyBudget, PrivacyReport, zcdp_epsilon, zcdp_rho
from synth.sampling import check_request, chunks, cpu_threads, resolve_device

Clique = tuple[int, ...]
RARE_MERGE_MIN_CATEGORIES = 20  # only high-cardinality code columns get rare codes merged
ONE_WAY_MAX = 0.6  # the most of the budget the 1-way marginals may take (see one_way_target)
ITERATIONS = 50, 100  # Adam iterations per round: noisy rounds, precise rounds
MEMBERS = 3, 1  # mixtures fitted side by side and released as one: noisy rounds, precise
LAST_ROUNDS = 2  # rounds the last of the budget is spread over
PRECISE = 1e-3  # a round is precise when its noise scale is below this share of the records
MATCH_PASSES = 8  # passes of swaps that bring a sample's marginals to the model's
MATCH_CELLS = 2**23  # the most marginal cells a sample is matched on
MATCH_LIMIT = 2**25  # the most cell indices (rows x marginals) held at once while matching
MATCH_WORK = 2**29  # the most cell lookups matching a chunk takes
RECODING_SPREAD = 4  # the fewest values a recoding's columns must fill (see _recodings)


@dataclass
class Measurement:
    clique: Clique
    counts: torch.Tensor  # noisy counts, flattened over the clique's cells
    sigma: float
    full: bool = False  # every code counted on its own (merged codes not grouped)


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _shrink(m: Measurement, cells: np.ndarray) -> Measurement:
    """``m`` with its counts in ``cells`` shrunk towards their mean by the empirical-Bayes
    factor spread / (spread + sigma^2), the spread being their variance beyond the noise's
    (post-processing; their sum is unchanged)."""
    y = m.counts.numpy().astype("float64").copy()
    part = y[cells]
    spread = max(0.0, part.var(ddof=1) - m.sigma**2)
    y[cells] = part.mean() + spread / (spread + m.sigma**2) * (part - part.mean())
    return Measurement(m.clique, torch.as_tensor(y, dtype=m.counts.dtype), m.sigma)


def _effective_cells(p: np.ndarray) -> float:
    """The exponential of a distribution's entropy: how many cells it effectively fills."""
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


class _Mechanisms:
    """The two private primitives, through OpenDP, with their zCDP costs summed."""

    def __init__(self, codes: np.ndarray, sizes: list[int], seed: int | None,
                 frame: pd.DataFrame | CodedTable | None = None):
        self.codes, self.sizes, self.frame = codes, sizes, frame  # frame: for fine histograms
        self.rho_spent = 0.0
        self.log: list[dict] = []
        self._cache: dict[Clique, np.ndarray] = {}
        self.merged: dict[int, np.ndarray] = {}  # column -> group of each code, for 2+-way
        # a fixed seed (tests only) replaces OpenDP's secure sampling by numpy's
        self.rng = None if seed is None else np.random.default_rng(seed)

    def exact(self, clique: Clique, full: bool = False) -> np.ndarray:
        """Private exact counts of a marginal (never leave this class un-noised); in a 2+-way
        marginal a column with merged codes counts by its groups unless ``full``."""
        if (clique, full) not in self._cache:
            dims = [self.sizes[c] for c in clique]
            codes = self.codes[:, list(clique)].T.copy()  # (clique, rows)
            for j, c in enumerate(clique):
                if len(clique) > 1 and c in self.merged and not full:
                    codes[j], dims[j] = self.merged[c][codes[j]], int(self.merged[c].max()) + 1
            flat = np.ravel_multi_index(codes, dims)
            self._cache[clique, full] = np.bincount(flat, minlength=math.prod(dims)).astype(
                "int64")
        return self._cache[clique, full]

    def measure(self, clique: Clique, sigma: float, full: bool = False) -> np.ndarray:
        """Counts of ``clique`` (see ``exact``) plus discrete Gaussian noise of scale sigma."""
        return self._noisy(self.exact(clique, full), sigma,
                           {"marginal": list(clique), **({"full": True} if full else {})})

    def measure_fine(self, column: int, grid, sigma: float) -> np.ndarray:
        """A column's histogram over its fine states (non-missing values; one record moves
        one count by one), plus discrete Gaussian noise of scale sigma."""
        frame = self.frame  # a CodedTable holds the fine states already
        values = (frame.fine if isinstance(frame, CodedTable) else frame)[
            grid.block.column.name]
        counts = np.bincount(grid.encode(values), minlength=grid.size).astype("int64")
        return self._noisy(counts, sigma, {"fine_histogram": column, "states": grid.size})

    def _noisy(self, counts: np.ndarray, sigma: float, what: dict) -> np.ndarray:
        dp = _opendp()
        meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)),
                                  dp.l2_distance(T=int), scale=sigma)
        rho = float(meas.map(1))
        if self.rng is None:
            noisy = np.asarray(meas(counts.tolist()), dtype="float64")
        else:
            noisy = counts + np.round(self.rng.normal(0, sigma, counts.shape))
        self.rho_spent += rho
        self.log.append({"mechanism": "discrete Gaussian (OpenDP)", **what, "sigma": sigma,
                         "rho": rho})
        return noisy

    def select(self, scores: np.ndarray, sensitivity: float, epsilon: float) -> int:
        """Index of a high score by report-noisy-max (Gumbel), epsilon-DP and eps^2/8-zCDP."""
        dp = _opendp()
        scale = 2 * sensitivity / epsilon
        meas = dp.m.make_noisy_max(dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                                   dp.linf_distance(T=float), dp.zero_concentrated_divergence(),
                                   scale=scale)
        rho = float(meas.map(float(sensitivity)))
        if self.rng is None:
            index = int(meas([float(s) for s in scores]))
        else:
            index = int(np.argmax(scores + self.rng.gumbel(0, scale, len(scores))))
        self.rho_spent += rho
        self.log.append({"mechanism": "report noisy max, Gumbel (OpenDP)",
                         "candidates": len(scores), "epsilon": epsilon, "rho": rho})
        return index


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

    def marginal(self, probs: list[torch.Tensor], clique: Clique,
                 grouped: bool = True) -> torch.Tensor:
        """The clique's distribution, flattened (row-major over the clique's columns), one
        per member; in a 2+-way clique a column with merged codes counts them as one group
        when ``grouped``."""
        if len(clique) > 1 and self.merged and grouped:
            probs = {c: probs[c] @ self.merged[c] if c in self.merged else probs[c]
                     for c in clique}
        joint = probs[clique[0]]
        for c in clique[1:-1]:
            joint = (joint[..., :, None] * probs[c][..., None, :]).flatten(-2)
        if len(clique) == 1:
            return joint.mean(-2)
        # last column first: the backward pass then runs on contiguous tensors (3 times as
        # fast with members as joint^T @ last)
        out = probs[clique[-1]].transpose(-1, -2) @ joint  # (..., last, joint)
        return out.transpose(-1, -2).flatten(-2) / joint.shape[-2]

    def fit(self, measurements: list[Measurement], total: float, iterations: int,
            lr: float) -> None:
        """Weighted least squares to every measurement (weight 1/sigma^2), each member on
        its own (the loss is their sum; Adam's steps are per element)."""
        device = self.logits.device
        targets = [(m.clique, not m.full, m.counts.to(device) / total, (total / m.sigma) ** 2)
                   for m in measurements]
        norm = sum(w for *_, w in targets)
        opt = torch.optim.Adam([self.logits], lr=lr)
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            probs = self.probs()
            loss = sum(w * (self.marginal(probs, c, grouped) - y).pow(2).sum()
                       for c, grouped, y, w in targets)
            (loss / norm).backward()
            opt.step()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, match: int = 0) -> np.ndarray:
        """n rows of codes, stratified, then matched: drawn together so that their
        histograms follow the model's closely.

        In each chunk every component gets its share of the rows (the remainder to
        components picked at random); within a component each column's codes come from
        systematic sampling of its distribution (one uniform offset, evenly spaced points
        through the inverse CDF) and are paired across columns by independent random
        permutations. So far every row is distributed exactly as the mixture; drawing a
        component and then every column independently per row has the same per-row
        distribution, but on Adult at epsilon 10 its 40,000 rows' 2-way TVD to the real rows
        was 0.019 against 0.014. With ``match`` (a marginal size, such as 3) the rows are
        then matched to the model's ``match``-way marginals (see ``_match``). The rows are
        shuffled last."""
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
        after another); fewer columns per marginal where those would not fit (on 30 columns
        of 20 states, matching all 4,060 3-way marginals of 40,000 rows took 35 s: it falls
        back to the 2-way ones).
        On Adult (15 columns, all 455 3-way marginals, 40,000 rows, 2 s on 2 CPU cores) the
        rows' 3-way L1 to the real rows went from 0.082 / 0.143 / 0.296 to 0.078 / 0.141 /
        0.295 at epsilon 10 / 1 / 0.1, against 0.076 / 0.139 for the model itself.
        Post-processing of the model."""
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
        excess = np.zeros(sum(cells), dtype=np.float32)  # rows' count - model's, so far
        for group in np.array_split(np.arange(len(self.logits)),
                                    -(-m * len(cliques) // MATCH_LIMIT)):
            at = slice(*np.searchsorted(component, [group[0], group[-1] + 1]))  # sorted
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


class DPMarginals(Params):
    """AIM-style DP synthesizer: adaptive noisy marginals fitted by a mixture of products.

    Args:
        degree: the largest marginals in the workload (all 1..degree-way column sets).
        rounds_per_column: initial number of rounds per column (AIM's T = 16 d); noise halves
            whenever a measurement stops moving the model, so fewer rounds usually run. Once
            less than two rounds as planned are left, the rest of the budget is split evenly
            over ``LAST_ROUNDS`` (2) rounds, where AIM spends it on one: after the noise has
            halved, that one round can take a large share of the budget for a single
            marginal (on Adult 17% at epsilon 0.1, 28% at 1). On Adult at epsilon 0.1, 3-way
            L1 0.2928 against 0.2970 over ten paired noise seeds (9 lower); at epsilon 1
            0.1476 against 0.1472 on three: no change.
        one_way_share: share of the budget spent first on all 1-way marginals (AIM spends
            about 0.9 d / T = 6%); the rounds share the rest.
        one_way_target: when those measurements are noisy for the data's size (their
            expected L1 noise per column, judged from the noisy record count, above this
            target), the 1-way marginals are measured once more with enough budget to reach
            the target, at most ``ONE_WAY_MAX`` of the budget in all: the less budget per
            record, the more the columns' own distributions matter (0: never).
        selection_share: share of each round's budget spent on selection (AIM's 0.1).
        max_cells: largest marginal (in cells) that may be selected, reached gradually as the
            budget is spent (AIM's model-size rule).
        max_bins: bins per numeric column (the schema may set its own).
        components: mixture components of the model.
        iterations: Adam iterations after each measurement (ten times as many at the start
            and end). None (default): ``ITERATIONS[1]`` when the rounds' planned noise scale
            is below ``PRECISE`` times the noisy record count, else ``ITERATIONS[0]``:
            fitting longer helps where measurements are precise and fits their noise where
            they are not (on Adult, 3-way L1 at epsilon 10: 0.089 with 50, 0.080 with 100;
            at epsilon 1: 0.147 with 50, 0.152 with 100).
        members: mixtures fitted side by side to the same measurements, each from its own
            initialisation (selection and the noise schedule follow the first); the model
            released is their average, one mixture of all their components: post-processing.
            None (default): ``MEMBERS[0]`` (3) where the rounds are noisy (as for
            ``iterations``), else ``MEMBERS[1]`` (1). Noisy measurements pin the model down
            loosely and each fit settles somewhere the noise allows; their average errs less.
            On Adult, 3-way L1 at epsilon 0.1: 0.2876 against 0.2917 on five paired noise
            seeds (5 lower), and with the last rounds split too 0.2938 against 0.3023 on five
            more (4 lower); at epsilon 1: 0.1403 against 0.1472 (3 of 3). The members are
            fitted as one batch (logits of shape (members, components, states)): three cost
            about 1.5 times one (on 1,800 Adult rows at epsilon 1, 42 s against 27 s on 2 CPU
            cores), which precise rounds (slower, and pinned down) would not repay.
        lr: Adam learning rate of the estimator.
        rare_merge: in a categorical column of more than 20 categories (ICD-like codes),
            the codes whose noisy 1-way count is below ``rare_merge`` noise standard
            deviations are merged into one group in every 2- and 3-way marginal (0: never).
            The grouping is post-processing of the 1-way measurement (no extra budget). The
            merged codes' noisy 1-way counts shrink towards their mean by the empirical-Bayes
            factor spread / (spread + noise variance), the spread being their counts'
            variance beyond the noise: where noise swamps their differences they share the
            group's count evenly rather than by noise (on Adult at epsilon 0.1, where 39
            countries merge, 3-way L1 fell in 5 of 5 paired runs, 0.3105 to 0.3079); no code
            is dropped.
        coarsen: where the rounds are noisy for the data's size, every binned column but the
            outcomes (the schema's target and survival time) counts in the 2- and 3-way
            marginals by runs of adjacent bins cut at the quantiles of its noisy 1-way
            counts, as many runs as the noisy record count holds ``coarsen`` times the
            rounds' planned noise scale (at least 2; none where that is more than the bins;
            0: never). Fewer cells, less noise per measurement: on Adult at epsilon 0.1
            (about 5 runs) 3-way L1 0.301 against 0.322 in 5 of 5 paired runs; the 1-way
            marginals and the fine histograms keep every bin. Post-processing of noisy
            counts, chosen once before the rounds. An outcome keeps its bins: on flchain's
            survival rows at epsilon 1 (7 runs) a coarsened survival time put the
            Kaplan-Meier curve further off in 3 of 4 paired runs. Coarsening would lose a
            recoding (a code and its label, such as Adult's education-num and education), so
            where it coarsens, each pair that looks like one from the noisy 1-way counts (see
            ``_recodings``; ``recodings_`` names them) is measured once at full resolution
            with the 1-way marginals' noise: on Adult at epsilon 0.1 (education and
            education-num) 3-way L1 0.3029 to 0.2973 over fifteen paired runs (lower in 12),
            TSTR AUROC 0.847 to 0.833.
        fine_share: share of the budget spent on a histogram of each binned numeric column
            over finer states (one per value when a column has at most 2,000 whole values,
            else ten per bin): sampling places values inside a bin by it, so point masses
            such as 40 hours a week survive binning (0: uniformly inside the bin).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        threads: torch threads while fitting on the CPU; None (default): see
            ``synth.sampling.cpu_threads`` (one where OpenMP's idle threads sleep: the
            mixture's operations are too small to repay waking them).
        seed: seeds the model's initialisation.
        noise_seed: None (default): the noise comes from OpenDP's cryptographically secure
            samplers; an integer replaces them with a seeded numpy generator, for
            reproducible tests only, never for a release.
    """

    mechanism = ("AIM-style adaptive marginals (OpenDP discrete Gaussian measurements, "
                 "report-noisy-max selection), composed in zCDP")

    def __init__(self, degree: int = 3, rounds_per_column: int = 16,
                 one_way_share: float = 0.2, one_way_target: float = 0.1,
                 selection_share: float = 0.1,
                 max_cells: int = 20_000, max_bins: int = 20,
                 components: int = 1024, iterations: int | None = None,
                 members: int | None = None, lr: float = 0.05, rare_merge: float = 2.0,
                 fine_share: float = 0.05, device: str = "auto", threads: int | None = None,
                 coarsen: float = 5.0, seed: int = 0, noise_seed: int | None = None):
        self.degree = degree
        self.rounds_per_column = rounds_per_column
        self.one_way_share = one_way_share
        self.one_way_target = one_way_target
        self.selection_share = selection_share
        self.max_cells = max_cells
        self.max_bins = max_bins
        self.components = components
        self.iterations = iterations
        self.members = members
        self.lr = lr
        self.rare_merge = rare_merge
        self.coarsen = coarsen
        self.fine_share = fine_share
        self.device = device
        self.threads = threads
        self.seed = seed
        self.noise_seed = noise_seed

    def fit(self, data: pd.DataFrame | CodedTable, schema: Schema, budget: PrivacyBudget,
            progress: Callable[[int, int], None] | None = None) -> "DPMarginals":
        """Fits on private ``data`` (the schema's dtypes), spending at most ``budget``."""
        with cpu_threads(resolve_device(self.device), self.threads) as threads:
            self.threads_ = threads
            return self._fit(data, schema, budget, progress)

    def _fit(self, data: pd.DataFrame | CodedTable, schema: Schema, budget: PrivacyBudget,
             progress: Callable[[int, int], None] | None) -> "DPMarginals":
        if self.rounds_per_column and not (0 < self.one_way_share < 1
                                           and 0 < self.selection_share < 1):
            raise ValueError("one_way_share and selection_share must lie in (0, 1)")
        if not 0 <= self.fine_share < 1:
            raise ValueError("fine_share must lie in [0, 1)")
        device = resolve_device(self.device)
        self.encoder_ = TableEncoder(schema, max_bins=self.max_bins)
        sizes = self.encoder_.sizes
        mech = _Mechanisms(self.encoder_.encode(data), sizes, self.noise_seed, data)
        rho = zcdp_rho(budget) * (1 - 1e-6)
        d = len(sizes)
        workload = [c for k in range(2, self.degree + 1)
                    for c in itertools.combinations(range(d), k)]
        candidates = [c for k in range(1, self.degree + 1)
                      for c in itertools.combinations(range(d), k)]
        weights = {r: float(sum(len(set(r) & set(w)) for w in workload)) for r in candidates}

        rounds = self.rounds_per_column * d
        share = 1 - self.selection_share
        one_way = self.one_way_share if rounds else 1.0  # no rounds: all on the 1-way
        grids = self.encoder_.fine_grids() if self.fine_share else {}
        fine_rho = self.fine_share * rho if grids else 0.0
        sigma0 = math.sqrt(d / (2 * one_way * (rho - fine_rho)))
        measurements = [Measurement((i,), torch.as_tensor(mech.measure((i,), sigma0)), sigma0)
                        for i in range(d)]
        if rounds and self.one_way_target:
            one_way = self._top_up(measurements, one_way, rho - fine_rho, mech)
            sigma0 = measurements[0].sigma
        rest = (1 - one_way) * (rho - fine_rho)
        if rounds:
            sigma = math.sqrt(rounds / (2 * share * rest))
            epsilon = math.sqrt(8 * self.selection_share * rest / rounds)
        names = [b.column.name for b in self.encoder_.blocks]
        one_way_evidence = [NoisyMarginal((names[i],), m.counts.numpy().copy(), m.sigma)
                            for i, m in enumerate(measurements)]  # before any shrinkage
        sigma_fine = math.sqrt(len(grids) / (2 * fine_rho)) if grids else 0.0
        self.fine_ = {i: (g, mech.measure_fine(i, g, sigma_fine)) for i, g in grids.items()}
        self._merge_rare(measurements, sigma0, mech)
        total = self._total(measurements, sizes)
        self.coarsened_: dict[str, int] = {}  # column -> runs of bins in 2+-way marginals
        if rounds and self.coarsen:
            outcomes = {schema.target, schema.survival.time if schema.survival else None}
            self._coarsen(measurements, max(2, int(total / (self.coarsen * sigma))), outcomes,
                          mech)
        self.recodings_: list[tuple[str, str]] = []  # pairs measured whole: see coarsen
        for pair in self._recodings(measurements[:d]) if self.coarsened_ else []:
            self.recodings_.append(tuple(self.encoder_.blocks[c].column.name for c in pair))
            measurements.append(Measurement(pair, torch.as_tensor(
                mech.measure(pair, sigma0, full=True)), sigma0, full=True))
        merged = {c: int(g.max()) + 1 for c, g in mech.merged.items()}  # groups per column
        candidates = [r for r in candidates  # a column merged into one group adds nothing
                      if len(r) == 1 or all(merged.get(c, 2) > 1 for c in r)]
        cells = {r: math.prod(merged.get(c, sizes[c]) if len(r) > 1 else sizes[c] for c in r)
                 for r in candidates}
        precise = bool(rounds) and sigma < PRECISE * total
        iterations = self.iterations or ITERATIONS[precise]
        members = (self.members or MEMBERS[precise]) if rounds else 1
        model = self.model_ = _MixtureModel(  # each member from its own initialisation
            sizes, self.components, torch.Generator(device=device).manual_seed(self.seed),
            device, {c: F.one_hot(torch.as_tensor(g)).to(device=device, dtype=torch.float32)
                     for c, g in mech.merged.items()}, members)
        first = lambda: [p.detach()[0] for p in model.probs()]  # selection follows it
        model.fit(measurements, total, 10 * iterations, self.lr)
        tick = lambda: progress(min(1000, int(1000 * mech.rho_spent / rho)), 1000) \
            if progress else None
        tick()
        last = 0  # rounds left once the rest of the budget is split evenly
        while rounds and rho - mech.rho_spent > 1e-9 * rho:
            remaining = rho - mech.rho_spent
            if not last and remaining < 2 * (1 / (2 * sigma**2) + epsilon**2 / 8):
                last = LAST_ROUNDS  # not enough for two more rounds as planned
            if last:
                sigma = math.sqrt(last / (2 * share * remaining))
                epsilon = math.sqrt(8 * (1 - share) * remaining / last)
                last -= 1
            limit = self.max_cells * (mech.rho_spent + 1 / (2 * sigma**2) + epsilon**2 / 8) / rho
            pool = [r for r in candidates if cells[r] <= max(limit, max(sizes))]
            probs = first()
            with torch.no_grad():
                errors = np.array([
                    np.abs(mech.exact(r) - total * model.marginal(probs, r).cpu().numpy()
                           ).sum() for r in pool])
            scores = np.array([weights[r] for r in pool]) * (
                errors - math.sqrt(2 / math.pi) * sigma * np.array([cells[r] for r in pool]))
            chosen = pool[mech.select(scores, max(weights[r] for r in pool), epsilon)]
            before = model.marginal(probs, chosen).cpu()
            measurements.append(Measurement(chosen, torch.as_tensor(
                mech.measure(chosen, sigma)), sigma))
            total = self._total(measurements, sizes)
            model.fit(measurements, total, iterations, self.lr)
            after = model.marginal(first(), chosen).cpu()
            moved = total * float((after - before).abs().sum())
            # within the noise: measure more precisely from now on (unless in the last rounds)
            if moved <= math.sqrt(2 / math.pi) * sigma * cells[chosen] and not last:
                sigma, epsilon = sigma / 2, epsilon * 2
            tick()
        model.fit(measurements, total, 10 * iterations, self.lr)
        model.join()  # post-processing: the members' average
        self.privacy_ = PrivacyReport(
            epsilon=zcdp_epsilon(mech.rho_spent, budget.delta), delta=budget.delta,
            target_epsilon=budget.epsilon, accountant="zcdp", mechanism=self.mechanism,
            measurements=tuple(mech.log))
        self.rho_spent_ = mech.rho_spent
        self.epsilon_spent_ = self.privacy_.epsilon
        self.measured_ = [m.clique for m in measurements]
        self.noisy_marginals_ = tuple(one_way_evidence) + tuple(  # what the gate compares with
            NoisyMarginal(tuple(names[c] for c in m.clique), m.counts.numpy().copy(), m.sigma)
            for m in measurements[d:] if m.full or not set(m.clique) & set(mech.merged))
        self.iterations_ = iterations
        self.members_ = members
        return self

    def _top_up(self, measurements: list[Measurement], share: float, rho: float,
                mech: _Mechanisms) -> float:
        """Measures every 1-way marginal again when the first measurements' expected L1
        noise per column exceeds ``one_way_target`` (judged from the noisy record count:
        post-processing), and replaces each pair of measurements by their inverse-variance
        average (the same information). Returns the share of ``rho`` the 1-way marginals
        took in all."""
        d, sigma0 = len(measurements), measurements[0].sigma
        n = self._total(measurements, self.encoder_.sizes)
        noise = math.sqrt(2 / math.pi) * sigma0 * np.mean(self.encoder_.sizes) / n
        wanted = min(ONE_WAY_MAX, share * (noise / self.one_way_target) ** 2)
        if wanted <= share:
            return share
        sigma1 = math.sqrt(d / (2 * (wanted - share) * rho))
        w0, w1 = sigma0**-2, sigma1**-2
        sigma = (w0 + w1) ** -0.5
        for i, m in enumerate(measurements):
            again = torch.as_tensor(mech.measure((i,), sigma1))
            measurements[i] = Measurement((i,), (w0 * m.counts + w1 * again) / (w0 + w1), sigma)
        return wanted

    def _coarsen(self, measurements: list[Measurement], parts: int, keep: set[str | None],
                 mech: _Mechanisms) -> None:
        """Groups each binned column of more than ``parts`` bins into at most ``parts`` runs
        of adjacent bins, cut at the quantiles of its noisy 1-way counts, for the 2+-way
        marginals (a bin holding a large share, such as a capital gain of 0, gets a run of its
        own): post-processing of the 1-way measurements."""
        for i, block in enumerate(self.encoder_.blocks):
            n = block.n_values
            if block.edges is None or n <= parts or block.column.name in keep:
                continue
            p = measurements[i].counts[:n].numpy().clip(min=0)
            middle = (np.cumsum(p) - p / 2) / max(p.sum(), 1.0)
            g = np.unique(np.minimum(parts - 1, (middle * parts).astype("int64")),
                          return_inverse=True)[1]
            g = np.append(g, np.full(block.size - n, g.max() + 1))  # missing: its own group
            mech.merged[i] = g  # the measurements' grouping and the model's
            self.coarsened_[block.column.name] = int(g.max()) + 1

    def _merge_rare(self, measurements: list[Measurement], sigma: float,
                    mech: _Mechanisms) -> None:
        """Groups each code column's rare codes (noisy count < rare_merge * sigma) for the
        higher-order marginals: post-processing of the 1-way measurements."""
        self.merged_ = {}
        for i, block in enumerate(self.encoder_.blocks):
            col = block.column
            if not self.rare_merge or col.kind != "categorical" or \
                    len(col.categories) <= RARE_MERGE_MIN_CATEGORIES:
                continue
            rare = measurements[i].counts.numpy() < self.rare_merge * sigma  # (codes,)
            if rare.sum() < 2:
                continue
            measurements[i] = _shrink(measurements[i], rare)
            groups = np.where(rare, (~rare).sum(), np.cumsum(~rare) - 1)  # rare: last group
            mech.merged[i] = groups
            self.merged_[col.name] = [c for c, r in zip(col.categories, rare) if r]

    def _recodings(self, measurements: list[Measurement]) -> list[Clique]:
        """Pairs of columns that look like recodings of each other (a code and its label),
        judged from their noisy 1-way counts alone (post-processing): both hold values (no
        bin of several values) and no merged codes, as many values each, filling at least
        ``RECODING_SPREAD`` of them effectively, one of them coarsened, and their counts in
        sorted order equal within the noise (squared differences summing to at most the
        number of values in noise variances: about what noise alone gives)."""
        blocks = self.encoder_.blocks
        counts = [m.counts.numpy()[:b.n_values].clip(min=0) for m, b in zip(measurements, blocks)]
        out = []
        for i, j in itertools.combinations(range(len(blocks)), 2):
            a, b = blocks[i], blocks[j]
            if a.n_values != b.n_values or not {a.column.name, b.column.name} & set(
                    self.coarsened_) or {a.column.name, b.column.name} & set(self.merged_):
                continue
            if any(x.edges is not None and not x.integer_values for x in (a, b)):
                continue
            if min(_effective_cells(counts[i]), _effective_cells(counts[j])) < RECODING_SPREAD:
                continue
            var = measurements[i].sigma ** 2 + measurements[j].sigma ** 2
            if ((np.sort(counts[i]) - np.sort(counts[j])) ** 2).sum() <= a.n_values * var:
                out.append((i, j))
        return out

    @staticmethod
    def _total(measurements: list[Measurement], sizes: list[int]) -> float:
        """Inverse-variance weighted estimate of the record count from every measurement."""
        num = den = 0.0
        for m in measurements:
            var = m.sigma**2 * len(m.counts)  # one variance per cell
            num += float(m.counts.sum()) / var
            den += 1 / var
        return max(1.0, num / den)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """n synthetic rows with the schema's dtypes; the same seed gives the same rows."""
        check_request(self, n)
        generator = torch.Generator(device=self.model_.logits.device).manual_seed(seed)
        codes = self.model_.sample(n, generator, match=self.degree)
        return self.encoder_.decode(codes, np.random.default_rng(seed), self.fine_)


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

