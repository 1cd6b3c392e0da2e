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
