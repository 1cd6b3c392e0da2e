"""The benchmark scripts run at a tiny size (ratios printed, never asserted on time)."""

import subprocess
import sys

from tests.conftest import ROOT


def test_dp_step_benchmark_runs_small():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "dp_step.py"), "--small"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    print(done.stdout)
    assert "ours / plain" in done.stdout
    assert "| mlp | 64 |" in done.stdout and "| cnn | 8 |" in done.stdout


def test_fidelity_benchmark_runs_small():
    """Every registered synthesizer and both baselines through every metric on 2,000 rows."""
    from synth.base import synthesizer_names

    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fidelity.py"), "--small"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    print(done.stdout)
    assert "| train on real | - | - |" in done.stdout
    for name in synthesizer_names():
        assert f"| {name} | 1 | 1 |" in done.stdout, name
    # SDV is a benchmark-only extra: its CTGAN runs where installed, else says it skipped
    assert "| sdv-ctgan | - | 1 |" in done.stdout or "skipped sdv-ctgan" in done.stdout
    assert "Quality" in done.stdout and "pMSE" in done.stdout and "Anchors" in done.stdout


def test_fit_time_benchmark_runs_small():
    """bench/fit_time.py: one JSON line per run, with both timings and both metrics."""
    import json

    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fit_time.py"), "--synthesizer",
                           "dp-independent", "--epsilons", "1", "--rows", "500"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["synthesizer"] == "dp-independent" and record["epsilon"] == 1.0
    assert set(record["seconds"]) == {"fit", "sample"}
    assert 0 <= record["l1_3way"] <= 2 and 0 <= record["tstr_auroc"] <= 1
