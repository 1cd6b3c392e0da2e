"""Scale-out on Ray (flows/fanout.py): a grid of whole release runs on a local 2-CPU Ray
instance, against a temporary Prefect server; only configs go out and summaries come back."""

import json
import os
import re

import pandas as pd
import pytest

from tests.conftest import ROOT, stored_files

SCHEMA = str(ROOT / "schemas" / "adult.yaml")
EPSILONS = (0.5, 1.0)


def cli_args(adult_sample, out, ledger) -> list[str]:
    # small and fast: 300 rows of the independent baseline, structural checks only
    return ["--input", str(adult_sample), "--schema", SCHEMA, "--epsilon",
            *map(str, EPSILONS), "--out", str(out), "--rows", "300", "--synthesizer",
            "dp-independent", "--no-fidelity", "--noise-seed", "5", "--ledger", str(ledger)]


def test_grid_gives_each_run_its_own_directory(tmp_path):
    from flows.fanout import expand_grid
    from pipelines.config import RunConfig
    from pipelines.errors import DataError

    base = RunConfig(input="a/adult.data.gz", schema_file=SCHEMA, out=str(tmp_path / "grid"),
                     epsilon=1, rows=300, synthesizer="dp-independent")
    data = [("a/adult.data.gz", SCHEMA), ("b/adult.test", SCHEMA), ("c/adult.csv", SCHEMA),
            ("d/adult.csv", SCHEMA)]
    configs = expand_grid(base, data, epsilons=[0.1, 1, 10], seeds=[0, 1])
    assert len(configs) == 24 and len({c.out for c in configs}) == 24
    assert {os.path.dirname(c.out) for c in configs} == {str(tmp_path / "grid")}
    names = {os.path.basename(c.out) for c in configs}
    assert {"adult.data-eps0.1-seed0", "adult.test-eps10-seed1", "adult-1-eps1-seed0",
            "adult-2-eps1-seed0"} <= names
    assert {(c.input, c.epsilon, c.seed) for c in configs} == {
        (i, e, s) for i, _ in data for e in (0.1, 1, 10) for s in (0, 1)}
    assert all(c.rows == 300 and c.synthesizer == "dp-independent" for c in configs)
    assert [c.out for c in expand_grid(base)] == [str(tmp_path / "grid" / "adult.data-eps1-seed0")]
    with pytest.raises(DataError, match="several runs would publish to"):
        expand_grid(base, epsilons=[0.1, 0.1000001])  # both named eps0.1
    with pytest.raises(ValueError):
        expand_grid(base, epsilons=[0])  # still validated as a RunConfig


def test_help_names_the_ray_options(capsys):
    from flows.fanout import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--ray-address", "--cpus-per-run", "--gpus-per-run", "--seeds", "--epsilon",
                   "--synthesizer", "--no-fidelity"):
        assert option in text


@pytest.fixture(scope="module")
def local_ray(prefect_home, stored_before):
    """One local Ray instance of 2 CPUs and no GPU for the module; the task runner uses it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def grid(local_ray, adult_sample, tmp_path_factory):
    """Two releases of Adult (epsilon 0.5 and 1) run in parallel, as the CLI would run them."""
    from flows.fanout import build_parser, expand_grid, fan_out
    from pipelines.config import config_from_args

    tmp = tmp_path_factory.mktemp("fanout")
    argv = cli_args(adult_sample, tmp / "grid", tmp / "ledger.db")
    args = build_parser().parse_args(argv)
    base = config_from_args(type(args)(**{**vars(args), "input": args.input[0],
                                          "schema_file": args.schema_file[0],
                                          "epsilon": args.epsilon[0], "seed": args.seed[0]}))
    configs = expand_grid(base, epsilons=args.epsilon, seeds=args.seed)
    return argv, tmp, fan_out(configs, cpus_per_run=1)


def test_runs_publish_in_parallel_ray_workers(grid):
    _, _, rows = grid
    assert [r["status"] for r in rows] == ["published", "published"]
    for row, epsilon in zip(rows, EPSILONS):
        frame = pd.read_parquet(os.path.join(row["out"], "data.parquet"))
        assert len(frame) == 300 and "income" in frame.columns
        assert 0 < row["epsilon"] <= epsilon and row["failed"] == []
    assert len({r["worker"] for r in rows}) == 2  # two worker processes, side by side
    assert all(r["worker"].rpartition(":")[2] != str(os.getpid()) for r in rows)


def test_summaries_hold_no_real_data(grid, adult_sample, prefect_home, stored_before):
    from flows.fanout import SUMMARY_KEYS

    _, _, rows = grid
    assert all(set(r) == set(SUMMARY_KEYS) for r in rows)
    text = json.dumps([{k: v for k, v in r.items() if k != "worker"} for r in rows])
    assert len(text) < 1000  # a few paths and numbers per run, never rows or models
    real = pd.read_csv(adult_sample, header=None, skipinitialspace=True)
    private = {str(v) for v in real[2]}  # fnlwgt: nearly unique per row, nowhere public
    assert not private & set(re.findall(r"\w+", text))
    # and the Ray tasks, like the release flow's, wrote no result to Prefect's storage
    assert stored_files(prefect_home) - stored_before == set()


def test_cli_rerun_of_the_grid_spends_nothing(grid, capsys):
    from flows.fanout import main
    from pipelines.ledger import Ledger

    argv, tmp, rows = grid
    written = [os.stat(os.path.join(r["out"], "data.parquet")).st_mtime_ns for r in rows]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.count("published") == 2 and "adult_sample-eps0.5-seed0" in table
    assert [os.stat(os.path.join(r["out"], "data.parquet")).st_mtime_ns
            for r in rows] == written
    entries = Ledger(tmp / "ledger.db").history()
    assert len(entries) == 2 and {e["state"] for e in entries} == {"committed"}


def test_a_gpu_request_on_a_cluster_without_gpus_fails_before_any_run(grid, capsys):
    from flows.fanout import main
    from pipelines.ledger import Ledger

    argv, tmp, _ = grid
    argv = [a if a != str(tmp / "grid") else str(tmp / "gpu-grid") for a in argv]
    assert main([*argv, "--gpus-per-run", "1"]) == 2
    err = capsys.readouterr().err
    assert "--gpus-per-run 1: no node of the Ray cluster has 1 GPU(s)" in err
    assert "nothing was run or spent" in err
    assert not (tmp / "gpu-grid").exists() and len(Ledger(tmp / "ledger.db").history()) == 2


def test_a_failed_run_is_reported_in_the_table_and_the_exit_status(grid, capsys):
    from flows.fanout import main

    argv, tmp, _ = grid
    missing = str(tmp / "missing.csv")
    argv = [*argv[:2], missing, *argv[2:]]  # --input adult_sample missing.csv
    assert main(argv) == 2  # the two published runs are reruns: no-ops
    table = capsys.readouterr().out
    states = [line.split()[0] for line in table.splitlines()[1:] if not line.startswith(" ")]
    assert states == ["published", "published", "failed", "failed"]
    assert f"DataError: {missing}: cannot read input: no such file" in table
