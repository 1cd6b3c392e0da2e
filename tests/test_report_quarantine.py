"""A quarantined release's report says so, and names remedies drawn from its public failed
checks: a larger input, a higher epsilon, the --fidelity-threshold that applies, another
synthesizer."""

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.html_report import ReportInputs, render
from pipelines.remedies import misses, remedies
from pipelines.validate.measured import validate_measured
from schemas import schema_from_dict
from synth.encoding import TableEncoder
from synth.evidence import NoisyMarginal

SCHEMA = schema_from_dict({"name": "tiny", "version": "1", "columns": [
    {"name": "colour", "kind": "categorical", "categories": ["red", "green", "blue"]},
    {"name": "size", "kind": "categorical", "categories": ["S", "L"]}]})
PRIVACY = {"epsilon": 1.0, "delta": 1e-9, "synthesizer": "dp-ctgan", "rows_released": 200}


@dataclass
class Measured:
    """What the gate reads of a fitted model: its encoder and its noisy marginals."""

    encoder_: TableEncoder
    noisy_marginals_: tuple


def failed_lines(synthetic: pd.DataFrame) -> tuple[str, ...]:
    """The gate's lines for a release far from what was measured (all red, all S)."""
    measured = Measured(TableEncoder(SCHEMA), (
        NoisyMarginal(("colour",), np.array([0.0, 0.0, 1000.0]), 1.0),
        NoisyMarginal(("colour", "size"), np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1000.0]), 1.0)))
    outcome = validate_measured(measured, synthetic, 0.10, 0.15)
    assert outcome is not None and not outcome.success
    return outcome.failed


def synthetic() -> pd.DataFrame:
    return pd.DataFrame({"colour": pd.Categorical(["red"] * 200, ["red", "green", "blue"]),
                         "size": pd.Categorical(["S"] * 200, ["S", "L"])})


def test_remedies_name_the_threshold_that_applies_and_a_value_that_passes():
    failed = failed_lines(synthetic())
    missed = misses(failed)
    assert [m.threshold for m in missed] == ["measured_tv_max", "measured_joint_tv_max"]
    for m in missed:  # the suggested threshold covers the distance beyond the noise's share
        assert m.passing_limit >= m.limit + m.observed - m.bound
        assert m.passing_limit - (m.limit + m.observed - m.bound) <= 0.01 + 1e-9
    text = " ".join(remedies(failed, epsilon=1.0, synthesizer="dp-ctgan"))
    assert "More rows" in text and "--epsilon than 1" in text
    assert re.search(r"--fidelity-threshold measured_tv_max=[0-9.]+; --fidelity-threshold "
                     r"measured_joint_tv_max=[0-9.]+", text)
    assert "--synthesizer dp-marginals" in text
    assert "dp-independent" in " ".join(remedies(failed, 1.0, "dp-marginals"))
    assert remedies(()) == []
    audit = ("canary audit: empirical epsilon lower bound 3.000 exceeds the claimed 1.000: the "
             "mechanism adds less noise than it accounts for")
    assert "run again" in " ".join(remedies((audit,)))
    assert "--epsilon" in " ".join(remedies(("label balance: off by 0.3",)))


def test_a_quarantined_report_says_so_in_its_title_and_heading_with_remedies():
    failed = failed_lines(synthetic())
    inputs = ReportInputs(schema=SCHEMA, privacy=PRIVACY, synthetic=synthetic(),
                          structural=(5, 5, ()), quarantined=failed)
    for internal in (False, True):
        page = render(inputs, internal=internal)
        title = re.search(r"<title>(.*?)</title>", page).group(1)
        heading = re.search(r"<h1>(.*?)</h1>", page).group(1)
        assert "QUARANTINED" in title and "QUARANTINED" in heading
        assert "--fidelity-threshold measured_tv_max=" in page
        assert "--epsilon" in page and "More rows" in page and "dp-marginals" in page
        assert "measured_marginal_tv(colour)" in page
    published = render(ReportInputs(schema=SCHEMA, privacy=PRIVACY, synthetic=synthetic(),
                                    structural=(5, 5, ())), internal=False)
    assert "QUARANTINED" not in published and "What to try" not in published
