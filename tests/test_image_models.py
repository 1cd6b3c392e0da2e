"""DP image synthesizers: the estimator contract, accounting against a fresh Opacus
accountant, the generator's isolation from real images, and the engine's per-record clipping
of (real, fake) pairs against Opacus's per-sample gradients."""

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn

from synth.base import NotFittedError
from synth.dpsgd import DPStep
from synth.ghost import GhostClipper, supported_layers
from synth.image_gan import DPConvGAN, _Discriminator
from synth.images import IMAGE_SYNTHESIZERS, make_image_synthesizer
from synth.privacy import PrivacyBudget
from synth.randomness import PrivateRandom
from tests.conftest import FrozenStep

pytestmark = [pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha"),
              pytest.mark.filterwarnings("ignore:Full backward hook is firing")]

# Calibration dominates a tiny fit: RDP at sampling rate 1 (2 full-batch steps) is closed
# form; Poisson subsampling and PRV are used where the accounting is tested
TINY = {"epochs": 2, "batch_size": 200, "width": 8, "noise_seed": 5, "device": "cpu",
        "accountant": "rdp"}
NAMES = [n for n in sorted(IMAGE_SYNTHESIZERS) if n != "dp-merf"]  # DP-SGD (see test_image_merf)
BUDGET = PrivacyBudget(1.0, 1e-5)


def _data(n=200, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return images, rng.integers(0, 4, n).astype(np.int64)


def _fit(name, images=None, labels=None, budget=BUDGET, **params):
    if images is None:
        images, labels = _data()
    return make_image_synthesizer(name, **{**TINY, **params}).fit(images, labels, 4, budget)


@pytest.fixture(scope="module", params=NAMES)
def fitted(request):
    return _fit(request.param)


@pytest.mark.parametrize("name", NAMES)
def test_params_and_sample_before_fit(name):
    model = make_image_synthesizer(name, epochs=3, lr=0.01)
    params = model.get_params()
    assert params["epochs"] == 3 and params["lr"] == 0.01 and params["accountant"] == "prv"
    assert params["device"] == "auto" and params["noise_seed"] is None
    assert type(model)(**params).get_params() == params
    with pytest.raises(NotFittedError):
        model.sample(5)
    with pytest.raises(ValueError, match="unknown image synthesizer"):
        make_image_synthesizer("dp-conv-gna")


def test_samples_are_uint8_images_with_the_labels_asked_for(fitted):
    images, labels = fitted.sample(30, seed=1)
    assert images.shape == (30, 8, 8, 1) and images.dtype == np.uint8
    assert labels.shape == (30,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 4
    assert len(np.unique(labels)) > 1  # uniform over the public label set
    asked = np.array([3, 0, 2, 2, 1])
    images, labels = fitted.sample(5, seed=1, labels=asked)
    np.testing.assert_array_equal(labels, asked)
    with pytest.raises(ValueError, match="labels must be"):
        fitted.sample(2, labels=np.array([0, 4]))
    with pytest.raises(ValueError):
        fitted.sample(0)


def test_labels_condition_the_images(fitted):
    """The same latents under two labels give different images."""
    a, _ = fitted.sample(20, seed=2, labels=np.zeros(20, dtype=np.int64))
    b, _ = fitted.sample(20, seed=2, labels=np.ones(20, dtype=np.int64))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(28, 28, 1), (10, 13, 3)])
def test_other_sizes_and_rgb(name, shape):
    images, labels = _data(60, shape)
    model = _fit(name, images, labels, batch_size=60)
    out, _ = model.sample(4)
    assert out.shape == (4, *shape) and out.dtype == np.uint8


@pytest.mark.parametrize("name", NAMES)
def test_same_noise_seed_same_release(name):
    a, b = _fit(name), _fit(name)
    np.testing.assert_array_equal(a.sample(20, seed=3)[0], b.sample(20, seed=3)[0])
    assert not np.array_equal(a.sample(20, seed=3)[0], a.sample(20, seed=4)[0])
    c = _fit(name, noise_seed=6)
    assert not np.array_equal(a.sample(20, seed=3)[0], c.sample(20, seed=3)[0])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("accountant,oracle,label_share",
                         [("prv", PRVAccountant, 0.2), ("rdp", RDPAccountant, 0.0)])
def test_epsilon_is_a_fresh_opacus_accountant_over_the_full_history(name, accountant, oracle,
                                                                     label_share):
    budget = PrivacyBudget(2.0, 1e-5)
    model = _fit(name, budget=budget, accountant=accountant, label_share=label_share,
                 epochs=1, batch_size=50)
    report = model.privacy_
    count = report.measurements[-1]  # the noisy image count, measured just before DP-SGD
    history = [(count["noise_multiplier"], 1.0, 1),
               (report.noise_multiplier, report.sampling_rate, report.steps)]
    if label_share:
        labels, _ = report.measurements
        history.insert(0, (labels["noise_multiplier"], 1.0, 1))
        counts = model.labels_.counts
        assert np.array_equal(counts, np.rint(counts))  # rounded noised counts
        assert model.labels_.probabilities.sum().item() == pytest.approx(1.0)
    else:
        assert len(report.measurements) == 1 and model.labels_.counts is None
    assert model.history_ == history
    acct = oracle()
    acct.history = history
    with np.errstate(divide="ignore"):  # PRV's log(1 - q) at q = 1
        expected = acct.get_epsilon(delta=budget.delta)
    assert report.epsilon == pytest.approx(expected, rel=1e-9)
    assert model.epsilon_spent_ == report.epsilon <= budget.epsilon
    assert report.epsilon > 0.9 * budget.epsilon  # calibrated, not wastefully over-noised
    # q from the noisy count of the images, never from their number
    assert report.sampling_rate == 50 / count["noisy_count"] != 50 / 200
    assert report.steps == int(np.ceil(1 / report.sampling_rate))


@pytest.mark.parametrize("name", NAMES)
def test_the_sampling_rate_comes_from_a_noisy_image_count(name):
    """With all private randomness fixed, D and D minus one image differ in their reports
    only through the noisy count (exactly one apart); nothing published is batch / N."""
    images, labels = _data()
    reports = [_fit(name, x, y, epochs=1, batch_size=50).privacy_
               for x, y in ((images, labels), (images[:-1], labels[:-1]))]
    counts = []
    for n, report in zip((200, 199), reports):
        count = report.measurements[-1]
        assert "number of records" in count["mechanism"]
        assert report.sampling_rate == 50 / max(1, count["noisy_count"]) != 50 / n
        assert report.expected_batch_size == pytest.approx(50)
        counts.append(count["noisy_count"])
    assert counts[0] - counts[1] == 1


def test_label_counts_cost_budget():
    plain = _fit("dp-conv-vae").privacy_.noise_multiplier
    assert _fit("dp-conv-vae", label_share=0.3).privacy_.noise_multiplier > plain


def test_no_batchnorm_and_a_fake_does_not_depend_on_the_batch():
    model = _fit("dp-conv-gan")
    for net in (model.generator_, model.discriminator_):
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    supported_layers(model.discriminator_)  # every D parameter is clipped exactly
    supported_layers(_fit("dp-conv-vae").model_)
    G = model.generator_.train()
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(40, model.latent_dim, generator=g), torch.randint(0, 4, (40,), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(G(z, y)[:3], G(z[:3], y[:3]))
    G.eval()


def _generator_after_fit(images, labels, frozen_discriminator, monkeypatch):
    with monkeypatch.context() as m:
        if frozen_discriminator:
            m.setattr("synth.image_gan.DPStep", FrozenStep)
        model = _fit("dp-conv-gan", images, labels)
    return model.generator_.state_dict()


def test_generator_reads_real_images_only_through_the_discriminator(monkeypatch):
    """Two data sets with the same labels but other images: with D held fixed G ends up
    identical; letting D learn makes them differ."""
    images, labels = _data()
    other, _ = _data(seed=1)
    for frozen in (True, False):
        a, b = (_generator_after_fit(x, labels, frozen, monkeypatch) for x in (images, other))
        assert all(torch.equal(a[k], b[k]) for k in a) == frozen


def test_pairs_are_clipped_as_one_record_like_opacus():
    """rows_per_record=2: each record's gradient is the sum of its two rows' per-sample
    gradients (Opacus's GradSampleModule as the oracle), clipped as one."""
    torch.manual_seed(0)
    D = _Discriminator(3, (1, 8, 8), 4)
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))
    oracle = GradSampleModule(_Discriminator(3, (1, 8, 8), 4), loss_reduction="sum")
    oracle.load_state_dict({f"_module.{k}": v for k, v in D.state_dict().items()})
    oracle(x, y).pow(2).sum().backward()
    grads = torch.cat([p.grad_sample.reshape(12, -1) for p in oracle.parameters()], dim=1)
    per_record = grads.view(6, 2, -1).sum(1)  # (records, parameters)
    norms = per_record.norm(dim=1)
    factor = (0.5 / (norms + 1e-6)).clamp(max=1.0)
    expected = (per_record * factor[:, None]).sum(0)

    clipper = GhostClipper(D, 0.5, rows_per_record=2)
    clipper.backward(D(x, y).pow(2).sum())
    torch.testing.assert_close(clipper.per_sample_norms(), norms, rtol=1e-4, atol=1e-6)
    clipper.clipped_sum()
    clipper.close()
    got = torch.cat([p.grad.reshape(-1) for p in D.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layer", [nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 4, 2)])
def test_dpstep_refuses_unsupported_layers(layer):
    module = nn.Sequential(nn.Conv2d(1, 4, 3), layer)
    opt = torch.optim.Adam(module.parameters())
    with pytest.raises(TypeError, match="supports parameters in"):
        DPStep(module, opt, 1.0, 1.0, 10.0, PrivateRandom(0), rows_per_record=2)


def test_bad_inputs_are_refused_before_training():
    images, labels = _data()
    with pytest.raises(ValueError, match="uint8"):
        DPConvGAN(**TINY).fit(images.astype(np.float32), labels, 4, PrivacyBudget(1.0))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        DPConvGAN(**TINY).fit(images, labels, 3, PrivacyBudget(1.0))


def test_vae_samples_follow_their_label_through_public_class_centres():
    """The VAE's prior is p(z | y) = N(m_y, I), with centres m_y drawn from a fixed seed (no
    data read, the same for every fit): samples of a bright class and a dark class end up
    apart, where a label-free N(0, I) prior let the decoder ignore the label."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    images = np.where(labels[:, None, None, None] == 0, 230, 20).astype(np.uint8) + \
        rng.integers(0, 20, (400, 8, 8, 1), dtype=np.uint8)
    params = {**TINY, "epochs": 10, "batch_size": 100, "lr": 5e-3}
    model = make_image_synthesizer("dp-conv-vae", **params).fit(
        images, labels, 2, PrivacyBudget(10.0, 1e-5))
    bright, _ = model.sample(50, labels=np.zeros(50, dtype=np.int64))
    dark, _ = model.sample(50, labels=np.ones(50, dtype=np.int64))
    assert bright.mean() > dark.mean() + 60
    other = make_image_synthesizer("dp-conv-vae", **params).fit(
        255 - images, labels, 2, PrivacyBudget(10.0, 1e-5))
    assert torch.equal(model.model_.centres, other.model_.centres)
    assert "centres" not in dict(model.model_.named_parameters())  # not trained: public
