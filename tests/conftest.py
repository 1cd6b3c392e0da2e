"""Shared test fixtures: paths to the real data sets and small samples of them."""

import gzip
import os
from pathlib import Path

import pytest
import torch

from synth.dpsgd import DPStep

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
DEMO_ADULT = ROOT / "data" / "adult" / "adult.data.gz"  # ships with the repo

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s parallel workers: a core each
    torch.set_num_threads(1)

# Files whose tests run a Prefect server, kill processes, or fit for more than a few seconds:
# `make check` (the fast lane, `-m "not slow"`) leaves them to `make test`.
SLOW_FILES = {
    "test_api.py", "test_bench_smoke.py", "test_checkpoint.py", "test_columns.py",
    "test_dpsgd.py", "test_fanout.py", "test_faults.py", "test_fidelity.py", "test_flow.py",
    "test_fuzz_flow.py", "test_gan.py", "test_ghost.py", "test_holdout.py",
    "test_image_merf.py", "test_image_models.py", "test_images.py", "test_ingest_batched.py",
    "test_large.py", "test_leakage.py", "test_marginals.py", "test_medical.py",
    "test_neighbours.py", "test_postgres.py", "test_service.py", "test_synthesizers.py",
    "test_write_safety.py", "test_audit.py", "test_mechanism.py", "test_multitable_run.py",
    "test_multitable_neighbours.py",
}


# The files of most worker-seconds, heaviest first (measured on 2 cores). `--dist loadfile`
# hands each worker the next whole file when it is free: run in this order, the long files
# start early and the many short ones fill in at the end, so neither worker is left running
# one long file alone while the other has finished. (xdist's own order, by number of tests,
# would start the few-but-long files last.) Files not listed follow, in collection order.
HEAVY_FIRST = (
    "test_fanout.py", "test_fidelity.py", "test_service.py", "test_neighbours.py",
    "test_large.py", "test_bench_smoke.py", "test_marginals.py", "test_flow.py",
    "test_faults.py", "test_multitable_neighbours.py", "test_write_safety.py",
    "test_multitable_run.py", "test_images.py", "test_fuzz_flow.py", "test_gan.py",
    "test_multitable_bench.py",
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files whole


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


@pytest.fixture(scope="module")
def adult(adult_sample):
    """(schema, ingested rows) of the Adult sample: each test module gets its own copy."""
    from pipelines.ingest import ingest
    from schemas import load_schema

    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    return schema, ingest(adult_sample, schema).frame


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory):
    """A temporary Prefect server for the flow runs of this test process (Prefect's test
    harness), with its home, storage included, in a temporary folder. One per process, not
    per module: starting one costs seconds of a core, and the tests read back only their own
    flow runs (by id) or check that nothing private was kept, which holds for all of them."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def stored_files(home: Path) -> set[Path]:
    """The files in the Prefect test server's result storage. Private tasks persist nothing,
    but Prefect always writes a failed flow run's exception there (the one-line, redacted
    error of its state message), and the server is shared by the modules of a process: a
    module compares what it finds with what was there before its own runs."""
    storage = home / "storage"
    return {p for p in storage.rglob("*") if p.is_file()} if storage.exists() else set()


@pytest.fixture(scope="module")
def stored_before(prefect_home) -> set:
    """What the (shared) test server's storage held before this module's flow runs."""
    return stored_files(prefect_home)


def server_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a Prefect server started by a test: this one's, without its
    Prefect settings, plus a home of its own, analytics off, and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1", "OMP_WAIT_POLICY": "PASSIVE", **settings})
    return env



class FrozenStep(DPStep):
    """Runs the whole DP step (same randomness drawn), then restores the module's weights:
    patched into a GAN, its D stays as initialised."""

    def __call__(self, per_sample_loss):
        before = [p.detach().clone() for p in self.params]
        super().__call__(per_sample_loss)
        with torch.no_grad():
            for p, b in zip(self.params, before):
                p.copy_(b)
