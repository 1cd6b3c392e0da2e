"""Resumable DP training (synth.checkpoint): a run killed after a checkpoint resumes there,
reuses its DP measurements instead of measuring again, loses at most one checkpoint
interval, and ends with the accountant history, hence the epsilon, of an uninterrupted run.
States are saved and loaded as the pipeline does: torch.save, then torch.load with
weights_only=True."""

import io
import os

import numpy as np
import pytest
import torch

from synth import dpsgd, gan, image_nets
from synth.checkpoint import ResumeError
from synth.gan import DPCTGAN
from synth.images import make_image_synthesizer
from synth.privacy import PrivacyBudget
from synth.vae import DPVAE
from tests.conftest import ROOT

EVERY = 3


class Killed(Exception):
    """Stands for the process dying (the pipeline tests kill it for real)."""


class Memory:
    """A checkpoint kept in memory, saved and loaded the way pipelines.checkpoints does;
    ``kill_at`` makes the n-th save (1-based) die before it is written."""

    def __init__(self, every: int = EVERY, kill_at: int | None = None):
        self.every, self.kill_at, self.saves, self.blob = every, kill_at, 0, None

    def load(self):
        return None if self.blob is None else torch.load(io.BytesIO(self.blob),
                                                         weights_only=True)

    def save(self, state):
        self.saves += 1
        if self.kill_at == self.saves:
            raise Killed
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.blob = buffer.getvalue()


def _images(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 4, n)


# RDP: its calibration is fast; the accounting itself is tested elsewhere
TABULAR = {
    "dp-vae": lambda: DPVAE(epochs=1, batch_size=200, hidden=32, latent_dim=8, noise_seed=5,
                            accountant="rdp"),
    "dp-ctgan": lambda: DPCTGAN(epochs=1, batch_size=200, hidden=32, latent_dim=8,
                                discriminator_hidden=32, noise_seed=5, accountant="rdp"),
}
IMAGE = {"epochs": 2, "batch_size": 50, "width": 8, "noise_seed": 5, "device": "cpu",
         "label_share": 0.1, "accountant": "rdp"}


def fit_tabular(name, adult, checkpoint=None, progress=None):
    schema, frame = adult
    model = TABULAR[name]()
    return model, lambda: model.fit(frame, schema, PrivacyBudget(1.0, 1e-9), progress,
                                    checkpoint=checkpoint)


def fit_image(name, adult, checkpoint=None, progress=None):
    images, labels = _images()
    model = make_image_synthesizer(name, **IMAGE)
    return model, lambda: model.fit(images, labels, 4, PrivacyBudget(1.0, 1e-5), progress,
                                    checkpoint=checkpoint)


CASES = [(name, fit_tabular) for name in TABULAR] + [
    (name, fit_image) for name in ("dp-conv-gan", "dp-conv-vae")]


@pytest.mark.parametrize("name,fit", CASES, ids=[c[0] for c in CASES])
def test_a_killed_run_resumes_at_its_last_checkpoint_with_the_same_epsilon(name, fit, adult):
    whole, run = fit(name, adult)
    run()
    steps = whole.privacy_.steps
    assert steps > 2 * EVERY + 1

    checkpoint = Memory(kill_at=2)  # the second save dies: the first, at step 3, is kept
    _, run = fit(name, adult, checkpoint)
    with pytest.raises(Killed):
        run()
    assert torch.load(io.BytesIO(checkpoint.blob), weights_only=True)["step"] == EVERY

    checkpoint.kill_at = None
    done = []
    resumed, run = fit(name, adult, checkpoint, progress=lambda i, n: done.append(i))
    run()
    assert done[0] == EVERY + 1 and done[-1] == steps  # lost: steps 4 to 6, one interval
    assert resumed.privacy_.epsilon == pytest.approx(whole.privacy_.epsilon, rel=1e-9)
    assert (resumed.privacy_.noise_multiplier, resumed.privacy_.steps) == (
        whole.privacy_.noise_multiplier, steps)
    if hasattr(whole, "history_"):
        assert resumed.history_ == whole.history_


def test_a_resumed_run_reuses_its_measurements_instead_of_spending_again(adult, monkeypatch):
    checkpoint = Memory(kill_at=2)
    killed, run = fit_tabular("dp-ctgan", adult, checkpoint)
    with pytest.raises(Killed):
        run()
    calls = []
    real = gan.noisy_counts
    monkeypatch.setattr(gan, "noisy_counts", lambda *a, **k: calls.append(1) or real(*a, **k))
    checkpoint.kill_at = None
    resumed, run = fit_tabular("dp-ctgan", adult, checkpoint)
    run()
    assert not calls
    for a, b in zip(resumed.noisy_counts_, killed.noisy_counts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,fit", CASES, ids=[c[0] for c in CASES])
def test_the_record_count_is_measured_once(name, fit, adult, monkeypatch):
    """The noisy count that sets the sampling rate is a DP measurement: a resumed run reads
    it from its checkpoint (measuring again would spend twice and could change q)."""
    checkpoint = Memory(kill_at=2)
    killed, run = fit(name, adult, checkpoint)
    with pytest.raises(Killed):
        run()
    saved = torch.load(io.BytesIO(checkpoint.blob), weights_only=True)
    assert set(saved["measured"]) >= {"record_count"}
    monkeypatch.setattr(dpsgd, "noisy_count", None)  # would fail if called
    checkpoint.kill_at = None
    resumed, run = fit(name, adult, checkpoint)
    run()
    count = resumed.privacy_.measurements[-1]
    assert count["noisy_count"] == saved["measured"]["record_count"]
    assert resumed.privacy_.sampling_rate == resumed.batch_size / count["noisy_count"]


def test_image_label_counts_are_measured_once(monkeypatch, adult):
    checkpoint = Memory(kill_at=2)
    killed, run = fit_image("dp-conv-gan", adult, checkpoint)
    with pytest.raises(Killed):
        run()
    monkeypatch.setattr(image_nets, "measure_labels", None)  # would fail if called
    checkpoint.kill_at = None
    resumed, run = fit_image("dp-conv-gan", adult, checkpoint)
    run()
    np.testing.assert_array_equal(resumed.labels_.counts, killed.labels_.counts)


def test_a_checkpoint_of_another_plan_is_refused(adult):
    checkpoint = Memory(kill_at=2)
    _, run = fit_tabular("dp-vae", adult, checkpoint)
    with pytest.raises(Killed):
        run()
    checkpoint.kill_at = None
    schema, frame = adult
    with pytest.raises(ResumeError, match="plan"):  # two epochs: other sigma and steps
        DPVAE(epochs=2, batch_size=200, hidden=32, latent_dim=8, noise_seed=5,
              accountant="rdp").fit(
            frame, schema, PrivacyBudget(1.0, 1e-9), checkpoint=checkpoint)


def test_a_state_holds_no_randomness(adult):
    """No generator state is saved: a leaked checkpoint predicts no later step's noise."""
    checkpoint = Memory(kill_at=2)
    _, run = fit_tabular("dp-ctgan", adult, checkpoint)
    with pytest.raises(Killed):
        run()
    state = torch.load(io.BytesIO(checkpoint.blob), weights_only=True)

    def keys(value, prefix=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from keys(v, f"{prefix}/{k}")
        else:
            yield prefix
    assert not [k for k in keys(state) if "generator_state" in k or k.endswith("/rng")]
    assert set(state["parts"]) == {"generator", "discriminator", "opt_g", "opt_d", "average"}


class Payload:
    """What a hostile checkpoint carries: code that runs when pickle loads it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_not_run(tmp_path, adult_sample, capsys):
    from pipelines.checkpoints import CheckpointError, load_weights
    from pipelines.cli import EXIT_BAD_INPUT, main
    from pipelines.publish import list_in_manifest

    marker = tmp_path / "pwned"
    out = tmp_path / "out" / "rel"
    hostile = out.with_name("rel.internal") / "checkpoint.pt"
    hostile.parent.mkdir(parents=True)
    torch.save({"run_key": "x", "state": Payload(marker)}, hostile)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_weights(hostile)
    args = ["run", "--input", str(adult_sample), "--schema",
            str(ROOT / "schemas" / "adult.yaml"), "--epsilon", "1", "--out", str(out),
            "--synthesizer", "dp-vae", "--ledger", str(tmp_path / "l.db"), "-q"]
    # planted alone, the folder is not this tool's (no manifest): never even opened
    assert main(args) == EXIT_BAD_INPUT
    assert "not a folder this tool wrote" in capsys.readouterr().err
    # with a forged manifest that vouches for it: opened, and refused without running it
    list_in_manifest(hostile.parent, hostile.name, hostile.read_bytes())
    assert main(args) == EXIT_BAD_INPUT
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()
