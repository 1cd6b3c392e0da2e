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
    from tests.conftest import shared

    shared("adult/adult.test")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fidelity.py"), "--small"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| train on real |" in done.stdout and "| dp-vae | 1 |" in done.stdout
