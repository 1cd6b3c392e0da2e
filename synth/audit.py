"""One-run canary audit: an empirical lower bound on epsilon that must stay below the claim.

Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023,
arXiv 2305.08846). m canaries are each included with probability 1/2 by a fair coin; the
mechanism runs once; an attacker scores every canary, guesses the k highest IN and the k
lowest OUT (k fixed before looking), and the number of correct guesses is, under
(epsilon, delta)-DP, stochastically dominated by a binomial (their Theorem 3.1 and the
p-value of their Appendix D). The largest epsilon that the result rejects at 95% confidence is
``epsilon_lower``. A release whose ``epsilon_lower`` exceeds its claim is broken.

* DP-SGD models: the audit reruns our own ``DPStep`` (clip, noise, scale) with the model's
  exact settings (sigma, C, q, steps, expected batch size) on Dirac canaries: a bias-free
  ``Linear(m, 1)`` whose i-th weight only canary i touches (input 2C e_i, loss = output, so
  its clipped gradient is exactly C e_i). Plain SGD with lr = expected batch size makes the
  drift of weight i the noised sum of canary i's gradients: the white-box score.
* ``dp-marginals``: each canary is a cell of a histogram that it alone adds one count to; the
  histogram is measured once per Gaussian measurement of the model, with that measurement's
  sigma, through the same OpenDP path; the score weighs measurements by 1/sigma^2.

The audit is a tripwire for gross bugs (no noise, noise quartered, clipping off), not a
certificate: the notes (docs/PRIVACY-RELIABILITY-NOTES.md, section 2.2) measure it missing
2x under-noise. It reads no private data, so it costs no privacy budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from synth.dpsgd import DPStep
from synth.privacy import PrivacyReport, epsilon_of, zcdp_epsilon
from synth.randomness import PrivateRandom

Engine = Callable[..., DPStep]  # DPStep's signature; tests pass broken variants


@dataclass(frozen=True)
class AuditResult:
    """The outcome of one audit.

    Attributes:
        epsilon_lower: the empirical lower bound (95% confidence by default).
        epsilon_claimed: the epsilon of the audited mechanism alone, by the model's accountant
            (the DP-SGD part for DP-SGD models, the Gaussian measurements for dp-marginals).
        passed: ``epsilon_lower <= epsilon_claimed``.
        n_canaries, guesses, correct: m, the number of guesses r = 2k, and how many were right.
        seconds: wall time of the audit.
    """

    epsilon_lower: float
    epsilon_claimed: float
    passed: bool
    n_canaries: int
    guesses: int
    correct: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class AuditError(ValueError):
    """A privacy report the audit cannot rerun."""


def _log_binom_pmf(r: int, p: float) -> np.ndarray:
    """(r+1,) log P[Binomial(r, p) = j] for j = 0..r (numpy only: no scipy at run time)."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, r + 1)))])  # log j!
    j = np.arange(r + 1)
    with np.errstate(divide="ignore"):
        return (log_fact[r] - log_fact - log_fact[::-1] + j * math.log(p)
                + (r - j) * math.log1p(-p))


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Appendix D of Steinke et al.: the probability, under (epsilon, delta)-DP, of at least
    ``v`` correct out of ``r`` guesses on ``m`` canaries."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1 / (1 + math.exp(-epsilon))  # accuracy of epsilon-DP randomized response
    pmf = np.exp(_log_binom_pmf(r, q))
    beta = float(pmf[v:].sum())  # P[Bin(r, q) >= v]
    # alpha = max_i P[v - i <= Bin(r, q) < v] / i
    below = np.cumsum(pmf[:v][::-1])  # i = 1..v
    alpha = float((below / np.arange(1, v + 1)).max()) if v else 0.0
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float,
                        confidence: float = 0.95) -> float:
    """The largest epsilon whose p-value stays below 1 - confidence (bisection), 0 if none."""
    level = 1 - confidence
    lo, hi = 0.0, 1.0
    if p_value(m, r, v, lo, delta) >= level:
        return 0.0
    while p_value(m, r, v, hi, delta) < level:
        lo, hi = hi, hi + 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(m, r, v, mid, delta) < level else (lo, mid)
    return lo


def _guess(scores: np.ndarray, included: np.ndarray, k: int) -> tuple[int, int]:
    """Top-k guessed IN, bottom-k guessed OUT; (guesses, correct). A stable sort on a
    random permutation breaks ties at random, not by index."""
    order = np.argsort(scores, kind="stable")
    correct = int(included[order[-k:]].sum() + (~included[order[:k]]).sum())
    return 2 * k, correct


def _dpsgd_scores(report: PrivacyReport, included: np.ndarray, random: PrivateRandom,
                  secure_noise: bool, engine: Engine) -> np.ndarray:
    """Runs DP-SGD with the report's settings on the included Dirac canaries; (m,) drift."""
    assert report.noise_multiplier is not None and report.sampling_rate is not None \
        and report.steps is not None and report.max_grad_norm is not None  # audit checked
    m, c = len(included), float(report.max_grad_norm)
    canary = nn.Linear(m, 1, bias=False)
    nn.init.zeros_(canary.weight)
    batch_scale = float(report.expected_batch_size or 1.0)
    # lr = expected batch size undoes DPStep's division: drift = noised clipped sum
    optimizer = torch.optim.SGD(canary.parameters(), lr=batch_scale)
    step = engine(canary, optimizer, float(report.noise_multiplier), c, batch_scale,
                  random, secure_noise=secure_noise)
    members = torch.as_tensor(np.flatnonzero(included))  # (n_in,) canary indices
    try:
        for _ in range(int(report.steps)):
            picked = members[random.mask(len(members), float(report.sampling_rate))]
            # input 2C e_i: gradient norm 2C, so clipping must act to leave C e_i
            batch = torch.zeros(len(picked), m).index_put_(
                (torch.arange(len(picked)), picked), torch.tensor(2 * c))  # (batch, m)
            def loss(b: torch.Tensor = batch) -> torch.Tensor:
                return canary(b)[:, 0]
            step(loss if len(batch) else None)
    finally:
        step.close()
    return -canary.weight.detach()[0].double().numpy()  # start (0) minus end


def _gaussian_measurements(report: PrivacyReport) -> list[dict]:
    return [x for x in report.measurements
            if "sigma" in x and "Gaussian" in str(x.get("mechanism", ""))]


def _marginal_scores(report: PrivacyReport, included: np.ndarray, seed: int | None,
                     mechanisms: Callable | None) -> np.ndarray:
    """Measures the canaries' histogram once per Gaussian measurement of the report, through
    dp-marginals' own OpenDP measurement; (m,) inverse-variance weighted noisy counts (the
    optimal statistic for a composition of Gaussian mechanisms)."""
    if mechanisms is None:  # the synthesizer's own measurement path
        from synth.marginals import _Mechanisms
        mechanisms = _Mechanisms

    m = len(included)
    codes = np.flatnonzero(included)[:, None]  # (n_in, 1): canary i adds one to cell i
    mech = mechanisms(codes, [m], seed)
    scores = np.zeros(m)
    for x in _gaussian_measurements(report):
        sigma = float(x["sigma"])
        scores += np.asarray(mech.measure((0,), sigma), dtype="float64") / sigma**2
    return scores


def audit(report: PrivacyReport, n_canaries: int = 1000, k: int | None = None,
          seed: int = 0, secure_noise: bool = False, confidence: float = 0.95,
          engine: Engine = DPStep, mechanisms: Callable | None = None,
          noise_seed: int | None = None) -> AuditResult:
    """Audits the mechanism a fitted synthesizer's privacy report describes.

    Args:
        report: ``synthesizer.privacy_``: a DP-SGD report (noise multiplier, sampling rate,
            steps, clipping bound, expected batch size) or a dp-marginals report (zCDP, its
            Gaussian measurements each with their sigma).
        n_canaries: m; to be able to refute a claim epsilon you need m >~ 6 e^epsilon.
        k: guesses on each side, fixed in advance (default m // 10; r = 2k).
        seed: draws which canaries are included and breaks ties.
        secure_noise: DP-SGD noise from the OS CSPRNG, as the model was trained with.
        confidence: of the lower bound.
        engine: the DP-SGD step under audit (``DPStep``); tests pass broken variants.
        mechanisms: dp-marginals' measurement class under audit (default
            ``synth.marginals._Mechanisms``, called as ``(codes, sizes, seed)``); tests pass
            broken variants.
        noise_seed: DP-SGD: the seed of the engine's ``PrivateRandom`` (sampling and,
            without ``secure_noise``, the noise); by default derived from ``seed``, which is
            fine because the audit reads no private data. dp-marginals: None (default) keeps
            OpenDP's secure sampler; an integer replaces it by numpy's (tests only).

    Returns:
        The ``AuditResult``; ``passed`` is False when the bound exceeds the claim.

    Raises:
        AuditError: the report describes neither DP-SGD nor Gaussian measurements.
    """
    start = time.perf_counter()
    if n_canaries < 2:
        raise AuditError(f"n_canaries must be at least 2, got {n_canaries}")
    k = max(1, n_canaries // 10) if k is None else k
    if not 1 <= 2 * k <= n_canaries:
        raise AuditError(f"k must lie in [1, n_canaries / 2], got {k}")
    rng = np.random.default_rng(seed)
    included = rng.random(n_canaries) < 0.5  # the fair coins
    if report.noise_multiplier is not None:
        if report.sampling_rate is None or report.steps is None or \
                report.max_grad_norm is None:
            raise AuditError("the DP-SGD report lacks sampling_rate, steps or max_grad_norm")
        random = PrivateRandom(int(rng.integers(2**62)) if noise_seed is None else noise_seed)
        scores = _dpsgd_scores(report, included, random, secure_noise, engine)
        claimed = epsilon_of(report.noise_multiplier, report.sampling_rate, report.steps,
                             report.delta, report.accountant)
    elif report.accountant == "zcdp" and _gaussian_measurements(report):
        scores = _marginal_scores(report, included, noise_seed, mechanisms)
        rho = sum(1 / (2 * float(x["sigma"]) ** 2) for x in _gaussian_measurements(report))
        claimed = zcdp_epsilon(rho, report.delta)
    else:
        raise AuditError("the audit reruns DP-SGD (a report with noise_multiplier) or "
                         "Gaussian measurements (a zCDP report listing each sigma); this "
                         f"report has neither (accountant {report.accountant!r})")
    shuffle = rng.permutation(n_canaries)  # random tie-breaking for the stable sort
    guesses, correct = _guess(scores[shuffle], included[shuffle], k)
    lower = epsilon_lower_bound(n_canaries, guesses, correct, report.delta, confidence)
    return AuditResult(epsilon_lower=lower, epsilon_claimed=float(claimed),
                       passed=lower <= claimed, n_canaries=n_canaries, guesses=guesses,
                       correct=correct, seconds=time.perf_counter() - start)
