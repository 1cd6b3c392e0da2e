"""The AIM-style driver: what dp-marginals measures, in which order, and when it stops.

AIM (McKenna, Mullins, Sheldon and Miklau, VLDB 2022), in zero-concentrated DP: measure every
1-way marginal with Gaussian noise, then in rounds select the 2- or 3-way marginal the current
model gets most wrong (exponential mechanism on ``weight * (L1 error - expected noise L1)``),
measure it, refit, and halve the noise when a measurement stops moving the model. The
measurements are ``mechanisms``'s, the estimator ``mixture``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from schemas import Schema
from synth.base import Params
from synth.encoding import CodedTable, TableEncoder
from synth.evidence import NoisyMarginal
from synth.marginals import one_way
from synth.marginals.mechanisms import Clique, Measurement, _Mechanisms, record_count
from synth.marginals.mixture import _MixtureModel
from synth.marginals.rounds import NOISE_L1, _Candidates, _Rounds
from synth.privacy import PrivacyBudget, PrivacyReport, zcdp_epsilon, zcdp_rho
from synth.sampling import check_request, cpu_threads, resolve_device

ITERATIONS = 50, 100  # Adam iterations per round: noisy rounds, precise rounds
MEMBERS = 3, 1  # mixtures fitted side by side and released as one: noisy rounds, precise
BATCH_COLUMNS = 16  # a round measures one marginal per this many columns (one up to 16)
PRECISE = 1e-3  # a round is precise when its noise scale is below this share of the records


class DPMarginals(Params):
    """AIM-style DP synthesizer: adaptive noisy marginals fitted by a mixture of products.

    What each setting was chosen against, with the measurements: docs/decisions/marginals.md.

    Args:
        degree: the largest marginals in the workload (all 1..degree-way column sets).
        rounds_per_column: initial number of rounds per column (AIM's T = 16 d); noise halves
            whenever a measurement stops moving the model, so fewer rounds usually run. Once
            less than two rounds as planned are left, the rest of the budget is split evenly
            over ``LAST_ROUNDS`` rounds (AIM spends it on one). A table of more than
            ``BATCH_COLUMNS`` columns measures one marginal per ``BATCH_COLUMNS`` columns
            between refits, each selected (without repeats) against the same model and
            charged as a round; the noise halves when the batch together stops moving the
            model. So the refits stay as many at any width.
        one_way_share: share of the budget spent first on all 1-way marginals; the rounds
            share the rest.
        one_way_target: when those measurements are noisy for the data's size (their
            expected L1 noise per column, judged from the noisy record count, above this
            target), the 1-way marginals are measured once more with enough budget to reach
            the target, at most ``one_way.ONE_WAY_MAX`` of the budget in all (0: never).
        selection_share: share of each round's budget spent on selection (AIM's 0.1).
        max_cells: largest marginal (in cells) that may be selected, reached gradually as the
            budget is spent (AIM's model-size rule).
        max_candidates: the most candidates scored in a round; where more are eligible (wide
            tables: the 3-way marginals grow as the cube of the columns), a uniform random
            subset of them, drawn from ``seed`` and never from the data (any data-independent
            subset leaves the guarantee as it is), so a round costs the same at any width.
        max_bins: bins per numeric column (the schema may set its own).
        components: mixture components of the model.
        iterations: Adam iterations after each measurement (ten times as many at the start
            and end). None (default): ``ITERATIONS[1]`` when the rounds' planned noise scale
            is below ``PRECISE`` times the noisy record count, else ``ITERATIONS[0]``.
        members: mixtures fitted side by side to the same measurements as one batch, each
            from its own initialisation (selection and the noise schedule follow the first);
            the model released is their average, one mixture of all their components:
            post-processing. None (default): ``MEMBERS[0]`` where the rounds are noisy (as for
            ``iterations``), else ``MEMBERS[1]``.
        lr: Adam learning rate of the estimator.
        rare_merge: in a categorical column of more than
            ``one_way.RARE_MERGE_MIN_CATEGORIES`` categories (ICD-like codes), the codes whose
            noisy 1-way count is below ``rare_merge`` noise standard deviations are merged
            into one group in every 2- and 3-way marginal (0: never), and their noisy 1-way
            counts shrink towards their mean by the empirical-Bayes factor spread / (spread +
            noise variance), the spread being their counts' variance beyond the noise. Post-
            processing of the 1-way measurement; no code is dropped.
        coarsen: where the rounds are noisy for the data's size, every binned column but the
            outcomes (the schema's target and survival time) counts in the 2- and 3-way
            marginals by runs of adjacent bins cut at the quantiles of its noisy 1-way
            counts, as many runs as the noisy record count holds ``coarsen`` times the
            rounds' planned noise scale (at least 2; none where that is more than the bins;
            0: never); the 1-way marginals and the fine histograms keep every bin. Post-
            processing of noisy counts, chosen once before the rounds. Where it coarsens, each
            pair of columns that looks like a recoding (a code and its label) from the noisy
            1-way counts (see ``one_way.recodings``; ``recodings_`` names them) is measured
            once at full resolution with the 1-way marginals' noise, the closest first, in
            at most ``one_way.RECODING_MAX`` of the budget the rounds have left.
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
        contribution: the most rows of ``data`` one privacy unit may hold (1: a row is a
            person; a child table's declared rows per person): every measurement's
            sensitivity is this many rows.
    """

    mechanism = ("AIM-style adaptive marginals (OpenDP discrete Gaussian measurements, "
                 "report-noisy-max selection), composed in zCDP")

    def __init__(self, degree: int = 3, rounds_per_column: int = 16,
                 one_way_share: float = 0.2, one_way_target: float = 0.1,
                 selection_share: float = 0.1,
                 max_cells: int = 20_000, max_candidates: int = 1000, max_bins: int = 20,
                 components: int = 1024, iterations: int | None = None,
                 members: int | None = None, lr: float = 0.05, rare_merge: float = 2.0,
                 fine_share: float = 0.05, device: str = "auto", threads: int | None = None,
                 coarsen: float = 5.0, seed: int = 0, noise_seed: int | None = None,
                 contribution: int = 1):
        self.degree = degree
        self.rounds_per_column = rounds_per_column
        self.one_way_share = one_way_share
        self.one_way_target = one_way_target
        self.selection_share = selection_share
        self.max_cells = max_cells
        self.max_candidates = max_candidates
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
        self.contribution = contribution

    def fit(self, data: pd.DataFrame | CodedTable, schema: Schema, budget: PrivacyBudget,
            progress: Callable[[int, int], None] | None = None,
            weights: np.ndarray | None = None) -> DPMarginals:
        """Fits on private ``data`` (the schema's dtypes), spending at most ``budget``.
        ``weights``: a whole-number weight per row, a privacy unit's summing to at most
        ``contribution`` (None: every row counts once)."""
        if weights is not None and (len(weights) != len(data) or (weights < 1).any()):
            raise ValueError("weights: one whole number of at least 1 per row")
        with cpu_threads(resolve_device(self.device), self.threads) as threads:
            self.threads_ = threads
            return self._fit(data, schema, budget, progress, weights)

    def _fit(self, data: pd.DataFrame | CodedTable, schema: Schema, budget: PrivacyBudget,
             progress: Callable[[int, int], None] | None,
             weights: np.ndarray | None = None) -> DPMarginals:
        """AIM: initialise on the 1-way marginals, then select, measure, refit and anneal
        until the budget is spent."""
        self._check()
        self.encoder_ = TableEncoder(schema, max_bins=self.max_bins)
        mech = _Mechanisms(self.encoder_.encode(data), self.encoder_.sizes, self.noise_seed, data,
                           self.contribution, weights)
        rho = zcdp_rho(budget) * (1 - 1e-6)
        measurements, rounds = self._measure_one_way(mech, rho)
        evidence = self._evidence(measurements)  # before any shrinkage
        total = self._group(measurements, mech, schema, rounds, rho)
        model = self.model_ = self._model(mech, rounds, total)
        model.fit(measurements, total, 10 * self.iterations_, self.lr)
        candidates = _Candidates.of(mech.sizes, self.degree, mech.merged)
        subsets = np.random.default_rng(self.seed)  # public: which candidates to score
        tick = lambda: progress(min(1000, int(1000 * mech.rho_spent / rho)), 1000) \
            if progress else None
        tick()
        batch = max(1, math.ceil(len(mech.sizes) / BATCH_COLUMNS))
        while rounds is not None and rho - mech.rho_spent > 1e-9 * rho:
            probs = _first(model)  # selection follows the first member
            scored: dict[Clique, float] = {}
            chosen: list[Clique] = []
            while len(chosen) < batch and rho - mech.rho_spent > 1e-9 * rho:
                rounds.next(rho - mech.rho_spent)  # the last rounds split what is left
                pool = [r for r in self._pool(candidates, mech, rounds, rho, subsets)
                        if r not in chosen]
                chosen.append(_select(mech, model, probs, pool, candidates, total, rounds,
                                      scored))
                measurements.append(mech.measurement(chosen[-1], rounds.sigma))  # measure
            before = [m.cpu() for m in model.marginals(probs, chosen)]
            total = record_count(measurements)
            model.fit(measurements, total, self.iterations_, self.lr)  # refit
            after = [m.cpu() for m in model.marginals(_first(model), chosen)]
            rounds.anneal(total * sum(float((a - b).abs().sum()) for a, b in zip(after, before)),
                          sum(candidates.cells[r] for r in chosen))
            tick()
        model.fit(measurements, total, 10 * self.iterations_, self.lr)
        model.join()  # post-processing: the members' average
        self._report(mech, measurements, budget, evidence)
        return self

    def _check(self) -> None:
        if self.rounds_per_column and not (0 < self.one_way_share < 1
                                           and 0 < self.selection_share < 1):
            raise ValueError("one_way_share and selection_share must lie in (0, 1)")
        if not 0 <= self.fine_share < 1:
            raise ValueError("fine_share must lie in [0, 1)")

    def _measure_one_way(self, mech: _Mechanisms, rho: float
                         ) -> tuple[list[Measurement], _Rounds | None]:
        """AIM's initialisation: every 1-way marginal (measured once more where too noisy for
        the data's size: see ``one_way_target``), then the fine histograms (``fine_``).
        Returns the 1-way measurements and the plan of the rounds (None without rounds)."""
        d = len(mech.sizes)
        rounds = self.rounds_per_column * d
        share = self.one_way_share if rounds else 1.0  # no rounds: all on the 1-way
        grids = self.encoder_.fine_grids() if self.fine_share else {}
        fine_rho = self.fine_share * rho if grids else 0.0
        sigma0 = math.sqrt(d / (2 * share * (rho - fine_rho)))
        measurements = [mech.measurement((i,), sigma0) for i in range(d)]
        if rounds and self.one_way_target:
            share = one_way.top_up(measurements, share, rho - fine_rho, mech,
                                   self.one_way_target)
        sigma_fine = math.sqrt(len(grids) / (2 * fine_rho)) if grids else 0.0
        self.fine_ = {i: (g, mech.measure_fine(i, g, sigma_fine)) for i, g in grids.items()}
        rest = (1 - share) * (rho - fine_rho)
        return measurements, _Rounds.plan(rounds, rest, self.selection_share) if rounds else None

    def _group(self, measurements: list[Measurement], mech: _Mechanisms, schema: Schema,
               rounds: _Rounds | None, rho: float) -> float:
        """Post-processing of the 1-way measurements: merges rare codes (``merged_``), counts
        binned columns by runs of bins where the rounds are noisy (``coarsened_``), then
        measures the pairs that look like recodings whole (``recodings_``) with the 1-way
        marginals' noise, the closest first, in at most ``one_way.RECODING_MAX`` of the
        budget ``rho`` has left. Returns the noisy record count before those pairs."""
        blocks, sigma0 = self.encoder_.blocks, measurements[0].sigma
        self.merged_ = one_way.merge_rare(measurements, sigma0, mech, blocks, self.rare_merge)
        total = record_count(measurements)
        self.coarsened_: dict[str, int] = {}  # column -> runs of bins in 2+-way marginals
        if rounds is not None and self.coarsen:
            outcomes = {schema.target, schema.survival.time if schema.survival else None}
            parts = max(2, int(total / (self.coarsen * rounds.sigma)))
            self.coarsened_ = one_way.coarsen(measurements, parts, outcomes, mech, blocks)
        pairs = one_way.recodings(measurements[:len(blocks)], blocks, self.coarsened_,
                                  self.merged_) if self.coarsened_ else []
        # each costs 1 / (2 sigma0^2); together at most RECODING_MAX of what is left
        pairs = pairs[:int(one_way.RECODING_MAX * (rho - mech.rho_spent) * 2 * sigma0**2)]
        self.recodings_ = [tuple(blocks[c].column.name for c in pair) for pair in pairs]
        measurements += [mech.measurement(pair, sigma0, full=True) for pair in pairs]
        return total

    def _model(self, mech: _Mechanisms, rounds: _Rounds | None, total: float) -> _MixtureModel:
        """The estimator for the rounds' noise (``iterations_``, ``members_``), each member
        from its own initialisation."""
        precise = rounds is not None and rounds.sigma < PRECISE * total
        self.iterations_ = self.iterations or ITERATIONS[precise]
        self.members_ = (self.members or MEMBERS[precise]) if rounds is not None else 1
        device = resolve_device(self.device)
        return _MixtureModel(
            mech.sizes, self.components, torch.Generator(device=device).manual_seed(self.seed),
            device, {c: F.one_hot(torch.as_tensor(g)).to(device=device, dtype=torch.float32)
                     for c, g in mech.merged.items()}, self.members_)

    def _pool(self, candidates: _Candidates, mech: _Mechanisms, rounds: _Rounds, rho: float,
              subsets: np.random.Generator) -> list[Clique]:
        """AIM's model-size rule: the candidates of at most ``max_cells`` times the share of
        the budget spent after this round (every 1-way marginal always); at most
        ``max_candidates`` of them."""
        limit = self.max_cells * (mech.rho_spent + 1 / (2 * rounds.sigma**2)
                                  + rounds.epsilon**2 / 8) / rho
        pool = np.flatnonzero(candidates.cells_in_order <= max(limit, max(mech.sizes)))
        if len(pool) > self.max_candidates:
            pool = pool[np.sort(subsets.choice(len(pool), self.max_candidates, replace=False))]
        return [candidates.cliques[i] for i in pool]

    def _evidence(self, measurements: list[Measurement]) -> tuple[NoisyMarginal, ...]:
        names = [b.column.name for b in self.encoder_.blocks]
        return tuple(NoisyMarginal(tuple(names[c] for c in m.clique), m.counts.numpy().copy(),
                                   m.sigma) for m in measurements)

    def _report(self, mech: _Mechanisms, measurements: list[Measurement],
                budget: PrivacyBudget, evidence: tuple[NoisyMarginal, ...]) -> None:
        """The spend, and what the release gate compares with: the 1-way ``evidence`` and
        every later measurement whose codes are not grouped."""
        self.privacy_ = PrivacyReport(
            epsilon=zcdp_epsilon(mech.rho_spent, budget.delta), delta=budget.delta,
            target_epsilon=budget.epsilon, accountant="zcdp", mechanism=self.mechanism,
            measurements=tuple(mech.log))
        self.rho_spent_ = mech.rho_spent
        self.epsilon_spent_ = self.privacy_.epsilon
        self.measured_ = [m.clique for m in measurements]
        self.noisy_marginals_ = evidence + self._evidence(
            [m for m in measurements[len(mech.sizes):]
             if m.full or not set(m.clique) & set(mech.merged)])

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """n synthetic rows with the schema's dtypes; the same seed gives the same rows."""
        check_request(self, n)
        generator = torch.Generator(device=self.model_.logits.device).manual_seed(seed)
        codes = self.model_.sample(n, generator, match=self.degree)
        return self.encoder_.decode(codes, np.random.default_rng(seed), self.fine_)


    @torch.no_grad()
    def sample_given(self, given: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
        """One synthetic row per row of ``given`` (some of the schema's columns, with its
        dtypes), drawn from the model conditioned on those values, which the rows keep (a
        missing value of a column that is not nullable is left free)."""
        check_request(self, max(1, len(given)))
        generator = torch.Generator(device=self.model_.logits.device).manual_seed(seed)
        fixed: np.ndarray = np.full((len(given), len(self.encoder_.blocks)), -1, dtype="int64")
        for i, block in enumerate(self.encoder_.blocks):
            if block.column.name in given:
                fixed[:, i] = self.encoder_.encode_column(i, given[block.column.name])
        codes = self.model_.sample_given(fixed, generator)
        out = self.encoder_.decode(codes, np.random.default_rng(seed), self.fine_)
        for name in given:
            keep = given[name].notna().to_numpy() | self.encoder_.schema.column(name).nullable
            out.loc[keep, name] = given[name].to_numpy()[keep]
        return out


def _first(model: _MixtureModel) -> list[torch.Tensor]:
    """The first member's distributions, one per column (components, codes)."""
    return [p.detach()[0] for p in model.probs()]


def _select(mech: _Mechanisms, model: _MixtureModel, probs: list[torch.Tensor],
            pool: list[Clique], candidates: _Candidates, total: float,
            rounds: _Rounds, scored: dict[Clique, float]) -> Clique:
    """AIM's selection: report-noisy-max over ``pool`` of each marginal's L1 error in the
    model beyond what its measurement's noise would add, times its weight. ``scored``: the
    errors already computed against this model (a batch's selections share them)."""
    new = [r for r in pool if r not in scored]
    with torch.no_grad():
        for r, marginal in zip(new, model.marginals(probs, new)):
            scored[r] = float(np.abs(mech.exact(r) - total * marginal.cpu().numpy()).sum())
    errors = np.array([scored[r] for r in pool])
    scores = np.array([candidates.weights[r] for r in pool]) * (
        errors - NOISE_L1 * rounds.sigma * np.array([candidates.cells[r] for r in pool]))
    return pool[mech.select(scores, max(candidates.weights[r] for r in pool), rounds.epsilon)]
