"""The benchmark scripts run at a tiny size (ratios printed, never asserted on time).

Each runs in this process, as ``python bench/<name>.py <args>`` would run it: a fresh
interpreter would import torch, pandas and the rest again (seconds of a core each)."""

import importlib
import sys
from types import SimpleNamespace

import pytest


@pytest.fixture
def script(monkeypatch, capsys):
    """Runs bench/<name>.py's main() with ``args``; its exit status 0 or None, its stdout."""
    def run(name: str, *args: str) -> SimpleNamespace:
        module = importlib.import_module(f"bench.{name}")
        monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", *args])
        code = module.main()
        out = capsys.readouterr().out
        print(out)
        return SimpleNamespace(returncode=code or 0, stdout=out)
    return run


def test_dp_step_benchmark_runs_small(script):
    done = script("dp_step", "--small")
    assert done.returncode == 0
    assert "ours / plain" in done.stdout
    assert "| mlp | 64 |" in done.stdout and "| cnn | 8 |" in done.stdout


def test_many_models_benchmark_runs_small(script):
    """bench/many_models.py: a grid one by one and together, the same weights both ways."""
    done = script("many_models", "--small")
    assert done.returncode == 0
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 3 | 300 |"))
    assert float(row.strip("|").split("|")[-1]) < 1e-4  # max weight difference


def test_fidelity_benchmark_runs_small(script):
    """Every registered synthesizer and both baselines through every metric on 2,000 rows."""
    from synth.base import synthesizer_names

    done = script("fidelity", "--small")
    assert done.returncode == 0
    assert "| train on real | - | - |" in done.stdout
    for name in synthesizer_names():
        assert f"| {name} | 1 | 1 |" in done.stdout, name
    # SDV is a benchmark-only extra: its CTGAN runs where installed, else says it skipped
    assert "| sdv-ctgan | - | 1 |" in done.stdout or "skipped sdv-ctgan" in done.stdout
    assert "Quality" in done.stdout and "pMSE" in done.stdout and "Anchors" in done.stdout


def test_fit_time_benchmark_runs_small(script):
    """bench/fit_time.py: one JSON line per run, with both timings and both metrics."""
    import json

    done = script("fit_time", "--synthesizer", "dp-independent", "--epsilons", "1", "--rows",
                  "500")
    assert done.returncode == 0
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["synthesizer"] == "dp-independent" and record["epsilon"] == 1.0
    assert set(record["seconds"]) == {"fit", "sample"}
    assert 0 <= record["l1_3way"] <= 2 and 0 <= record["tstr_auroc"] <= 1
