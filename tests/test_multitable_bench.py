"""bench/multitable.py at smoke size: tiny models, one epsilon, one seed, no HMA, no file."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # about 40 s: `make test`, not the fast lane


def _bench():
    spec = importlib.util.spec_from_file_location("bench_multitable",
                                                  ROOT / "bench" / "multitable.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_multitable_benchmark_runs_at_smoke_size(capsys, tmp_path):
    bench = _bench()
    out = tmp_path / "multitable.json"
    result = bench.main(["--smoke", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| synthesizer | seeds | integrity % | rows TVD |" in printed
    assert "| ours (PersonMarginals) | 1 | 100.0 |" in printed
    assert "| naive DP | 1 |" in printed and "ours / naive DP" in printed
    assert not out.exists()  # a smoke run writes nothing
    ours = [r for r in result["rows"] if r["synthesizer"] == "ours"]
    assert len(ours) == 1 and ours[0]["integrity"] == 100.0
    assert result["real_integrity"]["integrity"] == 100.0
    for row in result["rows"]:
        assert 0 <= row["rows_tvd"] <= 1 and 0 <= row["parent_rows_tvd"] <= 1
        assert 0 <= row["last_status_tvd"] <= 1 and 0 <= row["km_gap"] <= 1
        assert row["trend_mean"] >= 0 and row["trend_sd"] >= 0 and row["fit_s"] > 0
