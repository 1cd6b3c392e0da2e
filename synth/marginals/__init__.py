"""Differentially private synthesis from adaptively chosen, noise-measured marginals.

The mechanism is AIM's (McKenna, Mullins, Sheldon and Miklau, VLDB 2022), in zero-
concentrated DP: measure every 1-way marginal with Gaussian noise, then in rounds select the
2- or 3-way marginal the current model gets most wrong, measure it, refit, and halve the noise
when a measurement stops moving the model. The estimator is ours, in the spirit of GEM (Liu,
Vietri and Wu, 2021) and RAP: a uniform mixture of ``components`` product distributions over
the encoded columns (one softmax per column per component), fitted by Adam to all noisy
measurements by weighted least squares. Its marginals are closed-form, its samples follow them
closely (stratified, then matched), and it runs on the GPU when there is one.

Privacy: every read of the data is an OpenDP measurement: the discrete Gaussian mechanism on
integer counts (L2 sensitivity 1 under add/remove of one record) and report-noisy-max with
Gumbel noise for selection (sensitivity: the largest weight). Their zCDP costs, as OpenDP's
privacy maps state them, add up; the total converts to (epsilon, delta) by the tight
conversion of Canonne, Kamath and Steinke. The encoding is a function of the schema only; the
number of records is not used except through noisy counts. Sampling is post-processing.

Modules:
    mechanisms: the OpenDP measurements (``_Mechanisms``), the only reads of the data.
    one_way: what the noisy 1-way marginals decide (top-up, rare codes, runs, recodings).
    mixture: the mixture-of-products estimator and its sampler.
    rounds: the plan of the rounds (their noise) and the candidates they select from.
    aim: the AIM-style driver, ``DPMarginals``.
    independent: the independent-columns baseline, ``DPIndependent``.

Why the defaults are what they are: docs/decisions/marginals.md.
"""

from synth.marginals.aim import ITERATIONS, MEMBERS, DPMarginals
from synth.marginals.independent import DPIndependent
from synth.marginals.mechanisms import Clique, Measurement, _Mechanisms
from synth.marginals.mixture import _MixtureModel
from synth.marginals.one_way import _shrink
from synth.marginals.rounds import LAST_ROUNDS

__all__ = [
    "ITERATIONS",
    "LAST_ROUNDS",
    "MEMBERS",
    "Clique",
    "DPIndependent",
    "DPMarginals",
    "Measurement",
    "_Mechanisms",
    "_MixtureModel",
    "_shrink",
]
