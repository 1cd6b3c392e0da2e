"""The adaptive-marginals synthesizer: its accounting against OpenDP, its noise, its estimator."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipelines.ingest import ingest
from schemas import load_schema
from synth.encoding import TableEncoder
from synth.marginals import (
    ITERATIONS,
    LAST_ROUNDS,
    MEMBERS,
    DPIndependent,
    DPMarginals,
    Measurement,
    _Mechanisms,
    _MixtureModel,
    _shrink,
)
from synth.privacy import PrivacyBudget, zcdp_epsilon, zcdp_rho
from tests.conftest import ROOT

FAST = {"rounds_per_column": 2, "components": 64, "iterations": 10, "members": 1}


@pytest.fixture(scope="module")
def adult(adult_sample):
    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    return schema, ingest(adult_sample, schema).frame


@pytest.mark.parametrize(("rho", "delta"), [(0.005, 1e-9), (0.015, 1e-9), (0.3, 1e-5),
                                            (2.0, 1e-9)])
def test_zcdp_conversion_equals_opendps(rho, delta):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    gauss = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                               dp.l2_distance(T=float), scale=math.sqrt(1 / (2 * rho)))
    profile = dp.c.make_zCDP_to_approxDP(gauss).map(1.0)
    assert zcdp_epsilon(rho, delta) == pytest.approx(profile.epsilon(delta), rel=1e-6)
    # tighter than the classic rho + 2 sqrt(rho log 1/delta), and invertible
    assert zcdp_epsilon(rho, delta) < rho + 2 * math.sqrt(rho * math.log(1 / delta))
    eps = zcdp_epsilon(rho, delta)
    assert zcdp_rho(PrivacyBudget(eps, delta)) == pytest.approx(rho, rel=1e-6)


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 10.0])
def test_spent_epsilon_is_opendps_rho_total_and_uses_the_budget(adult, epsilon):
    schema, frame = adult
    model = DPMarginals(noise_seed=1, **FAST).fit(frame, schema, PrivacyBudget(epsilon))
    p = model.privacy_
    rho = sum(m["rho"] for m in p.measurements)
    assert model.rho_spent_ == pytest.approx(rho)
    assert p.epsilon == pytest.approx(zcdp_epsilon(rho, 1e-9)) and p.epsilon <= epsilon
    assert p.epsilon > 0.999 * epsilon  # nothing left unspent
    assert p.accountant == "zcdp" and p.steps is None
    # the 1-way marginals come first (twice when 2,000 records make them too noisy at
    # this budget: see one_way_target), then the fine histograms of the binned numeric
    # columns, then any recodings measured whole, then selection and measurement alternate
    kinds = [m["mechanism"].split()[0] for m in p.measurements]
    d, f, r = len(schema.columns), len(model.fine_), len(model.recodings_)
    t = d * (1 + (epsilon < 10))  # the expected noise per column: 0.37 at 1, 0.037 at 10
    assert kinds[:t + f + r] == ["discrete"] * (t + f + r)
    assert all(m.get("full") for m in p.measurements[t + f:t + f + r])
    assert kinds[t + f + r:] == ["report", "discrete"] * ((len(kinds) - t - f - r) // 2)
    assert [m["marginal"] for m in p.measurements[:t]] == [[i % d] for i in range(t)]
    assert [m["fine_histogram"] for m in p.measurements[t:t + f]] == sorted(model.fine_)
    one_way = sum(m["rho"] for m in p.measurements[:t]) / (rho / (1 - 1e-6))
    fine = sum(m["rho"] for m in p.measurements[t:t + f]) / (rho / (1 - 1e-6))
    assert one_way / (1 - fine) == pytest.approx(0.6 if epsilon < 10 else 0.2, rel=1e-4)


def test_iterations_follow_the_rounds_noise_against_the_noisy_record_count(adult,
                                                                          monkeypatch):
    """Longer fits where the rounds' noise is small for the data's size (a rule of epsilon,
    columns and the noisy count: post-processing); a value given is kept."""
    schema, frame = adult  # 2,000 rows, 15 columns
    settings = {"rounds_per_column": 2, "components": 16, "members": 1, "noise_seed": 1}
    asked = []  # the rule decides the iterations; the mixture takes one step each fit, quickly
    fit = _MixtureModel.fit
    monkeypatch.setattr(_MixtureModel, "fit", lambda self, measurements, total, iterations,
                        lr: (asked.append(iterations), fit(self, measurements, total, 1, lr)))
    noisy = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0))  # sigma about 50
    precise = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(100.0))  # about 0.7
    assert (noisy.iterations_, precise.iterations_) == ITERATIONS
    given = DPMarginals(iterations=7, **settings).fit(frame, schema, PrivacyBudget(100.0))
    assert given.iterations_ == 7
    assert set(asked) == {n * k for n in (*ITERATIONS, 7) for k in (1, 10)}  # each fit's count


def test_noisy_rounds_fit_several_mixtures_released_as_their_average(adult):
    """Where the rounds are noisy, MEMBERS[0] mixtures follow the same measurements from their
    own initialisations and the release is their average (post-processing: the same
    measurements, the same spend); precise rounds fit one; a value given is kept."""
    schema, frame = adult
    settings = {"rounds_per_column": 2, "components": 16, "iterations": 5, "noise_seed": 1}
    noisy = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0))
    precise = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(100.0))
    assert (noisy.members_, precise.members_) == MEMBERS
    assert noisy.model_.logits.shape[0] == MEMBERS[0] * 16
    single = DPMarginals(members=1, **settings).fit(frame, schema, PrivacyBudget(1.0))
    assert single.model_.logits.shape[0] == 16
    # members change the estimate, never what was measured or spent
    assert single.privacy_.measurements == noisy.privacy_.measurements
    parts = noisy.model_.logits.split(16)  # distinct initialisations, distinct fits
    assert not torch.allclose(parts[0], parts[1])
    age = schema.names.index("age")
    start, size = sum(noisy.model_.sizes[:age]), noisy.model_.sizes[age]
    average = torch.stack([F.softmax(p[:, start:start + size], 1).mean(0) for p in parts]).mean(0)
    assert torch.allclose(noisy.model_.marginal(noisy.model_.probs(), (age,)), average)
    assert len(noisy.sample(500)) == 500


def test_a_cpu_fit_runs_on_one_thread_where_openmps_idle_threads_sleep(adult, monkeypatch):
    """Waking sleeping OpenMP threads costs more than the mixture's small operations gain:
    one thread unless asked; torch's own setting is back afterwards."""
    schema, frame = adult
    before = torch.get_num_threads()
    seen = []
    fit = _MixtureModel.fit
    monkeypatch.setattr(_MixtureModel, "fit", lambda self, m, total, _iterations, lr: (
        seen.append(torch.get_num_threads()), fit(self, m, total, 1, lr))[1])  # one step
    settings = {**FAST, "device": "cpu", "noise_seed": 1}
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0)).threads_ == 1
    assert set(seen) == {1} and torch.get_num_threads() == before
    seen.clear()
    assert DPMarginals(threads=2, **settings).fit(frame, schema, PrivacyBudget(1.0)).threads_ == 2
    assert set(seen) == {2} and torch.get_num_threads() == before
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # spinning threads: torch's setting
    assert DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0)).threads_ == before


def test_the_last_of_the_budget_is_split_evenly_over_the_last_rounds(adult):
    """When less than two rounds as planned are left, the rest is split evenly over
    LAST_ROUNDS rounds, measurement and selection alike, and the budget is spent."""
    schema, frame = adult
    model = DPMarginals(noise_seed=1, **FAST).fit(frame, schema, PrivacyBudget(1.0))
    log = model.privacy_.measurements
    rounds = [m for m in log if "marginal" in m][-LAST_ROUNDS:]
    picks = [m for m in log if m["mechanism"].startswith("report")][-LAST_ROUNDS:]
    assert [m["sigma"] for m in rounds] == pytest.approx([rounds[0]["sigma"]] * LAST_ROUNDS)
    assert [m["epsilon"] for m in picks] == pytest.approx([picks[0]["epsilon"]] * LAST_ROUNDS)
    assert model.epsilon_spent_ == pytest.approx(1.0, rel=1e-5)


def test_binned_columns_count_by_runs_of_bins_in_higher_marginals_where_rounds_are_noisy(
        adult):
    """Where the rounds' noise is large for the data's size, a binned column counts in 2- and
    3-way marginals by runs of adjacent bins (post-processing of noisy counts: no extra
    cost); its 1-way marginal and the sample keep every bin; an outcome keeps its bins."""
    schema, frame = adult  # 2,000 rows
    settings = {"rounds_per_column": 2, "components": 16, "iterations": 5, "noise_seed": 1}
    noisy = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0))  # sigma about 50
    assert 2 <= noisy.coarsened_["age"] < 20 and "workclass" not in noisy.coarsened_
    assert noisy.epsilon_spent_ <= 1.0 + 1e-9
    age, income = schema.names.index("age"), schema.names.index("income")
    runs = noisy.model_.merged[age].argmax(1).numpy()  # the run of each bin
    assert (np.diff(runs) >= 0).all() and runs.max() + 1 == noisy.coarsened_["age"]
    probs = noisy.model_.probs()
    assert len(noisy.model_.marginal(probs, (age, income))) == 2 * noisy.coarsened_["age"]
    assert len(noisy.model_.marginal(probs, (age,))) == 20
    assert noisy.sample(2000, seed=0)["age"].nunique() > 20
    precise = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(100.0))  # about 0.7
    off = DPMarginals(coarsen=0, **settings).fit(frame, schema, PrivacyBudget(1.0))
    assert precise.coarsened_ == off.coarsened_ == {}
    demo = load_schema(ROOT / "schemas" / "medical_demo.yaml")
    rows = ingest(ROOT / "data" / "medical" / "patients.csv.gz", demo).frame
    survival = DPMarginals(**settings).fit(rows, demo, PrivacyBudget(0.3)).coarsened_
    assert survival and demo.survival.time not in survival  # the outcome keeps its bins


def test_look_alike_columns_measure_their_recodings_within_the_budget():
    """Where many columns look like recodings of one another from their noisy 1-way counts
    (caravan's integer codes at epsilon 1), the pairs measured whole take at most
    ``RECODING_MAX`` of what the rounds have left, the closest first: the spend stays within
    the budget (measuring all 269 look-alike pairs here spent epsilon 2.8 of 1)."""
    import pandas as pd

    from schemas.parse import schema_from_dict
    from synth.marginals import one_way

    rng, d = np.random.default_rng(0), 24
    frame = pd.DataFrame({f"c{i}": rng.integers(0, 10, 3000) for i in range(d)})
    schema = schema_from_dict({"name": "alike", "version": "1", "columns": [
        {"name": f"c{i}", "kind": "integer", "min": 0, "max": 9} for i in range(d)]}, "alike")
    model = DPMarginals(components=8, iterations=2, max_candidates=50, noise_seed=0).fit(
        frame, schema, PrivacyBudget(1.0))
    assert model.epsilon_spent_ <= 1.0
    pairs = len(model.recodings_)
    assert 0 < pairs < d * (d - 1) // 2
    log = model.privacy_.measurements
    first = next(i for i, m in enumerate(log) if m.get("full"))  # the pairs come together
    before = sum(m["rho"] for m in log[:first])
    assert pairs * log[first]["rho"] <= one_way.RECODING_MAX * (
        zcdp_rho(PrivacyBudget(1.0)) - before) + 1e-12


def test_a_recoding_survives_coarsening_measured_once_at_full_resolution(adult, monkeypatch):
    """Where education-num counts by runs, its pair with education (a recoding) is found from
    the noisy 1-way counts alone and measured once at full resolution, charged like any
    measurement; the model then puts most of the pair's mass on the recoding, which it cannot
    with runs only."""
    schema, frame = adult  # 2,000 rows
    i, j = schema.names.index("education"), schema.names.index("education-num")
    settings = {"rounds_per_column": 2, "components": 16, "iterations": 5, "noise_seed": 1}

    def on_the_recoding(model):
        q = model.model_.marginal(model.model_.probs(), (i, j), grouped=False).detach()
        cells = np.unique(model.encoder_.encode(frame)[:, [i, j]], axis=0)
        return float(q.reshape(model.encoder_.sizes[i], -1)[tuple(cells.T)].sum())

    model = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0))
    assert "education-num" in model.coarsened_
    assert model.recodings_ == [("education", "education-num")]  # and no other pair
    full = [m for m in model.privacy_.measurements if m.get("full")]
    assert [m["marginal"] for m in full] == [[i, j]]
    assert full[0]["rho"] == pytest.approx(1 / (2 * full[0]["sigma"] ** 2), rel=1e-6)
    assert model.epsilon_spent_ <= 1.0 + 1e-9
    from synth.marginals import one_way

    monkeypatch.setattr(one_way, "recodings", lambda *args: [])
    runs_only = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0))
    assert on_the_recoding(model) > max(0.5, 2 * on_the_recoding(runs_only))
    precise = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(100.0))
    assert precise.coarsened_ == {} and precise.recodings_ == []  # measured whole anyway


def test_rare_codes_share_their_groups_count_where_noise_swamps_their_differences():
    rare = np.array([False, True, True, True, True])
    swamped = Measurement((0,), torch.tensor([900.0, 30.0, -150.0, 210.0, 120.0]), 200.0)
    y = _shrink(swamped, rare).counts.numpy()
    assert y[0] == 900 and np.allclose(y[1:], 52.5) and y.sum() == pytest.approx(1110)
    clear = Measurement((0,), torch.tensor([900.0, 10.0, 400.0, 800.0, 50.0]), 1.0)
    assert np.allclose(_shrink(clear, rare).counts.numpy(), clear.counts.numpy(), atol=0.01)


def test_independent_baseline_spends_everything_on_one_way_marginals(adult):
    schema, frame = adult
    model = DPIndependent(noise_seed=1).fit(frame, schema, PrivacyBudget(1.0))
    d = len(schema.columns)
    sigmas = {m["sigma"] for m in model.privacy_.measurements}
    assert len(model.privacy_.measurements) == d and len(sigmas) == 1
    assert sigmas.pop() == pytest.approx(math.sqrt(d / (2 * zcdp_rho(PrivacyBudget(1.0)))),
                                         rel=1e-5)


@pytest.mark.parametrize("seed", [None, 3])
def test_measurements_carry_noise_of_the_stated_scale(seed):
    """OpenDP's discrete Gaussian (seed None) and the seeded test path both add noise of
    std sigma; a mechanism with half the noise would fail this."""
    codes = np.zeros((500, 1), dtype="int64")
    mech = _Mechanisms(np.repeat(codes, 1, axis=1), [20_000], seed)
    sigma = 30.0
    noise = mech.measure((0,), sigma) - mech.exact((0,))
    assert abs(noise.mean()) < 1.0 and noise.std() == pytest.approx(sigma, rel=0.05)
    assert np.all(noise == np.round(noise))  # integer counts stay integers
    assert mech.rho_spent == pytest.approx(1 / (2 * sigma**2), rel=1e-6)


def test_selection_prefers_the_worst_marginal_and_charges_its_epsilon():
    mech = _Mechanisms(np.zeros((1, 1), dtype="int64"), [1], None)
    scores = np.array([0.0, 0.0, 1000.0, 0.0])
    picks = {mech.select(scores, sensitivity=1.0, epsilon=1.0) for _ in range(20)}
    assert picks == {2}
    assert mech.rho_spent == pytest.approx(20 * 1.0**2 / 8)


@pytest.mark.parametrize(("d", "degree"), [(1, 3), (2, 3), (3, 2), (5, 3), (8, 3), (9, 2)])
def test_candidate_weights_are_the_workloads_overlap_in_closed_form(d, degree):
    """A clique's weight (the columns it shares with every 2..degree-way workload marginal,
    summed) depends on its size alone; the closed form equals the sum over the workload."""
    import itertools

    from synth.marginals.rounds import _Candidates

    workload = [w for k in range(2, degree + 1) for w in itertools.combinations(range(d), k)]
    candidates = _Candidates.of([2] * d, degree, {})
    assert len(candidates.cliques) == sum(math.comb(d, k) for k in range(1, degree + 1))
    for r in candidates.cliques:
        assert candidates.weights[r] == sum(len(set(r) & set(w)) for w in workload)


def test_a_round_scores_at_most_max_candidates_drawn_independently_of_the_data():
    """Wide tables: a round scores a random subset of the eligible candidates, the same
    subset whatever the rows (drawn from the seed), so the guarantee is unchanged."""
    from synth.marginals.rounds import _Candidates, _Rounds

    sizes = [3] * 30
    model = DPMarginals(max_candidates=200)
    candidates = _Candidates.of(sizes, 3, {})
    picks = []
    for rows in (np.zeros((50, 30), dtype="int64"), np.ones((80, 30), dtype="int64")):
        mech = _Mechanisms(rows, sizes, 0)
        rounds = _Rounds.plan(100, 1.0, 0.1)
        pool = model._pool(candidates, mech, rounds, 1.0, np.random.default_rng(7))
        assert len(pool) == 200 and len(set(pool)) == 200
        assert set(pool) <= set(candidates.cliques)
        picks.append(pool)
    assert picks[0] == picks[1]
    assert len(DPMarginals()._pool(_Candidates.of([3] * 5, 3, {}), _Mechanisms(
        np.zeros((5, 5), dtype="int64"), [3] * 5, 0), _Rounds.plan(10, 1.0, 0.1), 1.0,
        np.random.default_rng(0))) == 5 + 10 + 10  # narrow tables: every candidate


def test_estimator_recovers_exact_marginals():
    """With noiseless measurements of every pair the mixture matches them closely."""
    rng = np.random.default_rng(0)
    n, sizes = 5000, [3, 4, 5]
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(0, 2, n)) % 4
    c = (a * b + rng.integers(0, 2, n)) % 5
    codes = np.stack([a, b, c], axis=1)
    mech = _Mechanisms(codes, sizes, 0)
    cliques = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    measured = [Measurement(c, torch.as_tensor(mech.exact(c), dtype=torch.float64), 1.0)
                for c in cliques]
    model = _MixtureModel(sizes, 64, torch.Generator().manual_seed(0), torch.device("cpu"))
    model.fit(measured, float(n), 1500, 0.05)
    probs = model.probs()
    for c in cliques:
        fitted = model.marginal(probs, c).detach().numpy()
        assert np.abs(fitted - mech.exact(c) / n).sum() < 0.03, c


def test_marginals_and_the_fits_loss_equal_their_definitions():
    """The estimator's shortcuts (the widest column in the matmul, then back to the clique's
    order; repeated measurements pooled; the 1-way terms as one vector) give the marginals
    of the definition, sum_k prod_c p_kc / K, and the loss's gradients of the definition,
    sum_i w_i ||marginal_i - y_i||^2 / sum_i w_i."""
    sizes, merged = [4, 2, 7, 3], {2: F.one_hot(torch.tensor([0, 1, 1, 2, 0, 2, 3])).float()}
    model = _MixtureModel(sizes, 6, torch.Generator().manual_seed(0), torch.device("cpu"),
                          merged, members=2)
    with torch.no_grad():
        model.logits.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    probs = model.probs()
    for clique in [(0,), (2,), (0, 1), (2, 0), (0, 2, 3), (3, 2, 1), (0, 1, 2, 3)]:
        for grouped in (True, False):
            ps = [probs[c] @ merged[c] if grouped and len(clique) > 1 and c in merged
                  else probs[c] for c in clique]
            letters = "abcd"[:len(clique)]
            spec = ",".join(f"mk{x}" for x in letters) + "->m" + letters
            want = torch.einsum(spec, *ps).flatten(1) / 6
            assert torch.allclose(model.marginal(probs, clique, grouped), want, atol=1e-6)
    rng = np.random.default_rng(2)
    measured = [Measurement(c, torch.as_tensor(rng.normal(50, 5, math.prod(
        4 if x == 2 and len(c) > 1 else sizes[x] for x in c))), s)
        for c, s in [((0,), 2.0), ((1,), 1.0), ((0,), 3.0), ((2,), 1.0), ((0, 2), 2.0),
                     ((0, 2), 5.0), ((3, 1, 2), 4.0)]]
    weights = [(100.0 / m.sigma) ** 2 for m in measured]
    model.objective(measured, 100.0)().backward()
    fast = model.scores.grad.clone()
    model.scores.grad = None
    definition = sum(w * (model.marginal(model.probs(), m.clique) - m.counts / 100.0)
                     .pow(2).sum() for w, m in zip(weights, measured)) / sum(weights)
    definition.backward()
    assert torch.allclose(fast, model.scores.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("batch", [1, 2**18])
def test_marginals_of_one_shape_batched_equal_their_definitions(monkeypatch, batch):
    """Cliques of one shape (in any column order) share a batch of outer products, up to
    ``JOINT_BATCH`` numbers (1: one clique a batch): the marginals and the loss's gradients
    are still those of the definition."""
    from synth.marginals import mixture

    monkeypatch.setattr(mixture, "JOINT_BATCH", batch)
    sizes, merged = [3, 3, 2, 3, 2, 5], {5: F.one_hot(torch.tensor([0, 1, 1, 2, 0])).float()}
    model = _MixtureModel(sizes, 5, torch.Generator().manual_seed(0), torch.device("cpu"),
                          merged, members=2)
    with torch.no_grad():
        model.logits.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    cliques = [(0, 1), (1, 3), (3, 0), (2, 0), (0, 2), (4, 1), (0, 1, 2), (2, 3, 1),
               (4, 2, 0), (5, 0), (0, 5), (1, 5, 3), (5,), (2,)]
    probs = model.probs()
    for grouped in (True, False):
        batched = model.marginals(probs, cliques, grouped)
        for clique, got in zip(cliques, batched):
            ps = [probs[c] @ merged[c] if grouped and len(clique) > 1 and c in merged
                  else probs[c] for c in clique]
            letters = "abc"[:len(clique)]
            spec = ",".join(f"mk{x}" for x in letters) + "->m" + letters
            assert torch.allclose(got, torch.einsum(spec, *ps).flatten(1) / 5, atol=1e-6)
    rng = np.random.default_rng(3)
    measured = [Measurement(c, torch.as_tensor(rng.normal(40, 5, len(m[0]))), 1.0 + i % 3)
                for i, (c, m) in enumerate(zip(cliques, (model.marginal(probs, c)
                                                        for c in cliques)))]
    model.objective(measured, 100.0)().backward()
    fast = model.scores.grad.clone()
    model.scores.grad = None
    weights = [(100.0 / m.sigma) ** 2 for m in measured]
    definition = sum(w * (model.marginal(model.probs(), m.clique) - m.counts / 100.0)
                     .pow(2).sum() for w, m in zip(weights, measured)) / sum(weights)
    definition.backward()
    assert torch.allclose(fast, model.scores.grad, atol=1e-6, rtol=1e-4)


def test_the_estimators_adam_steps_are_torch_optims():
    """The estimator's Adam, written out (torch.optim would import torch._dynamo), takes the
    steps of torch.optim.Adam's defaults."""
    from synth.marginals.mixture import _adam

    ours = torch.randn(3, 7, generator=torch.Generator().manual_seed(0)).requires_grad_()
    theirs = ours.detach().clone().requires_grad_()
    moments = torch.zeros_like(ours), torch.zeros_like(ours)
    opt = torch.optim.Adam([theirs], lr=0.05)
    grads = torch.Generator().manual_seed(1)
    for step in range(1, 30):
        ours.grad = torch.randn(3, 7, generator=grads) * 10.0 ** (step % 5 - 4)
        theirs.grad = ours.grad.clone()
        with torch.no_grad():
            _adam(ours, *moments, step, 0.05)
        opt.step()
        assert torch.equal(ours, theirs), step


def _random_mixture(sizes, components, seed):
    model = _MixtureModel(sizes, components, torch.Generator().manual_seed(seed),
                          torch.device("cpu"))
    with torch.no_grad():
        model.logits.normal_(0, 2, generator=torch.Generator().manual_seed(seed + 1))
    return model


def test_stratified_rows_follow_the_mixture_exactly():
    """Each row's joint distribution is the mixture's: the pair (column 0, column 1) of one
    row, over many independent draws, matches the model's 2-way marginal (chi-square)."""
    from scipy.stats import chisquare

    model = _random_mixture([3, 4, 2], 5, 0)
    expected = model.marginal(model.probs(), (0, 1)).detach().double().numpy()
    expected /= expected.sum()
    g = torch.Generator().manual_seed(0)
    draws = np.stack([model.sample(7, g) for _ in range(3000)])  # (draws, rows, columns)
    for row in (0, 6):  # rows are exchangeable; check two
        pairs = draws[:, row, 0] * 4 + draws[:, row, 1]
        counts = np.bincount(pairs, minlength=12)
        assert chisquare(counts, expected * len(pairs)).pvalue > 1e-3


def test_stratified_histograms_are_tighter_than_independent_draws():
    """Every 1-way histogram is within one row per component of n times the model's
    marginal; plain per-row draws miss it by about sqrt(n p (1 - p))."""
    sizes, components, n = [6, 20], 16, 20_000
    model = _random_mixture(sizes, components, 3)
    codes = model.sample(n, torch.Generator().manual_seed(0))
    assert codes.shape == (n, 2)
    probs = model.probs()
    for c, size in enumerate(sizes):
        expected = n * model.marginal(probs, (c,)).detach().numpy()
        assert np.abs(np.bincount(codes[:, c], minlength=size) - expected).max() <= components
    # the same seed gives the same rows; n not a multiple of the components works
    again = model.sample(n, torch.Generator().manual_seed(0))
    assert (codes == again).all()
    assert model.sample(5, torch.Generator().manual_seed(1)).shape == (5, 2)


def _three_way_l1(model, codes):
    import itertools

    probs, n, out = model.probs(), len(codes), []
    for q in itertools.combinations(range(codes.shape[1]), 3):
        dims = [model.sizes[c] for c in q]
        counts = np.bincount(np.ravel_multi_index(codes[:, list(q)].T, dims),
                             minlength=math.prod(dims))
        out.append(np.abs(counts / n - model.marginal(probs, q).detach().numpy()).sum())
    return float(np.mean(out))


@pytest.mark.parametrize("limit", [None, 20_000])
def test_matched_rows_follow_the_models_three_way_marginals_closer(monkeypatch, limit):
    """Matching swaps codes inside components: every column keeps its codes, the 3-way
    histograms come much closer to the model's, and the same seed gives the same rows; a
    small ``MATCH_LIMIT`` splits the components into groups that still match."""
    import synth.marginals.mixture as marginals

    if limit:
        monkeypatch.setattr(marginals, "MATCH_LIMIT", limit)  # 4 groups of components
    model = _random_mixture([4, 5, 3, 6, 2], 32, 5)
    n = 8_000
    plain = model.sample(n, torch.Generator().manual_seed(0))
    matched = model.sample(n, torch.Generator().manual_seed(0), match=3)
    assert (np.sort(plain, axis=0) == np.sort(matched, axis=0)).all()
    assert _three_way_l1(model, matched) < 0.7 * _three_way_l1(model, plain)
    assert (model.sample(n, torch.Generator().manual_seed(0), match=3) == matched).all()
    if not limit:  # where not even one pass fits, the rows stay as drawn
        monkeypatch.setattr(marginals, "MATCH_WORK", 1)
        again = model.sample(n, torch.Generator().manual_seed(0), match=3)
        assert _three_way_l1(model, again) == pytest.approx(_three_way_l1(model, plain))


def test_high_epsilon_release_is_faithful(adult):
    """At a large budget the synthetic 2-way marginals are close to the real ones."""
    schema, frame = adult
    model = DPMarginals(noise_seed=0, components=128, rounds_per_column=3,
                        iterations=35).fit(frame, schema, PrivacyBudget(50.0))
    enc = TableEncoder(schema, max_bins=20)
    real, synth = enc.encode(frame), enc.encode(model.sample(4000, seed=0))
    tvds = []
    for i in range(len(enc.sizes)):
        for j in range(i + 1, len(enc.sizes)):
            dims = (enc.sizes[i], enc.sizes[j])
            r = np.bincount(np.ravel_multi_index(real[:, [i, j]].T, dims),
                            minlength=dims[0] * dims[1]) / len(real)
            s = np.bincount(np.ravel_multi_index(synth[:, [i, j]].T, dims),
                            minlength=dims[0] * dims[1]) / len(synth)
            tvds.append(np.abs(r - s).sum() / 2)
    assert np.mean(tvds) < 0.06, np.mean(tvds)
