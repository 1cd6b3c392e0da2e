"""Shared test fixtures: paths to the real data sets and small samples of them."""

import gzip
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
DEMO_ADULT = ROOT / "data" / "adult" / "adult.data.gz"  # ships with the repo


@pytest.fixture(scope="session", autouse=True)
def ledger_home(tmp_path_factory) -> Path:
    """Every run the tests make is recorded in a throwaway budget ledger, never the user's."""
    home = tmp_path_factory.mktemp("synth-home")
    old = os.environ.get("SYNTH_HOME")
    os.environ["SYNTH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("SYNTH_HOME", None)
    else:
        os.environ["SYNTH_HOME"] = old


def shared(relative: str) -> Path:
    """A file of ../shared/datasets, or skip the test where that folder is absent."""
    path = DATASETS / relative
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def adult_sample(tmp_path_factory) -> Path:
    """The first 2,000 records of Adult's training file (raw UCI format, no header)."""
    path = tmp_path_factory.mktemp("adult") / "adult_sample.csv"
    with gzip.open(DEMO_ADULT, "rt") as src:
        path.write_text("".join(line for _, line in zip(range(2000), src)))
    return path
