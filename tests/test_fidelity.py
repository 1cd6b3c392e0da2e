"""The fidelity suite: custom Great Expectations that compare synthetic rows with real ones,
its thresholds, the quarantine of a release that fails it, and the HTML reports."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.config import FidelityThresholds, RunConfig
from pipelines.ingest import ingest
from pipelines.validate import ValidationFailed
from pipelines.validate.fidelity import (
    fidelity_expectations,
    observed,
    validate_fidelity,
)
from schemas import load_schema
from synth import metrics
from tests.conftest import DEMO_ADULT, ROOT

ADULT = ROOT / "schemas" / "adult.yaml"


@pytest.fixture(scope="module")
def adult():
    schema = load_schema(ADULT)
    return schema, ingest(DEMO_ADULT, schema).frame


def independent(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A deliberately broken "synthesizer": every column resampled on its own."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: frame[c].iloc[rng.permutation(len(frame))].to_numpy()
                         for c in frame.columns}).astype(frame.dtypes.to_dict())


# --- the metrics ---------------------------------------------------------------------------

def test_distances_match_their_definitions():
    rng = np.random.default_rng(0)
    a, b = pd.Series(rng.normal(0, 1, 500)), pd.Series(rng.normal(0.3, 1, 400))
    assert metrics.ks_distance(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert metrics.ks_distance(a, a) == 0
    x = pd.Series(["a", "a", "b", None], dtype="category")
    y = pd.Series(["b", "b", "c", "c"], dtype="category")
    # real: a .5, b .25, NA .25; synthetic: b .5, c .5 -> (.5 + .25 + .25 + .5) / 2
    assert metrics.tv_distance(x, y) == pytest.approx(0.75)


def test_association_matrix_is_cramers_v():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, 5000)
    codes = np.stack([x, x, rng.integers(0, 4, 5000)], axis=1)
    v = metrics.association_matrix(codes, [3, 3, 4])
    assert np.allclose(v, v.T) and np.allclose(np.diag(v), 1)
    assert v[0, 1] == pytest.approx(1.0) and v[0, 2] < 0.05


# --- the suite -----------------------------------------------------------------------------

def test_suite_is_built_from_the_schema_and_thresholds_only(adult):
    schema, _ = adult
    gates = FidelityThresholds(ks_max=0.2, pmse_max=0.1)
    suite = fidelity_expectations(schema, gates)
    kinds = [type(e).__name__ for e in suite]
    assert kinds.count("ExpectColumnKsDistanceToBeAtMost") == 6  # the integer columns
    assert kinds.count("ExpectColumnTvDistanceToBeAtMost") == 9
    assert {"ExpectTableAssociationDifferenceToBeAtMost", "ExpectTablePropensityMseToBeAtMost",
            "ExpectTableTstrScoreToBeAtLeast"} <= set(kinds)
    assert all(e.threshold == 0.2 for e in suite if "Ks" in type(e).__name__)
    # GX renders them (Data Docs' sentence for each), with the threshold
    for e in suite:
        e.render()
        value = e.rendered_content[0].value
        assert "$threshold" in value.template and value.params["threshold"]["value"] == (
            e.threshold)
    assert suite[0].rendered_content[0].value.template.startswith("$column: Kolmogorov")


def test_real_rows_pass_and_independent_columns_fail_without_leaking_values(adult):
    schema, frame = adult
    rng = np.random.default_rng(1)
    half = rng.permutation(len(frame))[:6000]
    real, other = frame.iloc[half[:3000]], frame.iloc[half[3000:]]
    ok = validate_fidelity(real, other, schema, FidelityThresholds())
    assert ok.success, ok.failed

    broken = validate_fidelity(real, independent(other), schema, FidelityThresholds())
    assert not broken.success
    failed = " ".join(broken.failed)
    for name in ("association_difference", "tstr_score_to_be_at_least(income)"):
        assert name in failed
    assert "0." not in failed.replace("at most 0.", "").replace("at least 0.", "")  # no values
    # the result carries aggregates only: no row values, no lists of unexpected values
    text = json.dumps(broken.result)
    assert "unexpected_list" not in text and "partial_unexpected" not in text
    rows = observed(broken)
    assert all(isinstance(r["observed"], float) for r in rows)


# --- a release at epsilon = 1 passes; a broken synthesizer is quarantined -----------------

def test_adult_release_passes_and_a_broken_sample_is_quarantined(tmp_path):
    """The gate compares the release with what dp-marginals measured under DP (1-way and the
    2+-way marginals it chose), so it is post-processing; a sample whose columns lost their
    joint structure fails it. The fidelity suite against the real rows is advisory only."""
    import dataclasses

    from pipelines import run as steps
    from pipelines.plan import internal_dir, prepare, quarantine_dir

    config = RunConfig(input=str(DEMO_ADULT), schema_file=str(ADULT), epsilon=1.0,
                       rows=10_000, noise_seed=3, out=str(tmp_path / "good"),
                       components=256)  # a quarter of the default's: the gate still passes
    plan = prepare(config)
    data = steps.load_training(plan)
    model = steps.fit(plan, data.train)
    synthetic = steps.generate(plan, model)
    good = steps.check(plan, model, synthetic, data.real, data.holdout)
    assert good.success and good.fidelity.evaluated == 18  # the advisory suite still runs
    assert good.measured.evaluated > len(plan.schema.columns)  # 1-way and chosen 2+-way
    steps.release(plan, model, synthetic, good, data.real)
    assert (internal_dir(tmp_path / "good") / "fidelity.json").exists()
    public = json.loads((tmp_path / "good" / "validation.json").read_text())
    assert "fidelity" not in public and public["measured_marginals"]["success"] is True
    # the privacy report says which checks gate publication, and that they are covered
    report = json.loads((tmp_path / "good" / "privacy_report.json").read_text())
    assert "measured under DP" in report["release_gate"]
    assert "covered by the (epsilon, delta)" in report["release_gate"]
    assert "advisory" in report["release_gate"]
    assert any("held out of training" in step for step in report["private_steps"])

    rng = np.random.default_rng(0)  # every column shuffled on its own: 2-way structure gone
    broken = synthetic.apply(lambda c: c.to_numpy()[rng.permutation(len(c))])
    verdict = steps.check(plan, model, broken.astype(synthetic.dtypes.to_dict()), data.real,
                          data.holdout)
    assert not verdict.success and " x " in " ".join(verdict.failed)
    plan = dataclasses.replace(plan, out=tmp_path / "broken")
    with pytest.raises(ValidationFailed) as caught:
        steps.release(plan, model, broken, verdict, data.real)
    assert "measured_marginal_tv" in str(caught.value)
    assert caught.value.quarantine == quarantine_dir(tmp_path / "broken")
    assert not (tmp_path / "broken").exists()
    assert (quarantine_dir(tmp_path / "broken") / "data.parquet").exists()
    assert (internal_dir(tmp_path / "broken") / "report.html").exists()


# --- the reports ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reports(adult, tmp_path_factory):
    from pipelines.html_report import ReportInputs, render
    from pipelines.leakage import check_leakage

    schema, frame = adult
    real, holdout, synthetic = frame.iloc[:3000], frame.iloc[3000:4000], frame.iloc[5000:7000]
    outcome = validate_fidelity(real, synthetic, schema, FidelityThresholds())
    privacy = {"guarantee": "(1, 1e-09)-differential privacy", "epsilon": 1.0, "delta": 1e-9,
               "accountant": "zcdp", "mechanism": "test", "synthesizer": "dp-marginals",
               "rows_released": len(synthetic), "public_inputs": ["the schema"]}
    leakage = check_leakage(real, holdout, synthetic, schema, n_attacks=200)
    inputs = ReportInputs(schema=schema, privacy=privacy, synthetic=synthetic,
                          structural=(40, 40, ()), fidelity=observed(outcome), real=real,
                          checks={"leakage": leakage.to_dict()})
    folder = tmp_path_factory.mktemp("report")
    (folder / "internal.html").write_text(render(inputs, internal=True))
    (folder / "safe.html").write_text(render(inputs, internal=False))
    return folder, outcome


def test_reports_are_self_contained_and_the_safe_one_has_no_real_statistics(reports):
    folder, outcome = reports
    internal, safe = (folder / "internal.html").read_text(), (folder / "safe.html").read_text()
    for page in (internal, safe):
        assert "http://" not in page and "https://" not in page and "<script" not in page
        assert "Privacy statement" in page and "Cramer" in page
    value = f"{observed(outcome)[0]['observed']:.4f}"
    assert value in internal and value not in safe
    assert "smoke alarms, not proof of privacy" in internal
    assert "real</" not in safe and "Privacy checks" not in safe


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_renders_its_plots_in_headless_chromium(reports):
    """Look at the internal report as a person would: its screenshot shows the plots."""
    from PIL import Image

    from pipelines.html_report import REAL, SYNTHETIC

    folder, _ = reports
    shot = folder / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={folder / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,2600",
                    (folder / "internal.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)

    def share(colour: str) -> float:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        return float((np.abs(pixels.astype(int) - rgb).sum(1) < 30).mean())

    assert share(REAL) > 0.002 and share(SYNTHETIC) > 0.002  # bars of both sides are drawn
