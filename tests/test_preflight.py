"""Pre-flight: public facts (the schema's cells, epsilon) warn of noise-dominated one-way
marginals before the budget is reserved; the warning reads no data and refuses nothing."""

import logging
import math

import numpy as np
import pandas as pd
import pytest

from pipelines.config import FidelityThresholds, RunConfig
from pipelines.ledger import Ledger
from pipelines.plan import prepare
from pipelines.preflight import WARN_ROWS, noise_floor, noisy_below, warnings
from schemas import load_schema
from synth.base import make_synthesizer
from synth.privacy import PrivacyBudget, zcdp_rho
from tests.conftest import ROOT

TINY = """\
name: tiny
version: "1"
columns:
  - {name: age, kind: integer, min: 0, max: 99}
  - {name: colour, kind: categorical, categories: [red, green, blue]}
"""


def config(tmp_path, epsilon: float, **more) -> RunConfig:
    return RunConfig(input=str(tmp_path / "in.csv"), schema_file=str(tmp_path / "s.yaml"),
                     out=str(tmp_path / "out"), epsilon=epsilon,
                     ledger=str(tmp_path / "ledger.db"), **more)


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "s.yaml").write_text(TINY)
    rng = np.random.default_rng(0)
    pd.DataFrame({"age": rng.integers(0, 100, 300),
                  "colour": rng.choice(["red", "green", "blue"], 300)}).to_csv(
        tmp_path / "in.csv", index=False)
    return load_schema(tmp_path / "s.yaml")


def test_the_noise_floor_is_the_gaussian_mechanisms_over_every_column():
    sigma = noise_floor(15, 1.0, 1e-9)
    rho = zcdp_rho(PrivacyBudget(1.0, 1e-9))
    assert 15 / (2 * sigma**2) == pytest.approx(rho)  # d measurements of sensitivity 1
    # the expected TV of noise on k cells, at the rows noisy_below names, is the threshold
    rows = noisy_below(20, sigma, 0.1)
    assert 20 * sigma * math.sqrt(2 / math.pi) / (2 * rows) == pytest.approx(0.1)


def test_no_synthesizer_measures_with_less_noise_than_the_floor(tiny):
    frame = pd.DataFrame({"age": pd.array(np.arange(200) % 100, dtype="Int64"),
                          "colour": pd.Categorical(["red", "green"] * 100,
                                                   ["red", "green", "blue"])})
    model = make_synthesizer("dp-ctgan", epochs=1, batch_size=100, seed=0, noise_seed=1)
    model.fit(frame, tiny, PrivacyBudget(1.0, 1e-9))
    floor = noise_floor(len(tiny.columns), 1.0, 1e-9)
    assert all(m.sigma >= floor for m in model.noisy_marginals_)


def test_a_small_epsilon_warns_with_the_columns_and_rows_and_a_large_one_does_not(tmp_path,
                                                                                 tiny):
    [line] = warnings(tiny, config(tmp_path, 0.1))
    assert line.startswith("pre-flight: at epsilon=0.1") and "'age'" in line
    rows = int(line.split("fewer than about ")[1].split(" input rows")[0].replace(",", ""))
    assert rows >= WARN_ROWS and "nothing is refused" in line
    assert warnings(tiny, config(tmp_path, 50.0)) == []
    off = config(tmp_path, 0.1, fidelity=FidelityThresholds(enabled=False))
    assert warnings(tiny, off) == []
    # a looser threshold needs fewer rows
    loose = config(tmp_path, 0.1, fidelity=FidelityThresholds(measured_tv_max=0.5))
    assert warnings(tiny, loose) == [] or "measured_tv_max=0.5" in warnings(tiny, loose)[0]


def test_a_bundled_schema_at_epsilon_1_names_a_flchain_sized_input():
    flchain = load_schema(ROOT / "schemas" / "flchain.yaml")
    run = RunConfig(input="in.csv", schema_file="s.yaml", out="o", epsilon=1.0)
    [line] = warnings(flchain, run)
    rows = int(line.split("fewer than about ")[1].split(" input rows")[0].replace(",", ""))
    assert rows > 442  # the 442-row table of issue 24 is named as too small


def test_prepare_warns_on_the_progress_channel_before_reserving(tmp_path, tiny, caplog):
    progress = logging.getLogger("synth.progress")
    progress.addHandler(caplog.handler)  # whatever the channel's propagation
    try:
        with caplog.at_level(logging.WARNING, logger="synth.progress"):
            plan = prepare(config(tmp_path, 0.1))
    finally:
        progress.removeHandler(caplog.handler)
    plan.done()
    lines = [r.getMessage() for r in caplog.records if r.name == "synth.progress"]
    assert any(line.startswith("pre-flight:") for line in lines)
    assert [e["state"] for e in Ledger(tmp_path / "ledger.db").history()] == ["reserved"]
