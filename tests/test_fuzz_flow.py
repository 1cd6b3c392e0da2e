"""The generated hostile cases of tests/test_fuzz.py through the release flow, under a real
Prefect server: each flow run fails with one bounded state message, writes nothing, counts
no budget, and nothing Prefect stores of it (parameters, states, task runs, logs, artifacts)
holds a value planted in the input.

Every CSV, Parquet, path, ledger and schema case runs (the data's values are the private ones at
stake), and every other image case (each flow run costs Prefect about a second of
its own). The run settings' cases never start a flow: the run form (``RunConfig``) refuses
them exactly as the command line does, where tests/test_fuzz.py covers them.
"""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from pipelines.config import add_run_arguments, config_from_args
from pipelines.errors import DataError
from schemas.limits import LimitError
from tests.test_fuzz import (
    CSV,
    IMAGES,
    LEDGERS,
    MARKER,
    MAX_LINE,
    PARQUET,
    PATHS,
    SCHEMAS,
    arguments,
    counted,
    tree,
)

FLOW_CASES = CSV + PARQUET + PATHS + LEDGERS + SCHEMAS + IMAGES[::2]


def channels(flow_run_id) -> str:
    """What Prefect's database holds of one flow run, as text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return "\n".join(map(repr, [
            client.read_flow_run(flow_run_id),
            *client.read_task_runs(flow_run_filter=runs),
            *client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [flow_run_id]})),
            *client.read_artifacts(flow_run_filter=runs)]))


def planted(folder) -> bool:
    """Whether an input of the case holds the planted private value."""
    return any(p.is_file() and not p.is_symlink() and p.stat().st_size < 2**26
               and MARKER.encode() in p.read_bytes() for p in folder.rglob("*"))


def test_the_sample_covers_every_class_and_150_cases():
    assert len(FLOW_CASES) >= 150
    assert {c.id.split("-")[0] for c in FLOW_CASES} >= {"csv", "parquet", "schema", "ledger",
                                                        "out", "input", "image"}


@pytest.fixture(scope="module")
def prefect_server(prefect_home):
    """The module's Prefect server, its flow runs without heartbeats: a heartbeat thread
    sleeps in one-second steps and each run waits for it to stop (half a second a run, a
    third of these runs' time); a heartbeat event holds the run's id and name, no
    parameter, and none of the channels below is an event."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield prefect_home


@pytest.mark.parametrize("case", FLOW_CASES, ids=[c.id for c in FLOW_CASES])
def test_the_release_flow_fails_in_one_line_and_prefect_keeps_no_input_value(
        case, prefect_server, tmp_path, monkeypatch):
    from flows.parameters import parameters
    from flows.release import release

    folder, state = tmp_path / "case", tmp_path / "state"
    folder.mkdir()
    state.mkdir()
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    argv = [a for a in arguments(case, folder, state) if a != "-q"]
    before = tree(folder)
    try:
        config = config_from_args(parser.parse_args(argv))
    except (SystemExit, ValidationError, DataError, LimitError):
        return  # the run form refuses it: no flow starts (tests/test_fuzz.py)
    flow_state = release(**parameters(config), return_state=True)
    assert flow_state.is_failed(), f"{case.id}: {flow_state}"
    message = flow_state.message or ""
    assert "\n" not in message and len(message) <= MAX_LINE + 100, f"{case.id}: {message}"
    if planted(folder):
        assert MARKER not in channels(flow_state.state_details.flow_run_id), case.id
    assert tree(folder) == before, f"{case.id}: something was written"
    assert counted(state / "ledger.db") == [] and counted(folder / "l.db") == []
